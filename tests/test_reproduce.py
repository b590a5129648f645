"""The reproduce plan: budgets, resume decisions, and the script end to end."""

import json
import os
import subprocess
import sys

import pytest

from hypergan_tf.experiments import reproduce
from tests.conftest import REPO


def _stage(name, plan_stages):
  return next(s for s in plan_stages if s.name == name)


def _flag(stage, name):
  prefix = f'--{name}='
  return next(a[len(prefix):] for a in stage.argv if a.startswith(prefix))


def test_budgets_scale_the_flagfile_steps(tmp_path):
  steps = reproduce.flagfile_steps('configs/mnist.flags')
  for budget, expected in (('cpu', steps), ('long', 2 * steps),
                           ('smoke', reproduce.SMOKE_STEPS)):
    stages = reproduce.plan(budget, str(tmp_path), ['mnist'])
    assert [s.name for s in stages] == [
        'mnist/train', 'mnist/evaluate', 'mnist/shift', 'mnist/adversarial']
    assert {s.steps for s in stages} == {expected}
    train = _stage('mnist/train', stages)
    assert int(_flag(train, 'steps')) == expected
    assert _flag(train, 'run_dir') == os.path.join(tmp_path, 'mnist')


def test_plan_covers_every_experiment_and_compares_baselines(tmp_path):
  stages = reproduce.plan('cpu', str(tmp_path), data_dir='/d', manual_dir='/m')
  trained = {s.name.split('/')[0] for s in stages if s.name.endswith('train')}
  assert trained == set(reproduce.NAMES)
  assert _stage('baseline_ensemble/train', stages).argv[0] == (
      'scripts/train_baseline.py')
  # The ceilings without augmentation: their flagfile, one flag added.
  aug, noaug = (_stage(f'baseline_ensemble_cifar10{suffix}/train', stages)
                for suffix in ('', '_noaugment'))
  assert _flag(noaug, 'flagfile') == _flag(aug, 'flagfile')
  assert '--noaugment' in noaug.argv and '--noaugment' not in aug.argv
  assert _flag(_stage('cifar5/evaluate', stages), 'manual_dir') == '/m'
  assert all(_flag(s, 'data_dir') == '/d' for s in stages
             if s.name != 'compare')
  compare = stages[-1]
  assert compare.name == 'compare' and compare.output is None
  assert _flag(compare, 'runs').split(',') == [
      os.path.join(tmp_path, n) for n in
      ('mnist', 'baseline_ensemble', 'baseline_mc_dropout',
       'baseline_variational', 'baseline_batch_ensemble')]
  # A flagfile that extends another takes its --steps.
  assert _flag(_stage('cifar5_diverse/train', stages), 'steps') == str(
      reproduce.flagfile_steps('configs/cifar5.flags'))
  # Dataset shift: HyperGAN, deep ensemble, BatchEnsemble and MC dropout on
  # each shift dataset, ten members, one shared cache of corrupted sets.
  for suffix in ('', '_cifar5', '_cifar10'):
    for name in (suffix[1:] or 'mnist', f'baseline_ensemble{suffix}',
                 f'baseline_batch_ensemble{suffix}',
                 f'baseline_mc_dropout{suffix}'):
      shift = _stage(f'{name}/shift', stages)
      assert '--shift' in shift.argv and _flag(shift, 'num_networks') == '10'
      assert _flag(shift, 'shift_data_dir') == os.path.join(tmp_path, 'tfds')
      assert shift.output == os.path.join(tmp_path, name, 'shift_eval',
                                          'metrics.json')


@pytest.mark.parametrize('budget, only, match', [
    ('huge', ['mnist'], "Unknown budget 'huge'"),
    ('cpu', ['mnist', 'imagenet'], r"Unknown experiments \['imagenet'\]"),
])
def test_plan_rejects_unknown_names(tmp_path, budget, only, match):
  with pytest.raises(ValueError, match=match):
    reproduce.plan(budget, str(tmp_path), only)


@pytest.mark.parametrize('content, done', [
    ({'steps': 8}, True),  # results.json of a finished run
    ({'steps': 4}, False),  # a run stopped short of the budget
    ({'steps': 16}, True),  # a run trained further by a longer budget
    ({'steps': 8, 'complete': False}, False),
    ('{"steps": 8', False),  # truncated by a crash
    (None, False),  # not written yet
])
def test_stage_done_only_when_its_output_reaches_the_step(tmp_path, content,
                                                         done):
  path = tmp_path / 'results.json'
  if content is not None:
    path.write_text(content if isinstance(content, str)
                    else json.dumps(content))
  assert reproduce.Stage('x', ('s.py',), str(path), 8).done() is done


@pytest.mark.parametrize('run, evaluation, done', [
    # Validation chose step 6 of 8: its evaluation is the finished one.
    ({'steps': 8, 'selected_step': 6}, {'step': 6}, True),
    ({'steps': 8, 'selected_step': 6}, {'step': 4}, False),  # stale
    ({'steps': 8}, {'step': 8}, True),  # a run that records no selection
    ({'steps': 8}, {'step': 4}, False),
    ({'steps': 4, 'selected_step': 4}, {'step': 4}, False),  # run unfinished
    # Rerun longer, validation moved: the old evaluation is stale.
    ({'steps': 16, 'selected_step': 12}, {'step': 6}, False),
    ({'steps': 8, 'selected_step': 6}, {'step': 6, 'complete': False},
     False),  # an interrupted adversarial run
    ({'steps': 8, 'selected_step': 6}, '{"step": 6', False),  # truncated
    ({'steps': 8, 'selected_step': 6}, None, False),  # not written yet
    (None, {'step': 6}, False),  # no run to have evaluated
])
def test_evaluation_done_only_of_the_checkpoint_its_run_selected(
    tmp_path, run, evaluation, done):
  paths = []
  for name, content in (('results.json', run), ('metrics.json', evaluation)):
    paths.append(tmp_path / name)
    if content is not None:
      paths[-1].write_text(content if isinstance(content, str)
                           else json.dumps(content))
  results, metrics = map(str, paths)
  assert reproduce.Stage('x', ('s.py',), metrics, 8, results).done() is done


def _reproduce(tfds_dir, *flags):
  env = {**os.environ, 'TFDS_DATA_DIR': tfds_dir, 'PYTHONPATH': str(REPO),
         'TF_CPP_MIN_LOG_LEVEL': '2'}
  return subprocess.run([sys.executable, 'scripts/reproduce.py', *flags],
                        capture_output=True, text=True, cwd=REPO, env=env,
                        check=False, timeout=600)


def test_script_runs_skips_finished_stages_and_names_a_failed_one(tfds_dir,
                                                                  tmp_path):
  flags = ('--budget=smoke', f'--runs_root={tmp_path}')
  first = _reproduce(tfds_dir, *flags, '--only=toy_regression')
  assert first.returncode == 0, first.stderr[-3000:]
  run_dir = tmp_path / 'toy_regression'
  metrics = run_dir / 'eval' / 'metrics.json'
  assert json.loads(metrics.read_text())['step'] == reproduce.SMOKE_STEPS
  assert (run_dir / 'eval' / 'regression.png').stat().st_size > 0
  assert (tmp_path / reproduce.TABLES_FILE).stat().st_size > 0
  assert (tmp_path / reproduce.ACCURACY_FIGURE).stat().st_size > 0
  record = json.loads((tmp_path / 'reproduce.json').read_text())
  assert record['budget'] == 'smoke'
  assert set(record['stages']) == {'toy_regression/train',
                                   'toy_regression/evaluate'}
  assert all(s['exit_code'] == 0 and s['wall_time_s'] > 0
             for s in record['stages'].values())
  mtime = metrics.stat().st_mtime_ns

  # Again, with MNIST added and no data for it: the toy stages are skipped,
  # MNIST's training fails and is named with its log.
  again = _reproduce(tfds_dir, *flags, '--only=toy_regression,mnist',
                     f'--data_dir={tmp_path / "no_such_dir"}')
  assert again.returncode != 0
  assert again.stderr.count('skipped') == 2
  assert metrics.stat().st_mtime_ns == mtime
  log = tmp_path / 'logs' / 'mnist_train.log'
  assert 'mnist/train failed (exit 1)' in again.stderr
  assert str(log) in again.stderr and 'Traceback' not in again.stderr
  # scripts/train.py itself, a real process: one line naming the directory
  # and the fix (the log also echoes the command, which names the directory).
  output = [line for line in log.read_text().splitlines()
            if not line.startswith('$ ')]
  errors = [line for line in output if line.startswith('error: ')]
  assert 'no_such_dir' in errors[-1] and 'TFDS_DATA_DIR' in errors[-1]
  assert not any('Traceback' in line for line in output)
  # reproduce.py names the stage's error itself, not only its log.
  assert errors[-1] in again.stderr


def test_run_tells_a_killed_stage_from_a_failed_one(tmp_path):
  """A stage stopped by a signal (kill, OOM) is resumable, not broken."""
  killed = reproduce.Stage('toy/train', (
      '-c', 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'),
                           str(tmp_path / 'results.json'), 4)
  with pytest.raises(reproduce.StageFailedError,
                     match='stopped by signal 15.*rerun the same command'):
    reproduce.run([killed], str(tmp_path), 'smoke')
  record = json.loads((tmp_path / 'reproduce.json').read_text())
  assert record['stages']['toy/train']['exit_code'] == -15

"""The equal-cost protocol: budgets, stages, and the table from real runs."""

import json
import os
import subprocess
import sys

import pytest

from hypergan_tf.evaluation import evaluation
from hypergan_tf.experiments import equal_cost
from hypergan_tf.methods import baselines
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from hypergan_tf.runtime import rundir
from tests.conftest import REPO
from tests.conftest import SHARED_DATA
from tests.conftest import TINY


def test_the_hypergan_is_the_reference_and_the_pair_gets_every_seed():
  methods = equal_cost.methods('cifar10', [3, 4, 5])
  assert [m.name for m in methods] == [
      'hypergan', 'ensemble5', 'ensemble4', 'batch_ensemble', 'mc_dropout']
  assert methods[0].flagfile == 'configs/cifar10_diverse.flags'
  assert methods[0].script == 'scripts/train.py'
  assert methods[1].script == 'scripts/train_baseline.py'
  assert [m.seeds for m in methods] == [(3, 4, 5)] * 2 + [(3,)] * 3
  for m in methods:
    assert os.path.isfile(REPO / m.flagfile), m.flagfile
  chosen = equal_cost.select(methods, ['mc_dropout'])
  assert [m.name for m in chosen] == ['hypergan', 'mc_dropout']
  # A one-seed method named by the user gets every seed given.
  named = equal_cost.methods('cifar10', [3, 4, 5], ['ensemble4'])
  assert [m.seeds for m in named] == [(3, 4, 5)] * 3 + [(3,)] * 2


@pytest.mark.parametrize('call, message', [
    (lambda: equal_cost.methods('mnist', [0]), "Unknown dataset 'mnist'"),
    (lambda: equal_cost.methods('cifar5', []), 'at least one seed'),
    (lambda: equal_cost.select(equal_cost.methods('cifar5', [0]), ['gp']),
     r"Unknown methods \['gp'\]"),
    (lambda: equal_cost.budget_steps(100, {'a': 1.0, 'b': 0.0}, 'a'),
     'Speeds must be positive'),
])
def test_bad_input_gets_one_clear_error(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_each_method_gets_the_reference_wall_time_in_whole_periods():
  steps = equal_cost.budget_steps(
      20000, {'hypergan': 13.6, 'ensemble5': 32.1, 'slow': 0.01}, 'hypergan')
  # 20,000 / 13.6 s x 32.1 = 47,206 -> 47,000; the slow one gets one period.
  assert steps == {'hypergan': 20000, 'ensemble5': 47000, 'slow': 1000}


def test_stages_interleave_seeds_and_carry_each_run_s_flags(tmp_path):
  methods = equal_cost.methods('cifar5', [0, 1])
  steps = {'hypergan': 20000, 'ensemble5': 47000, 'ensemble4': 50000,
           'batch_ensemble': 30000, 'mc_dropout': 40000}
  stages = equal_cost.plan(methods, steps, str(tmp_path), data_dir='/d',
                           shift=True)
  trained = [s.name for s in stages if s.name.endswith('/train')]
  assert trained == ['hypergan_s0/train', 'ensemble5_s0/train',
                     'ensemble4_s0/train', 'batch_ensemble_s0/train',
                     'mc_dropout_s0/train', 'hypergan_s1/train',
                     'ensemble5_s1/train']
  k4 = next(s for s in stages if s.name == 'ensemble4_s0/train')
  assert k4.argv[0] == 'scripts/train_baseline.py'
  assert k4.steps == 50000
  for flag in ('--seed=0', '--steps=50000', '--num_members=4',
               '--data_dir=/d', f'--run_dir={tmp_path}/ensemble4_s0'):
    assert flag in k4.argv
  shift = next(s for s in stages if s.name == 'hypergan_s1/shift')
  assert '--shift' in shift.argv
  assert shift.output == f'{tmp_path}/hypergan_s1/shift_eval/metrics.json'
  assert not any(s.name.endswith('/shift') for s in equal_cost.plan(
      methods, steps, str(tmp_path)))


def test_recorded_speeds_are_reused(tmp_path):
  methods = equal_cost.methods('cifar5', [0])[:2]
  rundir.write_json(str(tmp_path / equal_cost.SPEEDS_FILE), {
      'steps_per_s': {'hypergan': 12.5, 'ensemble5': 30.0}})
  speeds = equal_cost.load_or_measure_speeds(methods, str(tmp_path), 400, 1)
  assert speeds == {'hypergan': 12.5, 'ensemble5': 30.0}


def test_cells_are_mean_and_sample_std_over_seeds():
  assert equal_cost._cell([0.90, 0.92], 100, 2) == '91.00 ± 1.41'
  assert equal_cost._cell([0.3], 1, 3) == '0.300'
  assert equal_cost._cell([], 1, 3) == '—'


@pytest.fixture(scope='module')
def evaluated_runs(tfds_dir, not_mnist_prepared, tmp_path_factory):
  """A tiny HyperGAN and a tiny K = 3 ensemble with validation, trained and
  test-evaluated, as seed 0 of 'hypergan' and 'ensemble5' in one root."""
  root = tmp_path_factory.mktemp('equal_cost')
  common = dict(data_dir=tfds_dir, download=False, validation_size=100,
                eval_every=2)
  training.train(config.TrainConfig(
      run_dir=str(root / 'hypergan_s0'), **{**TINY, **common}))
  baselines.train(baselines.BaselineConfig(
      run_dir=str(root / 'ensemble5_s0'), method='ensemble', num_members=3,
      batch_size=8, steps=4, log_every=2, eval_members=3,
      final_eval_members=3, checkpoint_every=2, **common))
  for name, networks in (('hypergan_s0', 4), ('ensemble5_s0', 3)):
    evaluation.evaluate_run(str(root / name), num_networks=networks,
                            ood_data_dir=not_mnist_prepared[0],
                            manual_dir=str(SHARED_DATA))
  return root


def test_table_and_figure_come_from_what_the_runs_wrote(evaluated_runs):
  root = str(evaluated_runs)
  methods = equal_cost.select(equal_cost.methods('cifar5', [0]),
                              ['ensemble5'])
  metrics = json.loads(
      (evaluated_runs / 'ensemble5_s0' / 'eval' / 'metrics.json').read_text())
  summary = equal_cost.run_summary(f'{root}/ensemble5_s0')
  assert summary['networks'] == 3
  assert summary['accuracy'] == metrics['test/accuracy_n3']
  assert summary['ood_auroc'] == metrics['ood/not_mnist_auroc_n3']
  assert summary['passes'] == 4 * 3 * 8
  assert summary['wall_time_s'] > 0
  hypergan = equal_cost.run_summary(f'{root}/hypergan_s0')
  assert hypergan['networks'] == 4
  assert hypergan['passes'] == TINY['steps'] * 4 * TINY['batch_size']

  minutes, accuracy, nll = equal_cost.wall_time_curve(f'{root}/hypergan_s0')
  assert len(minutes) == TINY['steps'] // 2  # A validation every 2 steps.
  assert minutes == sorted(minutes) and minutes[0] > 0
  assert all(0 <= a <= 100 for a in accuracy) and all(v > 0 for v in nll)

  path = equal_cost.write_report(methods, root,
                                 {'hypergan': 10.0, 'ensemble5': 20.0},
                                 {'hypergan': 6, 'ensemble5': 12})
  report = open(path).read()
  row = next(line for line in report.splitlines()
             if line.startswith('| Ensemble (K=5) |'))
  assert row.startswith(
      f'| Ensemble (K=5) | 1 | 3 | {100 * metrics["test/accuracy_n3"]:.2f} |')
  assert equal_cost.FIGURE_FILE in report
  assert os.path.getsize(os.path.join(root, equal_cost.FIGURE_FILE)) > 0


def test_a_run_without_validation_is_refused(tiny_run):
  with pytest.raises(ValueError, match='--validation_size'):
    equal_cost.wall_time_curve(str(tiny_run))


def test_script_dry_run_prints_the_budgeted_commands(tmp_path):
  rundir.write_json(str(tmp_path / equal_cost.SPEEDS_FILE), {
      'steps_per_s': {'hypergan': 10.0, 'ensemble5': 25.0,
                      'ensemble4': 30.0}})

  def dry_run(*args):
    return subprocess.run(
        [sys.executable, 'scripts/equal_cost.py', *args,
         f'--runs_root={tmp_path}', '--dry_run'],
        capture_output=True, text=True, cwd=REPO, check=False)

  out = dry_run('--methods=ensemble5', '--seeds=7')
  assert out.returncode == 0, out.stderr[-2000:]
  commands = out.stdout.splitlines()
  # Only the ensemble trains; the HyperGAN's speed still sets its budget.
  assert len(commands) == 2
  assert 'train_baseline.py' in commands[0] and '--seed=7' in commands[0]
  assert '--steps=50000' in commands[0]
  both = dry_run('--methods=hypergan,ensemble5', '--seeds=7')
  assert both.returncode == 0, both.stderr[-2000:]
  commands = both.stdout.splitlines()
  assert len(commands) == 4  # Train and evaluate, two methods.
  assert '--steps=20000' in commands[0] and '--seed=7' in commands[0]
  assert '--steps=50000' in commands[2]
  seeds = dry_run('--methods=ensemble4', '--seeds=1,2')
  assert seeds.returncode == 0, seeds.stderr[-2000:]
  trains = [c for c in seeds.stdout.splitlines() if 'train_baseline' in c]
  assert len(trains) == 2  # Named, the one-seed method gets both seeds.
  assert '--seed=1' in trains[0] and '--seed=2' in trains[1]
  assert '--steps=60000' in trains[1]
  bad = dry_run('--methods=gp')
  assert bad.returncode == 1
  assert "error: Unknown methods ['gp']" in bad.stderr

"""Every experiment of the paper as one resumable plan (scripts/reproduce.py).

A plan is a list of stages; each stage is one run of one of the project's
scripts, and it is done when the JSON file it writes records the step its
run was trained to. Training stages resume from their last checkpoint by
themselves, so running the plan again continues a half-finished run, skips
finished stages, and redoes only evaluations that are older than their run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from typing import Sequence

from absl import logging

from hypergan_tf.evaluation import dataset_shift
from hypergan_tf.evaluation import figures
from hypergan_tf.experiments import paper_tables
from hypergan_tf.methods import loop
from hypergan_tf.runtime import rundir

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One trained model and the analyses run on it."""
  name: str  # Also the run directory's name under the runs root.
  flagfile: str  # configs/<...>.flags, relative to the project root.
  baseline: bool = False  # Trained by scripts/train_baseline.py.
  adversarial: bool = False  # Also run scripts/adversarial.py.
  shift: bool = False  # Also run scripts/evaluate.py --shift.
  args: tuple[str, ...] = ()  # Training flags added to the flagfile's.


# The CIFAR experiments that have a conventional ceiling, and their labels.
CIFAR_CEILINGS = (('cifar5', 'CIFAR-5'), ('cifar10', 'CIFAR-10'),
                  ('cifar10_5000', 'CIFAR-10-5000'))
# The datasets of the dataset-shift comparison (Ovadia et al.), the
# suffix of their experiments' names, and their labels.
SHIFT_DATASETS = (('', 'rotated MNIST'), ('_cifar5', 'CIFAR-5-C'),
                  ('_cifar10', 'CIFAR-10-C'))
EXPERIMENTS = (
    Experiment('toy_regression', 'configs/toy_regression.flags'),
    Experiment('mnist', 'configs/mnist.flags', adversarial=True, shift=True),
    Experiment('mnist_relu', 'configs/mnist_relu.flags'),  # Ablation.
    Experiment('mnist5000', 'configs/mnist5000.flags'),
    Experiment('cifar5', 'configs/cifar5.flags', shift=True),
    Experiment('cifar10', 'configs/cifar10.flags', shift=True),
    Experiment('cifar10_5000', 'configs/cifar10_5000.flags'),
    # The recipe for diverse networks on natural images: the
    # fast recipe plus four modes.
    Experiment('cifar5_diverse', 'configs/cifar5_diverse.flags', shift=True),
    Experiment('cifar10_diverse', 'configs/cifar10_diverse.flags',
               shift=True),
    # The low-rank head with per-network batches: the K = 5 ensemble's cost.
    Experiment('cifar5_fast', 'configs/cifar5_fast.flags', shift=True),
    Experiment('cifar10_fast', 'configs/cifar10_fast.flags', shift=True),
    Experiment('baseline_ensemble', 'configs/baseline_ensemble.flags',
               baseline=True, adversarial=True, shift=True),
    Experiment('baseline_mc_dropout', 'configs/baseline_mc_dropout.flags',
               baseline=True, adversarial=True, shift=True),
    Experiment('baseline_variational', 'configs/baseline_variational.flags',
               baseline=True, adversarial=True),
    Experiment('baseline_batch_ensemble',
               'configs/baseline_batch_ensemble.flags', baseline=True,
               adversarial=True, shift=True),
    # The conventional ceilings of the CIFAR targets, with and
    # without augmentation.
    *(Experiment(f'baseline_ensemble_{name}{suffix}',
                 f'configs/baseline_ensemble_{name}.flags', baseline=True,
                 args=args, shift=not suffix and name != 'cifar10_5000')
      for name, _ in CIFAR_CEILINGS
      for suffix, args in (('', ()), ('_noaugment', ('--noaugment',)))),
    # The other methods of the dataset-shift comparison on CIFAR.
    *(Experiment(f'baseline_{method}{suffix}',
                 f'configs/baseline_{method}{suffix}.flags', baseline=True,
                 shift=True)
      for method in ('batch_ensemble', 'mc_dropout')
      for suffix, _ in SHIFT_DATASETS[1:]),
)
NAMES = tuple(e.name for e in EXPERIMENTS)

# Budget -> multiple of each flagfile's --steps. 'cpu' is what the flagfiles
# hold (sized for a 2-core CPU); 'long' doubles it, which is what the notes
# say the CIFAR runs need. 'smoke' checks the whole pipeline in minutes.
STEP_SCALES = {'smoke': 0.0, 'cpu': 1.0, 'long': 2.0}
SMOKE_STEPS = 4
SMOKE_TRAIN_ARGS = ('--num_networks=2', '--eval_networks=2',
                    '--final_eval_networks=10', '--pretrain_mixer_steps=0',
                    '--warmup_steps=0', '--checkpoint_every=2',
                    '--eval_every=2', '--log_every=1')
SMOKE_BASELINE_ARGS = ('--num_members=2', '--eval_members=2',
                       '--final_eval_members=2', '--checkpoint_every=2',
                       '--eval_every=2', '--log_every=1')
SMOKE_EVALUATE_ARGS = ('--num_networks=4',)
# Ten members (K for an ensemble): ~750,000 CIFAR-10-C images per member.
SHIFT_ARGS = ('--shift', '--num_networks=10')
SMOKE_SHIFT_ARGS = ('--num_networks=2', '--shift_examples=20',
                    '--corruptions=gaussian_noise,contrast')
# Both detection protocols (scripts/adversarial.py's default), tiny sizes.
SMOKE_ADVERSARIAL_ARGS = ('--num_examples=20', '--ensemble_sizes=2',
                          '--paper_ensemble_sizes=2,4',
                          '--scale_check_size=4', '--paper_steps=2',
                          '--transfer_networks=4', '--pgd_steps=2',
                          '--epsilons=0.1', '--batch_size=20')


@dataclasses.dataclass(frozen=True)
class Stage:
  """One script run; done once `output` records >= `steps` and is complete.

  An evaluation names its run's results.json in `evaluates`: it is done once
  its output is of the checkpoint that run selected, which validation may have
  picked before the last step (and which a longer rerun may change).
  """
  name: str  # e.g. 'mnist/train'
  argv: tuple[str, ...]  # Script path and its flags.
  output: str | None  # JSON the script writes; None: always run.
  steps: int  # The run's trained step that output (or `evaluates`) records.
  evaluates: str | None = None  # The evaluated run's results.json.

  def done(self) -> bool:
    record = _read_record(self.output)
    if record is None or not record.get('complete', True):
      return False
    # results.json holds 'steps'; evaluations hold the checkpoint's 'step'.
    step = record.get('step', record.get('steps'))
    if self.evaluates is None:
      # A run trained beyond this budget (by a longer one) counts as done.
      return isinstance(step, int) and step >= self.steps
    run = _read_record(self.evaluates)
    return (run is not None and run.get('steps', -1) >= self.steps
            and step == run.get('selected_step', run.get('steps')))


def _read_record(path: str | None) -> dict | None:
  """A stage's JSON output, or None if missing or unreadable (redo it)."""
  if path is None or not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def flagfile_values(flagfile: str, names: Sequence[str],
                    args: Sequence[str] = (), root: str = PROJECT_ROOT
                    ) -> dict[str, str]:
  """The last value of each named flag that flagfile, then args, set:
  nested flagfiles read where they stand, as absl does, their paths
  relative to root. Names set nowhere are left out."""
  values = {}
  with open(os.path.join(root, flagfile)) as f:
    lines = [line.strip() for line in f]
  for line in (*lines, *args):
    if not line.startswith('--'):
      continue
    name, _, value = line[2:].partition('=')
    if name == 'flagfile':
      values.update(flagfile_values(value, names, root=root))
    elif name in names:
      values[name] = value
  return values


def flagfile_steps(flagfile: str) -> int:
  """The --steps value of a flagfile (`flagfile_values`)."""
  steps = flagfile_values(flagfile, ('steps',)).get('steps')
  if steps is None:
    raise ValueError(f'{flagfile} sets no --steps.')
  return int(steps)


def experiment_stages(experiment: Experiment, budget: str, runs_root: str,
                      data_dir: str | None = None,
                      manual_dir: str | None = None) -> list[Stage]:
  """The train / evaluate / adversarial stages of one experiment."""
  smoke = budget == 'smoke'
  steps = (SMOKE_STEPS if smoke else
           round(flagfile_steps(experiment.flagfile) * STEP_SCALES[budget]))
  run_dir = os.path.join(runs_root, experiment.name)
  data_args = (f'--data_dir={data_dir}',) if data_dir else ()
  train_args = ((f'--flagfile={experiment.flagfile}', f'--run_dir={run_dir}',
                 f'--steps={steps}') + experiment.args + data_args)
  if smoke:
    train_args += (SMOKE_BASELINE_ARGS if experiment.baseline
                   else SMOKE_TRAIN_ARGS)
  script = ('scripts/train_baseline.py' if experiment.baseline
            else 'scripts/train.py')
  results = os.path.join(run_dir, rundir.RESULTS_FILE)
  stages = [Stage(f'{experiment.name}/train', (script,) + train_args,
                  results, steps)]
  evaluate_args = (f'--run_dir={run_dir}',) + data_args
  if manual_dir:
    evaluate_args += (f'--manual_dir={manual_dir}',)
  stages.append(Stage(
      f'{experiment.name}/evaluate',
      ('scripts/evaluate.py',) + evaluate_args +
      (SMOKE_EVALUATE_ARGS if smoke else ()),
      os.path.join(run_dir, 'eval', 'metrics.json'), steps, results))
  if experiment.shift:
    stages.append(Stage(
        f'{experiment.name}/shift',
        ('scripts/evaluate.py',) + evaluate_args + SHIFT_ARGS +
        (SMOKE_SHIFT_ARGS if smoke else ()) + (
            (f'--shift_data_dir={os.path.join(runs_root, "tfds")}',)),
        os.path.join(run_dir, 'shift_eval', 'metrics.json'), steps, results))
  if experiment.adversarial:
    stages.append(Stage(
        f'{experiment.name}/adversarial',
        ('scripts/adversarial.py', f'--run_dir={run_dir}') + data_args +
        (SMOKE_ADVERSARIAL_ARGS if smoke else ()),
        os.path.join(run_dir, 'adversarial', 'metrics.json'), steps, results))
  return stages


def plan(budget: str, runs_root: str, only: Sequence[str] = NAMES,
         data_dir: str | None = None, manual_dir: str | None = None
         ) -> list[Stage]:
  """All stages for the chosen experiments, in order, plus the comparison.

  Raises:
    ValueError: unknown budget or experiment name.
  """
  if budget not in STEP_SCALES:
    raise ValueError(f'Unknown budget {budget!r}; choose from '
                     f'{sorted(STEP_SCALES)}.')
  unknown = sorted(set(only) - set(NAMES))
  if unknown:
    raise ValueError(f'Unknown experiments {unknown}; choose from {NAMES}.')
  stages = []
  for experiment in EXPERIMENTS:
    if experiment.name in only:
      stages += experiment_stages(experiment, budget, runs_root, data_dir,
                                  manual_dir)
  compared = [e.name for e in EXPERIMENTS if e.adversarial and e.name in only]
  if len(compared) > 1:
    stages.append(Stage(
        'compare', ('scripts/compare.py', '--runs=' + ','.join(
            os.path.join(runs_root, name) for name in compared),
                    '--output=' + os.path.join(runs_root, 'compare_mnist.md')),
        None, 0))
  return stages


def last_error(log_path: str) -> str:
  """The one-line 'error: ...' a script ended with, or where to look."""
  with open(log_path) as log:
    errors = [line.strip() for line in log if line.startswith('error: ')]
  return errors[-1] if errors else 'no error line in its log.'


class StageFailedError(RuntimeError):
  """A stage's script exited non-zero."""


def run(stages: Sequence[Stage], runs_root: str, budget: str,
        dry_run: bool = False) -> dict[str, dict]:
  """Runs the stages not yet done, in order; stops at the first failure.

  Each stage's output goes to <runs_root>/logs/<stage>.log; wall times,
  budget and machine go to <runs_root>/reproduce.json after every stage, so
  every reported number can say what it cost.

  Returns:
    The record written to reproduce.json.

  Raises:
    StageFailedError: a stage's script failed (its log names the problem).
  """
  record_path = os.path.join(runs_root, 'reproduce.json')
  record = {'budget': budget, 'stages': {},
            'machine': {'cpu_count': os.cpu_count(),
                        'processor': platform.processor() or
                                     platform.machine()}}
  if os.path.exists(record_path):
    with open(record_path) as f:
      record['stages'] = json.load(f).get('stages', {})
  for index, stage in enumerate(stages, 1):
    prefix = f'[{index}/{len(stages)}] {stage.name}'
    if stage.done():
      logging.info('%s: done (%s), skipped', prefix, stage.output)
      continue
    command = [sys.executable] + list(stage.argv)
    if dry_run:
      print(' '.join(command))
      continue
    log_path = os.path.join(runs_root, 'logs',
                            stage.name.replace('/', '_') + '.log')
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    logging.info('%s: running, log %s', prefix, log_path)
    start = time.time()
    with open(log_path, 'a') as log:
      log.write(f'\n$ {" ".join(command)}\n')
      log.flush()
      code = subprocess.call(command, cwd=PROJECT_ROOT, stdout=log,
                             stderr=subprocess.STDOUT)
    seconds = time.time() - start
    entry = record['stages'].setdefault(stage.name, {'wall_time_s': 0.0})
    # A resumed stage adds to the time of its earlier, interrupted runs.
    entry['wall_time_s'] += seconds
    entry.update(steps=stage.steps, budget=budget, exit_code=code,
                 finished=time.strftime('%Y-%m-%d %H:%M:%S'))
    rundir.write_json(record_path, record)
    # Killed by a signal, or stopped by one after saving (exit 128 + signal):
    # a training stage kept its checkpoint.
    signum = -code if code < 0 else code - 128 if code in loop.INTERRUPTED else 0
    if signum:
      raise StageFailedError(
          f'{stage.name} was stopped by signal {signum} after {seconds:.0f} '
          f's; rerun the same command to resume. Log: {log_path}.')
    if code:
      raise StageFailedError(
          f'{stage.name} failed (exit {code}) after {seconds:.0f} s: '
          f'{last_error(log_path)} Fix it and rerun the same command to '
          f'resume; log: {log_path}.')
    logging.info('%s: finished in %.0f s', prefix, seconds)
  return record


TABLES_FILE = 'results_tables.md'
ACCURACY_FIGURE = 'ensemble_accuracy.png'


def write_tables(runs_root: str) -> str:
  """Tables 3 and 4, the OOD table and the accuracy figure, for RESULTS.md.

  Returns the tables' path, <runs_root>/results_tables.md; the figure goes
  beside it.
  """
  run = lambda name: os.path.join(runs_root, name)
  table4 = [
      ('MNIST', run('mnist'), 'mnist'),
      ('MNIST, ReLU hypernetwork (ablation)', run('mnist_relu'), 'mnist'),
      ('MNIST-5000', run('mnist5000'), 'mnist5000')]
  for key, label in CIFAR_CEILINGS:
    table4 += [
        (label, run(key), key),
        *([(f'{label}, 4 modes', run(f'{key}_diverse'),
            key),
           (f'{label}, low-rank head, per-network batches',
            run(f'{key}_fast'), key)] if key in ('cifar5', 'cifar10') else []),
        (f'{label}, conventional ensemble (K=5)',
         run(f'baseline_ensemble_{key}'), key),
        (f'{label}, conventional ensemble (K=5), no augmentation',
         run(f'baseline_ensemble_{key}_noaugment'), key)]
  # One panel per paper row, titled by its first run, with all its runs.
  panels = {}
  for label, run_dir, paper_key in table4:
    panels.setdefault(paper_key, []).append((label, run_dir))
  figures.ensemble_accuracy(
      {runs[0][0]: paper_tables.accuracy_curves(runs, paper_key)
       for paper_key, runs in panels.items()},
      os.path.join(runs_root, ACCURACY_FIGURE))
  text = '\n'.join([
      '## Table 4: test accuracy (%)\n',
      paper_tables.accuracy_table(table4),
      '## Table 3: layer L2 norms, MNIST (mean ± std over members)\n',
      paper_tables.diversity_table([
          ('HyperGAN (ours)', run('mnist')),
          ('independent training (ours, baseline ensemble)',
           run('baseline_ensemble'))]),
      '## Out-of-distribution detection by ensemble entropy\n',
      paper_tables.ood_table([
          ('HyperGAN MNIST', run('mnist')),
          ('HyperGAN MNIST-5000', run('mnist5000')),
          ('HyperGAN CIFAR-5', run('cifar5')),
          ('Ensemble (K=5) CIFAR-5', run('baseline_ensemble_cifar5')),
          ('Ensemble (K=5) CIFAR-5, no augmentation',
           run('baseline_ensemble_cifar5_noaugment')),
          ('Ensemble (K=10) MNIST', run('baseline_ensemble')),
          ('MC dropout MNIST', run('baseline_mc_dropout')),
          ('Variational MNIST', run('baseline_variational'))]),
  ])
  shift_rows, shift_figures = [], []
  for suffix, label in SHIFT_DATASETS:
    methods = {
        'HyperGAN': run(suffix[1:] or 'mnist'),
        **({'HyperGAN, fast recipe': run(f'{suffix[1:]}_fast'),
            'HyperGAN, 4 modes': run(f'{suffix[1:]}_diverse')}
           if suffix else {}),
        f'Ensemble (K={10 if not suffix else 5})':
            run(f'baseline_ensemble{suffix}'),
        'BatchEnsemble (K=4)': run(f'baseline_batch_ensemble{suffix}'),
        'MC dropout': run(f'baseline_mc_dropout{suffix}')}
    shift_rows += [(label, method, run_dir)
                   for method, run_dir in methods.items()]
    figure = dataset_shift.figure(
        methods, os.path.join(runs_root, f'shift{suffix or "_mnist"}.png'),
        f'{label}: accuracy and ECE under shift')
    if figure:
      shift_figures.append(f'![{label}]({os.path.basename(figure)})\n')
  text += '\n'.join(['\n## Dataset shift\n',
                      dataset_shift.table(shift_rows), *shift_figures])
  path = os.path.join(runs_root, TABLES_FILE)
  rundir.write_text(path, text)
  return path

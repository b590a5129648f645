"""HyperGAN against ensembles at equal training cost; rerun to resume.

  python scripts/equal_cost.py --dataset=cifar5 --seeds=0,1,2

Times every method's training script on this machine (recorded in
<runs_root>/speeds.json and reused), gives each the HyperGAN recipe's wall
time in steps, trains and test-evaluates every method and seed (the
HyperGAN and the K = 5 ensemble with every seed; a K = 4 ensemble,
BatchEnsemble and MC dropout with the first, or with every seed where
--methods names them), and writes
<runs_root>/equal_cost.md (mean ± std over seeds, wall time and
network-image passes per row) and the wall-time figure beside it.
"""

import os

from absl import app
from absl import flags
from absl import logging

from hypergan_tf.experiments import equal_cost
from hypergan_tf.experiments import reproduce
from hypergan_tf.experiments import script_speed

_DATASET = flags.DEFINE_enum('dataset', 'cifar5', list(equal_cost.DATASETS),
                             'Dataset of the comparison.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of the HyperGAN, '
                           'the K = 5 ensemble and the methods --methods '
                           'names (the others: the first).')
_METHODS = flags.DEFINE_list(
    'methods', None, 'Train only these methods (the HyperGAN\'s speed sets '
    'the budget either way): hypergan, ensemble5, ensemble4, '
    'batch_ensemble, mc_dropout.')
_RUNS_ROOT = flags.DEFINE_string('runs_root', None, 'Directory of the run '
                                 'directories (default: runs/equal_cost_'
                                 '<dataset>).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory '
                                '(default: TFDS_DATA_DIR or TFDS\'s own).')
_SHIFT = flags.DEFINE_bool('shift', False, 'Also score CIFAR-10-C (about '
                           '5 min a run).')
_SPEED_STEPS = flags.DEFINE_integer(
    'speed_steps', script_speed.OVERHEAD_STEPS, 'Steps of each speed probe '
    '(its validation passes and checkpoints priced too).',
    lower_bound=script_speed.OVERHEAD_STEPS)
_SPEED_ROUNDS = flags.DEFINE_integer('speed_rounds', 1, 'Alternations of '
                                     'the speed probes.', lower_bound=1)
_DRY_RUN = flags.DEFINE_bool('dry_run', False,
                             'Print the commands still to run; run nothing.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  runs_root = os.path.abspath(_RUNS_ROOT.value or
                              f'runs/equal_cost_{_DATASET.value}')
  data_dir = _DATA_DIR.value and os.path.abspath(_DATA_DIR.value)
  try:
    seeds = [int(s) for s in _SEEDS.value]
    methods = equal_cost.select(
        equal_cost.methods(_DATASET.value, seeds, _METHODS.value or ()),
        _METHODS.value)
    speeds = equal_cost.load_or_measure_speeds(
        methods, runs_root, _SPEED_STEPS.value, _SPEED_ROUNDS.value,
        log=logging.info)
    steps = equal_cost.budget_steps(
        reproduce.flagfile_steps(methods[0].flagfile), speeds,
        methods[0].name)
    logging.info('Equal wall time: %s', steps)
    trained = [m for m in methods
               if not _METHODS.value or m.name in _METHODS.value]
    stages = equal_cost.plan(trained, steps, runs_root, data_dir,
                             _SHIFT.value)
    reproduce.run(stages, runs_root, 'equal_cost', _DRY_RUN.value)
    if not _DRY_RUN.value:
      logging.info('Wrote %s', equal_cost.write_report(
          methods, runs_root, speeds, steps))
  except (ValueError, RuntimeError) as e:
    raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
  app.run(main)

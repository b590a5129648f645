"""Runs every experiment of the paper; rerun the same command to resume.

  python scripts/reproduce.py --budget=cpu --manual_dir=../shared/data

Trains (or resumes) MNIST, MNIST-5000, CIFAR-5, CIFAR-10, CIFAR-10-5000, the
toy regression and the three baselines, evaluates each (accuracy,
calibration, OOD, diversity; Figure 2 for the regression), runs the
adversarial experiments on MNIST and the baselines, and writes the
comparison table. Finished stages are skipped; times go to
<runs_root>/reproduce.json. RESULTS.md reports the numbers this gave.
"""

import os

from absl import app
from absl import flags
from absl import logging

from hypergan_tf.experiments import reproduce

_BUDGET = flags.DEFINE_enum(
    'budget', 'cpu', list(reproduce.STEP_SCALES),
    'smoke: a few steps per run (checks the pipeline); cpu: the flagfiles\' '
    'steps (sized for a 2-core CPU); long: twice those.')
_ONLY = flags.DEFINE_list('only', list(reproduce.NAMES),
                          'Experiments to run (always in the default order).')
_RUNS_ROOT = flags.DEFINE_string('runs_root', 'runs',
                                 'Directory of the run directories.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory '
                                '(default: TFDS_DATA_DIR or TFDS\'s own).')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, 'Directory holding '
                                  'notMNIST_small.tar.gz.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False,
                             'Print the commands still to run; run nothing.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    # Absolute: the stages run in the project root, wherever this started.
    runs_root, data_dir, manual_dir = (
        path and os.path.abspath(path) for path in
        (_RUNS_ROOT.value, _DATA_DIR.value, _MANUAL_DIR.value))
    stages = reproduce.plan(_BUDGET.value, runs_root, _ONLY.value, data_dir,
                            manual_dir)
    reproduce.run(stages, runs_root, _BUDGET.value, _DRY_RUN.value)
  except (ValueError, reproduce.StageFailedError) as e:
    raise SystemExit(f'error: {e}') from None
  if not _DRY_RUN.value:
    logging.info('All %d stages done; tables for RESULTS.md in %s',
                 len(stages), reproduce.write_tables(runs_root))


if __name__ == '__main__':
  app.run(main)

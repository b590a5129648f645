"""Evaluates a trained HyperGAN: accuracy, calibration, OOD, diversity.

  python scripts/evaluate.py --run_dir=runs/mnist --manual_dir=../shared/data

Writes metrics.json, report.md and PNG figures into <run_dir>/eval/ (or
--out_dir: a run directory it cannot write, a read-only copy say, needs
one). With --validation it reads no test image: the run's validation split
and validation OOD set (for choosing recipes), into
<run_dir>/validation_eval/. With --shift it scores the test set under
dataset shift (CIFAR-10-C corruptions, rotated MNIST) into
<run_dir>/shift_eval/:

  python scripts/evaluate.py --run_dir=runs/cifar5 --shift --num_networks=10
"""

from absl import app
from absl import flags
from absl import logging

from hypergan_tf.datasets import corruptions
from hypergan_tf.datasets import data
from hypergan_tf.evaluation import dataset_shift
from hypergan_tf.evaluation import evaluation

_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory of '
                               'scripts/train.py.', required=True)
_NETWORKS = flags.DEFINE_integer('num_networks', 100, 'Networks sampled; '
                                 'ensembles of 1, 5, 10 and 100 of them are '
                                 'evaluated.', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the sampled networks.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory of '
                                'the training dataset (default: as trained).')
_OOD_DATA_DIR = flags.DEFINE_string(
    'ood_data_dir', None, 'Writable TFDS directory for notMNIST (default: '
    '<out_dir>/tfds).')
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'Directory holding notMNIST_small.tar.gz (needed the '
    'first time notMNIST is prepared).')
_BATCH = flags.DEFINE_integer('batch_size', 100, 'Images per pass of all '
                              'networks.', lower_bound=1)
_VALIDATION = flags.DEFINE_bool(
    'validation', False, "Score the run's validation split and validation "
    'OOD set (CIFAR-5: CIFAR-10 training images of classes 5-9) instead of '
    'test: for choosing recipes.')
_SHIFT = flags.DEFINE_bool(
    'shift', False, 'Score the test set under dataset shift: CIFAR-10-C '
    'corruptions at 5 severities (CIFAR runs; built and cached on first '
    'use), or rotations of 0-180 degrees (MNIST runs; with --validation, of '
    'the validation split instead). About 750,000 images for CIFAR: pass '
    '--num_networks=10 (or K).')
_SHIFT_DATA_DIR = flags.DEFINE_string(
    'shift_data_dir', None, 'With --shift: writable TFDS directory caching '
    'the corrupted test sets (default: TFDS\' default directory).')
_SHIFT_EXAMPLES = flags.DEFINE_integer(
    'shift_examples', None, 'With --shift: the first N test images only '
    '(default: all).', lower_bound=1)
_CORRUPTIONS = flags.DEFINE_list(
    'corruptions', None, 'With --shift: these corruptions only (default: '
    f'all of {",".join(corruptions.CORRUPTIONS)}).')
_OUT_DIR = flags.DEFINE_string(
    'out_dir', None, 'Where the outputs go (default: eval/, validation_eval/, '
    'shift_eval/ or validation_shift_eval/ in --run_dir).')
_OOD_EXAMPLES = flags.DEFINE_integer(
    'ood_examples', 5000, 'With --validation: OOD images scored.',
    lower_bound=1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    if _SHIFT.value:
      results = dataset_shift.evaluate_shift(
          _RUN_DIR.value, _NETWORKS.value, _SEED.value, _DATA_DIR.value,
          _SHIFT_DATA_DIR.value, _SHIFT_EXAMPLES.value,
          tuple(_CORRUPTIONS.value) if _CORRUPTIONS.value else None,
          _BATCH.value, _OUT_DIR.value, _VALIDATION.value)
      logging.info('Wrote %s: %s', results['out_dir'],
                   results['summary']['overall'])
      return
    if _VALIDATION.value:
      results = evaluation.evaluate_validation(
          _RUN_DIR.value, _NETWORKS.value, _SEED.value, _DATA_DIR.value,
          _OOD_EXAMPLES.value, _BATCH.value, _OUT_DIR.value)
    else:
      results = evaluation.evaluate_run(
          _RUN_DIR.value, _NETWORKS.value, _SEED.value, _DATA_DIR.value,
          _OOD_DATA_DIR.value, _MANUAL_DIR.value, _BATCH.value,
          _OUT_DIR.value)
  except (FileNotFoundError, RuntimeError, ValueError,
          data.DatasetNotFoundError) as e:
    raise SystemExit(f'error: {e}') from None
  logging.info('Wrote into %s\n%s', results['out_dir'],
               evaluation.summary(results))


if __name__ == '__main__':
  app.run(main)

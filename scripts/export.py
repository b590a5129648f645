"""Exports a trained HyperGAN (or ensemble) as a SavedModel for serving.

  python scripts/export.py --run_dir=runs/mnist --export_dir=exports/mnist/1
"""

import os

from absl import app
from absl import flags
from absl import logging

from hypergan_tf.model import members
from hypergan_tf.serving import export

_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory of '
                               'scripts/train.py (or of an ensemble / '
                               'batch_ensemble of scripts/train_baseline.py).',
                               required=True)
_EXPORT_DIR = flags.DEFINE_string(
    'export_dir', None, 'Where to write the SavedModel (default: '
    '<run_dir>/export/1; TF Serving wants a numbered version directory).')
_MAX_NETWORKS = flags.DEFINE_integer(
    'max_networks', 1000, 'Largest num_networks the signatures accept.',
    lower_bound=1)
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace an existing export directory.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  export_dir = _EXPORT_DIR.value or os.path.join(_RUN_DIR.value, 'export',
                                                 '1')
  try:
    model = members.load(_RUN_DIR.value)
    if model.hypernet is not None:
      source = model.hypernet
    elif model.max_members is not None:  # An ensemble's K members.
      source = export.FixedMembers(model.spec,
                                   model.sample(model.max_members, 0))
    else:
      raise ValueError(f'{_RUN_DIR.value} is an MC-dropout or variational '
                       'run; only HyperGAN runs and ensembles (ensemble, '
                       'batch_ensemble) export.')
    export.export(source, export_dir, _MAX_NETWORKS.value, _OVERWRITE.value)
  except (FileNotFoundError, FileExistsError, RuntimeError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  logging.info('Exported step %d of %s to %s', model.step, _RUN_DIR.value,
               export_dir)


if __name__ == '__main__':
  app.run(main)

"""hypergan_tf: HyperGAN (Ratzlaff & Fuxin, ICML 2019) in TensorFlow/Keras.

    import hypergan_tf
    model = hypergan_tf.load('runs/mnist')
    out = model.predict(images, num_networks=10, seed=0)

Importing the package registers every built-in method (HyperGAN and the
baselines) with `members`, so `load` reads any run directory.
"""

import os
import sys

# TensorFlow's C++ INFO and WARNING lines say nothing a user of this package
# can act on; set TF_CPP_MIN_LOG_LEVEL=0 to see them.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _import_tensorflow_quietly() -> None:
  """Imports TensorFlow with the C++ stderr silenced, unless asked for.

  TF 2.21 prints its CUDA-probe lines ('Could not find cuda drivers', 'All
  log messages before absl::InitializeLog()') while importing, before it
  reads TF_CPP_MIN_LOG_LEVEL, and an error line ('failed call to cuInit')
  on a machine without a GPU when the devices are first listed; only
  silencing file descriptor 2 hides them, so both happen here. Listing the
  physical devices leaves them configurable. Python errors still surface:
  they are raised, not printed.
  """
  if 'tensorflow' in sys.modules or os.environ['TF_CPP_MIN_LOG_LEVEL'] < '2':
    return
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top
    tensorflow.config.list_physical_devices('GPU')
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


_import_tensorflow_quietly()

from hypergan_tf import data  # pylint: disable=g-import-not-at-top
from hypergan_tf.serving.api import load  # pylint: disable=g-import-not-at-top
from hypergan_tf.serving.api import Model  # pylint: disable=g-import-not-at-top

__all__ = ['data', 'load', 'Model']

"""hypergan_tf: HyperGAN (Ratzlaff & Fuxin, ICML 2019) in TensorFlow/Keras.

    import hypergan_tf
    model = hypergan_tf.load('runs/mnist')
    out = model.predict(images, num_networks=10, seed=0)

Importing the package registers every built-in method (HyperGAN and the
baselines) with `members`, so `load` reads any run directory.
"""

import os

# TensorFlow's C++ INFO and WARNING lines say nothing a user of this package
# can act on; set TF_CPP_MIN_LOG_LEVEL=0 to see them. (TF 2.21 prints its
# CUDA-probe lines before reading this variable.)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from hypergan_tf.api import load  # pylint: disable=g-import-not-at-top
from hypergan_tf.api import Model  # pylint: disable=g-import-not-at-top

__all__ = ['load', 'Model']

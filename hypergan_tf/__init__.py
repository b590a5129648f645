"""hypergan_tf: HyperGAN (Ratzlaff & Fuxin, ICML 2019) in TensorFlow/Keras.

    import hypergan_tf
    model = hypergan_tf.load('runs/mnist')
    out = model.predict(images, num_networks=10, seed=0)

Importing the package registers every built-in method (HyperGAN and the
baselines) with `members`, so `load` reads any run directory.
"""

from hypergan_tf.api import load
from hypergan_tf.api import Model

__all__ = ['load', 'Model']

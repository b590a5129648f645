"""The project's own TFDS builders; importing this registers them with TFDS.

After `import hypergan_tf.datasets`, `tfds.load('not_mnist', ...)` and
`tfds.load('cifar10_c/<corruption>_<severity>', ...)` work like any catalogue
dataset (once prepared; see `not_mnist.prepare` and `cifar10_c.prepare`).
"""

from hypergan_tf.datasets import cifar10_c  # Registers 'cifar10_c'.
from hypergan_tf.datasets import not_mnist  # Registers 'not_mnist'.

__all__ = ['cifar10_c', 'not_mnist']

"""The project's own TFDS builders; importing this registers them with TFDS.

After `import hypergan_tf.datasets`, `tfds.load('not_mnist', ...)` works like
any catalogue dataset (once prepared; see `not_mnist.prepare`).
"""

from hypergan_tf.datasets import not_mnist  # Registers 'not_mnist'.

__all__ = ['not_mnist']

"""Writes cifar10_c_reference.npz: the first NUM_IMAGES CIFAR-10 test images
and CIFAR-10-C's deterministic corruptions of them at every severity, made
by the reference script's own functions.

The reference is `ImageNet-C/create_c/make_cifar_c.py` of
github.com/hendrycks/robustness (Hendrycks & Dietterich, ICLR 2019; the
committed file was made from its commit 8190fe3); pass its path. Its corruption functions run unchanged; only what they do not use
is stubbed (torch and torchvision load the dataset, Wand blurs motion,
`scipy.ndimage.interpolation` is gone from current SciPy) and the script's
dataset loop is cut off. Each image goes in as the script passes it (a PIL
image of the uint8 array: its ToTensor + ToPILImage round trip is exact)
and comes out as the script saves it, `np.uint8(...)`.

The corruptions that draw nothing at random, and two that do, given the
same draws: the script drew from numpy's global generator image after
image, which nothing can replay, so here its `np.random.normal` (Gaussian
noise) and `np.random.poisson` (shot noise) draw from image i's own stream
as `hypergan_tf.datasets.corruptions` keys it, `SeedSequence([SEED, index of the
corruption in CORRUPTIONS, severity], spawn_key=(i,))`. (The other random
ones draw through scikit-image or Wand, or in an order of their own.)

  python tests/data/make_cifar10_c_reference.py /path/to/make_cifar_c.py \
      [TFDS data directory holding cifar10]
"""

import sys
import types

import cv2
import numpy as np
import PIL
from PIL import Image
import scipy
from scipy import ndimage
import skimage
import tensorflow_datasets as tfds

NAMES = ('defocus_blur', 'zoom_blur', 'brightness', 'contrast', 'pixelate',
         'jpeg_compression')
RANDOM_NAMES = ('gaussian_noise', 'shot_noise')
# In CIFAR-10-C's order (hypergan_tf.datasets.corruptions.CORRUPTIONS), for the keys.
ORDER = ('gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur',
         'glass_blur', 'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog',
         'brightness', 'contrast', 'elastic_transform', 'pixelate',
         'jpeg_compression')
SEED = 0
NUM_IMAGES = 2
OUT = __file__.rsplit('/', 1)[0] + '/cifar10_c_reference.npz'


def reference_functions(path):
  """The script's functions, from its text up to its dataset loop; the
  imports it does not need here become stubs."""
  unused = ('import torch', 'from wand', 'import wand',
            'from scipy.ndimage.interpolation')
  source = open(path).read().split('# /////////////// End Distortions')[0]
  source = '\n'.join(line for line in source.splitlines()
                     if not line.startswith(unused))
  stub = types.SimpleNamespace
  namespace = {
      '__name__': 'make_cifar_c', 'map_coordinates': ndimage.map_coordinates,
      'WandImage': type('WandImage', (), {}), 'WandColor': stub(),
      'wandlibrary': stub(MagickMotionBlurImage=stub())}
  exec(compile(source, path, 'exec'), namespace)  # pylint: disable=exec-used
  return namespace


def main(path, data_dir=None):
  functions = reference_functions(path)
  clean = tfds.as_numpy(tfds.load('cifar10', split=f'test[:{NUM_IMAGES}]',
                                  data_dir=data_dir, batch_size=-1))['image']
  out = {'clean': clean, 'seed': np.array(SEED)}
  global_normal, global_poisson = np.random.normal, np.random.poisson
  try:
    for name in NAMES + RANDOM_NAMES:
      out[name] = np.zeros((5, *clean.shape), np.uint8)
      for severity in range(1, 6):
        for i, image in enumerate(clean):
          stream = np.random.default_rng(np.random.SeedSequence(
              [SEED, ORDER.index(name), severity], spawn_key=(i,)))
          np.random.normal, np.random.poisson = stream.normal, stream.poisson
          out[name][severity - 1, i] = np.uint8(
              functions[name](Image.fromarray(image), severity))
  finally:
    np.random.normal, np.random.poisson = global_normal, global_poisson
  out['versions'] = np.array(
      f'numpy {np.__version__}, scipy {scipy.__version__}, opencv '
      f'{cv2.__version__}, scikit-image {skimage.__version__}, pillow '
      f'{PIL.__version__}')
  np.savez_compressed(OUT, **out)
  print(OUT, {k: v.shape for k, v in out.items()})


if __name__ == '__main__':
  main(*sys.argv[1:])

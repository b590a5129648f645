"""Dataset-shift corruptions: CIFAR-10-C made locally, and rotated MNIST.

`corrupt` applies the 15 corruptions of CIFAR-10-C (Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019) at severities 1-5, with the parameters of the CIFAR
script, `ImageNet-C/create_c/make_cifar_c.py` in github.com/hendrycks/
robustness (ImageNet-C's, and the `imagecorruptions` package's, are much
stronger: they are tuned for 224x224 images). The algorithms are those of that
script, vectorised over the batch; what the script did with ImageMagick
(motion blur) follows the ImageMagick-free version in the `imagecorruptions`
package (github.com/bethgelab/imagecorruptions, `_motion_blur`), and what it
did with OpenCV and scikit-image is written here in numpy/scipy with the same
formulas. `rotate` rotates MNIST digits, for the rotated-MNIST shift.

Per corruption (all parameters the CIFAR script's):

- gaussian_noise, shot_noise, impulse_noise (scikit-image's salt & pepper),
  brightness (scikit-image's HSV conversion, rewritten for batches),
  contrast, fog (diamond-square plasma fractal), zoom_blur (scipy's linear
  zoom, as matrices): numpy, the original's formulas.
- defocus_blur (OpenCV's anti-aliased disk kernel, to its float32 rounding,
  applied as filter2D), glass_blur (scipy/scikit-image Gaussian), snow,
  elastic_transform: numpy/scipy.
- motion_blur, snow's blur: ImageMagick's MotionBlurImage, reimplemented.
- frost: the `imagecorruptions` package's copies of the original pictures.
- pixelate, jpeg_compression: PIL, as the original.

Where the result departs from the original, and why:

- Randomness: the original drew from numpy's global generator, image after
  image, so its draws cannot be reproduced; here image i draws from its own
  stream, `SeedSequence([seed, corruption index, severity],
  spawn_key=(start + i,))`, so results depend on (seed, corruption, severity,
  position) and not on batch size or chunking. The distributions are the
  original's.
- motion_blur, snow: Wand/ImageMagick (a system library) is replaced by its
  MotionBlurImage kernel and pixel offsets in numpy, as `imagecorruptions`
  does, rounded to the nearest level as ImageMagick writes its 8-bit PNG
  (`imagecorruptions` truncates). ImageMagick's 16-bit internal quanta are not
  modelled, so a value may differ by one level.
- elastic_transform: OpenCV's warpAffine (bilinear, reflect-101 border) is
  exact bilinear sampling here; OpenCV rounds sample positions to 1/32 pixel,
  which moved about 1 value in 100,000 by one level.
- frost: the pictures are read with PIL (the same pixels as OpenCV's imread),
  and OpenCV's 0.2x bilinear resize is the pixel selection it amounts to
  (every 5th pixel from the 3rd). As in the original only frost1-frost5 are
  ever chosen (`randint(5)`).
- glass_blur: the original's pixel "swap" is, through numpy views, a copy
  (x[h, w] = x[h + dy, w + dx]); that is kept, and as every offset is -1 or 0
  each pass equals one vectorised gather.
- jpeg_compression, pixelate: another libjpeg or PIL may change a few pixels.

Checked: given the same random draws, the uint8 results equal those of the
CIFAR script's own functions. Tested bit for bit (`tests/test_corruptions.py`
against `tests/data/cifar10_c_reference.npz`, made by
`tests/data/make_cifar10_c_reference.py`) for the six deterministic
corruptions and Gaussian and shot noise, on 2 images at every severity.
Checked once by hand for all of them (run with OpenCV and scikit-image, Wand
swapped for the reimplemented blur) on 200 CIFAR-10 test images at every
severity: equal except elastic_transform's 1 value in 100,000 off by one.
So `UNFAITHFUL` lists none. `UNAVAILABLE` names the corruptions that cannot run here: frost
needs the pictures of the `imagecorruptions` package (a dependency of this
project; read without importing it, as its `__init__` imports OpenCV and
scikit-image).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import os
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

CORRUPTIONS: tuple[str, ...] = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur',
    'glass_blur', 'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog',
    'brightness', 'contrast', 'elastic_transform', 'pixelate',
    'jpeg_compression')
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
# Corruptions that could not be made faithfully: name -> reason. None.
UNFAITHFUL: dict[str, str] = {}
# Corruptions that draw nothing at random: the seed does not change them.
DETERMINISTIC: tuple[str, ...] = ('defocus_blur', 'zoom_blur', 'brightness',
                                  'contrast', 'pixelate', 'jpeg_compression')
ROTATIONS: tuple[int, ...] = tuple(range(0, 181, 15))
IMAGE_SHAPE = (32, 32, 3)

_FROST_FILES = ('frost1.png', 'frost2.png', 'frost3.png', 'frost4.jpg',
                'frost5.jpg')  # The original's randint(5) never picks frost6.


def _frost_dir() -> str | None:
  """The `imagecorruptions` frost folder, found without importing the package.

  Importing it would import OpenCV and scikit-image, which are only needed
  for its own corruptions.
  """
  try:
    spec = importlib.util.find_spec('imagecorruptions')
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(spec.submodule_search_locations[0], 'frost')
  if not all(os.path.isfile(os.path.join(path, f)) for f in _FROST_FILES):
    return None
  return path


# Corruptions that cannot run on this machine (see the module docstring).
UNAVAILABLE: tuple[str, ...] = () if _frost_dir() else ('frost',)

_Generators = list[np.random.Generator]


# ----------------------------------------------------------------- helpers


def _to_uint8(unit: np.ndarray) -> np.ndarray:
  """[0, 1] floats to uint8 as the original: clip, scale, truncate."""
  return (np.clip(unit, 0, 1) * 255).astype(np.uint8)


def _per_image(rngs: _Generators,
               draw: Callable[[np.random.Generator], np.ndarray]
               ) -> np.ndarray:
  """Stacks one draw per image, each from that image's own stream."""
  return np.stack([np.asarray(draw(rng)) for rng in rngs])


def _zoom_matrix(size: int, zoom: float) -> np.ndarray:
  """[size, size] linear map doing the original's `clipped_zoom` on one axis.

  The original crops the centre ceil(size / zoom) pixels, zooms them with
  `scipy.ndimage.zoom(order=1)` (corner-aligned: output j samples input
  j * (crop - 1) / (out - 1), out = round(crop * zoom)) and keeps `size`
  pixels from (out - size) // 2. As a matrix it runs on a whole batch.
  """
  crop = int(np.ceil(size / zoom))
  out = int(round(crop * zoom))
  ratio = (crop - 1) / (out - 1) if out > 1 else 0.0
  coords = np.arange(out) * ratio
  low = np.minimum(np.floor(coords).astype(int), crop - 1)
  frac = coords - low
  matrix = np.zeros((out, crop))
  matrix[np.arange(out), low] += 1 - frac
  high = np.minimum(low + 1, crop - 1)  # Weight 0 where it is clamped.
  matrix[np.arange(out), high] += frac
  trim = (out - size) // 2
  full = np.zeros((size, size))
  full[:, (size - crop) // 2:(size - crop) // 2 + crop] = (
      matrix[trim:trim + size])
  return full


def _clipped_zoom(x: np.ndarray, zoom: float) -> np.ndarray:
  """The original's `clipped_zoom` of [N, H, H, C] images, in x's dtype."""
  matrix = _zoom_matrix(x.shape[1], zoom)
  planes = np.moveaxis(x, -1, 1)  # [N, C, H, W]: zoom both axes by matmul.
  return np.moveaxis(matrix @ planes @ matrix.T, 1, -1).astype(x.dtype)


def _fold(index: np.ndarray, size: int, mode: str) -> np.ndarray:
  """Indices outside [0, size) folded back in, as scipy's boundary modes."""
  if mode == 'mirror':  # d c b | a b c d | c b a (OpenCV's reflect-101).
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)
  period = 2 * size  # 'reflect': c b a | a b c d | d c b.
  index = np.mod(index, period)
  return np.where(index >= size, period - 1 - index, index)


def _bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray,
              mode: str) -> np.ndarray:
  """images [N, H, W, C] sampled at rows, cols [N, H', W'], bilinearly.

  Equals `scipy.ndimage.map_coordinates(order=1, mode=mode)` per image and
  channel, for the whole batch at once.
  """
  height, width = images.shape[1:3]
  row0, col0 = np.floor(rows), np.floor(cols)
  row_frac, col_frac = (rows - row0)[..., None], (cols - col0)[..., None]
  row0, col0 = row0.astype(np.int64), col0.astype(np.int64)
  batch = np.arange(images.shape[0])[:, None, None]
  out = np.zeros(rows.shape + images.shape[3:])
  for drow, row_weight in ((0, 1 - row_frac), (1, row_frac)):
    r = _fold(row0 + drow, height, mode)
    for dcol, col_weight in ((0, 1 - col_frac), (1, col_frac)):
      c = _fold(col0 + dcol, width, mode)
      out += row_weight * col_weight * images[batch, r, c]
  return out


def _motion_blur(x: np.ndarray, radius: int, sigma: float,
                 angles: np.ndarray) -> np.ndarray:
  """ImageMagick's MotionBlurImage of [N, H, W, C] x, angle per image.

  A one-sided Gaussian of 2 * radius + 1 taps along the angle, each tap an
  integer pixel offset, edge pixels repeated beyond the border (ImageMagick's
  default virtual pixels); the ImageMagick-free form of `imagecorruptions`.
  """
  width = 2 * int(math.ceil(radius)) + 1
  taps = np.arange(width)
  kernel = np.exp(-taps**2 / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
  kernel /= kernel.sum()
  theta = np.deg2rad(np.asarray(angles, dtype=np.float64))
  point_x, point_y = width * np.sin(theta), width * np.cos(theta)
  hypot = np.hypot(point_x, point_y)
  # ImageMagick: offset.x from point.y (cos), offset.y from point.x (sin).
  off_col = np.ceil(taps[None] * point_y[:, None] / hypot[:, None] - 0.5)
  off_row = np.ceil(taps[None] * point_x[:, None] / hypot[:, None] - 0.5)
  height, width_px = x.shape[1:3]
  batch = np.arange(x.shape[0])[:, None, None]
  out = np.zeros(x.shape)
  for i in range(width):
    rows = np.clip(np.arange(height)[None] + off_row[:, i, None].astype(int),
                   0, height - 1)
    cols = np.clip(
        np.arange(width_px)[None] + off_col[:, i, None].astype(int),
        0, width_px - 1)
    out += kernel[i] * x[batch, rows[:, :, None], cols[:, None, :]]
  return out


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
  """scikit-image's rgb2hsv (the original's) over a batch; [..., 3] in [0, 1]."""
  red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = rgb.max(-1)
  delta = np.ptp(rgb, axis=-1)
  with np.errstate(invalid='ignore', divide='ignore'):
    saturation = np.where(delta == 0, 0.0, delta / value)
    # scikit-image assigns red, then green, then blue: the last max wins.
    hue = np.where(blue == value, 4 + (red - green) / delta,
                   np.where(green == value, 2 + (blue - red) / delta,
                            (green - blue) / delta))
    hue = (hue / 6) % 1
  hue = np.where(delta == 0, 0.0, hue)
  hsv = np.stack([hue, saturation, value], axis=-1)
  return np.nan_to_num(hsv, nan=0.0)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
  """scikit-image's hsv2rgb (the original's) over a batch."""
  hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  sector = np.floor(hue * 6)
  frac = hue * 6 - sector
  p = value * (1 - saturation)
  q = value * (1 - frac * saturation)
  t = value * (1 - (1 - frac) * saturation)
  sector = sector.astype(np.uint8) % 6
  # (r, g, b) per sector as indices into (value, t, p, q).
  table = np.array([[0, 1, 2], [3, 0, 2], [2, 0, 1], [2, 3, 0], [1, 2, 0],
                    [0, 2, 3]])
  parts = np.stack([value, t, p, q], axis=-1)
  return np.take_along_axis(parts, table[sector], axis=-1)


def _gaussian_taps(ksize: int, sigma: float) -> np.ndarray:
  """OpenCV's float32 getGaussianKernel(ksize, sigma > 0), to its rounding.

  The kernel's float32 sum is not exactly 1, and the original truncates to
  uint8, so flat areas land on one side of an integer or the other by it.
  """
  x = np.arange(ksize) - (ksize - 1) / 2
  taps = np.exp(-x**2 / (2 * sigma**2)).astype(np.float32)
  return (taps * (1 / taps.astype(np.float64).sum())).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _disk(radius: float, alias_blur: float) -> np.ndarray:
  """The original's anti-aliased disk kernel, trimmed of its zero border.

  A normalised disk on a 17x17 grid (or a wider one for radii above 8),
  blurred by a small Gaussian (OpenCV's GaussianBlur) to anti-alias it.
  """
  if radius <= 8:
    grid, ksize = np.arange(-8, 8 + 1), 3
  else:
    grid, ksize = np.arange(-radius, radius + 1), 5
  x, y = np.meshgrid(grid, grid)
  disk = (x**2 + y**2 <= radius**2).astype(np.float32)
  disk /= disk.sum()
  taps = _gaussian_taps(ksize, alias_blur)  # GaussianBlur, in float32.
  kernel = ndimage.correlate1d(disk, taps, axis=1, mode='mirror')
  kernel = ndimage.correlate1d(kernel, taps, axis=0, mode='mirror')
  centre = kernel.shape[0] // 2
  reach = int(np.abs(np.argwhere(kernel != 0) - centre).max())
  return kernel[centre - reach:centre + reach + 1,
                centre - reach:centre + reach + 1]


def _plasma_fractal(rngs: _Generators, wibbledecay: float,
                    mapsize: int = 32) -> np.ndarray:
  """[N, mapsize, mapsize] diamond-square height maps in [0, 1].

  The original's `plasma_fractal` (the fog's texture), one map per image; each
  image draws its wibble from its own stream in the original's order.
  """
  maps = np.zeros((len(rngs), mapsize, mapsize))
  stepsize, wibble = mapsize, 100.0

  def wibbled_mean(total: np.ndarray) -> np.ndarray:
    noise = _per_image(rngs, lambda rng: rng.uniform(-wibble, wibble,
                                                     total.shape[1:]))
    return total / 4 + wibble * noise

  while stepsize >= 2:
    half = stepsize // 2
    # Squares: each centre is the mean of its four corners plus wibble.
    corners = maps[:, 0:mapsize:stepsize, 0:mapsize:stepsize]
    total = corners + np.roll(corners, -1, axis=1)
    total += np.roll(total, -1, axis=2)
    maps[:, half::stepsize, half::stepsize] = wibbled_mean(total)
    # Diamonds: each edge midpoint is the mean of its four neighbours.
    centres = maps[:, half::stepsize, half::stepsize]
    corners = maps[:, 0:mapsize:stepsize, 0:mapsize:stepsize]
    total = ((centres + np.roll(centres, 1, axis=1))
             + (corners + np.roll(corners, -1, axis=2)))
    maps[:, 0:mapsize:stepsize, half::stepsize] = wibbled_mean(total)
    total = ((centres + np.roll(centres, 1, axis=2))
             + (corners + np.roll(corners, -1, axis=1)))
    maps[:, half::stepsize, 0:mapsize:stepsize] = wibbled_mean(total)
    stepsize //= 2
    wibble /= wibbledecay
  maps -= maps.min(axis=(1, 2), keepdims=True)
  return maps / maps.max(axis=(1, 2), keepdims=True)


@functools.lru_cache(maxsize=None)
def _frost_pictures() -> tuple[np.ndarray, ...]:
  """The five frost pictures, RGB uint8, shrunk 5x as the original does.

  The original's cv2.resize(fx=0.2, fy=0.2) (bilinear) samples source pixel
  5j + 2 exactly, so it is that slice.
  """
  path = _frost_dir()
  if path is None:
    raise FileNotFoundError(
        "The 'frost' corruption needs the frost pictures of the "
        "'imagecorruptions' package, which is not installed here; "
        '`pip install imagecorruptions` (a dependency of hypergan_tf).')
  pictures = []
  for name in _FROST_FILES:
    with Image.open(os.path.join(path, name)) as picture:
      pixels = np.asarray(picture.convert('RGB'), dtype=np.uint8)
    pictures.append(np.ascontiguousarray(pixels[2::5, 2::5]))
  return tuple(pictures)


# ------------------------------------------------------------- corruptions
# Each takes uint8 [N, 32, 32, 3], the severity and one generator per image,
# and returns uint8 [N, 32, 32, 3]. The parameter tables are the CIFAR
# script's, one entry per severity.


def _gaussian_noise(x, severity, rngs):
  scale = (0.04, 0.06, .08, .09, .10)[severity - 1]
  noise = _per_image(rngs, lambda rng: rng.normal(size=IMAGE_SHAPE,
                                                  scale=scale))
  return _to_uint8(x / 255. + noise)


def _shot_noise(x, severity, rngs):
  photons = (500, 250, 100, 75, 50)[severity - 1]
  x = x / 255.
  counts = np.stack([rng.poisson(image * photons)
                     for rng, image in zip(rngs, x)])
  return _to_uint8(counts / photons)


def _impulse_noise(x, severity, rngs):
  # scikit-image's random_noise(mode='s&p', amount, salt_vs_pepper=0.5):
  # each value independently flipped to 0 or 1.
  amount = (.01, .02, .03, .05, .07)[severity - 1]
  draws = _per_image(rngs, lambda rng: rng.random((2,) + IMAGE_SHAPE))
  flipped, salted = draws[:, 0] < amount, draws[:, 1] < 0.5
  return _to_uint8(np.where(flipped, salted.astype(np.float64), x / 255.))


def _defocus_blur(x, severity, rngs):
  del rngs  # Deterministic.
  radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2),
                        (1.5, 0.1))[severity - 1]
  kernel = _disk(radius, alias_blur)
  out = ndimage.correlate(x / 255., kernel[None, :, :, None], mode='mirror')
  return _to_uint8(out)


def _glass_blur(x, severity, rngs):
  sigma, max_delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1),
                                  (0.25, 1, 2), (0.4, 1, 2))[severity - 1]
  # The parallel form below is exact only for max_delta 1 (all CIFAR ones).
  assert max_delta == 1, max_delta
  blur = (0, sigma, sigma, 0)  # scikit-image's gaussian: mode 'nearest'.
  x = (ndimage.gaussian_filter(x / 255., blur, mode='nearest', truncate=4.0)
       * 255).astype(np.uint8)
  size = x.shape[1]
  inner = np.arange(max_delta + 1, size - max_delta + 1)  # 2..31 as the loop.
  # Offsets in [-max_delta, max_delta): -1 or 0, per pass, row and column.
  shifts = _per_image(rngs, lambda rng: rng.integers(
      -max_delta, max_delta, size=(iterations, 2, inner.size, inner.size)))
  batch = np.arange(x.shape[0])[:, None, None]
  for i in range(iterations):
    # Each pixel copies an up/left neighbour that the original loop (from
    # the bottom right) had not yet overwritten in this pass.
    rows = inner[None, :, None] + shifts[:, i, 0]
    cols = inner[None, None, :] + shifts[:, i, 1]
    x[:, inner[0]:inner[-1] + 1, inner[0]:inner[-1] + 1] = x[batch, rows, cols]
  out = ndimage.gaussian_filter(x / 255., blur, mode='nearest', truncate=4.0)
  return _to_uint8(out)


def _motion_blur_corruption(x, severity, rngs):
  radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
  angles = np.array([rng.uniform(-45, 45) for rng in rngs])
  out = _motion_blur(x.astype(np.float64), radius, sigma, angles)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _zoom_blur(x, severity, rngs):
  del rngs  # Deterministic.
  stop = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
  x = (x / 255.).astype(np.float32)
  out = np.zeros_like(x)
  for zoom in np.arange(1, stop, 0.01):
    out += _clipped_zoom(x, zoom)
  return _to_uint8((x + out) / (len(np.arange(1, stop, 0.01)) + 1))


def _snow(x, severity, rngs):
  (loc, scale, zoom, threshold, radius, sigma,
   blend) = ((0.1, 0.2, 1, 0.6, 8, 3, 0.95),
             (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))[severity - 1]
  x = x.astype(np.float32) / 255.
  layer = _per_image(rngs, lambda rng: rng.normal(size=x.shape[1:3], loc=loc,
                                                  scale=scale))
  layer = _clipped_zoom(layer[..., None], zoom)
  layer[layer < threshold] = 0
  # The original hands ImageMagick an 8-bit greyscale PNG and reads one back.
  layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)
  angles = np.array([rng.uniform(-135, -45) for rng in rngs])
  layer = np.clip(np.rint(_motion_blur(layer.astype(np.float64), radius,
                                       sigma, angles)), 0, 255) / 255.
  grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
  return _to_uint8(x + layer + np.rot90(layer, k=2, axes=(1, 2)))


def _frost(x, severity, rngs):
  weight, frost_weight = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4),
                          (0.75, 0.45))[severity - 1]
  pictures = _frost_pictures()
  size = x.shape[1]
  crops = []
  for rng in rngs:
    picture = pictures[rng.integers(len(pictures))]
    top = rng.integers(0, picture.shape[0] - size)
    left = rng.integers(0, picture.shape[1] - size)
    crops.append(picture[top:top + size, left:left + size])
  out = weight * x.astype(np.float64) + frost_weight * np.stack(crops)
  return np.clip(out, 0, 255).astype(np.uint8)


def _fog(x, severity, rngs):
  strength, decay = ((.2, 3), (.5, 3), (0.75, 2.5), (1, 2),
                     (1.5, 1.75))[severity - 1]
  x = x / 255.
  max_val = x.max(axis=(1, 2, 3), keepdims=True)
  x = x + strength * _plasma_fractal(rngs, decay, x.shape[1])[..., None]
  return _to_uint8(x * max_val / (max_val + strength))


def _brightness(x, severity, rngs):
  del rngs  # Deterministic.
  shift = (.05, .1, .15, .2, .3)[severity - 1]
  hsv = _rgb_to_hsv(x / 255.)
  hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)
  return _to_uint8(_hsv_to_rgb(hsv))


def _contrast(x, severity, rngs):
  del rngs  # Deterministic.
  factor = (.75, .5, .4, .3, 0.15)[severity - 1]
  x = x / 255.
  means = x.mean(axis=(1, 2), keepdims=True)
  return _to_uint8((x - means) * factor + means)


def _elastic_transform(x, severity, rngs):
  size = x.shape[1]
  # Fractions of the image size: displacement scale, its smoothing, affine.
  alpha, sigma, affine = size * np.array((
      (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
      (0.1, 0.03, 0.03)))[severity - 1]
  x = x.astype(np.float32) / 255.
  # Random affine: three (x, y) points around the centre each moved by up
  # to `affine` pixels; warpAffine samples output p at the inverse map of p,
  # which is the affine taking the moved points back.
  centre, reach = np.float32(size // 2), size // 3
  points = np.float32([[centre + reach, centre + reach],
                       [centre + reach, centre - reach],
                       [centre - reach, centre - reach]])
  moved = []
  displacement = []
  for rng in rngs:  # Draw order: affine, then dx, then dy.
    moved.append(points + rng.uniform(-affine, affine, size=points.shape
                                      ).astype(np.float32))
    displacement.append(rng.uniform(-1, 1, size=(2, size, size)))
  moved = np.stack(moved).astype(np.float64)
  ones = np.ones(moved.shape[:2] + (1,))
  inverse = np.linalg.solve(np.concatenate([moved, ones], axis=-1),
                            np.broadcast_to(points.astype(np.float64),
                                            moved.shape))  # [N, 3, 2]
  grid_y, grid_x = np.meshgrid(np.arange(size), np.arange(size),
                               indexing='ij')
  pixels = np.stack([grid_x, grid_y, np.ones_like(grid_x)], -1)  # (x, y, 1)
  source = np.einsum('hwk,nkj->nhwj', pixels, inverse)
  x = _bilinear(x, source[..., 1], source[..., 0], 'mirror').astype(
      np.float32)
  # Elastic: smoothed uniform noise fields move each pixel.
  displacement = ndimage.gaussian_filter(np.stack(displacement),
                                         (0, 0, sigma, sigma),
                                         mode='reflect', truncate=3)
  displacement = (displacement * alpha).astype(np.float32)
  out = _bilinear(x, grid_y + displacement[:, 1], grid_x + displacement[:, 0],
                  'reflect').astype(np.float32)
  return _to_uint8(out)


def _pixelate(x, severity, rngs):
  del rngs  # Deterministic.
  factor = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
  size = x.shape[1]
  small = (int(size * factor),) * 2
  box = Image.Resampling.BOX
  return np.stack([
      np.asarray(Image.fromarray(image).resize(small, box).resize(
          (size, size), box)) for image in x])


def _jpeg_compression(x, severity, rngs):
  del rngs  # Deterministic.
  quality = (80, 65, 58, 50, 40)[severity - 1]
  out = []
  for image in x:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, 'JPEG', quality=quality)
    with Image.open(buffer) as decoded:
      out.append(np.asarray(decoded.convert('RGB')))
  return np.stack(out)


_FUNCTIONS = {
    'gaussian_noise': _gaussian_noise,
    'shot_noise': _shot_noise,
    'impulse_noise': _impulse_noise,
    'defocus_blur': _defocus_blur,
    'glass_blur': _glass_blur,
    'motion_blur': _motion_blur_corruption,
    'zoom_blur': _zoom_blur,
    'snow': _snow,
    'frost': _frost,
    'fog': _fog,
    'brightness': _brightness,
    'contrast': _contrast,
    'elastic_transform': _elastic_transform,
    'pixelate': _pixelate,
    'jpeg_compression': _jpeg_compression,
}
assert tuple(_FUNCTIONS) == CORRUPTIONS


# ------------------------------------------------------------------ public


def check(name: str, severity: int) -> None:
  """Raises ValueError, listing the choices, for an unknown name or severity.

  Separate from `corrupt` so callers (e.g. a dataset builder) can reject a
  bad request before reading any data.
  """
  if name not in CORRUPTIONS:
    raise ValueError(f'Unknown corruption {name!r}; choose one of '
                     f'{", ".join(CORRUPTIONS)}.')
  if (isinstance(severity, bool) or not isinstance(severity, (int, np.integer))
      or severity not in SEVERITIES):
    raise ValueError(f'Unknown severity {severity!r} for {name!r}; choose one '
                     f'of {", ".join(map(str, SEVERITIES))}.')


def corrupt(images: np.ndarray, name: str, severity: int, seed: int, *,
            start: int = 0) -> np.ndarray:
  """CIFAR-10-C corruption `name` at `severity` of uint8 [N, 32, 32, 3] images.

  Deterministic: image i's randomness comes from its own stream, keyed by
  (seed, name, severity, start + i), so a set corrupted in chunks (pass each
  chunk's offset as `start`) equals the set corrupted at once, and the first
  n images of a build equal a build of only those n. Global numpy random
  state is neither used nor changed.

  Args:
    images: uint8 [N, 32, 32, 3] RGB images (CIFAR-sized; the parameters are
      the CIFAR ones).
    name: one of CORRUPTIONS.
    severity: one of SEVERITIES.
    seed: non-negative integer.
    start: position of images[0] in the whole set.

  Returns:
    uint8 [N, 32, 32, 3], a new array.

  Raises:
    ValueError: unknown name or severity, or bad images, seed or start.
    FileNotFoundError: frost without the `imagecorruptions` package.
  """
  check(name, severity)
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or (
      images.shape[1:] != IMAGE_SHAPE):
    raise ValueError(f'corrupt expects uint8 images of shape [N, 32, 32, 3]; '
                     f'got {images.dtype} {images.shape}.')
  for label, value in (('seed', seed), ('start', start)):
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
        or value < 0):
      raise ValueError(f'{label} must be a non-negative integer; got '
                       f'{value!r}.')
  if not images.shape[0]:
    return images.copy()
  entropy = [int(seed), CORRUPTIONS.index(name), int(severity)]
  rngs = [] if name in DETERMINISTIC else [
      np.random.default_rng(np.random.SeedSequence(
          entropy, spawn_key=(int(start) + i,)))
      for i in range(images.shape[0])]
  out = _FUNCTIONS[name](images, int(severity), rngs)
  assert out.dtype == np.uint8 and out.shape == images.shape, (
      name, out.dtype, out.shape)
  return out


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
  """uint8 [N, H, W, C] images rotated counter-clockwise by `degrees`.

  The rotated-MNIST shift: about the image centre, bilinear, zero (black)
  fill outside, same shape and dtype; values rounded to nearest.

  Raises:
    ValueError: images not a 4-D uint8 array, or degrees not a finite number.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f'rotate expects uint8 images [N, H, W, C]; got '
                     f'{images.dtype} {images.shape}.')
  try:
    angle = float(degrees)
  except (TypeError, ValueError):
    angle = math.nan
  if isinstance(degrees, bool) or not math.isfinite(angle):
    raise ValueError(f'degrees must be a finite number; got {degrees!r}.')
  if angle % 360 == 0:
    return images.copy()
  out = ndimage.rotate(images.astype(np.float32), angle, axes=(1, 2),
                       reshape=False, order=1, mode='constant', cval=0.0)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)

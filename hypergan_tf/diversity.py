"""Function-space diversity: losses that keep the sampled networks apart.

Beyond the paper. The code discriminator keeps the *codes* spread; nothing
in HyperGAN keeps the *functions* apart, and ours come out nearly one
function (RESULTS.md). These terms act on the sampled networks' outputs,
logits [N, B, C], and are added to the generator-side loss with weight
`--diversity_weight` (0 = the plain HyperGAN, bit for bit):

- `repulsion`: kernel repulsion of the networks' predictive distributions,
  in the spirit of function-space particle methods (SVGD's repulsive force
  without the driving term, which the task loss supplies): each network's
  probabilities on the inputs are embedded as square roots (so squared
  distances are Hellinger distances), and the mean off-diagonal RBF kernel
  (TFP's ExponentiatedQuadratic, median-heuristic bandwidth) is minimised.
- `mutual_information`: the ensemble's mutual information (entropy of the
  mean prediction minus the mean member entropy, the disagreement part of
  the predictive entropy), maximised.

Either is evaluated on the training batch itself (`batch`) or on
off-manifold inputs made from it (`off_manifold`: noise, pixel-inverted
images, superposed pairs, shuffled tiles), so the task loss keeps the
networks agreeing on data while the term pulls them apart elsewhere. Nothing
here reads any dataset: off-manifold inputs come only from the batch given.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from hypergan_tf import metrics

TERMS = ('repulsion', 'mutual_information')
INPUTS = ('batch', 'off_manifold')
_TILES = 4  # Off-manifold tile shuffling: a 4 x 4 grid of tiles.


def kernel_similarity(logits: tf.Tensor) -> tf.Tensor:
  """Mean RBF kernel between the networks' predictive distributions.

  Each network is the vector of its probabilities' square roots over all
  inputs, scaled so that the squared distance of two networks is their mean
  squared Hellinger distance x 2, in [0, 2]. The bandwidth is SVGD's median
  heuristic (median squared distance / log(N + 1)), held constant in the
  gradient, so the push stays of the same size as the networks converge.
  Returns 0 for a single network (no pairs).
  """
  n = logits.shape[0]
  if n is not None and n < 2:
    return tf.zeros([], tf.float32)
  probs = tf.nn.softmax(tf.cast(logits, tf.float32))
  b = tf.cast(tf.shape(probs)[1], tf.float32)
  features = tf.reshape(tf.sqrt(probs + 1e-12), [n, -1]) / tf.sqrt(b)
  off_diagonal = tf.logical_not(tf.eye(n, dtype=tf.bool))
  squared = tf.reduce_sum(
      tf.square(features[:, None] - features[None]), axis=-1)
  median = tfp.stats.percentile(
      tf.boolean_mask(tf.stop_gradient(squared), off_diagonal), 50.0)
  bandwidth = tf.maximum(median / tf.math.log(n + 1.0), 1e-6)
  kernel = tfp.math.psd_kernels.ExponentiatedQuadratic(
      length_scale=tf.sqrt(bandwidth / 2.0))
  matrix = kernel.matrix(features, features)
  return tf.reduce_mean(tf.boolean_mask(matrix, off_diagonal))


def loss(term: str, logits: tf.Tensor) -> tf.Tensor:
  """The term as a loss to minimise (lower = more diverse networks)."""
  if term == 'repulsion':
    return kernel_similarity(logits)
  if term == 'mutual_information':
    return -tf.reduce_mean(metrics.mutual_information(logits))
  raise ValueError(f'Unknown diversity term {term!r}; choose one of '
                   f'{list(TERMS)}.')


def off_manifold(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Inputs off the data manifold, made only from a batch of training images.

  Each image becomes one of four kinds, chosen at random: uniform noise,
  the inverted image (1 - x), the brighter-pixel superposition of it and
  another image of the batch, or its 4 x 4 tiles shuffled. Stateless ops of
  `seed` [2], so a resumed run sees the same inputs.

  Args:
    images: [B, H, W, C] in [0, 1]; H and W divisible by 4.
    seed: stateless seed, shape [2].

  Returns:
    [B, H, W, C] images in [0, 1].
  """
  b = tf.shape(images)[0]
  h, w, c = images.shape[1:]
  if h % _TILES or w % _TILES:
    raise ValueError(f'Off-manifold inputs need images whose sides divide '
                     f'by {_TILES}, got {h}x{w}.')
  kind_seed, noise_seed, pair_seed, tile_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4))
  noise = tf.random.stateless_uniform(tf.shape(images), noise_seed,
                                      dtype=images.dtype)
  inverted = 1.0 - images
  partner = tf.random.stateless_uniform([b], pair_seed, 1, tf.maximum(b, 2),
                                        dtype=tf.int32)
  others = tf.gather(images, (tf.range(b) + partner) % b)
  superposed = tf.maximum(images, others)
  th, tw = h // _TILES, w // _TILES
  tiles = tf.reshape(images, [b, _TILES, th, _TILES, tw, c])
  tiles = tf.reshape(tf.transpose(tiles, [0, 1, 3, 2, 4, 5]),
                     [b, _TILES * _TILES, th, tw, c])
  order = tf.argsort(tf.random.stateless_uniform([b, _TILES * _TILES],
                                                 tile_seed), axis=1)
  tiles = tf.gather(tiles, order, axis=1, batch_dims=1)
  tiles = tf.reshape(tiles, [b, _TILES, _TILES, th, tw, c])
  shuffled = tf.reshape(tf.transpose(tiles, [0, 1, 3, 2, 4, 5]),
                        [b, h, w, c])
  kind = tf.random.stateless_uniform([b], kind_seed, 0, 4, dtype=tf.int32)
  kinds = tf.stack([noise, inverted, superposed, shuffled])
  return tf.gather(tf.transpose(kinds, [1, 0, 2, 3, 4]), kind, axis=1,
                   batch_dims=1)

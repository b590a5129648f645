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
- `gfsf`: function-space particle VI (Liu et al., ICML 2019; as
  HorizonRobotics/alf's hypernetwork `function_vi`): each network is a
  particle, its logits on the inputs; the gradient-free Stein estimate of
  the score of their density, grad log q = -(K + alpha I)^-1 sum_i
  grad_{x_i} k(x_i, x_j) (RBF kernel, median-heuristic bandwidth), is held
  constant and dotted with the particles, so descending it moves each
  network down the density of the others. With the mean task loss the
  Bayesian weight is about 1 / (training examples).

With `--diversity_pairs=within_mode` (runs with `--modes`), a term compares
only networks of one mode (`loss(..., groups=modes)`): the modes' bases
already keep networks of different modes apart, and two networks of one
mode are nearly one function (RESULTS.md, "Networks that disagree"). The
train step then passes the term's gradient to the generated part of each
network only, never to the modes' bases (`HyperNetwork.generate(...,
detach_bases=True)`). With two
networks per mode and `repulsion`, the median-heuristic bandwidth makes
the term's value a constant (1/3) and its gradient that of
-(log 3 / 3) log d^2 of the pair's Hellinger distance d: a push that grows
as a pair closes in, and does not fade with the task loss.

Each is evaluated on the training batch itself (`batch`), on off-manifold
inputs made from it (`off_manifold`: noise, pixel-inverted images,
superposed pairs, shuffled tiles), or on the batch plus context images made
from it that destroy the label (`batch_and_context`: zoomed crops, large
cutouts, 50/50 mixups, shuffled tiles). Nothing here reads any dataset:
every input comes from the batch given.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from hypergan_tf.evaluation import metrics

TERMS = ('repulsion', 'mutual_information', 'gfsf')
INPUTS = ('batch', 'off_manifold', 'batch_and_context')
# Which pairs of networks a term compares: all, or those of one mode.
PAIRS = ('all', 'within_mode')
SCORE_RIDGE = 1e-3  # alpha of the Stein estimate: K is near-singular.
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
  kernel = tfp.math.psd_kernels.ExponentiatedQuadratic(
      length_scale=tf.sqrt(_bandwidth(squared) / 2.0))
  matrix = kernel.matrix(features, features)
  return tf.reduce_mean(tf.boolean_mask(matrix, off_diagonal))


def _bandwidth(squared: tf.Tensor) -> tf.Tensor:
  """SVGD's median heuristic on squared distances [N, N], N >= 2: median
  off-diagonal distance / log(N + 1), held constant in the gradient."""
  n = squared.shape[0]
  off_diagonal = tf.logical_not(tf.eye(n, dtype=tf.bool))
  median = tfp.stats.percentile(
      tf.boolean_mask(tf.stop_gradient(squared), off_diagonal), 50.0)
  return tf.maximum(median / tf.math.log(n + 1.0), 1e-6)


def stein_score(particles: tf.Tensor) -> tf.Tensor:
  """Gradient-free Stein estimate of grad log q at each particle.

  Args:
    particles: [N, D], N >= 2.

  Returns:
    [N, D]: -(K + alpha I)^-1 sum_i grad_{x_i} k(x_i, x_j), with the RBF
    kernel k(x, y) = exp(-|x - y|^2 / h) and h from `_bandwidth`.
  """
  n = particles.shape[0]
  diff = particles[:, None] - particles[None]  # [i, j]: x_i - x_j.
  squared = tf.reduce_sum(tf.square(diff), axis=-1)
  bandwidth = _bandwidth(squared)
  kernel = tf.exp(-squared / bandwidth)
  kernel_grad = tf.einsum('ij,ijd->jd', kernel, -2.0 * diff / bandwidth)
  return -tf.linalg.solve(kernel + SCORE_RIDGE * tf.eye(n), kernel_grad)


def stein_repulsion(logits: tf.Tensor) -> tf.Tensor:
  """GFSF's entropy term as a loss: mean over networks of score . logits,
  the score held constant (its gradient is the Stein estimate itself).
  Returns 0 for a single network."""
  n = logits.shape[0]
  if n is not None and n < 2:
    return tf.zeros([], tf.float32)
  particles = tf.reshape(tf.cast(logits, tf.float32), [n, -1])
  score = tf.stop_gradient(stein_score(particles))
  return tf.reduce_mean(tf.reduce_sum(score * particles, axis=-1))


def loss(term: str, logits: tf.Tensor, groups: int = 1) -> tf.Tensor:
  """The term as a loss to minimise (lower = more diverse networks).

  Args:
    term: one of TERMS.
    logits: [N, B, C] of N networks on the same inputs.
    groups: K > 1 restricts the term to pairs of networks of one group,
      the n-th network being in group n mod K (the order in which
      `modes.stratify` puts a draw's modes): the term of each group with
      two or more networks, averaged over those groups; 0 when no group
      has two. 1 = all networks together (the term as it always was).

  Raises:
    ValueError: an unknown term or groups < 1.
  """
  if term not in TERMS:
    raise ValueError(f'Unknown diversity term {term!r}; choose one of '
                     f'{list(TERMS)}.')
  if groups < 1:
    raise ValueError(f'groups must be >= 1, got {groups}.')
  if groups == 1:
    return _TERMS[term](logits)
  members = [logits[g::groups] for g in range(groups)]
  members = [m for m in members if m.shape[0] >= 2]
  if not members:
    return tf.zeros([], tf.float32)
  return tf.add_n([_TERMS[term](m) for m in members]) / len(members)


def _negative_mutual_information(logits: tf.Tensor) -> tf.Tensor:
  return -tf.reduce_mean(metrics.mutual_information(logits))


_TERMS = {'repulsion': kernel_similarity,
          'mutual_information': _negative_mutual_information,
          'gfsf': stein_repulsion}


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
  _check_tiles(*images.shape[1:3])
  kind_seed, noise_seed, pair_seed, tile_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4))
  noise = tf.random.stateless_uniform(tf.shape(images), noise_seed,
                                      dtype=images.dtype)
  inverted = 1.0 - images
  superposed = tf.maximum(images, _partners(images, pair_seed))
  shuffled = _shuffle_tiles(images, tile_seed)
  return _one_of([noise, inverted, superposed, shuffled], kind_seed)


def context(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Label-destroying context images, made only from training images.

  In-distribution pixels, no class: each image becomes one of a zoomed
  crop (a random 1/4 to 1/2 of its side, resized to full size), a large
  cutout (a random square of 3/4 of its side set to grey), a 50/50 mixup
  with another image of the batch, or its 4 x 4 tiles shuffled. Stateless
  ops of `seed` [2], so a resumed run sees the same inputs.

  Args:
    images: [B, H, W, C] in [0, 1]; H and W divisible by 4.
    seed: stateless seed, shape [2].

  Returns:
    [B, H, W, C] images in [0, 1].
  """
  b = tf.shape(images)[0]
  h, w = images.shape[1:3]
  _check_tiles(h, w)
  kind_seed, crop_seed, cut_seed, pair_seed, tile_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 5))
  size, y0, x0 = tf.unstack(tf.random.stateless_uniform([3, b], crop_seed))
  size = 0.25 + 0.25 * size
  y0, x0 = y0 * (1.0 - size), x0 * (1.0 - size)
  crops = tf.image.crop_and_resize(
      images, tf.stack([y0, x0, y0 + size, x0 + size], axis=1),
      tf.range(b), [h, w])
  cy, cx = tf.unstack(tf.random.stateless_uniform([2, b, 1, 1, 1], cut_seed))
  ys = (tf.range(h, dtype=tf.float32) + 0.5)[:, None, None] / h
  xs = (tf.range(w, dtype=tf.float32) + 0.5)[None, :, None] / w
  inside = (tf.abs(ys - cy) < 0.375) & (tf.abs(xs - cx) < 0.375)
  cutout = tf.where(inside, tf.constant(0.5, images.dtype), images)
  mixed = 0.5 * images + 0.5 * _partners(images, pair_seed)
  return _one_of([crops, cutout, mixed, _shuffle_tiles(images, tile_seed)],
                 kind_seed)


def _check_tiles(h: int, w: int) -> None:
  if h % _TILES or w % _TILES:
    raise ValueError(f'Off-manifold and context inputs need images whose '
                     f'sides divide by {_TILES}, got {h}x{w}.')


def _partners(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Another image of the batch for each image (itself only if B = 1)."""
  b = tf.shape(images)[0]
  offset = tf.random.stateless_uniform([b], seed, 1, tf.maximum(b, 2),
                                       dtype=tf.int32)
  return tf.gather(images, (tf.range(b) + offset) % b)


def _shuffle_tiles(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Each image's 4 x 4 tiles in a random order of its own."""
  b = tf.shape(images)[0]
  h, w, c = images.shape[1:]
  th, tw = h // _TILES, w // _TILES
  tiles = tf.reshape(images, [b, _TILES, th, _TILES, tw, c])
  tiles = tf.reshape(tf.transpose(tiles, [0, 1, 3, 2, 4, 5]),
                     [b, _TILES * _TILES, th, tw, c])
  order = tf.argsort(tf.random.stateless_uniform([b, _TILES * _TILES], seed),
                     axis=1)
  tiles = tf.gather(tiles, order, axis=1, batch_dims=1)
  tiles = tf.reshape(tiles, [b, _TILES, _TILES, th, tw, c])
  return tf.reshape(tf.transpose(tiles, [0, 1, 3, 2, 4, 5]), [b, h, w, c])


def _one_of(kinds: list[tf.Tensor], seed: tf.Tensor) -> tf.Tensor:
  """Per image, one of the candidate batches [B, ...], chosen at random."""
  b = tf.shape(kinds[0])[0]
  kind = tf.random.stateless_uniform([b], seed, 0, len(kinds), dtype=tf.int32)
  stacked = tf.stack(kinds, axis=1)  # [B, kinds, H, W, C]
  return tf.gather(stacked, kind, axis=1, batch_dims=1)

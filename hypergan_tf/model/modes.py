"""Modes: independently initialised base networks under the generator.

Why: E_z[task loss of G(z)] is minimised by one network for every z, so a
smooth generator's networks close in on one function as training goes on
(BUILD_NOTES.md, "Diversity on natural images"), while a deep ensemble's
members stay in the different basins their random initialisations put them
in. With K modes, a generated network is a learned base network of its mode
(randomly initialised, one per mode) plus what the generator emits: the
modes keep the networks apart the way a deep ensemble's initialisations do,
and the generator adds the variation within a mode.

A network's mode is a function of its input noise s, floor(K Phi(s_0)), so
the same s gives the same network on every path (training, evaluation,
export); s_0 ~ N(0, 1) picks the modes uniformly. `stratify` moves s_0 into
the stratum of mode n mod K for the n-th of a draw, so a draw of N networks
covers the modes evenly (every step trains every mode when N >= K) and s_0
stays N(0, 1) over a draw whose size is a multiple of K.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from hypergan_tf.evaluation import metrics

# Keeps Phi(s_0) off 0 and 1, where its inverse is infinite.
_EDGE = 1e-4


def normal_cdf(x: tf.Tensor) -> tf.Tensor:
  """Phi(x): maps a N(0, 1) noise coordinate to a uniform one on [0, 1]."""
  return 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def mode_index(noise: tf.Tensor, modes: int) -> tf.Tensor:
  """The mode [n] (int32) of networks of input noise [n, noise_dim]."""
  index = tf.cast(tf.floor(normal_cdf(noise[:, 0]) * modes), tf.int32)
  return tf.clip_by_value(index, 0, modes - 1)


def stratify(noise: tf.Tensor, modes: int) -> tf.Tensor:
  """Noise whose n-th row is in mode n mod modes; the other values kept."""
  if modes == 1:
    return noise
  u = tf.clip_by_value(normal_cdf(noise[:, 0]), _EDGE, 1.0 - _EDGE)
  mode = tf.cast(tf.range(tf.shape(noise)[0]) % modes, noise.dtype)
  first = tf.math.ndtri((mode + u) / modes)
  return tf.concat([first[:, None], noise[:, 1:]], axis=1)


def disagreement_by_mode(logits: np.ndarray, modes: int, prefix: str = ''
                         ) -> dict[str, float]:
  """Where a modes run's diversity lives: mean pairwise disagreement (top-1
  classes differ) of two networks of one mode and of two of different modes.

  Args:
    logits: [N, B, C] of a draw, the n-th network in mode n mod modes (as
      `stratify` orders every draw).
    modes: K.
    prefix: of the keys, e.g. 'test/'.

  Returns:
    {prefix + 'disagreement_within_mode', prefix +
    'disagreement_across_modes'}; a key without a pair is left out.
  """
  # metrics.disagreement averages over pairs, so pair-weighted sums of it
  # split the draw's pairs into those within a mode and the rest.
  pairs = lambda n: n * (n - 1) / 2
  groups = [logits[m::modes] for m in range(modes)]
  within_pairs = sum(pairs(len(g)) for g in groups)
  across_pairs = pairs(len(logits)) - within_pairs
  within = sum(pairs(len(g)) * metrics.disagreement(g) for g in groups)
  across = pairs(len(logits)) * metrics.disagreement(logits) - within
  out = {}
  if within_pairs:
    out[prefix + 'disagreement_within_mode'] = within / within_pairs
  if across_pairs:
    out[prefix + 'disagreement_across_modes'] = across / across_pairs
  return out


class ModeOffsets(keras.layers.Layer):
  """One learned base network per mode, added to the generated parameters.

  Base kernels start like independently initialised networks (normal, the
  given per-layer scale), base biases at zero.
  """

  def __init__(self, modes: int, param_shapes, kernel_scales, **kwargs):
    super().__init__(**kwargs)
    self.modes = modes
    self.num_layers = len(param_shapes)
    # Attributes, not a list: tf.train.Checkpoint does not see Keras' lists.
    for i, ((kernel, bias), scale) in enumerate(zip(param_shapes,
                                                    kernel_scales)):
      setattr(self, f'kernel_{i}', self.add_weight(
          shape=(modes, *kernel), name=f'kernel_{i}',
          initializer=keras.initializers.RandomNormal(stddev=scale)))
      setattr(self, f'bias_{i}', self.add_weight(
          shape=(modes, *bias), name=f'bias_{i}', initializer='zeros'))

  @property
  def bases(self) -> list[tuple[tf.Variable, tf.Variable]]:
    """The base networks: (kernel [K, ...], bias [K, ...]) per layer."""
    return [(getattr(self, f'kernel_{i}'), getattr(self, f'bias_{i}'))
            for i in range(self.num_layers)]

  def call(self, params, noise: tf.Tensor, detach: bool = False):
    """Each network's mode's base plus its generated params.

    Args:
      params: (kernel [n, ...], bias [n, ...]) per layer, generated.
      noise: the networks' input noise [n, noise_dim].
      detach: no gradient into the bases (the same values bit for bit):
        a loss of these networks moves only the generated parameters.
    """
    index = mode_index(noise, self.modes)
    hold = tf.stop_gradient if detach else (lambda x: x)
    out = []
    for (kernel, bias), (bases_kernel, bases_bias) in zip(
        params, self.bases, strict=True):
      base_kernel = hold(tf.gather(bases_kernel, index))
      base_bias = hold(tf.gather(bases_bias, index))
      out.append((kernel + tf.cast(base_kernel, kernel.dtype),
                  bias + tf.cast(base_bias, bias.dtype)))
    return out

"""MC dropout: one network, a member is one dropout mask folded into it.

Dropout acts on the inputs of every layer but the first (whole input
channels of a conv layer, single units of a dense layer). Dropping input j
of a layer zeroes the kernel's input slice j and the rest is scaled by
1 / (1 - rate), exactly what dropout does to the layer's output.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from hypergan_tf.methods import config
from hypergan_tf.methods.baselines import base
from hypergan_tf.model import targets


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
  dropout_rate: float = config.flag_field(
      0.25, 'mc_dropout: probability of dropping an input channel / unit.',
      0.0, 1.0)

  def check_options(self) -> None:
    config.require(self.dropout_rate < 1.0, 'dropout_rate', 'below 1',
                   self.dropout_rate)


class McDropout(base.BaselineModel):
  """One network; members are dropout masks folded into its kernels."""
  label = 'MC dropout'
  Options = Options

  def __init__(self, spec: targets.TargetSpec, cfg):
    super().__init__(spec, cfg, name='mc_dropout')
    self.rate = cfg.dropout_rate
    self.kernels = base.kernel_variables(spec, (), cfg.seed)
    self.biases = base.bias_variables(spec, ())

  @property
  def weights(self) -> list[tf.Variable]:
    return self.kernels + self.biases

  @property
  def mask_sizes(self) -> list[int]:
    """Inputs dropped per layer (None for the first layer: no dropout)."""
    return [None] + [k_shape[-2] for k_shape, _ in self.spec.param_shapes[1:]]

  def fold(self, n: int, uniforms: list[tf.Tensor | None]):
    """n members from uniforms [n, inputs] per layer: keep where >= rate."""
    params = []
    for kernel, bias, u in zip(self.kernels, self.biases, uniforms):
      k = tf.broadcast_to(kernel[None], [n, *kernel.shape])
      if u is not None:
        keep = tf.cast(u >= self.rate, k.dtype) / (1.0 - self.rate)
        # Dense kernels [n, in, out]; conv kernels [n, h, w, in, out].
        k *= tf.reshape(keep, [n] + [1] * (len(kernel.shape) - 2) +
                        [kernel.shape[-2], 1])
      params.append((k, tf.broadcast_to(bias[None], [n, *bias.shape])))
    return params

  def train_params(self, rng: tf.random.Generator, n: int):
    return self.fold(n, [None if size is None else rng.uniform([n, size])
                         for size in self.mask_sizes])

  def sample(self, n: int, seed: int):
    layer_seeds = base.seeds(seed, 2, len(self.mask_sizes))
    return self.fold(n, [
        None if size is None else tf.random.stateless_uniform([n, size],
                                                              layer_seeds[i])
        for i, size in enumerate(self.mask_sizes)])

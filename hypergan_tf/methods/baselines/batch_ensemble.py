"""BatchEnsemble (Wen et al., ICLR 2020): shared kernels, rank-1 members.

One shared ("slow") kernel per layer and, per member k, a rank-1 "fast"
factor r_k s_k^T on the kernel's input and output axes and a bias of its
own. ((x * r_k) W) * s_k equals x (W * r_k s_k^T), so a member is the shared
kernel with its factor folded in, in the same format as the others. Fast
weights start around 1 (`--random_sign_init`, uncertainty-baselines'
convention) and are left out of weight decay, which would pull them to 0.
One batch is tiled over the K members, as its authors train it. Written
here: edward2 (0.0.2 on the package index) does not import with today's
scipy, and its BatchEnsemble layers are tf.keras 2 ones.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from hypergan_tf.methods import config
from hypergan_tf.methods.baselines import base
from hypergan_tf.model import targets


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
  random_sign_init: float = config.flag_field(
      -0.5, 'batch_ensemble: initial fast weights. > 0: random signs, +1 '
      'with this probability; < 0: N(1, (-value)^2). 0 is not allowed.')

  def check_options(self) -> None:
    config.require(
        self.random_sign_init < 0 or 0 < self.random_sign_init <= 1,
        'random_sign_init', 'in (0, 1] (random signs) or negative '
        '(N(1, std^2))', self.random_sign_init)


class BatchEnsemble(base.BaselineModel):
  """Shared kernels; member k folds its rank-1 factor r_k s_k^T into them."""
  label = 'BatchEnsemble'
  Options = Options
  shares_batch = True

  def __init__(self, spec: targets.TargetSpec, cfg):
    super().__init__(spec, cfg, name='batch_ensemble')
    self.max_members = k = cfg.num_members
    self.kernels = base.kernel_variables(spec, (), cfg.seed)
    fast_seeds = base.seeds(cfg.seed, 4, 2 * len(spec.layers))
    # Kernels are [..., in, out] (dense and conv alike): r scales the input
    # axis, s the output axis. Named 'fast_weight' so decay leaves them.
    self.fast_in, self.fast_out = [], []
    for i, (k_shape, _) in enumerate(spec.param_shapes):
      self.fast_in.append(tf.Variable(
          _fast_init((k, k_shape[-2]), cfg.random_sign_init,
                     fast_seeds[2 * i]), name=f'fast_weight_in_{i}'))
      self.fast_out.append(tf.Variable(
          _fast_init((k, k_shape[-1]), cfg.random_sign_init,
                     fast_seeds[2 * i + 1]), name=f'fast_weight_out_{i}'))
    self.biases = base.bias_variables(spec, (k,))

  @property
  def weights(self) -> list[tf.Variable]:
    return self.kernels + self.fast_in + self.fast_out + self.biases

  def train_params(self, rng: tf.random.Generator | None, n: int):
    """All K members: kernel * r_k s_k^T, [K, ..., in, out]."""
    del rng
    if n != self.max_members:
      raise ValueError(f'A BatchEnsemble trains all its {self.max_members} '
                       f'members at once, not {n}.')
    params = []
    for kernel, r, s, bias in zip(self.kernels, self.fast_in, self.fast_out,
                                  self.biases):
      ones = [1] * (len(kernel.shape) - 2)
      factor = (tf.reshape(r, [n, *ones, -1, 1]) *
                tf.reshape(s, [n, *ones, 1, -1]))
      params.append((kernel[None] * factor, bias))
    return params

  def sample(self, n: int, seed: int):
    return base.choose(self.train_params(None, self.max_members), n, seed)


def _fast_init(shape: tuple[int, int], random_sign_init: float,
               seed: tf.Tensor) -> tf.Tensor:
  """Random signs (+1 with probability p > 0) or N(1, (-p)^2) for p < 0."""
  if random_sign_init > 0:
    plus = tf.random.stateless_uniform(shape, seed) < random_sign_init
    return tf.where(plus, 1.0, -1.0)
  return 1.0 - random_sign_init * tf.random.stateless_normal(shape, seed)

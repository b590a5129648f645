"""Variational (Bayes by backprop): a mean-field Gaussian posterior.

N(mu, softplus(rho)^2) over every parameter, trained by reparameterised
samples against a N(0, prior_std^2) prior, with the KL divided by the number
of training examples. Built from `tfp.distributions` on plain tensors: TFP's
Keras layers are tf_keras objects that do not mix with Keras 3.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_probability as tfp

from hypergan_tf.methods import config
from hypergan_tf.methods.baselines import base
from hypergan_tf.model import targets

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class Options(base.Options):
  prior_std: float = config.flag_field(
      1.0, 'variational: std of the N(0, std^2) prior on every parameter.',
      0.0)
  posterior_init_std: float = config.flag_field(
      1e-3, 'variational: initial posterior std of every parameter.', 0.0)
  kl_weight: float = config.flag_field(
      1.0, 'variational: multiplies the KL term (1 = the ELBO; < 1 tempers '
      'the prior).', 0.0)

  def check_options(self) -> None:
    for name in ('prior_std', 'posterior_init_std'):
      config.require(getattr(self, name) > 0, name, 'positive',
                     getattr(self, name))


class Variational(base.BaselineModel):
  """A mean-field Gaussian posterior over every parameter of the network."""
  label = 'Variational'
  Options = Options

  def __init__(self, spec: targets.TargetSpec, cfg):
    super().__init__(spec, cfg, name='variational')
    self.prior_std = cfg.prior_std
    self.kl_weight = cfg.kl_weight
    rho = float(tfp.math.softplus_inverse(cfg.posterior_init_std))
    shapes = [shape for pair in spec.param_shapes for shape in pair]
    kernels = base.he_kernels(spec, (), cfg.seed)
    self.locs = [tf.Variable(kernels[i // 2] if i % 2 == 0 else
                             tf.zeros(shape), name=f'loc_{i}')
                 for i, shape in enumerate(shapes)]
    self.rhos = [tf.Variable(tf.fill(shape, rho), name=f'rho_{i}')
                 for i, shape in enumerate(shapes)]

  @property
  def weights(self) -> list[tf.Variable]:
    return self.locs + self.rhos

  def posterior(self) -> list[tfd.Normal]:
    """Kernel and bias posteriors, alternating, layer by layer."""
    return [tfd.Normal(loc, tf.nn.softplus(rho))
            for loc, rho in zip(self.locs, self.rhos)]

  def _draw(self, n: int, draw_seeds: tf.Tensor):
    flat = [q.sample(n, seed=tf.cast(draw_seeds[i], tf.int32))
            for i, q in enumerate(self.posterior())]
    return list(zip(flat[0::2], flat[1::2]))

  def train_params(self, rng: tf.random.Generator, n: int):
    return self._draw(n, tf.transpose(rng.make_seeds(len(self.locs))))

  def kl_divergence(self) -> tf.Tensor:
    """KL(posterior || prior), summed over all parameters."""
    prior = tfd.Normal(0.0, self.prior_std)
    return tf.add_n([tf.reduce_sum(tfd.kl_divergence(q, prior))
                     for q in self.posterior()])

  def sample(self, n: int, seed: int):
    return self._draw(n, base.seeds(seed, 3, len(self.locs)))

  def objective(self, task_loss, num_members, num_train_examples):
    """The negative ELBO per example: task loss + KL / training examples."""
    del num_members
    if not num_train_examples:
      raise ValueError('Training a variational baseline needs '
                       'num_train_examples to scale the KL term.')
    kl = self.kl_divergence()
    return task_loss + self.kl_weight / num_train_examples * kl, {'kl': kl}

"""Deep ensemble: K independently initialised networks, trained side by side.

The K networks are held as stacked variables [K, ...], each from its own
He-normal initialisation; a member is one of the K networks, so at most K
members can be sampled. Each member gets its own batch every step.
"""

from __future__ import annotations

import tensorflow as tf

from hypergan_tf.methods.baselines import base
from hypergan_tf.model import targets


class Ensemble(base.BaselineModel):
  """K independently initialised networks, trained side by side."""
  label = 'Ensemble'

  def __init__(self, spec: targets.TargetSpec, cfg):
    super().__init__(spec, cfg, name='ensemble')
    self.max_members = k = cfg.num_members
    # Member i's kernels are its own slices of one seeded draw: K
    # independent He-normal initialisations.
    self.kernels = base.kernel_variables(spec, (k,), cfg.seed)
    self.biases = base.bias_variables(spec, (k,))

  @property
  def weights(self) -> list[tf.Variable]:
    return self.kernels + self.biases

  def train_params(self, rng: tf.random.Generator | None, n: int):
    del rng
    if n != self.max_members:
      raise ValueError(f'An ensemble trains all its {self.max_members} '
                       f'members at once, not {n}.')
    return list(zip(self.kernels, self.biases))

  def sample(self, n: int, seed: int):
    return base.choose(self.train_params(None, self.max_members), n, seed)

  def objective(self, task_loss, num_members, num_train_examples):
    # The sum of the members' losses: each trains as if alone.
    del num_train_examples
    return num_members * task_loss, {}

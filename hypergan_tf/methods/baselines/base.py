"""What a baseline model is: the interface every baseline method implements.

A baseline model holds its variables (`weights`) and gives members in the
HyperGAN's format, one (kernel [N, ...], bias [N, ...]) pair per layer of the
target (`targets.TargetSpec`): `train_params(rng, n)` inside the train step
(drawn from the checkpointed generator) and `sample(n, seed)` for evaluation
(stateless, reproducible from seed). Its training objective is
`objective(...)`: the trainer (`trainer.BaselineTrainer`) does the rest the
same way for every method.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from hypergan_tf.model import targets


@dataclasses.dataclass(frozen=True)
class Options:
  """A method's own config fields (flags); `BaselineConfig` extends them all.

  A method whose model needs options subclasses this as a frozen dataclass of
  `config.flag_field`s and overrides `check_options`.
  """

  def check_options(self) -> None:
    """Raises ValueError for option values this method cannot use."""


class BaselineModel(tf.Module):
  """One baseline method's model.

  Attributes:
    label: the method's name in tables and figures.
    Options: the method's config fields (a subclass of `Options`).
    shares_batch: True if the K members share one batch per step (the
      batch is tiled over them); False if each member gets its own.
    max_members: None, or K, the most members `sample` can give.
  """
  label = ''
  Options = Options
  shares_batch = False
  max_members: int | None = None

  def __init__(self, spec: targets.TargetSpec, cfg, name: str):
    super().__init__(name=name)
    self.spec = spec
    del cfg

  @property
  def weights(self) -> list[tf.Variable]:
    raise NotImplementedError

  def train_params(self, rng: tf.random.Generator | None, n: int):
    """n members' params for a training step, drawn from rng."""
    raise NotImplementedError

  def sample(self, n: int, seed: int):
    """n members' params for evaluation, reproducible from seed."""
    raise NotImplementedError

  def objective(self, task_loss: tf.Tensor, num_members: int,
                num_train_examples: int | None
                ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """(loss to minimise, extra terms to log) from the members' mean task
    loss; by default the mean task loss itself."""
    del num_members, num_train_examples
    return task_loss, {}


def seeds(seed: int, salt: int, count: int) -> tf.Tensor:
  """count stateless seeds [count, 2] derived from (seed, salt)."""
  return tf.random.experimental.stateless_split(
      tf.constant([seed, salt], tf.int64), count)


def he_kernels(spec: targets.TargetSpec, shape_prefix: tuple[int, ...],
               seed: int) -> list[tf.Tensor]:
  """He-normal kernels (std sqrt(2 / fan_in)) of every layer."""
  layer_seeds = seeds(seed, 0, len(spec.layers))
  return [tf.random.stateless_normal((*shape_prefix, *k_shape),
                                     layer_seeds[i]) *
          math.sqrt(2.0 / fan_in)
          for i, ((k_shape, _), fan_in) in enumerate(
              zip(spec.param_shapes, spec.fan_ins))]


def kernel_variables(spec: targets.TargetSpec, shape_prefix: tuple[int, ...],
                     seed: int) -> list[tf.Variable]:
  """`he_kernels` as variables kernel_<i>."""
  return [tf.Variable(kernel, name=f'kernel_{i}') for i, kernel in
          enumerate(he_kernels(spec, shape_prefix, seed))]


def bias_variables(spec: targets.TargetSpec, shape_prefix: tuple[int, ...]
                   ) -> list[tf.Variable]:
  """Zero biases of every layer as variables bias_<i>."""
  return [tf.Variable(tf.zeros((*shape_prefix, *b_shape)), name=f'bias_{i}')
          for i, (_, b_shape) in enumerate(spec.param_shapes)]


def choose(params, n: int, seed: int):
  """n distinct of K members [K, ...], chosen by a permutation seeded by seed."""
  k = params[0][0].shape[0]
  if not 1 <= n <= k:
    raise ValueError(f'This ensemble has {k} members; cannot sample {n}.')
  order = tf.random.experimental.stateless_shuffle(
      tf.range(k), tf.constant([seed, 1], tf.int64))[:n]
  return [(tf.gather(kernel, order), tf.gather(bias, order))
          for kernel, bias in params]

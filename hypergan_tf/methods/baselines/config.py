"""The baselines' config: `RunConfig`, every method's options, and its own.

Each method's own fields live in its module (`Options`); this class extends
them all, so one set of flags serves `scripts/train_baseline.py`.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from hypergan_tf.datasets import data
from hypergan_tf.methods import config as base_config
from hypergan_tf.methods.baselines import base
from hypergan_tf.methods.baselines import registry

_field = base_config.flag_field
METHODS = tuple(registry.METHODS)
CLASSIFICATION_DATASETS = tuple(
    name for name in data.TRAINABLE
    if data.DATASETS[name].task == 'classification')
# Each method's options, once each, in registry order.
OPTIONS = tuple(dict.fromkeys(
    model.Options for model in registry.METHODS.values()
    if model.Options is not base.Options))


@dataclasses.dataclass(frozen=True)
class BaselineConfig(*OPTIONS, base_config.RunConfig):
  """Everything a baseline run depends on; each field is also a flag.

  The optimizer fields are `RunConfig`'s, so `optim.make_optimizer` serves
  every method.
  """
  method: str = _field('ensemble', 'Baseline to train.', choices=METHODS)
  num_members: int = _field(
      10, 'ensemble / batch_ensemble: K, the number of members. mc_dropout '
      '/ variational: dropout masks / weight samples per training step.', 1)
  eval_members: int = _field(10, 'Members for periodic evaluation.', 1)
  final_eval_members: int = _field(100, 'Members for the final evaluation '
                                   '(at most K for an ensemble).', 1)

  def __post_init__(self):
    if self.dataset not in CLASSIFICATION_DATASETS:
      raise ValueError(f'Unknown --dataset {self.dataset!r} for a baseline; '
                       f'choose one of {list(CLASSIFICATION_DATASETS)}.')
    self.check_run()
    for options in OPTIONS:
      options.check_options(self)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """One absl flag per BaselineConfig field (see `config.define_flags`)."""
  base_config.define_flags(fv, BaselineConfig)


def from_flags(fv: flags.FlagValues = flags.FLAGS) -> BaselineConfig:
  """Builds (and validates) a BaselineConfig from parsed flags."""
  return base_config.from_flags(fv, BaselineConfig)

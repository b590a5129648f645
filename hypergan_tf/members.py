"""One interface over every model that is a set of members.

Evaluation and attacks ask a model only two things: draw the parameters of
N members (`sample`), and give the logits [N, B, C] of given members on a
batch (`logits`). Parameters are a nest of tensors that all lead with the
member axis N, so attacks can hold them in variables and reassign them per
ensemble without retracing. A HyperGAN samples fresh networks; baselines
(`baselines.py`) implement the same protocol.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Protocol

import tensorflow as tf

from hypergan_tf import targets

Params = Any  # A nest of tensors, each with leading axis N (members).


class Members(Protocol):
  """What evaluation and attacks need from a model."""

  spec: targets.TargetSpec
  num_classes: int
  dataset: str  # The training dataset (TFDS name or subset).
  data_dir: str | None  # Its TFDS directory as trained (None: default).
  step: int  # Training steps done, for reports.
  max_members: int | None  # Most members sample() can give; None: any.

  def sample(self, num_members: int, seed: int) -> Params:
    """Parameters of num_members members, reproducible from seed."""

  def logits(self, params: Params, images: tf.Tensor) -> tf.Tensor:
    """Logits [N, B, C] of the members in params on images [B, ...]."""


class TrainerMembers:
  """A trained model as `Members`: its trainer's sampling and logits."""

  def __init__(self, trainer, sample: Callable[[int, int], Params],
               max_members: int | None = None):
    self.trainer = trainer
    self.spec = trainer.spec
    self.num_classes = trainer.spec.output_dim
    self.dataset = trainer.cfg.dataset
    self.data_dir = trainer.cfg.data_dir
    self.step = int(trainer.step.numpy())
    self.max_members = max_members
    self._sample = sample

  def sample(self, num_members: int, seed: int) -> Params:
    return self._sample(num_members, seed)

  def logits(self, params: Params, images: tf.Tensor) -> tf.Tensor:
    return self.trainer.logits(params, images)


class HyperGanMembers(TrainerMembers):
  """Networks sampled from a trained HyperGAN (inference-mode BatchNorm)."""

  def __init__(self, trainer):
    super().__init__(trainer, trainer.sample_eval_params)


def load(run_dir: str) -> Members:
  """The members of a run directory (a HyperGAN run or a baseline run).

  Raises:
    FileNotFoundError: run_dir is not a run directory or has no checkpoint.
  """
  # Imported here: training imports data, keras models, etc.
  from hypergan_tf import training  # pylint: disable=g-import-not-at-top
  path = os.path.join(run_dir, training.CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {run_dir!r} is not a run '
                            'directory of scripts/train.py or '
                            'scripts/train_baseline.py.')
  with open(path) as f:
    method = json.load(f).get('method', 'hypergan')
  if method == 'hypergan':
    return HyperGanMembers(training.load_trainer(run_dir))
  from hypergan_tf import baselines  # pylint: disable=g-import-not-at-top
  if method in baselines.METHODS:
    return baselines.load_members(run_dir)
  raise ValueError(f'{run_dir} holds a {method!r} run, which this version '
                   'cannot load.')

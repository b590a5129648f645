"""One interface over every model that is a set of members.

Evaluation and attacks ask a model only two things: draw the parameters of
N members (`sample`), and give the logits [N, B, C] of given members on a
batch (`logits`). Parameters are a nest of tensors that all lead with the
member axis N, so attacks can hold them in variables and reassign them per
ensemble without retracing. A HyperGAN samples fresh networks; baselines
(`baselines.py`) implement the same protocol.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import tensorflow as tf

from hypergan_tf.model import targets
from hypergan_tf.runtime import checkpoints
from hypergan_tf.runtime import rundir

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


class Loaded:
  """A trained model as `Members`, restored for inference only.

  No optimizer, no training state, no change to global seeds or
  determinism: what `load` gives for every method.
  """

  def __init__(self, spec: targets.TargetSpec, dataset: str,
               data_dir: str | None, step: int, forward_method: str,
               sample_fn: Callable[[int, int], Params],
               max_members: int | None = None, hypernet: Any = None):
    self.spec = spec
    self.num_classes = spec.output_dim
    self.dataset = dataset
    self.data_dir = data_dir
    self.step = step
    self.max_members = max_members
    self.hypernet = hypernet  # A HyperGAN's generator (for export).
    self._sample = sample_fn
    self.logits = tf.function(
        lambda params, images: tf.cast(
            targets.apply(spec, params, images, forward_method), tf.float32))

  def sample(self, num_members: int, seed: int) -> Params:
    return self._sample(num_members, seed)


# method name (config.json's 'method') -> loader(run_dir, config dict).
LOADERS: dict[str, Callable[[str, dict[str, Any]], Members]] = {}
# method name -> its name in tables and figures.
LABELS: dict[str, str] = {}


def register(method: str, label: str | None = None):
  """Decorator: `loader(run_dir, config)` loads runs of this method, which
  tables name `label` (default: the method's name)."""
  def decorate(loader):
    LOADERS[method] = loader
    LABELS[method] = label or method
    return loader
  return decorate


def label(method: str) -> str:
  """A method's name in tables and figures."""
  return LABELS.get(method, method)


def restore(run_dir: str, made_by: str, **objects) -> int:
  """Restores objects from a run's selected checkpoint; returns its step.

  The selected checkpoint is the validation choice, else the latest. Quiet
  about the training state the checkpoint also holds. A run that is still
  training can be read: it never takes the run's owner record.

  Raises:
    FileNotFoundError: the run has no checkpoint yet.
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
  checkpoint = tf.train.Checkpoint(step=step, **objects)
  path = checkpoints.selected(run_dir)
  while True:
    if path is None:
      raise FileNotFoundError(f'No checkpoint in {run_dir}/checkpoints; '
                              f'train first ({made_by} --run_dir=...).')
    try:
      checkpoints.restore(checkpoint, path, partial=True)
      return int(step.numpy())
    except checkpoints.CheckpointRestoreError:
      # A run still training may have replaced it meanwhile: read the newer.
      path, replaced = checkpoints.selected(run_dir), path
      if path == replaced:
        raise


def load(run_dir: str) -> Members:
  """The members of a run directory, whatever method trained it.

  Methods register their loaders when their modules are imported;
  `import hypergan_tf` imports all built-in ones.

  Raises:
    FileNotFoundError: run_dir is not a run directory or has no checkpoint.
    ValueError: no loader is registered for the run's method.
  """
  config = rundir.read_config(run_dir, 'scripts/train.py or '
                              'scripts/train_baseline.py')
  method = config.get('method', 'hypergan')
  if method not in LOADERS:
    raise ValueError(f'{run_dir} holds a {method!r} run, which no loaded '
                     f'module can read (known: {sorted(LOADERS)}).')
  return LOADERS[method](run_dir, config)

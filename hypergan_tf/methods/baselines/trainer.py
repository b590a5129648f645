"""The trainer every baseline method shares: a `loop.Learner`.

Every baseline trains the same target network (`targets.TargetSpec`) on the
same `tf.data` pipelines and emits its members in the HyperGAN's format: one
(kernel [N, ...], bias [N, ...]) pair per layer, evaluated by
`targets.apply`. So evaluation, attacks and the weight-diversity row treat a
baseline exactly like sampled HyperGAN networks (`members.Members`). What
differs between methods is their model (`base.BaselineModel`, one module
each, listed in `registry.METHODS`).

Each training step takes `num_members` members and gives each its own batch
of `batch_size` examples (one seeded stream of num_members x batch_size
examples, split), so ensemble members see different batches and different
dropout masks / weight samples each cover a part of the batch. A model whose
members share one batch (`shares_batch`, BatchEnsemble) gets one batch of
`batch_size` tiled over its K members, as its authors train it.
"""

from __future__ import annotations

from typing import Any, Iterable

import keras
import numpy as np
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.methods import loop
from hypergan_tf.methods.baselines import config as config_lib
from hypergan_tf.methods.baselines import registry
from hypergan_tf.model import members
from hypergan_tf.model import targets
from hypergan_tf.runtime import optim

BaselineConfig = config_lib.BaselineConfig


class BaselineTrainer:
  """Builds a baseline, its optimizer and checkpoint: a `loop.Learner`."""

  def __init__(self, cfg: BaselineConfig,
               num_train_examples: int | None = None):
    """Builds the model, optimizer and checkpoint.

    Args:
      cfg: the run's configuration.
      num_train_examples: size of the training set; divides the variational
        KL term, so training a variational baseline needs it.
    """
    self.cfg, self.spec = cfg, cfg.spec
    self.strategy = tf.distribute.get_strategy()
    self.chief = True
    keras.utils.set_random_seed(cfg.seed)
    self.model = registry.METHODS[cfg.method](self.spec, cfg)
    self.num_train_examples = num_train_examples
    self.optimizer = optim.make_optimizer(cfg)
    self.optimizer.build(self.model.weights)
    self.rng = tf.random.Generator.from_seed(cfg.seed)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    self.wall_time = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                 name='wall_time')
    self.best_score = tf.Variable(-np.inf, dtype=tf.float64,
                                  trainable=False, name='best_score')
    self.checkpoint = tf.train.Checkpoint(
        step=self.step, wall_time=self.wall_time, model=self.model,
        optimizer=self.optimizer, rng=self.rng, best_score=self.best_score)
    self.model_checkpoint = tf.train.Checkpoint(step=self.step,
                                                model=self.model)
    self.tiled = self.model.shares_batch
    self.examples_per_step = cfg.batch_size * (
        1 if self.tiled else cfg.num_members)
    self.eval_members = self._clamp(cfg.eval_members)
    self.final_eval_members = self._clamp(cfg.final_eval_members)
    self._train_step = tf.function(self._step)
    self.logits = tf.function(self._logits)

  def _clamp(self, num_members: int) -> int:
    """At most K members for an (batch) ensemble."""
    k = self.model.max_members
    return num_members if k is None else min(num_members, k)

  def _step(self, images: tf.Tensor, labels: tf.Tensor):
    """One update of num_members members on batches of batch_size examples.

    Each member gets its own batch, or (BatchEnsemble) all share one.
    """
    cfg = self.cfg
    m = cfg.num_members
    if self.tiled:
      labels = tf.tile(labels[None], [m, 1])
    else:
      images = tf.reshape(images, [m, cfg.batch_size, *self.spec.input_shape])
      labels = tf.reshape(labels, [m, cfg.batch_size])
    variables = self.model.weights
    with tf.GradientTape() as tape:
      params = self.model.train_params(self.rng, m)
      logits = (targets.apply(self.spec, params, images, cfg.forward_method)
                if self.tiled else
                targets.apply_per_network(self.spec, params, images,
                                          cfg.forward_method))
      task_loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
      loss, extra = self.model.objective(task_loss, m,
                                         self.num_train_examples)
      losses = {'task_loss': task_loss, **extra}
    self.optimizer.apply_gradients(
        zip(tape.gradient(loss, variables), variables))
    self.step.assign_add(1)
    correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
    losses['loss'] = loss
    losses['accuracy'] = tf.reduce_mean(tf.cast(correct, tf.float32))
    return losses

  def train_step(self, images: tf.Tensor, labels: tf.Tensor
                 ) -> dict[str, float]:
    """One step on a batch of examples_per_step; returns the losses."""
    return {k: float(v) for k, v in self._train_step(images, labels).items()}

  def _logits(self, params, images):
    return targets.apply(self.spec, params, images, self.cfg.forward_method)

  def sample(self, num_members: int, seed: int | None = None):
    """Members for evaluation (seeded; default seed from --seed)."""
    seed = self.cfg.seed + loop.EVAL_SEED_OFFSET if seed is None else seed
    return self.model.sample(num_members, seed)

  def member_outputs(self, dataset: Iterable, num_members: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Logits of num_members members (clamped to K), and labels."""
    return loop.member_outputs(
        self.logits, self.sample(self._clamp(num_members)), dataset)

  # ------------------------------------------------------------ loop hooks

  @property
  def variables(self) -> list[tf.Variable]:
    return self.model.weights

  def prepare(self) -> dict[str, Any]:
    return {}

  def learning_rate(self) -> float:
    return float(self.optimizer.learning_rate)

  def write_summaries(self, step: int) -> None:
    del step  # Nothing beyond the loop's metrics.

  def describe(self) -> dict[str, Any]:
    return {
        'method': self.cfg.method,
        'num_parameters_target': self.spec.num_params,
        'num_parameters_trained': int(sum(
            np.prod(v.shape) for v in self.model.weights)),
    }


def train(cfg: BaselineConfig) -> dict[str, Any]:
  """Trains (or resumes) a baseline in cfg.run_dir and evaluates it.

  Returns the results dict that is also written to <run_dir>/results.json.
  """
  if not cfg.run_dir:
    raise ValueError('--run_dir is required.')
  # Same call as data.load's, so the split is read from disk once.
  num_train = len(data.arrays(cfg.dataset, 'train', cfg.data_dir,
                              cfg.download, None, cfg.validation_size)[1])
  return loop.run(BaselineTrainer(cfg, num_train))


def _load(run_dir: str, config: dict[str, Any]) -> members.Loaded:
  """A trained baseline as `members.Members` (at most K for an ensemble).

  Builds only the model and restores it from the run's selected checkpoint.
  """
  cfg = BaselineConfig.from_dict(config, run_dir=run_dir)
  model = registry.METHODS[cfg.method](cfg.spec, cfg)
  step = members.restore(run_dir, 'scripts/train_baseline.py', model=model)
  return members.Loaded(
      spec=cfg.spec, dataset=cfg.dataset, data_dir=cfg.data_dir,
      step=step, forward_method=cfg.forward_method,
      sample_fn=model.sample, max_members=model.max_members)


for _method, _model in registry.METHODS.items():
  members.register(_method, label=_model.label)(_load)

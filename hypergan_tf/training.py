"""Losses, the tf.function train step, evaluation and the resumable loop.

Generator side: task loss averaged over the sampled networks + beta x the
non-saturating adversarial loss of the discriminator on the codes.
Discriminator: binary cross-entropy with logits, real = prior samples,
fake = codes (one sigmoid, inside the loss; the authors' code applies two).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
import time
from typing import Any, Iterable

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from hypergan_tf import config as config_lib
from hypergan_tf import data
from hypergan_tf import hypernet
from hypergan_tf import metrics
from hypergan_tf import targets

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'  # Written when a run reaches its --steps.
BEST_DIR = 'best'  # Under checkpoints/: the step chosen on validation.

# Seeds derived from --seed for independent streams.
_EVAL_SEED_OFFSET = 1_000_003


def write_text(path: str, text: str) -> None:
  """Writes a file atomically (temp file + rename): never half-written."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile('w', dir=directory, delete=False,
                                   suffix='.tmp') as f:
    f.write(text)
    tmp = f.name
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)  # Temp files are 0600; results are not.
  os.replace(tmp, path)


def write_json(path: str, payload: dict[str, Any]) -> None:
  """Writes JSON atomically (see `write_text`)."""
  write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def learning_rate_schedule(cfg: config_lib.TrainConfig,
                           peak: float | None = None):
  """Linear warm-up to the peak (default --learning_rate), then cosine decay
  or constant."""
  peak = peak or cfg.learning_rate
  if cfg.lr_schedule == 'cosine':
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if cfg.warmup_steps else peak,
        decay_steps=cfg.steps - cfg.warmup_steps,
        alpha=cfg.min_lr_ratio,
        warmup_target=peak if cfg.warmup_steps else None,
        warmup_steps=cfg.warmup_steps)
  if cfg.warmup_steps:
    return keras.optimizers.schedules.PolynomialDecay(
        0.0, cfg.warmup_steps, peak, power=1.0)
  return peak


# Variables decoupled weight decay leaves alone (BatchNorm scale and shift,
# biases), matched as parts of Keras variable names.
NO_DECAY = ('bias', 'gamma', 'beta')


def make_optimizer(cfg: config_lib.TrainConfig, loss_scale: bool = False,
                   learning_rate: float | None = None
                   ) -> keras.optimizers.Optimizer:
  """Adam or AdamW on the schedule; loss-scaled for float16 training.

  Args:
    cfg: a config with the optimizer fields of `config.TrainConfig`.
    loss_scale: wrap in a LossScaleOptimizer (float16).
    learning_rate: peak learning rate (default cfg.learning_rate).
  """
  decay = cfg.weight_decay or None
  kwargs = dict(learning_rate=learning_rate_schedule(cfg, learning_rate),
                beta_1=cfg.adam_beta_1, beta_2=cfg.adam_beta_2,
                global_clipnorm=cfg.clipnorm or None, weight_decay=decay)
  optimizer = (keras.optimizers.AdamW if cfg.optimizer == 'adamw'
               else keras.optimizers.Adam)(**kwargs)
  if decay:
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
  return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else (
      optimizer)


def classification_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Cross-entropy per example, averaged over networks: [N, B, C] -> [B]."""
  labels = tf.broadcast_to(labels[None], tf.shape(logits)[:2])
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
  return tf.reduce_mean(ce, axis=0)


def regression_loss(outputs: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Squared error per example, averaged over networks: [N, B, 1] -> [B]."""
  return tf.reduce_mean(tf.square(outputs[..., 0] - labels[None]), axis=0)


TASK_LOSSES = {'classification': classification_loss,
               'regression': regression_loss}


def discriminator_losses(d_real: tf.Tensor, d_fake: tf.Tensor,
                         d_fake_for_generator: tf.Tensor):
  """(discriminator loss, non-saturating generator adversarial loss)."""
  bce = lambda labels, logits: tf.reduce_mean(
      tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
  d_loss = (bce(tf.ones_like(d_real), d_real) +
            bce(tf.zeros_like(d_fake), d_fake))
  g_adv = bce(tf.ones_like(d_fake_for_generator), d_fake_for_generator)
  return d_loss, g_adv


def moment_matching_loss(codes: tf.Tensor) -> tf.Tensor:
  """How far the codes' first two moments are from N(0, I), per dimension.

  mean_d(mean_d^2) + mean_d((var_d - 1)^2) + the mean squared off-diagonal
  covariance. Each term is an average over dimensions (or pairs), so codes
  that collapse to a constant score at least 1, whatever the code size; an
  average over all D^2 covariance entries would score them 1/D and pass
  any fixed threshold. With n samples, exact N(0, I) codes score about 4/n.
  """
  flat = tf.cast(tf.reshape(codes, [tf.shape(codes)[0], -1]), tf.float32)
  n = tf.cast(tf.shape(flat)[0], flat.dtype)
  d = tf.cast(tf.shape(flat)[1], flat.dtype)
  mean = tf.reduce_mean(flat, axis=0)
  centred = flat - mean
  cov = tf.matmul(centred, centred, transpose_a=True) / (n - 1)
  variance = tf.linalg.diag_part(cov)
  off_diagonal = (tf.reduce_sum(cov**2) - tf.reduce_sum(variance**2)) / (
      d * tf.maximum(d - 1, 1))
  return (tf.reduce_mean(mean**2) + tf.reduce_mean((variance - 1)**2) +
          off_diagonal)


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or Inf; the last good checkpoint is left untouched."""


def make_strategy(name: str = 'default') -> tf.distribute.Strategy:
  """The tf.distribute strategy for --strategy.

  'default' mirrors over all GPUs when there are several and is the plain
  one-device strategy otherwise; 'mirrored' mirrors over the local GPUs, or
  over the logical CPUs when there is no GPU; 'multi_worker' reads the
  cluster from TF_CONFIG and must be made before any other TensorFlow work.
  """
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices('GPU')
  if name == 'mirrored':
    devices = gpus or tf.config.list_logical_devices('CPU')
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if name == 'default':
    if len(gpus) > 1:
      return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
  raise ValueError(f'Unknown strategy {name!r}; choose default, mirrored or '
                   'multi_worker.')


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes checkpoints, summaries and results."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == 'chief':
    return True
  has_chief = 'chief' in resolver.cluster_spec().as_dict()
  return resolver.task_type == 'worker' and resolver.task_id == 0 and (
      not has_chief)


def mixed_precision_policy() -> str:
  """bfloat16 on CPUs (no loss scaling needed), float16 on GPUs."""
  return ('mixed_float16' if tf.config.list_logical_devices('GPU')
          else 'mixed_bfloat16')


class Trainer:
  """Builds the HyperGAN, its optimizers and checkpoint, and trains it."""

  def __init__(self, cfg: config_lib.TrainConfig,
               strategy: tf.distribute.Strategy | None = None):
    self.cfg = cfg
    self.spec = cfg.spec
    self.strategy = strategy or make_strategy(cfg.strategy)
    self.chief = is_chief(self.strategy)
    if cfg.deterministic:
      tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)
    policy = mixed_precision_policy() if cfg.mixed_precision else 'float32'
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)  # Only for the layers made here.
    loss_scale = policy == 'mixed_float16'
    with self.strategy.scope():
      self.hypernet = hypernet.HyperNetwork(self.spec, cfg.hypernet)
      # One optimizer per part: learning rates differ (the authors' CIFAR
      # code: mixer 5e-3, generators 1e-4, discriminator 5e-5).
      self.m_optimizer = make_optimizer(cfg, loss_scale,
                                        cfg.mixer_learning_rate)
      self.g_optimizer = make_optimizer(cfg, loss_scale)
      self.d_optimizer = make_optimizer(cfg, loss_scale,
                                        cfg.discriminator_learning_rate)
      self.m_optimizer.build(self.hypernet.mixer.trainable_variables)
      self.g_optimizer.build(self.hypernet.layer_generator_variables)
      self.d_optimizer.build(self.hypernet.discriminator.trainable_variables)
      self.rng = tf.random.Generator.from_seed(cfg.seed)
      self.step = tf.Variable(
          0, dtype=tf.int64, trainable=False, name='step',
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.mixer_pretrained = tf.Variable(False, trainable=False,
                                          name='mixer_pretrained')
      # Wall time of all sessions of this run, so resumed runs report totals.
      self.wall_time = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                   name='wall_time')
      # Best validation score so far (higher is better), kept across resumes.
      self.best_score = tf.Variable(-np.inf, dtype=tf.float64,
                                    trainable=False, name='best_score')
    keras.config.set_dtype_policy(previous_policy)
    self.checkpoint = tf.train.Checkpoint(
        step=self.step, mixer_pretrained=self.mixer_pretrained,
        wall_time=self.wall_time,
        hypernet=self.hypernet, m_optimizer=self.m_optimizer,
        g_optimizer=self.g_optimizer, d_optimizer=self.d_optimizer,
        rng=self.rng, best_score=self.best_score)
    # The checkpoint chosen on validation: the networks only.
    self.best_checkpoint = tf.train.Checkpoint(step=self.step,
                                               hypernet=self.hypernet)
    self.manager = self.best_manager = None
    if cfg.run_dir:
      # Every worker saves (saving is collective); only the chief's count.
      directory = (os.path.join(cfg.run_dir, 'checkpoints') if self.chief
                   else tempfile.mkdtemp(prefix='hypergan_worker_'))
      self.manager = tf.train.CheckpointManager(
          self.checkpoint, directory, max_to_keep=cfg.keep_checkpoints)
      if cfg.validation_size:
        self.best_manager = tf.train.CheckpointManager(
            self.best_checkpoint, os.path.join(directory, BEST_DIR),
            max_to_keep=1)
    self._gradients = tf.function(self._replica_gradients,
                                  jit_compile=cfg.jit_compile or None)
    self._step = tf.function(self._distributed_step)
    self.logits = tf.function(self._logits)

  # ------------------------------------------------------------------ steps

  def _replica_gradients(self, images: tf.Tensor, labels: tf.Tensor,
                         noise: tf.Tensor, prior: tf.Tensor):
    """Losses and gradients on one replica (XLA-compiled if --jit_compile).

    Every replica gets the same noise, so all sample the same networks and
    see their share of the global batch: the summed gradients equal those of
    one device on the whole batch.
    """
    cfg, hn = self.cfg, self.hypernet
    replicas = self.strategy.num_replicas_in_sync
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
      codes = hn.codes(noise, training=True)
      params = hn.generate(codes, training=True)
      logits = tf.cast(
          targets.apply(self.spec, params, images, cfg.forward_method),
          tf.float32)
      per_example = TASK_LOSSES[cfg.task](logits, labels)
      task_loss = tf.nn.compute_average_loss(
          per_example, global_batch_size=cfg.batch_size)
      flat_codes = tf.reshape(codes, [-1, cfg.code_dim])
      d_loss, g_adv = discriminator_losses(*(
          tf.cast(hn.discriminator(x, training=True), tf.float32)
          for x in (prior, tf.stop_gradient(flat_codes), flat_codes)))
      weight = self._adversarial_weight(task_loss, g_adv)
      g_loss = task_loss + weight * g_adv / replicas
      d_loss_scaled = d_loss / replicas
      g_scaled = self.g_optimizer.scale_loss(g_loss)
      d_scaled = self.d_optimizer.scale_loss(d_loss_scaled)
    g_grads = g_tape.gradient(g_scaled, hn.generator_variables)
    d_grads = d_tape.gradient(d_scaled, hn.discriminator.trainable_variables)
    losses = {
        'loss': g_loss,
        'task_loss': task_loss,
        'adversarial_loss': g_adv / replicas,
        'discriminator_loss': d_loss_scaled,
    }
    if cfg.max_adversarial_ratio:
      losses['adversarial_weight'] = weight / replicas
    if cfg.task == 'classification':
      correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                 labels[None]), tf.float32)
      losses['accuracy'] = tf.reduce_mean(correct) / replicas
    return g_grads, d_grads, losses

  def _adversarial_weight(self, task_loss: tf.Tensor, g_adv: tf.Tensor
                          ) -> tf.Tensor:
    """beta, capped so beta x adversarial <= max_adversarial_ratio x task.

    The cap is a constant within the step (no gradient flows through it),
    computed from the global task loss so every replica uses the same one.
    """
    cfg = self.cfg
    if not cfg.max_adversarial_ratio:
      return tf.constant(cfg.beta, tf.float32)
    total_task = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.stop_gradient(task_loss))
    cap = cfg.max_adversarial_ratio * total_task / tf.maximum(
        tf.stop_gradient(g_adv), 1e-12)
    return tf.minimum(tf.constant(cfg.beta, tf.float32), cap)

  def _replica_step(self, images, labels, noise, prior):
    """Gradients, then one update of mixer, generators and discriminator."""
    g_grads, d_grads, losses = self._gradients(images, labels, noise, prior)
    hn = self.hypernet
    num_mixer = len(hn.mixer.trainable_variables)
    m_grads, g_grads = g_grads[:num_mixer], g_grads[num_mixer:]
    if isinstance(self.g_optimizer, keras.optimizers.LossScaleOptimizer):
      # The gradients carry the generators' loss scale; the mixer's
      # optimizer unscales by its own.
      ratio = (self.m_optimizer.dynamic_scale /
               self.g_optimizer.dynamic_scale)
      m_grads = [g * tf.cast(ratio, g.dtype) for g in m_grads]
    self.m_optimizer.apply_gradients(
        zip(m_grads, hn.mixer.trainable_variables))
    self.g_optimizer.apply_gradients(
        zip(g_grads, hn.layer_generator_variables))
    self.d_optimizer.apply_gradients(
        zip(d_grads, hn.discriminator.trainable_variables))
    return losses

  def _distributed_step(self, images, labels):
    """Draws the step's noise once, runs every replica, sums the losses."""
    cfg = self.cfg
    noise = self.rng.normal([cfg.num_networks, cfg.noise_dim])
    prior = self.rng.normal(
        [cfg.num_networks * self.hypernet.num_codes, cfg.code_dim])
    per_replica = self.strategy.run(self._replica_step,
                                    args=(images, labels, noise, prior))
    self.step.assign_add(1)
    return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, None)
            for k, v in per_replica.items()}

  def train_step(self, images, labels) -> dict[str, float]:
    """One training step on a (distributed) batch; losses over replicas."""
    return {k: float(v) for k, v in self._step(images, labels).items()}

  def pretrain_mixer(self) -> float | None:
    """Matches the codes' mean and covariance to N(0, I) (paper, Sec. 3)."""
    cfg = self.cfg
    if not cfg.pretrain_mixer_steps or bool(self.mixer_pretrained.numpy()):
      return None
    mixer = self.hypernet.mixer
    replicas = self.strategy.num_replicas_in_sync
    # Enough samples for a full-rank covariance of the flattened codes, and
    # a sampling floor of the moment loss (about 4 / n) far below the
    # threshold.
    n = max(cfg.num_networks, 10 * self.hypernet.num_codes * cfg.code_dim)
    with self.strategy.scope():
      optimizer = keras.optimizers.Adam(1e-3)
      optimizer.build(mixer.trainable_variables)

    def replica_step(noise):
      with tf.GradientTape() as tape:
        loss = moment_matching_loss(mixer(noise, training=True)) / replicas
      grads = tape.gradient(loss, mixer.trainable_variables)
      optimizer.apply_gradients(zip(grads, mixer.trainable_variables))
      return loss

    @tf.function
    def step():
      noise = self.rng.normal([n, cfg.noise_dim])  # The same on every replica.
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                  self.strategy.run(replica_step, (noise,)),
                                  None)

    loss = float('nan')
    for i in range(cfg.pretrain_mixer_steps):
      loss = float(step())
      if loss < cfg.pretrain_mixer_threshold:
        break
    logging.info('Mixer pre-training: %d steps, moment loss %.4f', i + 1,
                 loss)
    self.mixer_pretrained.assign(True)
    return loss

  # ------------------------------------------------------------- evaluation

  def _logits(self, params, images):
    """Logits [N, B, C] of the given networks (compiled as `self.logits`)."""
    return tf.cast(
        targets.apply(self.spec, params, images, self.cfg.forward_method),
        tf.float32)

  def sample_eval_params(self, num_networks: int, seed: int | None = None):
    """Networks for evaluation: inference-mode BatchNorm, seeded noise."""
    seed = self.cfg.seed + _EVAL_SEED_OFFSET if seed is None else seed
    return self.hypernet.sample(num_networks,
                                tf.random.Generator.from_seed(seed))

  def evaluate(self, dataset: Iterable, num_networks: int,
               ensemble_sizes: tuple[int, ...] = (10,),
               seed: int | None = None) -> dict[str, float]:
    """Test score of single sampled networks and of their ensembles.

    The score is accuracy (classification) or mean squared error
    (regression; an ensemble predicts its members' mean).

    Returns:
      '<score>_single' (mean over networks), '<score>_single_std', and
      '<score>_ensemble_<k>' (the first k networks: mean softmax, or mean
      output) for each k in ensemble_sizes with k <= num_networks.
    """
    params = self.sample_eval_params(num_networks, seed)
    sizes = [k for k in ensemble_sizes if k <= num_networks]
    regression = self.cfg.task == 'regression'
    member_sums = np.zeros(num_networks)
    ensemble_sums = dict.fromkeys(sizes, 0.0)
    total = 0
    for images, labels in dataset:
      outputs = self.logits(params, images)
      b = len(labels)
      if regression:
        squared = np.square(outputs.numpy()[..., 0] - labels.numpy()[None])
        member_sums += squared.sum(axis=1)
      else:
        member_sums += b * metrics.member_accuracies(outputs, labels)
      for k in sizes:
        if regression:
          mean = outputs.numpy()[:k, :, 0].mean(axis=0)
          ensemble_sums[k] += float(np.square(mean - labels.numpy()).sum())
        else:
          ensemble_sums[k] += b * metrics.accuracy(
              metrics.ensemble_probabilities(outputs[:k]), labels)
      total += b
    if total == 0:
      raise ValueError('The evaluation dataset is empty.')
    score = 'mse' if regression else 'accuracy'
    per_member = member_sums / total
    out = {f'{score}_single': float(per_member.mean()),
           f'{score}_single_std': float(per_member.std())}
    for k in sizes:
      out[f'{score}_ensemble_{k}'] = float(ensemble_sums[k] / total)
    return out

  # ----------------------------------------------------------- checkpoints

  def restore(self) -> bool:
    """Restores the latest checkpoint in run_dir; True if one was found."""
    return restore_latest(self.checkpoint, self.manager, self.step)

  def weights_finite(self) -> bool:
    return _all_finite(self.hypernet.trainable_variables)

  def save_if_best(self, score: float) -> bool:
    """Keeps the networks as the selected checkpoint if score is the best."""
    if self.best_manager is None or score <= float(self.best_score.numpy()):
      return False
    self.best_score.assign(score)
    self.best_manager.save(checkpoint_number=int(self.step.numpy()))
    return True

  def restore_selected(self) -> int:
    """Restores the checkpoint chosen on validation, if any; its step."""
    path = self.best_manager and self.best_manager.latest_checkpoint
    if path:
      self.best_checkpoint.restore(path).assert_existing_objects_matched()
      logging.info('Selected on validation: %s (step %d).', path,
                   int(self.step.numpy()))
    return int(self.step.numpy())

  def save(self, clock: float | None = None) -> str | None:
    """Saves a checkpoint, unless the weights are broken (keeps the last)."""
    return save_if_finite(self.manager, self.step, self.wall_time,
                          self.hypernet.trainable_variables, clock)


def _all_finite(variables) -> bool:
  return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables)


def save_if_finite(manager: tf.train.CheckpointManager | None,
                   step: tf.Variable, wall_time: tf.Variable, variables,
                   clock: float | None = None) -> str | None:
  """Saves a checkpoint numbered by step, unless variables are not finite.

  Args:
    clock: time.time() at which this run would have started had it never
      stopped; sets the run's recorded wall time.

  Returns:
    The checkpoint path, or None (no manager, or broken weights: the last
    good checkpoint stays the latest).
  """
  if manager is None:
    return None
  if clock is not None:
    wall_time.assign(time.time() - clock)
  if not _all_finite(variables):
    logging.error('Not saving step %d: weights are not finite.',
                  int(step.numpy()))
    return None
  return manager.save(checkpoint_number=int(step.numpy()))


def restore_latest(checkpoint: tf.train.Checkpoint,
                   manager: tf.train.CheckpointManager | None,
                   step: tf.Variable) -> bool:
  """Restores the manager's latest checkpoint; True if there was one.

  Raises:
    RuntimeError: the checkpoint is truncated or of another model.
  """
  if manager is None or manager.latest_checkpoint is None:
    return False
  path = manager.latest_checkpoint
  try:
    checkpoint.restore(path).assert_existing_objects_matched()
  except Exception as e:  # Truncated files raise IndexError, others vary.
    raise RuntimeError(
        f'Checkpoint {path} cannot be restored into this model ({e}). It is '
        'corrupt or was written with other flags; use the original flags or '
        'a fresh --run_dir.') from e
  logging.info('Resumed from %s at step %d.', path, int(step.numpy()))
  return True


def load_trainer(run_dir: str) -> Trainer:
  """The trained HyperGAN of a run directory (its config + checkpoint).

  The checkpoint is the one chosen on validation when the run held out a
  validation split, else the latest.

  Raises:
    FileNotFoundError: run_dir holds no config or no checkpoint.
  """
  path = os.path.join(run_dir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {run_dir!r} is not a run '
                            'directory of scripts/train.py.')
  with open(path) as f:
    cfg = config_lib.TrainConfig(**{**json.load(f), 'run_dir': run_dir})
  trainer = Trainer(cfg)
  if not trainer.restore():
    raise FileNotFoundError(f'No checkpoint in {run_dir}/checkpoints; train '
                            'first (scripts/train.py --run_dir=...).')
  trainer.restore_selected()
  return trainer


def check_same_model(cfg: config_lib.TrainConfig) -> None:
  """Refuses to resume a run directory with a differently shaped model.

  Raises:
    ValueError: naming each flag that differs from the run's config.json.
  """
  path = os.path.join(cfg.run_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      previous = config_lib.TrainConfig(**json.load(f))
  except (ValueError, TypeError) as e:
    raise ValueError(f'{path} is not a config of this version ({e}); use a '
                     'fresh --run_dir.') from None
  changes = cfg.architecture_changes(previous)
  if changes:
    listed = ', '.join(f'--{name}={old} (now {new})'
                       for name, (old, new) in changes.items())
    raise ValueError(f'{cfg.run_dir} holds a model trained with {listed}. '
                     'Resume it with its own flags, or pick a fresh '
                     '--run_dir.')


@contextlib.contextmanager
def sigterm_as_interrupt():
  """Turns SIGTERM into KeyboardInterrupt so the loop saves before exiting."""
  def handler(signum, frame):
    del signum, frame
    raise KeyboardInterrupt('SIGTERM')
  try:
    previous = signal.signal(signal.SIGTERM, handler)
  except ValueError:  # Not the main thread: leave signals alone.
    yield
    return
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def train(cfg: config_lib.TrainConfig,
          strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
  """Trains (or resumes) a HyperGAN in cfg.run_dir and evaluates it.

  Returns the results dict that is also written to <run_dir>/results.json.
  """
  if not cfg.run_dir:
    raise ValueError('--run_dir is required.')
  # First: a multi-worker strategy must exist before other TensorFlow work.
  strategy = strategy or make_strategy(cfg.strategy)
  check_same_model(cfg)
  chief = is_chief(strategy)
  if chief:
    os.makedirs(cfg.run_dir, exist_ok=True)
    write_json(os.path.join(cfg.run_dir, CONFIG_FILE), cfg.to_dict())
  trainer = Trainer(cfg, strategy)
  resumed = trainer.restore()
  start_step = int(trainer.step.numpy())
  clock = time.time() - float(trainer.wall_time.numpy())
  # Starts at the batch this step would see had the run never stopped.
  train_ds = data.load(cfg.dataset, 'train', cfg.batch_size, training=True,
                       seed=cfg.seed, start_batch=start_step,
                       data_dir=cfg.data_dir, download=cfg.download,
                       augment=cfg.augment,
                       validation_size=cfg.validation_size)
  eval_batch = max(1, 10_000 // cfg.final_eval_networks)
  test_ds = data.load(cfg.dataset, 'test', eval_batch, training=False,
                      data_dir=cfg.data_dir, download=cfg.download)
  # Periodic evaluation (and the choice of the reported step) on the held-out
  # validation split; without one, on test, and the last step is reported.
  eval_split = 'validation' if cfg.validation_size else 'test'
  eval_ds = test_ds if not cfg.validation_size else data.load(
      cfg.dataset, 'validation', eval_batch, training=False,
      data_dir=cfg.data_dir, download=cfg.download,
      validation_size=cfg.validation_size)
  writer = (tf.summary.create_file_writer(
      os.path.join(cfg.run_dir, 'summaries')) if chief
            else tf.summary.create_noop_writer())
  pretrain_loss = trainer.pretrain_mixer()
  if not resumed:
    trainer.save(clock)
  # In-memory data has no files to shard: workers split each global batch.
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  dist_train = iter(trainer.strategy.experimental_distribute_dataset(
      train_ds.with_options(options)))
  logging.info('Training %s on %s: %d networks x %d examples per step, '
               'steps %d -> %d.', cfg.target, cfg.dataset, cfg.num_networks,
               cfg.batch_size, int(trainer.step.numpy()), cfg.steps)
  window_start, window_steps, sums = time.time(), 0, {}
  with sigterm_as_interrupt(), writer.as_default():
    try:
      while int(trainer.step.numpy()) < cfg.steps:
        images, labels = next(dist_train)
        losses = trainer.train_step(images, labels)
        step = int(trainer.step.numpy())
        _check_finite(losses, step, cfg.run_dir)
        for name, value in losses.items():
          sums[name] = sums.get(name, 0.0) + value
        window_steps += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
          elapsed = time.time() - window_start
          means = {k: v / window_steps for k, v in sums.items()}
          lr = float(trainer.g_optimizer.learning_rate)
          for name, value in means.items():
            tf.summary.scalar(f'train/{name}', value, step=step)
          tf.summary.scalar('train/learning_rate', lr, step=step)
          tf.summary.scalar('train/steps_per_second', window_steps / elapsed,
                            step=step)
          eta = (cfg.steps - step) * elapsed / window_steps
          logging.info('step %d/%d  %s  lr %.2e  %.2f steps/s  eta %.0f s',
                       step, cfg.steps, _fmt(means), lr,
                       window_steps / elapsed, eta)
          window_start, window_steps, sums = time.time(), 0, {}
        periodic = step % cfg.eval_every == 0 and step != cfg.steps
        if periodic or (cfg.validation_size and step == cfg.steps):
          result = trainer.evaluate(eval_ds, cfg.eval_networks,
                                    (cfg.eval_networks,))
          for name, value in result.items():
            tf.summary.scalar(f'{eval_split}/{name}', value, step=step)
          for i, (kernel, bias) in enumerate(
              trainer.sample_eval_params(cfg.eval_networks)):
            tf.summary.histogram(f'weights/layer_{i}_kernel', kernel, step)
            tf.summary.histogram(f'weights/layer_{i}_bias', bias, step)
          best = trainer.save_if_best(selection_score(
              result, cfg.eval_networks))
          logging.info('step %d  %s: %s%s', step, eval_split, _fmt(result),
                       '  (best so far)' if best else '')
        if step % cfg.checkpoint_every == 0:
          trainer.save(clock)
    except KeyboardInterrupt:
      logging.warning('Interrupted at step %d; saving a checkpoint.',
                      int(trainer.step.numpy()))
      trainer.save(clock)
      raise
    trainer.save(clock)
    steps_done = int(trainer.step.numpy())
    selected_step = trainer.restore_selected()
    final = trainer.evaluate(test_ds, cfg.final_eval_networks,
                             (1, 5, 10, 100))
    for name, value in final.items():
      tf.summary.scalar(f'test/{name}', value, step=cfg.steps)
  writer.flush()
  if selected_step == steps_done:  # Else it would save the chosen weights.
    trainer.save(clock)  # Again, so a resumed run's wall time counts the eval.
  results = {
      **{f'test_{k}': v for k, v in final.items()},
      'steps': steps_done,
      'selected_step': selected_step,
      'start_step': start_step,
      'wall_time_s': time.time() - clock,
      'mixer_pretrain_loss': pretrain_loss,
      'num_parameters_target': trainer.spec.num_params,
      'num_parameters_hypernet': int(sum(
          np.prod(v.shape) for v in trainer.hypernet.trainable_variables)),
      'weights_sha256': weights_fingerprint(trainer.hypernet.variables),
      'flags': cfg.to_dict(),
  }
  if not chief:  # Its checkpoints only took part in the collective saves.
    shutil.rmtree(trainer.manager.directory, ignore_errors=True)
    return results
  path = os.path.join(cfg.run_dir, RESULTS_FILE)
  write_json(path, results)
  logging.info('Final test: %s; results in %s', _fmt(final), path)
  return results


def selection_score(result: dict[str, float], num_networks: int) -> float:
  """Higher is better: ensemble accuracy, or minus its squared error."""
  if f'accuracy_ensemble_{num_networks}' in result:
    return result[f'accuracy_ensemble_{num_networks}']
  return -result[f'mse_ensemble_{num_networks}']


def weights_fingerprint(variables) -> str:
  """SHA-256 of the variables' bytes: equal runs give equal fingerprints."""
  digest = hashlib.sha256()
  for v in variables:
    digest.update(np.ascontiguousarray(v.numpy()).tobytes())
  return digest.hexdigest()


def _check_finite(losses: dict[str, float], step: int, run_dir: str) -> None:
  """Raises NonFiniteLossError naming the step and the broken loss terms."""
  bad = [name for name, value in losses.items() if not math.isfinite(value)]
  if not bad:
    return
  terms = [name for name in bad if name != 'loss'] or bad  # The cause first.
  listed = ', '.join(f'{name} = {losses[name]}' for name in terms)
  raise NonFiniteLossError(
      f'Training stopped at step {step}: {listed}. The last good checkpoint '
      f'is kept in {os.path.join(run_dir, "checkpoints")}; lower '
      '--learning_rate or set --clipnorm and rerun to resume.')


def _fmt(values: dict[str, float]) -> str:
  return '  '.join(f'{k} {v:.4f}' for k, v in values.items())

"""The HyperGAN method: losses, its train step, and its loop hooks.

The loop itself (checkpoints, evaluation schedule, summaries, results) is
`loop.run`, shared with the baselines; `Trainer` is the HyperGAN's
`loop.Learner`. Generator side: task loss averaged over the sampled networks
+ beta x the non-saturating adversarial loss of the discriminator on the
codes (+ the optional function-space diversity term, `diversity`).
Discriminator: binary cross-entropy with logits, real = prior samples,
fake = codes (one sigmoid, inside the loss; the authors' code applies two).
"""

from __future__ import annotations

from typing import Any, Iterable

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from hypergan_tf.methods import loop
from hypergan_tf.methods.hypergan import chunked
from hypergan_tf.methods.hypergan import config as config_lib
from hypergan_tf.methods.hypergan import diversity
from hypergan_tf.methods.hypergan import objectives
from hypergan_tf.model import hypernet
from hypergan_tf.model import members
from hypergan_tf.model import targets
from hypergan_tf.runtime import optim
from hypergan_tf.runtime import rundir


def per_network_labels(labels: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
  """Labels [N, B] of outputs [N, B, ...]: labels [B] are shared by all
  networks; labels [N, B] are each network's own (--per_network_batches)."""
  if labels.shape.rank == 1:
    labels = labels[None]
  return tf.broadcast_to(labels, tf.shape(outputs)[:2])


def classification_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Cross-entropy per example, averaged over networks: [N, B, C] -> [B]."""
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
      per_network_labels(labels, logits), logits)
  return tf.reduce_mean(ce, axis=0)


def regression_loss(outputs: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Squared error per example, averaged over networks: [N, B, 1] -> [B]."""
  return tf.reduce_mean(tf.square(
      outputs[..., 0] - per_network_labels(labels, outputs)), axis=0)


# Keeps the off-manifold inputs' noise apart from other seeded streams.
_DIVERSITY_STREAM = 0x446976

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
  """Builds the HyperGAN, its optimizers and checkpoint: a `loop.Learner`."""

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
      self.m_optimizer = optim.make_optimizer(cfg, loss_scale,
                                              cfg.mixer_learning_rate)
      self.g_optimizer = optim.make_optimizer(cfg, loss_scale)
      self.d_optimizer = optim.make_optimizer(
          cfg, loss_scale, cfg.discriminator_learning_rate)
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
    # What inference needs; the validation choice is saved from it.
    self.model_checkpoint = tf.train.Checkpoint(step=self.step,
                                                hypernet=self.hypernet)
    self.examples_per_step = cfg.batch_size * (
        cfg.num_networks if cfg.per_network_batches else 1)
    replicas = self.strategy.num_replicas_in_sync
    if cfg.per_network_batches and cfg.batch_size % replicas:
      raise ValueError(
          f'--per_network_batches splits each network\'s --batch_size '
          f'({cfg.batch_size}) over the {replicas} replicas; pick a '
          f'multiple of {replicas}.')
    # --diversity_pairs=within_mode: the term compares networks of one mode.
    self.within_mode = bool(cfg.diversity_weight) and (
        cfg.diversity_pairs == 'within_mode')
    self.eval_members = cfg.eval_networks
    self.final_eval_members = cfg.final_eval_networks
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
    if cfg.per_network_batches:
      # Image b * N + n of the batch is network n's: example-major, so a
      # split of the batch over replicas leaves each network its own images.
      images = tf.reshape(images, [-1, cfg.num_networks, *images.shape[1:]])
      images = tf.transpose(images, [1, 0, *range(2, images.shape.rank)])
      labels = tf.transpose(tf.reshape(labels, [-1, cfg.num_networks]))
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
      codes = hn.codes(noise, training=True)
      if self.within_mode:
        # The term sees the same networks, its gradient kept off the bases.
        params, term_params = hn.generate(codes, training=True, noise=noise,
                                          detach_bases=True)
      else:
        params = term_params = hn.generate(codes, training=True, noise=noise)
      forward = (targets.apply_per_network if cfg.per_network_batches
                 else targets.apply)
      task_loss_fn = objectives.task_loss(
          cfg.network_objective, noise, cfg.objective_spread,
          TASK_LOSSES[cfg.task])
      if cfg.network_chunk:
        # Its own tapes: their gradients join the generator's below.
        with g_tape.stop_recording(), d_tape.stop_recording():
          task_loss, param_grads, predictions = (
              chunked.task_loss_and_gradients(
                  self.spec, params, images, labels, cfg.network_chunk,
                  forward, task_loss_fn, cfg.forward_method,
                  cfg.batch_size, self.g_optimizer.scale_loss,
                  cfg.per_network_batches))
      else:
        logits = tf.cast(forward(self.spec, params, images,
                                 cfg.forward_method), tf.float32)
        predictions = tf.argmax(logits, -1, output_type=tf.int32)
        task_loss = tf.nn.compute_average_loss(
            task_loss_fn(logits, labels),
            global_batch_size=cfg.batch_size)
      flat_codes = tf.reshape(codes, [-1, cfg.code_dim])
      d_loss, g_adv = discriminator_losses(*(
          tf.cast(hn.discriminator(x, training=True), tf.float32)
          for x in (prior, tf.stop_gradient(flat_codes), flat_codes)))
      weight = self._adversarial_weight(task_loss, g_adv)
      g_loss = task_loss + weight * g_adv / replicas
      if cfg.diversity_weight:
        diversity_loss = self._diversity_loss(term_params, images, logits)
        g_loss += cfg.diversity_weight * diversity_loss / replicas
      d_loss_scaled = d_loss / replicas
      g_scaled = self.g_optimizer.scale_loss(g_loss)
      d_scaled = self.d_optimizer.scale_loss(d_loss_scaled)
    if cfg.network_chunk:
      flat_params = tf.nest.flatten(params)
      g_grads = g_tape.gradient(
          [g_scaled] + flat_params, hn.generator_variables,
          output_gradients=[tf.ones_like(g_scaled)] +
          tf.nest.flatten(param_grads))
    else:
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
    if cfg.diversity_weight:
      losses['diversity_loss'] = diversity_loss / replicas
    if cfg.task == 'classification':
      correct = tf.cast(tf.equal(predictions,
                                 per_network_labels(labels, predictions)),
                        tf.float32)
      losses['accuracy'] = tf.reduce_mean(correct) / replicas
    return g_grads, d_grads, losses

  def _diversity_loss(self, params, images: tf.Tensor, logits: tf.Tensor
                      ) -> tf.Tensor:
    """The diversity term on the batch, on off-manifold inputs made from
    its first images, or on the batch plus context images made from them
    (both a pure function of (seed, step)). With per-network batches every
    network is scored on the first network's batch: the term compares
    networks on the same inputs. With --diversity_pairs=within_mode it
    compares networks of one mode only, and its gradient reaches the
    generated parameters, not the modes' bases."""
    cfg = self.cfg
    groups = cfg.modes if self.within_mode else 1
    apply = lambda x: tf.cast(
        targets.apply(self.spec, params, x, cfg.forward_method), tf.float32)
    if cfg.per_network_batches:
      images = images[0]
    seed = tf.stack([tf.constant(cfg.seed, tf.int64) + _DIVERSITY_STREAM,
                     tf.identity(self.step)])
    first = images[:cfg.diversity_batch_size]
    if cfg.diversity_inputs == 'off_manifold':
      return diversity.loss(cfg.diversity_term,
                            apply(diversity.off_manifold(first, seed)), groups)
    if cfg.per_network_batches or groups > 1:
      logits = apply(images)
    if cfg.diversity_inputs == 'batch_and_context':
      logits = tf.concat([logits, apply(diversity.context(first, seed))],
                         axis=1)
    return diversity.loss(cfg.diversity_term, logits, groups)

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
    noise = self.hypernet.stratify(
        self.rng.normal([cfg.num_networks, cfg.noise_dim]))
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
    seed = self.cfg.seed + loop.EVAL_SEED_OFFSET if seed is None else seed
    return self.hypernet.sample(num_networks,
                                tf.random.Generator.from_seed(seed))

  def member_outputs(self, dataset: Iterable, num_members: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, B, C] of num_members evaluation networks, and labels."""
    return loop.member_outputs(
        self.logits, self.sample_eval_params(num_members), dataset)

  # ------------------------------------------------------------ loop hooks

  @property
  def variables(self) -> list[tf.Variable]:
    return self.hypernet.variables

  def prepare(self) -> dict[str, Any]:
    return {'mixer_pretrain_loss': self.pretrain_mixer()}

  def learning_rate(self) -> float:
    return float(self.g_optimizer.learning_rate)

  def write_summaries(self, step: int) -> None:
    """Generated weights of the evaluated networks: histograms, and the
    first layer's filters as images (one row of filters per network)."""
    params = self.sample_eval_params(self.eval_members)
    for i, (kernel, bias) in enumerate(params):
      tf.summary.histogram(f'weights/layer_{i}_kernel', kernel, step)
      tf.summary.histogram(f'weights/layer_{i}_bias', bias, step)
    kernel = params[0][0]
    if kernel.shape.rank == 5:  # Conv [N, h, w, c_in, c_out].
      tf.summary.image('weights/layer_0_filters', filter_grid(kernel), step)

  def describe(self) -> dict[str, Any]:
    return {
        'method': 'hypergan',
        'num_parameters_target': self.spec.num_params,
        'num_parameters_hypernet': int(sum(
            np.prod(v.shape) for v in self.hypernet.trainable_variables)),
    }


def filter_grid(kernel: tf.Tensor, max_filters: int = 16) -> tf.Tensor:
  """First-layer conv kernels [N, h, w, c, f] as one image per network:
  [N, h, w * f', c'] with each filter scaled to [0, 1] (c' = 1 or 3)."""
  kernel = kernel[..., :max_filters]
  if kernel.shape[3] not in (1, 3):
    kernel = tf.reduce_mean(kernel, axis=3, keepdims=True)
  low = tf.reduce_min(kernel, axis=[1, 2, 3], keepdims=True)
  high = tf.reduce_max(kernel, axis=[1, 2, 3], keepdims=True)
  kernel = (kernel - low) / tf.maximum(high - low, 1e-12)
  n, h, w, c, f = kernel.shape
  return tf.reshape(tf.transpose(kernel, [0, 1, 4, 2, 3]), [n, h, f * w, c])


def load_config(run_dir: str) -> config_lib.TrainConfig:
  """The config of a HyperGAN run directory."""
  return config_lib.TrainConfig.from_dict(rundir.read_config(run_dir),
                                         run_dir=run_dir)


def load_trainer(run_dir: str) -> Trainer:
  """A run's Trainer at its latest checkpoint, ready to train further.

  For inference, `members.load` (or `hypergan_tf.load`) is lighter: no
  optimizers, no global seeding.

  Raises:
    FileNotFoundError: run_dir holds no config or no checkpoint.
  """
  trainer = Trainer(load_config(run_dir))
  if not loop.Checkpoints(trainer).restored():
    raise FileNotFoundError(f'No checkpoint in {run_dir}/checkpoints; train '
                            'first (scripts/train.py --run_dir=...).')
  return trainer


@members.register('hypergan', label='HyperGAN')
def load_members(run_dir: str, config: dict[str, Any]) -> members.Loaded:
  """Networks sampled from a trained HyperGAN (inference-mode BatchNorm).

  Builds only the hypernetwork and restores it from the run's selected
  checkpoint; no optimizers, no change to global seeds.
  """
  cfg = config_lib.TrainConfig.from_dict(config, run_dir=run_dir)
  network = hypernet.HyperNetwork(cfg.spec, cfg.hypernet)
  step = members.restore(run_dir, 'scripts/train.py', hypernet=network)
  return members.Loaded(
      spec=cfg.spec, dataset=cfg.dataset, data_dir=cfg.data_dir,
      step=step, forward_method=cfg.forward_method,
      sample_fn=lambda n, seed: network.sample(
          n, tf.random.Generator.from_seed(seed)),
      hypernet=network)


def check_same_model(cfg: config_lib.TrainConfig) -> None:
  """Refuses to resume a run directory with a differently shaped model.

  Raises:
    ValueError: naming each flag that differs from the run's config.json.
  """
  path = rundir.join(cfg.run_dir, rundir.CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return
  try:
    previous = config_lib.TrainConfig.from_dict(rundir.read_json(path))
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
  return loop.run(Trainer(cfg, strategy))

"""Baselines under the HyperGAN's protocol: ensembles, MC dropout, variational.

Every baseline trains the same target network (`targets.TargetSpec`) on the
same `tf.data` pipelines and emits its members in the HyperGAN's format: one
(kernel [N, ...], bias [N, ...]) pair per layer, evaluated by
`targets.apply`. So evaluation, attacks and the weight-diversity row treat a
baseline exactly like sampled HyperGAN networks (`members.Members`).

- 'ensemble': K networks held as stacked variables [K, ...], each from its
  own He-normal initialisation, trained side by side; a member is one of the
  K networks, so at most K members can be sampled.
- 'mc_dropout': one network with dropout on the inputs of every layer but
  the first (whole input channels of a conv layer, single units of a dense
  layer). A member is the network with one dropout mask folded into its
  kernels: dropping input j of a layer zeroes the kernel's input slice j and
  the rest is scaled by 1 / (1 - rate), exactly what dropout does to the
  layer's output.
- 'variational': a mean-field Gaussian posterior N(mu, softplus(rho)^2) over
  every parameter, trained by reparameterised samples (Bayes by backprop)
  against a N(0, prior_std^2) prior, with the KL divided by the number of
  training examples. Built from `tfp.distributions` on plain tensors: TFP's
  Keras layers are tf_keras objects that do not mix with Keras 3.
- 'batch_ensemble': BatchEnsemble (Wen et al., ICLR 2020): one shared
  ("slow") kernel per layer and, per member k, a rank-1 "fast" factor
  r_k s_k^T on the kernel's input and output axes and a bias of its own.
  ((x * r_k) W) * s_k equals x (W * r_k s_k^T), so a member is the shared
  kernel with its factor folded in, in the same format as the others. Fast
  weights start around 1 (`--random_sign_init`, uncertainty-baselines'
  convention) and are left out of weight decay, which would pull them to 0.
  Written here: edward2 (0.0.2 on the package index) does not import with
  today's scipy, and its BatchEnsemble layers are tf.keras 2 ones.

Each training step takes `num_members` members and gives each its own batch
of `batch_size` examples (one seeded stream of num_members x batch_size
examples, split), so ensemble members see different batches and different
dropout masks / weight samples each cover a part of the batch. BatchEnsemble
instead tiles one batch of `batch_size` over its K members, as its authors
train it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from absl import flags
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from hypergan_tf import config as config_lib
from hypergan_tf import data
from hypergan_tf import evaluation
from hypergan_tf import loop
from hypergan_tf import members
from hypergan_tf import optim
from hypergan_tf import targets

tfd = tfp.distributions

METHODS = ('ensemble', 'mc_dropout', 'variational', 'batch_ensemble')
CLASSIFICATION_DATASETS = tuple(
    name for name in data.TRAINABLE
    if data.DATASETS[name].task == 'classification')
_field = config_lib.flag_field


@dataclasses.dataclass(frozen=True)
class BaselineConfig(config_lib.RunOptions, config_lib.DataOptions):
  """Everything a baseline run depends on; each field is also a flag.

  The optimizer fields have the names and meaning of `config.TrainConfig`'s,
  so `optim.make_optimizer` serves both.
  """
  run_dir: str = _field('', 'Directory for checkpoints, TensorBoard '
                        'summaries and results.json; rerunning resumes it.')
  method: str = _field('ensemble', 'Baseline to train.', choices=METHODS)
  dataset: str = _field('mnist', 'Classification dataset (a TFDS dataset or '
                        'a fixed subset).', choices=CLASSIFICATION_DATASETS)
  target: str = _field('mnist', 'Target network spec (the HyperGAN\'s).',
                       choices=tuple(sorted(targets.TARGETS)))
  data_dir: str | None = _field(
      None, 'TFDS data directory (default: $TFDS_DATA_DIR, then TFDS '
      'default).')
  download: bool = _field(True, 'Let TFDS download a missing dataset.')
  seed: int = _field(0, 'Seed for initialisation, masks, weight samples and '
                     'shuffling.')
  num_members: int = _field(
      10, 'ensemble / batch_ensemble: K, the number of members. mc_dropout '
      '/ variational: dropout masks / weight samples per training step.', 1)
  batch_size: int = _field(100, 'Examples per member per step (for '
                           'batch_ensemble, one batch shared by all K).', 1)
  steps: int = _field(5000, 'Training steps.', 1)
  learning_rate: float = _field(1e-3, 'Peak learning rate.', 0.0)
  lr_schedule: str = _field('cosine', 'Schedule after the warm-up.',
                            choices=('cosine', 'constant'))
  warmup_steps: int = _field(0, 'Linear learning-rate warm-up steps.', 0)
  min_lr_ratio: float = _field(0.0, 'Final cosine learning rate as a '
                               'fraction of the peak.', 0.0, 1.0)
  optimizer: str = _field('adam', 'Optimizer.', choices=('adam', 'adamw'))
  weight_decay: float = _field(0.0, 'Decoupled weight decay (adamw).', 0.0)
  clipnorm: float = _field(0.0, 'Global gradient-norm clip; 0 disables (it '
                           'couples the members of an ensemble).', 0.0)
  adam_beta_1: float = _field(0.9, 'Adam beta_1.', 0.0, 1.0)
  adam_beta_2: float = _field(0.999, 'Adam beta_2.', 0.0, 1.0)
  dropout_rate: float = _field(0.25, 'mc_dropout: probability of dropping '
                               'an input channel / unit.', 0.0, 1.0)
  prior_std: float = _field(1.0, 'variational: std of the N(0, std^2) '
                            'prior on every parameter.', 0.0)
  posterior_init_std: float = _field(1e-3, 'variational: initial posterior '
                                     'std of every parameter.', 0.0)
  random_sign_init: float = _field(
      -0.5, 'batch_ensemble: initial fast weights. > 0: random signs, +1 '
      'with this probability; < 0: N(1, (-value)^2). 0 is not allowed.')
  kl_weight: float = _field(1.0, 'variational: multiplies the KL term '
                            '(1 = the ELBO; < 1 tempers the prior).', 0.0)
  forward_method: str = _field('loop', 'How conv layers batch over members.',
                               choices=targets.FORWARD_METHODS)
  log_every: int = _field(100, 'Steps between progress lines and training '
                          'summaries.', 1)
  eval_every: int = _field(1000, 'Steps between test evaluations.', 1)
  eval_members: int = _field(10, 'Members for periodic evaluation.', 1)
  final_eval_members: int = _field(100, 'Members for the final evaluation '
                                   '(at most K for an ensemble).', 1)
  checkpoint_every: int = _field(500, 'Steps between checkpoints.', 1)
  keep_checkpoints: int = _field(3, 'Checkpoints kept on disk.', 1)

  def __post_init__(self):
    config_lib.check_fields(self)
    for name in ('learning_rate', 'prior_std', 'posterior_init_std'):
      if getattr(self, name) <= 0:
        raise ValueError(f'--{name} must be positive, got '
                         f'{getattr(self, name)}.')
    if self.random_sign_init == 0 or self.random_sign_init > 1:
      raise ValueError(f'--random_sign_init must be in (0, 1] (random signs) '
                       f'or negative (N(1, std^2)), got '
                       f'{self.random_sign_init}.')
    if self.dropout_rate >= 1.0:
      raise ValueError(f'--dropout_rate must be below 1, got '
                       f'{self.dropout_rate}.')
    config_lib.check_target_fits_dataset(self.target, self.dataset)
    self.check_data_options()
    if self.warmup_steps >= self.steps:
      raise ValueError(f'--warmup_steps ({self.warmup_steps}) must be smaller '
                       f'than --steps ({self.steps}).')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """One absl flag per BaselineConfig field (see `config.define_flags`)."""
  config_lib.define_flags(fv, BaselineConfig)


def from_flags(fv: flags.FlagValues = flags.FLAGS) -> BaselineConfig:
  """Builds (and validates) a BaselineConfig from parsed flags."""
  return config_lib.from_flags(fv, BaselineConfig)


# ------------------------------------------------------------------ models
# Each model holds its variables (`weights`) and gives members in the
# HyperGAN's format: `train_params(rng, n)` inside the train step (drawn from
# the checkpointed generator) and `sample(n, seed)` for evaluation
# (stateless, reproducible from seed). `max_members`: None, or K.


def _seeds(seed: int, salt: int, count: int) -> tf.Tensor:
  """count stateless seeds [count, 2] derived from (seed, salt)."""
  return tf.random.experimental.stateless_split(
      tf.constant([seed, salt], tf.int64), count)


def _he_kernels(spec: targets.TargetSpec, shape_prefix: tuple[int, ...],
                seed: int) -> list[tf.Tensor]:
  """He-normal kernels (std sqrt(2 / fan_in)) of every layer."""
  seeds = _seeds(seed, 0, len(spec.layers))
  return [tf.random.stateless_normal((*shape_prefix, *k_shape), seeds[i]) *
          math.sqrt(2.0 / fan_in)
          for i, ((k_shape, _), fan_in) in enumerate(
              zip(spec.param_shapes, spec.fan_ins))]


class Ensemble(tf.Module):
  """K independently initialised networks, trained side by side."""

  def __init__(self, spec: targets.TargetSpec, cfg: BaselineConfig):
    super().__init__(name='ensemble')
    self.spec = spec
    self.max_members = k = cfg.num_members
    # Member i's kernels are its own slices of one seeded draw: K
    # independent He-normal initialisations.
    self.kernels = [tf.Variable(kernel, name=f'kernel_{i}') for i, kernel in
                    enumerate(_he_kernels(spec, (k,), cfg.seed))]
    self.biases = [tf.Variable(tf.zeros((k, *b_shape)), name=f'bias_{i}')
                   for i, (_, b_shape) in enumerate(spec.param_shapes)]

  @property
  def weights(self) -> list[tf.Variable]:
    return self.kernels + self.biases

  def train_params(self, rng: tf.random.Generator, n: int):
    del rng
    if n != self.max_members:
      raise ValueError(f'An ensemble trains all its {self.max_members} '
                       f'members at once, not {n}.')
    return list(zip(self.kernels, self.biases))

  def sample(self, n: int, seed: int):
    return _choose(self.train_params(None, self.max_members), n, seed)


def _choose(params, n: int, seed: int):
  """n distinct of K members [K, ...], chosen by a permutation seeded by seed."""
  k = params[0][0].shape[0]
  if not 1 <= n <= k:
    raise ValueError(f'This ensemble has {k} members; cannot sample {n}.')
  order = tf.random.experimental.stateless_shuffle(
      tf.range(k), tf.constant([seed, 1], tf.int64))[:n]
  return [(tf.gather(kernel, order), tf.gather(bias, order))
          for kernel, bias in params]


class McDropout(tf.Module):
  """One network; members are dropout masks folded into its kernels."""

  def __init__(self, spec: targets.TargetSpec, cfg: BaselineConfig):
    super().__init__(name='mc_dropout')
    self.spec, self.rate = spec, cfg.dropout_rate
    self.max_members = None
    self.kernels = [tf.Variable(kernel, name=f'kernel_{i}') for i, kernel in
                    enumerate(_he_kernels(spec, (), cfg.seed))]
    self.biases = [tf.Variable(tf.zeros(b_shape), name=f'bias_{i}')
                   for i, (_, b_shape) in enumerate(spec.param_shapes)]

  @property
  def weights(self) -> list[tf.Variable]:
    return self.kernels + self.biases

  @property
  def mask_sizes(self) -> list[int]:
    """Inputs dropped per layer (None for the first layer: no dropout)."""
    return [None] + [k_shape[-2] for k_shape, _ in self.spec.param_shapes[1:]]

  def fold(self, n: int, uniforms: list[tf.Tensor | None]):
    """n members from uniforms [n, inputs] per layer: keep where >= rate."""
    params = []
    for kernel, bias, u in zip(self.kernels, self.biases, uniforms):
      k = tf.broadcast_to(kernel[None], [n, *kernel.shape])
      if u is not None:
        keep = tf.cast(u >= self.rate, k.dtype) / (1.0 - self.rate)
        # Dense kernels [n, in, out]; conv kernels [n, h, w, in, out].
        k *= tf.reshape(keep, [n] + [1] * (len(kernel.shape) - 2) +
                        [kernel.shape[-2], 1])
      params.append((k, tf.broadcast_to(bias[None], [n, *bias.shape])))
    return params

  def train_params(self, rng: tf.random.Generator, n: int):
    return self.fold(n, [None if size is None else rng.uniform([n, size])
                         for size in self.mask_sizes])

  def sample(self, n: int, seed: int):
    seeds = _seeds(seed, 2, len(self.mask_sizes))
    return self.fold(n, [
        None if size is None else tf.random.stateless_uniform([n, size],
                                                              seeds[i])
        for i, size in enumerate(self.mask_sizes)])


class Variational(tf.Module):
  """A mean-field Gaussian posterior over every parameter of the network."""

  def __init__(self, spec: targets.TargetSpec, cfg: BaselineConfig):
    super().__init__(name='variational')
    self.spec = spec
    self.max_members = None
    self.prior_std = cfg.prior_std
    rho = float(tfp.math.softplus_inverse(cfg.posterior_init_std))
    shapes = [shape for pair in spec.param_shapes for shape in pair]
    kernels = _he_kernels(spec, (), cfg.seed)
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

  def _draw(self, n: int, seeds: tf.Tensor):
    flat = [q.sample(n, seed=tf.cast(seeds[i], tf.int32))
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
    return self._draw(n, _seeds(seed, 3, len(self.locs)))


class BatchEnsemble(tf.Module):
  """Shared kernels; member k folds its rank-1 factor r_k s_k^T into them."""

  def __init__(self, spec: targets.TargetSpec, cfg: BaselineConfig):
    super().__init__(name='batch_ensemble')
    self.spec = spec
    self.max_members = k = cfg.num_members
    self.kernels = [tf.Variable(kernel, name=f'kernel_{i}') for i, kernel in
                    enumerate(_he_kernels(spec, (), cfg.seed))]
    seeds = _seeds(cfg.seed, 4, 2 * len(spec.layers))
    # Kernels are [..., in, out] (dense and conv alike): r scales the input
    # axis, s the output axis. Named 'fast_weight' so decay leaves them.
    self.fast_in, self.fast_out = [], []
    for i, (k_shape, _) in enumerate(spec.param_shapes):
      self.fast_in.append(tf.Variable(
          _fast_init((k, k_shape[-2]), cfg.random_sign_init, seeds[2 * i]),
          name=f'fast_weight_in_{i}'))
      self.fast_out.append(tf.Variable(
          _fast_init((k, k_shape[-1]), cfg.random_sign_init,
                     seeds[2 * i + 1]), name=f'fast_weight_out_{i}'))
    self.biases = [tf.Variable(tf.zeros((k, *b_shape)), name=f'bias_{i}')
                   for i, (_, b_shape) in enumerate(spec.param_shapes)]

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
    return _choose(self.train_params(None, self.max_members), n, seed)


def _fast_init(shape: tuple[int, int], random_sign_init: float,
               seed: tf.Tensor) -> tf.Tensor:
  """Random signs (+1 with probability p > 0) or N(1, (-p)^2) for p < 0."""
  if random_sign_init > 0:
    plus = tf.random.stateless_uniform(shape, seed) < random_sign_init
    return tf.where(plus, 1.0, -1.0)
  return 1.0 - random_sign_init * tf.random.stateless_normal(shape, seed)


MODELS = {'ensemble': Ensemble, 'mc_dropout': McDropout,
          'variational': Variational, 'batch_ensemble': BatchEnsemble}


# ----------------------------------------------------------------- trainer


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
    self.model = MODELS[cfg.method](self.spec, cfg)
    self.kl_scale = (cfg.kl_weight / num_train_examples
                     if num_train_examples else None)
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
    self.tiled = cfg.method == 'batch_ensemble'
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
      losses = {'task_loss': task_loss}
      if cfg.method == 'ensemble':
        # The sum of the members' losses: each trains as if alone.
        loss = m * task_loss
      elif cfg.method == 'variational':
        if self.kl_scale is None:
          raise ValueError('Training a variational baseline needs '
                           'num_train_examples to scale the KL term.')
        kl = self.model.kl_divergence()
        losses['kl'] = kl
        loss = task_loss + self.kl_scale * kl
      else:
        loss = task_loss
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
    params = self.sample(self._clamp(num_members))
    outputs, labels, _ = evaluation.collect(
        lambda x: self.logits(params, x), dataset)
    return outputs, labels

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
  cfg = BaselineConfig(**{**config, 'run_dir': run_dir})
  model = MODELS[cfg.method](cfg.spec, cfg)
  step = members.restore(run_dir, 'scripts/train_baseline.py', model=model)
  return members.Loaded(
      spec=cfg.spec, dataset=cfg.dataset, data_dir=cfg.data_dir,
      step=step, forward_method=cfg.forward_method,
      sample_fn=model.sample, max_members=model.max_members)


for _method in METHODS:
  members.register(_method)(_load)

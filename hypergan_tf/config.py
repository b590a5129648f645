"""Training configuration: one dataclass, and the absl flags that fill it.

Flag names equal field names, so `configs/*.flags` files, `TrainConfig(...)`
in tests and `results.json` all speak the same vocabulary. Per-field checks run
at flag parsing (absl bounds and enums); cross-field checks run in
`TrainConfig.__post_init__` and raise `ValueError` naming the fix.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from absl import flags

from hypergan_tf import data
from hypergan_tf import diversity
from hypergan_tf import hypernet
from hypergan_tf import ownership
from hypergan_tf import targets


def flag_field(default, help_text: str, lower=None, upper=None,
               choices=None):
  """A config field that also carries its flag's help, bounds and choices."""
  return dataclasses.field(default=default, metadata=dict(
      help=help_text, lower=lower, upper=upper, choices=choices))


_field = flag_field  # Short, for the tables of fields below.


def check_fields(config) -> None:
  """Checks each flag_field of a config dataclass against choices and bounds.

  Raises:
    ValueError: naming the flag, the value and what is allowed.
  """
  for field in dataclasses.fields(config):
    value, meta = getattr(config, field.name), field.metadata
    if meta['choices'] and value not in meta['choices']:
      raise ValueError(f'Unknown --{field.name} {value!r}; choose one of '
                       f'{list(meta["choices"])}.')
    if meta['lower'] is not None and value < meta['lower']:
      raise ValueError(f'--{field.name} must be >= {meta["lower"]}, got '
                       f'{value}.')
    if meta['upper'] is not None and value > meta['upper']:
      raise ValueError(f'--{field.name} must be <= {meta["upper"]}, got '
                       f'{value}.')


def check_target_fits_dataset(target: str, dataset: str) -> None:
  """Raises ValueError unless the target's input and output fit the data."""
  spec, info = targets.get_target(target), data.DATASETS[dataset]
  if tuple(spec.input_shape) != info.input_shape:
    raise ValueError(
        f'Target {target!r} takes inputs {spec.input_shape} but dataset '
        f'{dataset!r} has examples {info.input_shape}; pick a matching '
        '--target.')
  if spec.output_dim != info.num_outputs:
    raise ValueError(
        f'Target {target!r} has {spec.output_dim} outputs but dataset '
        f'{dataset!r} needs {info.num_outputs}; pick a matching --target.')


STANDARDIZE = ('auto', 'on', 'off')


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How any trainer treats its run directory; shared by every config."""
  take_over: bool = _field(
      False, 'Take the run directory from the training named in its owner '
      'record even if that record looks live: for a run on another host '
      f'known to be dead, whose record goes stale only after '
      f'{ownership.STALE_AFTER_S / 60:.0f} minutes without heartbeat. A dead '
      'run on this host is taken over without it.')


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """How any trainer reads its data; shared by HyperGAN and baseline configs.

  Subclasses have `dataset` and `target` fields.
  """
  augment: bool = _field(
      False, "Augment training images with the dataset's augmentation "
      '(CIFAR: 4-pixel padding + random crop + horizontal flip), keyed on '
      '(seed, step) so resumes stay exact.')
  standardize: str = _field(
      'auto', 'Per-channel input standardisation inside the target network '
      '(inputs stay [0, 1] pixels everywhere else): auto = on for datasets '
      'with channel statistics (CIFAR), off otherwise.', choices=STANDARDIZE)
  validation_size: int = _field(
      0, 'Examples held out of the training split (fixed, stratified) for '
      'periodic evaluation and choosing the reported checkpoint; 0 = off '
      '(periodic evaluation on test, the last step is reported).', 0)

  def check_data_options(self) -> None:
    """Raises ValueError for options the dataset does not support."""
    info = data.get_spec(self.dataset)
    if self.augment:
      data.check_augmentation(self.dataset)
    if self.standardize == 'on' and info.channel_mean is None:
      raise ValueError(f'Dataset {self.dataset!r} has no channel statistics '
                       'to standardise with; use --standardize=auto or off.')

  @property
  def spec(self) -> targets.TargetSpec:
    """The target network, standardising its inputs if asked to."""
    spec = targets.get_target(self.target)
    info = data.DATASETS[self.dataset]
    if self.standardize == 'off' or info.channel_mean is None:
      return spec
    return targets.standardized(spec, info.channel_mean, info.channel_std)


@dataclasses.dataclass(frozen=True)
class TrainConfig(RunOptions, DataOptions):
  """Everything a training run depends on; each field is also a flag."""
  run_dir: str = _field('', 'Directory for checkpoints, TensorBoard '
                        'summaries and results.json; rerunning resumes it.')
  dataset: str = _field('mnist', 'Dataset: a TFDS dataset, a fixed subset '
                        '(mnist5000, cifar10_5000, cifar5) or the 1-D '
                        'toy_regression.', choices=data.TRAINABLE)
  target: str = _field('mnist', 'Target network spec.',
                       choices=tuple(sorted(targets.TARGETS)))
  data_dir: str | None = _field(
      None, 'TFDS data directory (default: $TFDS_DATA_DIR, then TFDS '
      'default).')
  download: bool = _field(True, 'Let TFDS download a missing dataset.')
  seed: int = _field(0, 'Seed for weights, noise and shuffling.')
  num_networks: int = _field(32, 'Networks sampled per training step.', 1)
  batch_size: int = _field(100, 'Examples per step (all networks see them, '
                           'unless --per_network_batches).', 1)
  per_network_batches: bool = _field(
      False, 'Give each sampled network its own --batch_size examples '
      '(num_networks x batch_size distinct, augmented images per step, as '
      "MIMO gives each member its own shuffled batch) instead of one batch "
      'shared by all.')
  steps: int = _field(5000, 'Training steps.', 1)
  learning_rate: float = _field(1e-3, 'Peak learning rate of the '
                                'generators (and of the other parts unless '
                                'set below).', 0.0)
  mixer_learning_rate: float = _field(
      0.0, 'Peak learning rate of the mixer; 0 = --learning_rate (the '
      "authors' CIFAR code: 5e-3).", 0.0)
  discriminator_learning_rate: float = _field(
      0.0, 'Peak learning rate of the code discriminator; 0 = '
      "--learning_rate (the authors' CIFAR code: 5e-5).", 0.0)
  lr_schedule: str = _field('cosine', 'Schedule after the warm-up.',
                            choices=('cosine', 'constant'))
  warmup_steps: int = _field(200, 'Linear learning-rate warm-up steps.', 0)
  min_lr_ratio: float = _field(0.0, 'Final cosine learning rate as a '
                               'fraction of the peak.', 0.0, 1.0)
  optimizer: str = _field('adam', 'Optimizer.', choices=('adam', 'adamw'))
  weight_decay: float = _field(
      0.0, 'Decoupled weight decay of kernels (BatchNorm and biases are '
      'skipped), scaled by each part\'s learning rate.', 0.0)
  clipnorm: float = _field(0.0, 'Global gradient-norm clip; 0 disables.',
                           0.0)
  adam_beta_1: float = _field(0.9, 'Adam beta_1.', 0.0, 1.0)
  adam_beta_2: float = _field(0.999, 'Adam beta_2.', 0.0, 1.0)
  beta: float = _field(0.1, 'Weight of the adversarial loss on the codes.',
                       0.0)
  max_adversarial_ratio: float = _field(
      0.0, 'Caps the weighted adversarial term at this multiple of the task '
      'loss, so it cannot swamp the task early on (0: no cap).', 0.0)
  diversity_weight: float = _field(
      0.0, 'Weight of the function-space diversity term in the generator '
      'loss (beyond the paper; 0 = the plain HyperGAN).', 0.0)
  diversity_term: str = _field(
      'mutual_information', 'Diversity term: mutual_information (maximise '
      "the networks' disagreement), repulsion (RBF kernel between their "
      'predictive distributions, minimised) or gfsf (function-space '
      "particle VI: the Stein estimate of the networks' density score on "
      'their logits; weight about 1 / training examples).',
      choices=diversity.TERMS)
  diversity_inputs: str = _field(
      'off_manifold', 'Inputs of the diversity term: off_manifold (noise, '
      'inverted, superposed and tile-shuffled training images), batch (the '
      'training batch itself) or batch_and_context (the batch plus '
      'label-destroying zoomed crops, cutouts, mixups and tile shuffles of '
      'its first images).', choices=diversity.INPUTS)
  diversity_batch_size: int = _field(
      50, 'Off-manifold inputs per step, made from the first images of '
      'the batch.', 1)
  diversity_pairs: str = _field(
      'all', 'Which networks the diversity term compares: all (every pair '
      'of a step\'s networks) or within_mode (only networks of one mode, '
      'with --modes >= 2 and two or more networks of each mode a step; the '
      "term's gradient then moves the generated part of each network, not "
      "the modes' bases).", choices=diversity.PAIRS)
  pretrain_mixer_steps: int = _field(
      1000, 'Most mixer pre-training steps (0 disables).', 0)
  pretrain_mixer_threshold: float = _field(
      0.1, 'Stop mixer pre-training once the per-dimension moment loss '
      '(mean^2 + (variance - 1)^2, averaged over code dimensions, + the mean '
      'squared off-diagonal covariance) is below this.', 0.0)
  noise_dim: int = _field(256, 'Size of the mixer input noise s.', 1)
  code_dim: int = _field(64, 'Size of each layer code.', 1)
  hidden_units: int = _field(512, 'Width of the hypernetwork MLPs.', 1)
  hidden_layers: int = _field(2, 'Hidden layers of the hypernetwork MLPs.', 0)
  activation: str = _field(
      'relu', 'Keras activation of the MLPs. The paper uses elu: more '
      'diverse networks on MNIST (configs/mnist.flags), unstable on CIFAR at '
      'learning rate 1e-3 (RESULTS.md).')
  batch_norm: bool = _field(True, 'BatchNorm in mixer and generators.')
  init_gain: float = _field(1.0, 'Generated kernels start at init_gain x He '
                            'scale.', 0.0)
  weight_noise: float = _field(
      0.0, 'Noise floor on generated parameters: + weight_noise x the '
      "layer's initial scale x N(0, 1), drawn from each network's input "
      'noise (0 = off).', 0.0)
  head: str = _field(
      'full', "What each layer generator emits: 'full', every parameter "
      "(the paper); 'rank1', a rank-1 factor r s^T of a shared learned "
      "kernel plus the bias (in + out + bias outputs per layer); 'low_rank', "
      'the full head factorised through --head_rank units.',
      choices=hypernet.HEADS)
  head_rank: int = _field(64, "Bottleneck of --head=low_rank.", 1)
  modes: int = _field(
      1, 'Learned base networks, each initialised independently: a network '
      "is its mode's base plus the generated parameters, its mode a "
      'function of its input noise (hypergan_tf/modes.py). 1 = off.', 1)
  # 'loop' measured fastest on CPU for the train step at every N
  # (benchmarks/throughput.py, BUILD_NOTES.md); all methods agree exactly.
  forward_method: str = _field('loop', 'How conv layers batch over '
                               'sampled networks.',
                               choices=targets.FORWARD_METHODS)
  strategy: str = _field(
      'default', 'tf.distribute strategy: default (one device, or all GPUs '
      'mirrored when there are several), mirrored (all local GPUs, else '
      'CPUs), multi_worker (machines listed in TF_CONFIG).',
      choices=('default', 'mirrored', 'multi_worker'))
  jit_compile: bool = _field(False, 'Compile the gradient computation with '
                             'XLA.')
  mixed_precision: bool = _field(
      False, 'Mixed precision: bfloat16 compute on CPU, float16 with loss '
      'scaling on GPU; variables stay float32.')
  deterministic: bool = _field(
      False, 'Deterministic ops (tf.config.experimental.'
      'enable_op_determinism): a resumed run repeats an uninterrupted one '
      'bit for bit; somewhat slower.')
  log_every: int = _field(100, 'Steps between progress lines and training '
                          'summaries.', 1)
  eval_every: int = _field(1000, 'Steps between test evaluations.', 1)
  eval_networks: int = _field(10, 'Networks sampled for periodic '
                              'evaluation.', 1)
  final_eval_networks: int = _field(100, 'Networks sampled for the final '
                                    'evaluation.', 10)
  checkpoint_every: int = _field(500, 'Steps between checkpoints.', 1)
  keep_checkpoints: int = _field(3, 'Checkpoints kept on disk.', 1)

  def __post_init__(self):
    check_fields(self)
    if self.learning_rate <= 0:
      raise ValueError(f'--learning_rate must be positive, got '
                       f'{self.learning_rate}.')
    check_target_fits_dataset(self.target, self.dataset)
    self.check_data_options()
    if self.warmup_steps >= self.steps:
      raise ValueError(f'--warmup_steps ({self.warmup_steps}) must be smaller '
                       f'than --steps ({self.steps}).')
    self.hypernet  # Validates the hypernetwork sizes.
    self.check_diversity()

  def check_diversity(self) -> None:
    """Raises ValueError where the diversity term cannot work."""
    if self.diversity_pairs == 'within_mode':
      self._check_within_mode()
    if not self.diversity_weight:
      return
    if self.task != 'classification':
      raise ValueError('--diversity_weight needs a classification dataset '
                       f'({self.dataset!r} is {self.task}); set it to 0.')
    if self.num_networks < 2:
      raise ValueError('--diversity_weight compares networks with each '
                       'other: it needs --num_networks >= 2, got '
                       f'{self.num_networks}.')

  def _check_within_mode(self) -> None:
    if self.modes < 2:
      raise ValueError('--diversity_pairs=within_mode compares networks of '
                       f'one mode: it needs --modes >= 2, got {self.modes}.')
    if self.num_networks < 2 * self.modes:
      raise ValueError(
          '--diversity_pairs=within_mode needs two networks of each mode a '
          f'step: --num_networks >= 2 x --modes = {2 * self.modes}, got '
          f'{self.num_networks}.')

  @property
  def task(self) -> str:
    """'classification' or 'regression', from the dataset."""
    return data.DATASETS[self.dataset].task

  @property
  def hypernet(self) -> hypernet.HyperNetConfig:
    names = {f.name for f in dataclasses.fields(hypernet.HyperNetConfig)}
    return hypernet.HyperNetConfig(
        **{name: getattr(self, name) for name in names})

  def architecture_changes(self, other: 'TrainConfig') -> dict[str, tuple]:
    """Fields that shape the model and differ: {name: (other's, ours)}."""
    return {name: (getattr(other, name), getattr(self, name))
            for name in ARCHITECTURE_FIELDS
            if getattr(other, name) != getattr(self, name)}

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


# Fields a checkpoint depends on: a run directory cannot change them.
ARCHITECTURE_FIELDS = ('dataset', 'target', 'noise_dim', 'code_dim',
                       'hidden_units', 'hidden_layers', 'activation', 'head',
                       'head_rank', 'modes',
                       'batch_norm', 'optimizer', 'standardize',
                       'validation_size')


def define_flags(fv: flags.FlagValues = flags.FLAGS,
                 config_class: type = TrainConfig) -> None:
  """Defines one absl flag per field of config_class; bounds fail at parsing."""
  for field in dataclasses.fields(config_class):
    meta, default = field.metadata, field.default
    kwargs = dict(flag_values=fv)
    if field.name == 'run_dir':
      flags.DEFINE_string('run_dir', None, meta['help'], required=True,
                          **kwargs)
    elif meta['choices']:
      flags.DEFINE_enum(field.name, default, list(meta['choices']),
                        meta['help'], **kwargs)
    elif isinstance(default, bool):
      flags.DEFINE_bool(field.name, default, meta['help'], **kwargs)
    elif isinstance(default, (int, float)):
      define = (flags.DEFINE_float if isinstance(default, float)
                else flags.DEFINE_integer)
      define(field.name, default, meta['help'], lower_bound=meta['lower'],
             upper_bound=meta['upper'], **kwargs)
    else:
      flags.DEFINE_string(field.name, default, meta['help'], **kwargs)


def from_flags(fv: flags.FlagValues = flags.FLAGS,
               config_class: type = TrainConfig):
  """Builds (and validates) a config_class instance from parsed flags."""
  return config_class(**{f.name: fv[f.name].value
                         for f in dataclasses.fields(config_class)})

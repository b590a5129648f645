"""The config every method extends: one dataclass of shared fields and flags.

Flag names equal field names, so `configs/*.flags` files, `TrainConfig(...)` /
`BaselineConfig(...)` in tests and `results.json` all speak the same
vocabulary. Per-field checks run at flag parsing (absl bounds and enums);
cross-field checks run in `__post_init__` and raise `ValueError` naming the
fix. A method's config subclasses `RunConfig` and adds only its own fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from absl import flags

from hypergan_tf.datasets import data
from hypergan_tf.model import targets
from hypergan_tf.runtime import ownership


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


def require(holds: bool, flag: str, must: str, value) -> None:
  """Raises ValueError('--flag must be <must>, got <value>.') unless holds."""
  if not holds:
    raise ValueError(f'--{flag} must be {must}, got {value}.')


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
METHOD_DEFAULT = -1  # --warmup_steps: the method's own default.


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """The fields every method's run has; each field is also a flag.

  Subclasses add their method's fields, set `DEFAULT_WARMUP_STEPS` and call
  `check_run()` from their `__post_init__`.
  """
  DEFAULT_WARMUP_STEPS: ClassVar[int] = 0
  # Flags removed from the project: {name: (the value every run had unless
  # set, the last commit that had the flag)}. Old config.json files that
  # hold the unset value load; others name the commit that can read them.
  REMOVED: ClassVar[dict[str, tuple[Any, str]]] = {}

  run_dir: str = _field('', 'Directory for checkpoints, TensorBoard '
                        'summaries and results.json; rerunning resumes it.')
  dataset: str = _field('mnist', 'Dataset: a TFDS dataset, a fixed subset '
                        '(mnist5000, cifar10_5000, cifar5) or the 1-D '
                        'toy_regression.', choices=data.TRAINABLE)
  target: str = _field(
      '', "Target network spec; '' = the dataset's default_target "
      '(hypergan_tf/datasets/registry.py).',
      choices=('',) + tuple(sorted(targets.TARGETS)))
  data_dir: str | None = _field(
      None, 'TFDS data directory (default: $TFDS_DATA_DIR, then TFDS '
      'default).')
  download: bool = _field(True, 'Let TFDS download a missing dataset.')
  seed: int = _field(0, 'Seed for initialisation, sampled noise, masks or '
                     'weights, and shuffling.')
  batch_size: int = _field(100, 'Examples per step (HyperGAN: all networks '
                           'see them, unless --per_network_batches; '
                           'baselines: per member, except batch_ensemble, '
                           'whose K members share one batch).', 1)
  steps: int = _field(5000, 'Training steps.', 1)
  learning_rate: float = _field(1e-3, 'Peak learning rate (HyperGAN: of the '
                                'generators, and of the other parts unless '
                                'set on their own).', 0.0)
  lr_schedule: str = _field('cosine', 'Schedule after the warm-up.',
                            choices=('cosine', 'constant'))
  warmup_steps: int = _field(
      METHOD_DEFAULT, 'Linear learning-rate warm-up steps; -1 = the '
      "method's default (HyperGAN 200, baselines 0).", METHOD_DEFAULT)
  min_lr_ratio: float = _field(0.0, 'Final cosine learning rate as a '
                               'fraction of the peak.', 0.0, 1.0)
  optimizer: str = _field('adam', 'Optimizer.', choices=('adam', 'adamw'))
  weight_decay: float = _field(
      0.0, 'Decoupled weight decay of kernels (BatchNorm and biases are '
      'skipped), scaled by each part\'s learning rate.', 0.0)
  clipnorm: float = _field(0.0, 'Global gradient-norm clip; 0 disables (for '
                           'an ensemble it couples the members).', 0.0)
  adam_beta_1: float = _field(0.9, 'Adam beta_1.', 0.0, 1.0)
  adam_beta_2: float = _field(0.999, 'Adam beta_2.', 0.0, 1.0)
  # 'loop' measured fastest on CPU for the train step at every N
  # (benchmarks/throughput.py, BUILD_NOTES.md); all methods agree exactly.
  forward_method: str = _field('loop', 'How conv layers batch over '
                               'sampled networks (members).',
                               choices=targets.FORWARD_METHODS)
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
  take_over: bool = _field(
      False, 'Take the run directory from the training named in its owner '
      'record even if that record looks live: for a run on another host '
      f'known to be dead, whose record goes stale only after '
      f'{ownership.STALE_AFTER_S / 60:.0f} minutes without heartbeat. A dead '
      'run on this host is taken over without it.')
  log_every: int = _field(100, 'Steps between progress lines and training '
                          'summaries.', 1)
  eval_every: int = _field(1000, 'Steps between test evaluations.', 1)
  checkpoint_every: int = _field(500, 'Steps between checkpoints.', 1)
  keep_checkpoints: int = _field(3, 'Checkpoints kept on disk.', 1)

  def check_run(self) -> None:
    """The checks every method's config runs first in `__post_init__`."""
    if not self.target and self.dataset in data.DATASETS:
      object.__setattr__(self, 'target',
                         data.DATASETS[self.dataset].default_target or '')
    if self.warmup_steps == METHOD_DEFAULT:
      object.__setattr__(self, 'warmup_steps', self.DEFAULT_WARMUP_STEPS)
    check_fields(self)
    require(self.learning_rate > 0, 'learning_rate', 'positive',
            self.learning_rate)
    check_target_fits_dataset(self.target, self.dataset)
    self.check_data_options()
    if self.warmup_steps >= self.steps:
      raise ValueError(f'--warmup_steps ({self.warmup_steps}) must be smaller '
                       f'than --steps ({self.steps}).')

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

  @property
  def task(self) -> str:
    """'classification' or 'regression', from the dataset."""
    return data.DATASETS[self.dataset].task

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, config: dict[str, Any], **overrides):
    """The config of a config.json, old ones included.

    Fields of removed flags are dropped when they hold the value every run
    had without the flag.

    Raises:
      ValueError: the run set a removed flag; names the commit that has it.
    """
    config = {**config, **overrides}
    for name, (unset, commit) in cls.REMOVED.items():
      if name in config:
        value = config.pop(name)
        if value != unset:
          raise ValueError(
              f'This run set --{name}={value!r}, a flag removed after commit '
              f'{commit}; read it with that commit (git checkout {commit}).')
    return cls(**config)


def define_flags(fv: flags.FlagValues, config_class: type) -> None:
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


def from_flags(fv: flags.FlagValues, config_class: type):
  """Builds (and validates) a config_class instance from parsed flags."""
  return config_class(**{f.name: fv[f.name].value
                         for f in dataclasses.fields(config_class)})

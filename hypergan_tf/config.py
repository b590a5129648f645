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
from hypergan_tf import hypernet
from hypergan_tf import targets


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run depends on (see `define_flags` for help)."""
  run_dir: str = ''
  dataset: str = 'mnist'
  target: str = 'mnist'
  data_dir: str | None = None
  download: bool = True
  seed: int = 0
  num_networks: int = 32
  batch_size: int = 100
  steps: int = 5000
  learning_rate: float = 1e-3
  lr_schedule: str = 'cosine'
  warmup_steps: int = 200
  min_lr_ratio: float = 0.0
  optimizer: str = 'adam'
  weight_decay: float = 0.0
  clipnorm: float = 0.0
  adam_beta_1: float = 0.9
  adam_beta_2: float = 0.999
  beta: float = 0.1
  pretrain_mixer_steps: int = 1000
  pretrain_mixer_threshold: float = 0.1
  noise_dim: int = 256
  code_dim: int = 64
  hidden_units: int = 512
  hidden_layers: int = 2
  activation: str = 'relu'
  batch_norm: bool = True
  init_gain: float = 1.0
  forward_method: str = 'grouped'
  log_every: int = 100
  eval_every: int = 1000
  eval_networks: int = 10
  final_eval_networks: int = 100
  checkpoint_every: int = 500
  keep_checkpoints: int = 3

  def __post_init__(self):
    spec = targets.get_target(self.target)  # Raises for unknown names.
    if self.dataset not in data.SUPPORTED:
      raise ValueError(f'Unknown dataset {self.dataset!r}; choose one of '
                       f'{data.SUPPORTED}.')
    info = data.SHAPES[self.dataset]
    if tuple(spec.input_shape) != info.image_shape:
      raise ValueError(
          f'Target {self.target!r} takes inputs {spec.input_shape} but '
          f'dataset {self.dataset!r} has images {info.image_shape}; pick a '
          'matching --target.')
    if spec.output_dim != info.num_classes:
      raise ValueError(
          f'Target {self.target!r} has {spec.output_dim} outputs but dataset '
          f'{self.dataset!r} has {info.num_classes} classes.')
    positive = ('num_networks', 'batch_size', 'steps', 'learning_rate',
                'log_every', 'eval_every', 'eval_networks',
                'final_eval_networks', 'checkpoint_every', 'keep_checkpoints')
    for name in positive:
      if getattr(self, name) <= 0:
        raise ValueError(f'--{name} must be positive, got '
                         f'{getattr(self, name)}.')
    for name in ('warmup_steps', 'pretrain_mixer_steps', 'weight_decay',
                 'clipnorm', 'beta'):
      if getattr(self, name) < 0:
        raise ValueError(f'--{name} must be >= 0, got {getattr(self, name)}.')
    if self.warmup_steps >= self.steps:
      raise ValueError(f'--warmup_steps ({self.warmup_steps}) must be smaller '
                       f'than --steps ({self.steps}).')
    if self.final_eval_networks < 10:
      raise ValueError('--final_eval_networks must be >= 10 to report the '
                       '10-network ensemble.')
    if self.forward_method not in targets.FORWARD_METHODS:
      raise ValueError(f'Unknown --forward_method {self.forward_method!r}; '
                       f'choose one of {targets.FORWARD_METHODS}.')
    self.hypernet  # Validates the hypernetwork sizes.

  @property
  def spec(self) -> targets.TargetSpec:
    return targets.get_target(self.target)

  @property
  def hypernet(self) -> hypernet.HyperNetConfig:
    names = {f.name for f in dataclasses.fields(hypernet.HyperNetConfig)}
    return hypernet.HyperNetConfig(
        **{name: getattr(self, name) for name in names})

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def define_flags() -> None:
  """Defines one absl flag per TrainConfig field (call once, in scripts)."""
  d = TrainConfig()
  f = flags
  f.DEFINE_string('run_dir', None, 'Directory for checkpoints, TensorBoard '
                  'summaries and results.json; rerunning resumes from it.',
                  required=True)
  f.DEFINE_enum('dataset', d.dataset, list(data.SUPPORTED), 'TFDS dataset.')
  f.DEFINE_enum('target', d.target, sorted(targets.TARGETS),
                'Target network spec.')
  f.DEFINE_string('data_dir', d.data_dir,
                  'TFDS data directory (default: $TFDS_DATA_DIR, then TFDS '
                  "default).")
  f.DEFINE_bool('download', d.download,
                'Let TFDS download a dataset missing from data_dir.')
  f.DEFINE_integer('seed', d.seed, 'Seed for weights, noise and shuffling.')
  f.DEFINE_integer('num_networks', d.num_networks,
                   'Networks sampled per training step.', lower_bound=1)
  f.DEFINE_integer('batch_size', d.batch_size,
                   'Examples per training step (all networks see them).',
                   lower_bound=1)
  f.DEFINE_integer('steps', d.steps, 'Training steps.', lower_bound=1)
  f.DEFINE_float('learning_rate', d.learning_rate, 'Peak learning rate.',
                 lower_bound=0.0)
  f.DEFINE_enum('lr_schedule', d.lr_schedule, ['cosine', 'constant'],
                'Learning-rate schedule after warm-up.')
  f.DEFINE_integer('warmup_steps', d.warmup_steps,
                   'Linear learning-rate warm-up steps.', lower_bound=0)
  f.DEFINE_float('min_lr_ratio', d.min_lr_ratio,
                 'Final learning rate of the cosine, as a fraction of the '
                 'peak.', lower_bound=0.0, upper_bound=1.0)
  f.DEFINE_enum('optimizer', d.optimizer, ['adam', 'adamw'], 'Optimizer.')
  f.DEFINE_float('weight_decay', d.weight_decay,
                 'Decoupled weight decay (adamw only).', lower_bound=0.0)
  f.DEFINE_float('clipnorm', d.clipnorm,
                 'Global gradient-norm clipping; 0 disables.', lower_bound=0.0)
  f.DEFINE_float('adam_beta_1', d.adam_beta_1, 'Adam beta_1.',
                 lower_bound=0.0, upper_bound=1.0)
  f.DEFINE_float('adam_beta_2', d.adam_beta_2, 'Adam beta_2.',
                 lower_bound=0.0, upper_bound=1.0)
  f.DEFINE_float('beta', d.beta,
                 'Weight of the adversarial loss on the codes.',
                 lower_bound=0.0)
  f.DEFINE_integer('pretrain_mixer_steps', d.pretrain_mixer_steps,
                   'Most mixer pre-training steps (0 disables).',
                   lower_bound=0)
  f.DEFINE_float('pretrain_mixer_threshold', d.pretrain_mixer_threshold,
                 'Stop mixer pre-training once the mean/covariance loss is '
                 'below this.', lower_bound=0.0)
  f.DEFINE_integer('noise_dim', d.noise_dim, 'Size of the noise s.',
                   lower_bound=1)
  f.DEFINE_integer('code_dim', d.code_dim, 'Size of each layer code.',
                   lower_bound=1)
  f.DEFINE_integer('hidden_units', d.hidden_units,
                   'Width of the hypernetwork MLPs.', lower_bound=1)
  f.DEFINE_integer('hidden_layers', d.hidden_layers,
                   'Hidden layers of the hypernetwork MLPs.', lower_bound=0)
  f.DEFINE_string('activation', d.activation,
                  'Keras activation of the hypernetwork MLPs.')
  f.DEFINE_bool('batch_norm', d.batch_norm,
                'BatchNorm in mixer and generators.')
  f.DEFINE_float('init_gain', d.init_gain,
                 'Generated kernels start at init_gain x He scale.',
                 lower_bound=0.0)
  f.DEFINE_enum('forward_method', d.forward_method,
                list(targets.FORWARD_METHODS),
                'How conv layers batch over sampled networks.')
  f.DEFINE_integer('log_every', d.log_every, 'Steps between progress lines '
                   'and training summaries.', lower_bound=1)
  f.DEFINE_integer('eval_every', d.eval_every, 'Steps between test-set '
                   'evaluations.', lower_bound=1)
  f.DEFINE_integer('eval_networks', d.eval_networks,
                   'Networks sampled for periodic evaluation.', lower_bound=1)
  f.DEFINE_integer('final_eval_networks', d.final_eval_networks,
                   'Networks sampled for the final evaluation.',
                   lower_bound=10)
  f.DEFINE_integer('checkpoint_every', d.checkpoint_every,
                   'Steps between checkpoints.', lower_bound=1)
  f.DEFINE_integer('keep_checkpoints', d.keep_checkpoints,
                   'Checkpoints kept on disk.', lower_bound=1)


def from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
  """Builds (and validates) a TrainConfig from parsed flags."""
  names = [f.name for f in dataclasses.fields(TrainConfig)]
  return TrainConfig(**{name: flag_values[name].value for name in names})

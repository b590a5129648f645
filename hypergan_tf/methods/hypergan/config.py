"""The HyperGAN's config: the fields of `RunConfig` and the method's own.

Flag names equal field names (see `methods/config.py`); cross-field checks run
in `TrainConfig.__post_init__` and raise `ValueError` naming the fix.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from absl import flags

from hypergan_tf.methods import config as base
from hypergan_tf.methods.hypergan import diversity
from hypergan_tf.methods.hypergan import objectives
from hypergan_tf.model import hypernet

_field = base.flag_field
# Old names of the shared helpers, for code written against this module.
flag_field, check_fields = base.flag_field, base.check_fields
check_target_fits_dataset = base.check_target_fits_dataset


@dataclasses.dataclass(frozen=True)
class TrainConfig(base.RunConfig):
  """Everything a HyperGAN run depends on; each field is also a flag."""
  DEFAULT_WARMUP_STEPS: ClassVar[int] = 200
  REMOVED: ClassVar[dict] = {'weight_noise': (0.0, '4409bc9')}

  num_networks: int = _field(32, 'Networks sampled per training step.', 1)
  per_network_batches: bool = _field(
      False, 'Give each sampled network its own --batch_size examples '
      '(num_networks x batch_size distinct, augmented images per step, as '
      "MIMO gives each member its own shuffled batch) instead of one batch "
      'shared by all.')
  network_chunk: int = _field(
      0, 'Run the target networks forward and backward this many at a '
      'time: peak memory holds one chunk\'s activations, the gradients are '
      'the same (hypergan_tf/methods/hypergan/chunked.py). 0: all at once. '
      'Not with --diversity_weight, which compares networks across chunks.',
      0)
  mixer_learning_rate: float = _field(
      0.0, 'Peak learning rate of the mixer; 0 = --learning_rate (the '
      "authors' CIFAR code: 5e-3).", 0.0)
  discriminator_learning_rate: float = _field(
      0.0, 'Peak learning rate of the code discriminator; 0 = '
      "--learning_rate (the authors' CIFAR code: 5e-5).", 0.0)
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
  network_objective: str = _field(
      'shared', "Each sampled network's training objective: shared (one "
      "loss for all, the paper) or label_smoothing (network n's labels "
      'smoothed by --objective_spread x Phi(s_1), a function of its noise '
      'that the generator sees, so that networks of one mode differ as the '
      'optima of different objectives; hypergan_tf/methods/hypergan/'
      'objectives.py).', choices=objectives.OBJECTIVES)
  objective_spread: float = _field(
      0.2, 'Largest per-network hyperparameter of --network_objective: '
      'label smoothing is uniform on [0, this].', 0.0, 0.99)
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
      'function of its input noise (hypergan_tf/model/modes.py). 1 = off.', 1)
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
  eval_networks: int = _field(10, 'Networks sampled for periodic '
                              'evaluation.', 1)
  final_eval_networks: int = _field(100, 'Networks sampled for the final '
                                    'evaluation.', 10)

  def __post_init__(self):
    self.check_run()
    self.hypernet  # Validates the hypernetwork sizes.
    self.check_diversity()
    self.check_objective()

  def check_diversity(self) -> None:
    """Raises ValueError where the diversity term cannot work."""
    if self.diversity_pairs == 'within_mode':
      self._check_within_mode()
    if not self.diversity_weight:
      return
    if self.network_chunk:
      raise ValueError('--diversity_weight compares every pair of networks, '
                       'which --network_chunk runs apart; set one of them '
                       'to 0.')
    if self.task != 'classification':
      raise ValueError('--diversity_weight needs a classification dataset '
                       f'({self.dataset!r} is {self.task}); set it to 0.')
    if self.num_networks < 2:
      raise ValueError('--diversity_weight compares networks with each '
                       'other: it needs --num_networks >= 2, got '
                       f'{self.num_networks}.')

  def check_objective(self) -> None:
    """Raises ValueError where per-network objectives cannot work."""
    if self.network_objective == 'shared':
      return
    flag = f'--network_objective={self.network_objective}'
    if self.task != 'classification':
      raise ValueError(f'{flag} needs a classification dataset '
                       f'({self.dataset!r} is {self.task}); use shared.')
    if self.noise_dim < 2:
      raise ValueError(f'{flag} reads noise coordinate s_1: it needs '
                       f'--noise_dim >= 2, got {self.noise_dim}.')
    if self.network_chunk:
      raise ValueError(f'{flag} gives each network its own loss, which '
                       '--network_chunk does not pass on; set '
                       '--network_chunk=0.')

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
  def hypernet(self) -> hypernet.HyperNetConfig:
    names = {f.name for f in dataclasses.fields(hypernet.HyperNetConfig)}
    return hypernet.HyperNetConfig(
        **{name: getattr(self, name) for name in names})

  def architecture_changes(self, other: 'TrainConfig') -> dict[str, tuple]:
    """Fields that shape the model and differ: {name: (other's, ours)}."""
    return {name: (getattr(other, name), getattr(self, name))
            for name in ARCHITECTURE_FIELDS
            if getattr(other, name) != getattr(self, name)}


# Fields a checkpoint depends on: a run directory cannot change them.
ARCHITECTURE_FIELDS = ('dataset', 'target', 'noise_dim', 'code_dim',
                       'hidden_units', 'hidden_layers', 'activation', 'head',
                       'head_rank', 'modes',
                       'batch_norm', 'optimizer', 'standardize',
                       'validation_size')


def define_flags(fv: flags.FlagValues = flags.FLAGS,
                 config_class: type = TrainConfig) -> None:
  """Defines one absl flag per field of config_class; bounds fail at parsing."""
  base.define_flags(fv, config_class)


def from_flags(fv: flags.FlagValues = flags.FLAGS,
               config_class: type = TrainConfig):
  """Builds (and validates) a config_class instance from parsed flags."""
  return base.from_flags(fv, config_class)

"""The hypernetwork: mixer, per-layer generators and code discriminator.

    s ~ N(0, I) --mixer--> codes [n, K, d] --generator k--> (kernel_k, bias_k)
    discriminator: code [d] -> logit (prior sample = real, code = fake)

All three are Keras models; `HyperNetwork.sample(n)` returns parameter sets in
exactly the shapes the target spec declares, ready for `targets.apply`.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from hypergan_tf.model import modes as modes_lib
from hypergan_tf.model import targets


HEADS = ('full', 'rank1', 'low_rank')
# Spread of the rank-1 factors around 1 at initialisation (uncertainty-
# baselines' BatchEnsemble default, N(1, 0.5^2)).
RANK1_SPREAD = 0.5


@dataclasses.dataclass(frozen=True)
class HyperNetConfig:
  """Sizes of the hypernetwork (paper: 2 x 512 units, ELU).

  Attributes:
    noise_dim: size of the mixer's input noise s.
    code_dim: size of each layer code q_k (the prior is N(0, I_code_dim)).
    hidden_units: width of every hidden layer of every MLP.
    hidden_layers: number of hidden layers of every MLP.
    activation: Keras activation name of the hidden layers.
    batch_norm: BatchNorm before the activation in mixer and generators (the
      discriminator never uses it: it sees real and fake batches apart).
    init_gain: generated kernels start with standard deviation
      init_gain * sqrt(2 / fan_in) (He scale when 1) and biases near zero.
    head: what a layer generator emits. 'full' (the paper): every kernel
      and bias entry, a head of hidden_units x parameters per layer.
      'rank1': a factor r s^T of a shared, learned kernel (its input and
      output axes) and the bias, as BatchEnsemble and rank-1 BNNs do, so a
      head emits in + out + bias values; r and s start at 1 + 0.5 N(0, 1).
      'low_rank': the full head factorised through head_rank units
      (hidden -> head_rank -> parameters, no activation between), so the
      parameters of all networks lie in a head_rank-dimensional affine
      subspace of the layer's parameters.
    head_rank: the bottleneck of the 'low_rank' head.
    modes: learned base networks (`modes.py`): a network is its mode's base
      plus the generated parameters, its mode a function of its input
      noise. 1 = the plain generator. With more, generated and base kernels
      each start at 1/sqrt(2) of the intended scale, so their sum starts at
      it.
  """
  noise_dim: int = 256
  code_dim: int = 64
  hidden_units: int = 512
  hidden_layers: int = 2
  activation: str = 'relu'
  batch_norm: bool = True
  init_gain: float = 1.0
  head: str = 'full'
  head_rank: int = 64
  modes: int = 1

  def __post_init__(self):
    if self.head not in HEADS:
      raise ValueError(f'Unknown head {self.head!r}; choose one of '
                       f'{list(HEADS)}.')
    if self.head_rank < 1:
      raise ValueError(f'head_rank must be positive, got {self.head_rank}.')
    if self.modes < 1:
      raise ValueError(f'modes must be >= 1, got {self.modes}.')
    for name in ('noise_dim', 'code_dim', 'hidden_units'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be positive, got '
                         f'{getattr(self, name)}.')
    if self.hidden_layers < 0:
      raise ValueError(
          f'hidden_layers must be >= 0, got {self.hidden_layers}.')
    if self.init_gain <= 0:
      raise ValueError(f'init_gain must be positive, got {self.init_gain}.')
    try:
      keras.activations.get(self.activation)
    except ValueError:
      raise ValueError(
          f'Unknown activation {self.activation!r}; use a Keras activation '
          "name such as 'relu' or 'elu'.") from None


def _mlp(config: HyperNetConfig, input_dim: int, batch_norm: bool,
         name: str) -> keras.Sequential:
  """Hidden layers shared by mixer, generators and discriminator."""
  layers = [keras.Input((input_dim,))]
  for i in range(config.hidden_layers):
    layers.append(keras.layers.Dense(config.hidden_units,
                                     use_bias=not batch_norm,
                                     name=f'dense_{i}'))
    if batch_norm:
      layers.append(keras.layers.BatchNormalization(name=f'bn_{i}'))
    layers.append(keras.layers.Activation(config.activation, name=f'act_{i}'))
  return keras.Sequential(layers, name=name)


# Output layers of generators start at unit variance for unit-variance
# features; the hidden features' second moment differs per activation, so the
# scale below is divided by it (measured once; see BUILD_NOTES.md).
_SECOND_MOMENT = {'relu': 0.5, 'elu': 0.65, 'leaky_relu': 0.5}


def _head_dense(config: HyperNetConfig, units: int, name: str,
                use_bias: bool = True) -> keras.layers.Dense:
  """A Dense layer on the generator body whose outputs start at unit
  variance (the body's features have the activation's second moment)."""
  feature_power = (_SECOND_MOMENT.get(config.activation, 1.0)
                   if config.hidden_layers else 1.0)
  return keras.layers.Dense(
      units, use_bias=use_bias, name=name,
      kernel_initializer=keras.initializers.VarianceScaling(
          1.0 / feature_power, 'fan_in', 'truncated_normal'))


def _initial_scales(config: HyperNetConfig, fan_in: int
                    ) -> tuple[float, float]:
  """(kernel, bias) scales: kernels start at init_gain x He scale (with
  modes, shared half and half with the modes' base kernels)."""
  kernel_scale = config.init_gain * math.sqrt(
      (2.0 if config.modes == 1 else 1.0) / fan_in)
  return kernel_scale, 0.1 * kernel_scale


class LayerGenerator(keras.Model):
  """Maps a layer code q_k to that layer's kernel and bias.

  The last Dense layer emits all parameters at once; its outputs are scaled so
  that generated kernels start at He scale for the layer's fan-in, which lets
  the target networks train from the first step instead of producing huge
  logits (the authors' code starts far off and trains slowly).
  """

  def __init__(self, config: HyperNetConfig, kernel_shape: tuple[int, ...],
               bias_shape: tuple[int, ...], fan_in: int, **kwargs):
    super().__init__(**kwargs)
    self.kernel_shape = tuple(kernel_shape)
    self.bias_shape = tuple(bias_shape)
    self.kernel_size = math.prod(kernel_shape)
    self.body = _mlp(config, config.code_dim, config.batch_norm,
                     name='body')
    outputs = self.kernel_size + math.prod(bias_shape)
    if config.head == 'low_rank':
      # Unit-variance bottleneck features, then the usual unit-variance head.
      self.head = keras.Sequential([
          keras.Input((config.hidden_units if config.hidden_layers
                       else config.code_dim,)),
          _head_dense(config, config.head_rank, 'head_factor',
                      use_bias=False),
          keras.layers.Dense(
              outputs, name='head_basis',
              kernel_initializer=keras.initializers.VarianceScaling(
                  1.0, 'fan_in', 'truncated_normal'))], name='head')
    else:
      self.head = _head_dense(config, outputs, 'head')
    self.kernel_scale, self.bias_scale = _initial_scales(config, fan_in)

  def call(self, code: tf.Tensor, training: bool = False):
    out = self.head(self.body(code, training=training))
    # A split, not slices: the gradient of slices zero-fills the whole
    # output once per slice.
    kernel, bias = tf.split(out, [self.kernel_size, -1], axis=1)
    kernel = tf.reshape(kernel * self.kernel_scale, (-1,) + self.kernel_shape)
    bias = tf.reshape(bias * self.bias_scale, (-1,) + self.bias_shape)
    return kernel, bias


class Rank1Generator(keras.Model):
  """Maps a layer code q_k to a rank-1 factor of a shared kernel, and a bias.

  kernel = W * r s^T (r on the kernel's input axis, s on its output axis):
  the head emits r, s and the bias, in + out + bias values instead of every
  kernel entry, so the hypernetwork's cost no longer grows with the
  kernel's size. W starts at He scale divided by E[r^2 s^2]^(1/2) =
  1 + RANK1_SPREAD^2, so generated kernels start at the full head's scale.
  """

  def __init__(self, config: HyperNetConfig, kernel_shape: tuple[int, ...],
               bias_shape: tuple[int, ...], fan_in: int, **kwargs):
    super().__init__(**kwargs)
    self.kernel_shape = tuple(kernel_shape)
    self.bias_shape = tuple(bias_shape)
    self.num_in, self.num_out = kernel_shape[-2], kernel_shape[-1]
    self.body = _mlp(config, config.code_dim, config.batch_norm,
                     name='body')
    self.head = _head_dense(
        config, self.num_in + self.num_out + math.prod(bias_shape), 'head')
    self.kernel_scale, self.bias_scale = _initial_scales(config, fan_in)
    self.shared_kernel = self.add_weight(
        shape=self.kernel_shape, name='shared_kernel',
        initializer=keras.initializers.RandomNormal(
            stddev=self.kernel_scale / (1.0 + RANK1_SPREAD**2)))

  def call(self, code: tf.Tensor, training: bool = False):
    out = self.head(self.body(code, training=training))
    r = 1.0 + RANK1_SPREAD * out[:, :self.num_in]
    s = 1.0 + RANK1_SPREAD * out[:, self.num_in:self.num_in + self.num_out]
    ones = [1] * (len(self.kernel_shape) - 2)
    kernel = (self.shared_kernel[None] *
              tf.reshape(r, [-1, *ones, self.num_in, 1]) *
              tf.reshape(s, [-1, *ones, 1, self.num_out]))
    bias = tf.reshape(out[:, self.num_in + self.num_out:] * self.bias_scale,
                      (-1,) + self.bias_shape)
    return kernel, bias


GENERATORS = {'full': LayerGenerator, 'rank1': Rank1Generator,
              'low_rank': LayerGenerator}


class HyperNetwork(keras.Model):
  """Mixer + one generator per target layer + discriminator on codes."""

  def __init__(self, spec: targets.TargetSpec, config: HyperNetConfig,
               **kwargs):
    super().__init__(**kwargs)
    self.spec = spec
    self.config = config
    self.num_codes = len(spec.layers)
    mixer_body = _mlp(config, config.noise_dim, config.batch_norm,
                      name='mixer_body')
    self.mixer = keras.Sequential(
        [mixer_body,
         keras.layers.Dense(self.num_codes * config.code_dim, name='codes'),
         keras.layers.Reshape((self.num_codes, config.code_dim))],
        name='mixer')
    # Each generator is its own attribute: Keras' list wrapper is invisible
    # to tf.train.Checkpoint, which would drop the BatchNorm statistics.
    for i, ((k, b), fan_in) in enumerate(zip(spec.param_shapes,
                                             spec.fan_ins)):
      setattr(self, f'generator_{i}',
              GENERATORS[config.head](config, k, b, fan_in,
                                      name=f'generator_{i}'))
    self.mode_offsets = (modes_lib.ModeOffsets(
        config.modes, spec.param_shapes,
        [g.kernel_scale for g in self.generators], name='mode_offsets')
                         if config.modes > 1 else None)
    self.discriminator = keras.Sequential(
        [_mlp(config, config.code_dim, batch_norm=False,
              name='discriminator_body'),
         keras.layers.Dense(1, name='logit')],
        name='discriminator')
    # Build every part so variables exist before checkpoints are restored.
    codes = self.mixer(tf.zeros([2, config.noise_dim]))
    for i, generator in enumerate(self.generators):
      generator(codes[:, i])
    self.discriminator(tf.zeros([1, config.code_dim]))

  @property
  def generators(self) -> list[LayerGenerator | Rank1Generator]:
    return [getattr(self, f'generator_{i}') for i in range(self.num_codes)]

  @property
  def layer_generator_variables(self) -> list[tf.Variable]:
    """Trainable variables of the per-layer generators (and of the modes'
    base networks)."""
    return [v for generator in self.generators
            for v in generator.trainable_variables] + (
                list(self.mode_offsets.trainable_variables)
                if self.mode_offsets is not None else [])

  @property
  def generator_variables(self) -> list[tf.Variable]:
    """Trainable variables of the generator side: mixer, then generators."""
    return (list(self.mixer.trainable_variables) +
            self.layer_generator_variables)

  def codes(self, noise: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Mixer output [n, K, code_dim] for noise [n, noise_dim]."""
    return self.mixer(noise, training=training)

  def generate(self, codes: tf.Tensor, training: bool = False,
               noise: tf.Tensor | None = None, detach_bases: bool = False):
    """Parameters of n networks from codes [n, K, code_dim].

    Args:
      noise: the input noise [n, noise_dim] the codes came from; needed
        (and only used) for the modes.
      detach_bases: also return the same networks, bit for bit, with no
        gradient into the modes' bases (a term on them moves the generated
        parameters only); needs modes.

    Returns:
      (kernel [n, ...], bias [n, ...]) per layer; with detach_bases, a pair
      (those, the detached ones).
    """
    params = [generator(codes[:, i], training=training)
              for i, generator in enumerate(self.generators)]
    has_modes = self.mode_offsets is not None
    if noise is None and has_modes:
      raise ValueError('This hypernetwork has modes: pass the input noise to '
                       'generate().')
    if detach_bases and not has_modes:
      raise ValueError('detach_bases needs a hypernetwork with modes >= 2.')
    detached = None
    if detach_bases:
      detached = self.mode_offsets(params, noise, detach=True)
    if has_modes:
      params = self.mode_offsets(params, noise)
    return (params, detached) if detach_bases else params

  def sample(self, n: int, seed: tf.random.Generator | None = None,
             training: bool = False):
    """Samples n parameter sets (inference mode unless training=True).

    Args:
      n: number of networks.
      seed: optional tf.random.Generator for reproducible draws.
      training: BatchNorm mode; keep False outside the train step.

    Returns:
      A list of (kernel [n, ...], bias [n, ...]) pairs, one per target layer.
    """
    shape = [n, self.config.noise_dim]
    noise = (seed.normal(shape) if seed is not None
             else tf.random.normal(shape))
    return self.networks(self.stratify(noise), training)

  def stratify(self, noise: tf.Tensor) -> tf.Tensor:
    """A draw's noise with its networks spread evenly over the modes."""
    return modes_lib.stratify(noise, self.config.modes)

  def networks(self, noise: tf.Tensor, training: bool = False):
    """Parameters of the networks of input noise [n, noise_dim]."""
    return self.generate(self.codes(noise, training), training, noise)

  def call(self, noise: tf.Tensor, training: bool = False):
    return self.networks(noise, training)

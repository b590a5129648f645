"""Target networks: declarative specs and a batched functional forward pass.

A target network is an immutable `TargetSpec` (input shape + a tuple of layer
specs). It declares the shapes of its parameters; whoever fills them (the
hypernetwork, a baseline, a test) passes a list of `(kernel, bias)` pairs with
a leading axis of N networks, and `apply` evaluates all N networks on one
shared batch of B inputs at once, returning `[N, B, outputs]`.

Conv layers use 'VALID' padding and an optional 2x2 max-pool, as in the
paper's Tables 1 and 2. Kernels are stored in TensorFlow's HWIO layout.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Sequence

import tensorflow as tf

# All non-decreasing, so max-pooling commutes with them (see `_pool_activate`).
ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    'linear': tf.identity,
    'relu': tf.nn.relu,
    'leaky_relu': lambda x: tf.nn.leaky_relu(x, alpha=0.2),
    'elu': tf.nn.elu,
    'tanh': tf.tanh,
}

Params = Sequence[tuple[tf.Tensor, tf.Tensor]]

FORWARD_METHODS = ('grouped', 'loop', 'vectorized_map')


@dataclasses.dataclass(frozen=True)
class Conv2D:
  """A 'VALID' convolution, its activation and an optional max-pool."""
  filters: int
  kernel_size: int
  activation: str = 'leaky_relu'
  pool_size: int = 2


@dataclasses.dataclass(frozen=True)
class Dense:
  """A fully connected layer; the first one flattens its input."""
  units: int
  activation: str = 'linear'


LayerSpec = Conv2D | Dense


@dataclasses.dataclass(frozen=True)
class TargetSpec:
  """An immutable description of a target network.

  Attributes:
    name: registry name, e.g. 'mnist'.
    input_shape: shape of one example, e.g. (28, 28, 1) or (1,).
    layers: conv layers first, then dense layers.
    input_mean, input_std: per-channel standardisation applied to the
      inputs as the first operation of the network (None: inputs as given).
      Part of the network, so attacks, evaluation and exported models keep
      taking [0, 1] pixels.
  """
  name: str
  input_shape: tuple[int, ...]
  layers: tuple[LayerSpec, ...]
  input_mean: tuple[float, ...] | None = None
  input_std: tuple[float, ...] | None = None

  def __post_init__(self):
    if (self.input_mean is None) != (self.input_std is None):
      raise ValueError(f'Target {self.name!r}: give both input_mean and '
                       'input_std, or neither.')
    if self.input_mean is not None:
      channels = self.input_shape[-1]
      if len(self.input_mean) != channels or len(self.input_std) != channels:
        raise ValueError(
            f'Target {self.name!r}: input_mean and input_std need one value '
            f'per input channel ({channels}), got {len(self.input_mean)} and '
            f'{len(self.input_std)}.')
      if min(self.input_std) <= 0:
        raise ValueError(f'Target {self.name!r}: input_std must be positive, '
                         f'got {self.input_std}.')
    seen_dense = False
    for layer in self.layers:
      if layer.activation not in ACTIVATIONS:
        raise ValueError(
            f'Unknown activation {layer.activation!r} in target '
            f'{self.name!r}; choose one of {sorted(ACTIVATIONS)}.')
      if isinstance(layer, Dense):
        seen_dense = True
      elif seen_dense:
        raise ValueError(f'Target {self.name!r}: conv layers must come '
                         'before dense layers.')
    if self.layers and isinstance(self.layers[0], Conv2D) and len(
        self.input_shape) != 3:
      raise ValueError(f'Target {self.name!r}: conv layers need an (H, W, C) '
                       f'input shape, got {self.input_shape}.')
    self.param_shapes  # Validates that the spatial sizes stay positive.

  @property
  def param_shapes(self) -> tuple[tuple[tuple[int, ...], tuple[int, ...]],
                                  ...]:
    """(kernel_shape, bias_shape) of every layer, without the N axis."""
    shapes = []
    shape = tuple(self.input_shape)
    for layer in self.layers:
      if isinstance(layer, Conv2D):
        h, w, c = shape
        k = layer.kernel_size
        h, w = h - k + 1, w - k + 1
        if layer.pool_size > 1:
          h, w = h // layer.pool_size, w // layer.pool_size
        if h < 1 or w < 1:
          raise ValueError(f'Target {self.name!r}: input {self.input_shape} '
                           'is too small for its conv layers.')
        shapes.append(((k, k, c, layer.filters), (layer.filters,)))
        shape = (h, w, layer.filters)
      else:
        fan_in = math.prod(shape)
        shapes.append(((fan_in, layer.units), (layer.units,)))
        shape = (layer.units,)
    return tuple(shapes)

  @property
  def fan_ins(self) -> tuple[int, ...]:
    """Inputs feeding each output unit of every layer (for init scales)."""
    return tuple(math.prod(k[:-1]) for k, _ in self.param_shapes)

  @property
  def layer_sizes(self) -> tuple[int, ...]:
    """Number of parameters (kernel + bias) of every layer."""
    return tuple(math.prod(k) + math.prod(b) for k, b in self.param_shapes)

  @property
  def flops_per_example(self) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass.

    Convolutions and matmuls only; biases, activations and pooling are a
    rounding error. Used to state the GFLOP/s a benchmark achieves.
    """
    flops = 0
    h, w = self.input_shape[:2] if len(self.input_shape) == 3 else (1, 1)
    for layer, (kernel, _) in zip(self.layers, self.param_shapes):
      if isinstance(layer, Conv2D):
        h, w = h - layer.kernel_size + 1, w - layer.kernel_size + 1
        flops += 2 * h * w * math.prod(kernel)
        h, w = h // layer.pool_size, w // layer.pool_size
      else:
        flops += 2 * math.prod(kernel)
    return flops

  @property
  def num_params(self) -> int:
    return sum(self.layer_sizes)

  @property
  def output_dim(self) -> int:
    return self.param_shapes[-1][1][0]


TARGETS: dict[str, TargetSpec] = {
    # Paper, Table 1: 31,594 parameters.
    'mnist': TargetSpec('mnist', (28, 28, 1), (
        Conv2D(32, 5), Conv2D(32, 5), Dense(10))),
    # Paper, Table 2 (16/32/64 filters).
    'cifar': TargetSpec('cifar', (32, 32, 3), (
        Conv2D(16, 3), Conv2D(32, 3), Conv2D(64, 3),
        Dense(128, 'leaky_relu'), Dense(10))),
    # The same for CIFAR-5 (five classes).
    'cifar5': TargetSpec('cifar5', (32, 32, 3), (
        Conv2D(16, 3), Conv2D(32, 3), Conv2D(64, 3),
        Dense(128, 'leaky_relu'), Dense(5))),
    # Paper, Sec. 4.3: one hidden layer of 100 ReLU units.
    'toy_regression': TargetSpec('toy_regression', (1,), (
        Dense(100, 'relu'), Dense(1))),
}


def get_target(name: str) -> TargetSpec:
  """Looks up a target spec by name, with an error that lists the choices."""
  try:
    return TARGETS[name]
  except KeyError:
    raise ValueError(f'Unknown target network {name!r}; choose one of '
                     f'{sorted(TARGETS)}.') from None


def standardized(spec: TargetSpec, mean: Sequence[float],
                 std: Sequence[float]) -> TargetSpec:
  """The same network with per-channel input standardisation in front."""
  return dataclasses.replace(spec, input_mean=tuple(map(float, mean)),
                             input_std=tuple(map(float, std)))


def standardize(spec: TargetSpec, x: tf.Tensor) -> tf.Tensor:
  """(x - mean) / std per channel, or x when the spec does not standardise."""
  if spec.input_mean is None:
    return x
  # Over flat examples with the per-channel values tiled: broadcasting a
  # 3-vector over the last axis ran 5x slower on CPU, for the same values.
  size = math.prod(spec.input_shape)
  reps = size // len(spec.input_mean)
  mean = tf.tile(tf.constant(spec.input_mean, x.dtype), [reps])
  std = tf.tile(tf.constant(spec.input_std, x.dtype), [reps])
  return tf.reshape((tf.reshape(x, [-1, size]) - mean) / std, tf.shape(x))


def check_params(spec: TargetSpec, params: Params) -> int:
  """Checks params against the spec's declared shapes; returns N."""
  if len(params) != len(spec.layers):
    raise ValueError(f'Target {spec.name!r} has {len(spec.layers)} layers but '
                     f'{len(params)} parameter pairs were given.')
  n = None
  for i, ((kernel, bias), (k_shape, b_shape)) in enumerate(
      zip(params, spec.param_shapes)):
    for what, t, shape in (('kernel', kernel, k_shape), ('bias', bias,
                                                         b_shape)):
      got = tuple(t.shape)
      if got[1:] != shape:
        raise ValueError(f'Layer {i} {what} of target {spec.name!r}: expected '
                         f'shape [N, {", ".join(map(str, shape))}], got '
                         f'{list(got)}.')
      if n is None:
        n = got[0]
      elif got[0] is not None and n is not None and got[0] != n:
        raise ValueError('All parameters must share the same number of '
                         f'networks N; got {n} and {got[0]}.')
  return n


def _pool_activate(x: tf.Tensor, layer: Conv2D) -> tf.Tensor:
  """activation(x) then max-pool, computed as max-pool then activation.

  Equal for non-decreasing activations (values and gradients), but the
  activation and its saved tensor are pool_size^2 times smaller: the
  largest activation of the train step is not kept twice.
  """
  if layer.pool_size > 1:
    x = tf.nn.max_pool2d(x, layer.pool_size, layer.pool_size, 'VALID')
  return ACTIVATIONS[layer.activation](x)


def _dense_stack(spec: TargetSpec, params: Params, h: tf.Tensor,
                 first_dense: int) -> tf.Tensor:
  """Dense layers for all networks at once; h is [N, B, ...]."""
  n, b = tf.shape(h)[0], tf.shape(h)[1]
  h = tf.reshape(h, [n, b, -1])
  for layer, (kernel, bias) in zip(spec.layers[first_dense:],
                                   params[first_dense:]):
    h = tf.matmul(h, kernel) + bias[:, None, :]
    h = ACTIVATIONS[layer.activation](h)
  return h


def _num_conv(spec: TargetSpec) -> int:
  return sum(isinstance(layer, Conv2D) for layer in spec.layers)


def _conv_block(layer: Conv2D, h: tf.Tensor, kernel: tf.Tensor,
                bias: tf.Tensor) -> tf.Tensor:
  return _pool_activate(
      tf.nn.bias_add(tf.nn.conv2d(h, kernel, 1, 'VALID'), bias), layer)


def _single_conv_stack(spec: TargetSpec, params: Params, x: tf.Tensor,
                       recompute_first: bool = False) -> tf.Tensor:
  """Conv layers of one network (params without the N axis).

  recompute_first: keep only the first block's pooled output for the
  backward pass and recompute its convolution there. Its pre-pool map is
  the largest tensor of the train step (with N networks, N of them), while
  its convolution is a small share of the FLOPs. Measured at 100 networks x
  100 images on CPU: in bfloat16 it costs no time and lowers peak memory
  from 2.01 to 1.80 GiB; in float32 it costs 30% (it stops Grappler fusing
  the convolution with its bias) for 0.18 GiB, so `apply` uses it only for
  reduced-precision parameters.
  """
  h = x
  for index, (layer, (kernel, bias)) in enumerate(zip(spec.layers, params)):
    if not isinstance(layer, Conv2D):
      break
    block = functools.partial(_conv_block, layer)
    if recompute_first and index == 0 and layer.pool_size > 1:
      block = tf.recompute_grad(block)
    h = block(h, kernel, bias)
  return h


def _grouped_conv_stack(spec: TargetSpec, params: Params,
                        x: tf.Tensor) -> tf.Tensor:
  """Conv layers of all N networks as one (grouped) convolution per layer.

  The first layer shares its input, so it is a single convolution with
  N * filters output channels. Later layers see N groups of channels and
  run as a grouped convolution (kernel [h, w, c_in, N * c_out]).
  Returns [N, B, H, W, C].
  """
  h = x
  n = tf.shape(params[0][0])[0]
  for layer, (kernel, bias) in zip(spec.layers, params):
    if not isinstance(layer, Conv2D):
      break
    # [N, kh, kw, cin, cout] -> [kh, kw, cin, N * cout], network-major.
    kh, kw, cin, cout = kernel.shape[1:]
    k = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [kh, kw, cin, -1])
    h = _conv_block(layer, h, k, tf.reshape(bias, [-1]))
  s = tf.shape(h)
  h = tf.reshape(h, [s[0], s[1], s[2], n, cout])
  return tf.transpose(h, [3, 0, 1, 2, 4])


def _per_network_conv_stacks(spec: TargetSpec, params: Params,
                             inputs: Sequence[tf.Tensor]) -> tf.Tensor:
  """Conv layers of network i on inputs[i], stacked to [N, B, H, W, C].

  The parameters are split with one unstack per tensor: its gradient is one
  stack, where per-network slices would each add a zero-filled [N, ...]
  tensor to the backward pass.
  """
  num_conv = _num_conv(spec)
  per_network = zip(*(zip(tf.unstack(kernel), tf.unstack(bias))
                      for kernel, bias in params[:num_conv]))
  return tf.stack([
      _single_conv_stack(spec, list(network), x,
                         recompute_first=x.dtype != tf.float32)
      for network, x in zip(per_network, inputs)])


def _check_inputs(spec: TargetSpec, x: tf.Tensor, *leading: str) -> None:
  """Raises ValueError unless x is [*leading, *spec.input_shape]."""
  if tuple(x.shape[len(leading):]) != tuple(spec.input_shape):
    raise ValueError(f'Target {spec.name!r} expects inputs of shape '
                     f'[{", ".join([*leading, *map(str, spec.input_shape)])}]'
                     f', got {list(x.shape)}.')


def _network_input(spec: TargetSpec, x: tf.Tensor,
                   dtype: tf.DType) -> tf.Tensor:
  """Standardised inputs in the parameters' dtype."""
  return tf.cast(standardize(spec, tf.cast(x, tf.float32)), dtype)


def apply(spec: TargetSpec, params: Params, x: tf.Tensor,
          method: str = 'grouped') -> tf.Tensor:
  """Evaluates N target networks on one shared batch.

  Args:
    spec: the target network.
    params: one (kernel [N, ...], bias [N, ...]) pair per layer, shaped as
      `spec.param_shapes` with a leading N axis.
    x: inputs [B, *spec.input_shape].
    method: how conv layers batch over networks: 'grouped' (one grouped
      convolution per layer), 'loop' (a Python loop of per-network
      convolutions) or 'vectorized_map'. Dense layers are always a batched
      matmul. All give the same result.

  Returns:
    Outputs [N, B, spec.output_dim].
  """
  check_params(spec, params)
  _check_inputs(spec, x, 'B')
  x = _network_input(spec, x, params[0][0].dtype)
  num_conv = _num_conv(spec)
  if num_conv == 0:
    n = tf.shape(params[0][0])[0]
    h = tf.broadcast_to(x[None], tf.concat([[n], tf.shape(x)], 0))
  elif method == 'grouped':
    h = _grouped_conv_stack(spec, params, x)
  elif method == 'loop':
    n = params[0][0].shape[0]
    if n is None:
      raise ValueError("method='loop' needs a static number of networks.")
    h = _per_network_conv_stacks(spec, params, [x] * n)
  elif method == 'vectorized_map':
    conv_params = [(k, b) for k, b in params[:num_conv]]
    h = tf.vectorized_map(lambda p: _single_conv_stack(spec, p, x),
                          conv_params)
  else:
    raise ValueError(f'Unknown forward method {method!r}; choose one of '
                     f'{FORWARD_METHODS}.')
  return _dense_stack(spec, params, h, num_conv)


def apply_per_network(spec: TargetSpec, params: Params, x: tf.Tensor,
                      method: str = 'loop') -> tf.Tensor:
  """Network i on its own batch x[i]: [N, B, ...] -> outputs [N, B, C].

  N must be static. One network per batch leaves nothing to batch over in
  the conv layers, so every method runs them one network at a time; the
  dense layers run for all networks at once, as in `apply`.
  """
  check_params(spec, params)
  if x.shape[0] is None or x.shape[0] != params[0][0].shape[0]:
    raise ValueError(f'apply_per_network needs one batch per network: '
                     f'inputs {list(x.shape)} for '
                     f'{params[0][0].shape[0]} networks.')
  if method not in FORWARD_METHODS:
    raise ValueError(f'Unknown forward method {method!r}; choose one of '
                     f'{FORWARD_METHODS}.')
  _check_inputs(spec, x, 'N', 'B')
  x = _network_input(spec, x, params[0][0].dtype)
  num_conv = _num_conv(spec)
  h = (_per_network_conv_stacks(spec, params, tf.unstack(x)) if num_conv
       else x)
  return _dense_stack(spec, params, h, num_conv)


def apply_in_chunks(spec: TargetSpec, params: Params, x: tf.Tensor,
                    chunk_size: int, method: str = 'grouped') -> tf.Tensor:
  """`apply` over chunks of the batch, one after another, to bound memory.

  N networks x B examples at once hold N * B feature maps; chunks hold
  N * chunk_size. Same result as `apply`. chunk_size is a Python int on
  purpose: with a static chunk shape the convolutions inside the loop run
  about 10x faster on CPU than with an unknown one (BUILD_NOTES.md).
  """
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be positive, got {chunk_size}.')
  b = tf.shape(x)[0]
  padding = [[0, (-b) % chunk_size]] + [[0, 0]] * len(spec.input_shape)
  chunks = tf.reshape(tf.pad(x, padding),
                      [-1, chunk_size, *spec.input_shape])
  out = tf.map_fn(
      lambda chunk: apply(spec, params, chunk, method), chunks,
      fn_output_signature=tf.TensorSpec([None, chunk_size, spec.output_dim],
                                        params[0][0].dtype),
      parallel_iterations=1)  # [chunks, N, chunk_size, C]
  out = tf.transpose(out, [1, 0, 2, 3])
  out = tf.reshape(out, [tf.shape(out)[0], -1, spec.output_dim])
  return out[:, :b]


def keras_model(spec: TargetSpec, params: Params | None = None,
                index: int = 0):
  """A plain Keras model of one network, optionally loaded with params[index].

  The reference that `apply` is tested against, and a way to hand a single
  sampled network to code that wants a Keras model.
  """
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input(spec.input_shape)
  h = inputs
  if spec.input_mean is not None:
    h = keras.layers.Normalization(
        mean=spec.input_mean, variance=[s**2 for s in spec.input_std])(h)
  flattened = False
  for layer in spec.layers:
    act = ACTIVATIONS[layer.activation]
    if isinstance(layer, Conv2D):
      h = keras.layers.Conv2D(layer.filters, layer.kernel_size,
                              activation=act)(h)
      if layer.pool_size > 1:
        h = keras.layers.MaxPooling2D(layer.pool_size)(h)
    else:
      if not flattened and len(h.shape) > 2:
        h = keras.layers.Flatten()(h)
      flattened = True
      h = keras.layers.Dense(layer.units, activation=act)(h)
  model = keras.Model(inputs, h, name=f'{spec.name}_target')
  if params is not None:
    weights = []
    for kernel, bias in params:
      weights += [kernel[index].numpy(), bias[index].numpy()]
    model.set_weights(weights)
  return model

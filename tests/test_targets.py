"""Target specs: declared shapes, and the batched pass against plain Keras."""

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.model import targets


def _random_params(spec, n, seed=0):
  rng = tf.random.Generator.from_seed(seed)
  return [(rng.normal((n,) + k) * (2.0 / np.prod(k[:-1]))**0.5,
           rng.normal((n,) + b) * 0.1) for k, b in spec.param_shapes]


def test_mnist_spec_matches_paper_table_1():
  spec = targets.get_target('mnist')
  assert spec.param_shapes == (((5, 5, 1, 32), (32,)),
                               ((5, 5, 32, 32), (32,)),
                               ((512, 10), (10,)))
  assert spec.num_params == 31_594
  assert spec.output_dim == 10


def test_cifar_spec_matches_paper_table_2():
  spec = targets.get_target('cifar')
  assert [k for k, _ in spec.param_shapes] == [
      (3, 3, 3, 16), (3, 3, 16, 32), (3, 3, 32, 64), (256, 128), (128, 10)]
  assert spec.num_params == sum(
      int(np.prod(k)) + int(np.prod(b)) for k, b in spec.param_shapes)


def test_toy_regression_spec():
  spec = targets.get_target('toy_regression')
  assert spec.param_shapes == (((1, 100), (100,)), ((100, 1), (1,)))
  assert spec.num_params == 301
  assert spec.fan_ins == (1, 100)


@pytest.mark.parametrize('name', sorted(targets.TARGETS))
@pytest.mark.parametrize('method', targets.FORWARD_METHODS)
def test_apply_equals_keras_model(name, method):
  spec = targets.get_target(name)
  n, b = 3, 5
  params = _random_params(spec, n)
  x = tf.random.uniform((b,) + spec.input_shape, seed=1)
  out = targets.apply(spec, params, x, method)
  assert out.shape == (n, b, spec.output_dim)
  for i in range(n):
    expected = targets.keras_model(spec, params, i)(x)
    np.testing.assert_allclose(out[i], expected, rtol=1e-4, atol=1e-4)


def test_networks_are_independent():
  """Changing network 1's parameters leaves network 0's outputs unchanged."""
  spec = targets.get_target('mnist')
  params = _random_params(spec, 2)
  x = tf.random.uniform((4, 28, 28, 1), seed=2)
  before = targets.apply(spec, params, x)
  k, b = params[1]
  params[1] = (tf.concat([k[:1], k[1:] * 3.0], 0), b)
  after = targets.apply(spec, params, x)
  np.testing.assert_allclose(before[0], after[0], rtol=1e-6)
  assert not np.allclose(before[1], after[1])


def test_gradients_flow_to_every_parameter():
  spec = targets.get_target('mnist')
  params = [(tf.Variable(k), tf.Variable(b))
            for k, b in _random_params(spec, 2)]
  x = tf.random.uniform((4, 28, 28, 1), seed=3)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(targets.apply(spec, params, x)**2)
  grads = tape.gradient(loss, [v for pair in params for v in pair])
  assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0
             for g in grads)


@pytest.mark.parametrize('name', sorted(targets.ACTIVATIONS))
def test_activations_are_non_decreasing(name):
  """Conv blocks max-pool before the activation; only monotone ones allow it
  (a GELU or swish would silently change the network)."""
  x = tf.linspace(-6.0, 6.0, 10_001)
  steps = tf.experimental.numpy.diff(targets.ACTIVATIONS[name](x))
  assert float(tf.reduce_min(steps)) >= -1e-6  # float32 rounding in tanh


def _gradients(forward, params, x):
  with tf.GradientTape() as tape:
    tape.watch([params, x])
    loss = tf.reduce_sum(tf.sin(tf.cast(forward(params, x), tf.float32)))
  return tf.nest.flatten(tape.gradient(loss, [params, x]))


@pytest.mark.parametrize('name', ['mnist', 'cifar'])
def test_methods_have_the_same_gradients(name):
  """Same gradients for parameters and inputs (attacks need the latter)."""
  spec = targets.get_target(name)
  params = _random_params(spec, 3, seed=4)
  x = tf.random.uniform((4,) + spec.input_shape, seed=5)
  expected = _gradients(
      lambda p, x: targets.apply(spec, p, x, 'grouped'), params, x)
  for method in ('loop', 'vectorized_map'):
    got = _gradients(tf.function(
        lambda p, x, m=method: targets.apply(spec, p, x, m)), params, x)
    for g, want in zip(got, expected):
      np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5)


def test_recomputed_first_block_has_the_same_gradients():
  """In bfloat16 the loop method recomputes its first conv block."""
  spec = targets.get_target('mnist')
  params = tf.nest.map_structure(lambda t: tf.cast(t[0], tf.bfloat16),
                                 _random_params(spec, 1, seed=4)[:2])
  x = tf.cast(tf.random.uniform((4,) + spec.input_shape, seed=5),
              tf.bfloat16)
  kept, recomputed = (
      _gradients(tf.function(lambda p, x, r=r: targets._single_conv_stack(
          spec, p, x, recompute_first=r)), params, x)
      for r in (False, True))
  for got, want in zip(recomputed, kept):
    np.testing.assert_allclose(tf.cast(got, tf.float32),
                               tf.cast(want, tf.float32), rtol=1e-2,
                               atol=1e-2)


def test_unknown_target_lists_choices():
  with pytest.raises(ValueError, match='Unknown target network.*mnist'):
    targets.get_target('resnet')


def test_wrong_param_shape_is_named():
  spec = targets.get_target('mnist')
  params = _random_params(spec, 2)
  params[1] = (tf.zeros((2, 3, 3, 32, 32)), params[1][1])
  with pytest.raises(ValueError, match='Layer 1 kernel.*expected shape'):
    targets.apply(spec, params, tf.zeros((1, 28, 28, 1)))


def test_mismatched_network_counts_rejected():
  spec = targets.get_target('mnist')
  params = _random_params(spec, 2)
  params[2] = _random_params(spec, 3)[2]
  with pytest.raises(ValueError, match='same number of networks'):
    targets.apply(spec, params, tf.zeros((1, 28, 28, 1)))


def test_wrong_input_shape_is_named():
  spec = targets.get_target('mnist')
  with pytest.raises(ValueError, match=r'expects inputs of shape \[B, 28'):
    targets.apply(spec, _random_params(spec, 1), tf.zeros((1, 32, 32, 3)))


def test_spec_validation():
  with pytest.raises(ValueError, match='Unknown activation'):
    targets.TargetSpec('x', (4,), (targets.Dense(2, 'swishy'),))
  with pytest.raises(ValueError, match='conv layers must come before'):
    targets.TargetSpec('x', (8, 8, 1), (targets.Dense(2),
                                        targets.Conv2D(2, 3)))
  with pytest.raises(ValueError, match='too small'):
    targets.TargetSpec('x', (4, 4, 1), (targets.Conv2D(2, 5),))


def test_flops_per_example_counts_convs_and_matmuls():
  mnist = targets.get_target('mnist')
  conv1 = 2 * 24 * 24 * (5 * 5 * 1) * 32
  conv2 = 2 * 8 * 8 * (5 * 5 * 32) * 32
  dense = 2 * 512 * 10
  assert mnist.flops_per_example == conv1 + conv2 + dense
  assert targets.get_target('toy_regression').flops_per_example == 2 * (
      100 + 100)


def test_standardisation_happens_inside_the_network():
  spec = targets.standardized(targets.get_target('cifar5'),
                              (0.49, 0.48, 0.45), (0.20, 0.20, 0.21))
  plain = targets.get_target('cifar5')
  params = _random_params(spec, 3)
  images = tf.random.uniform([4, 32, 32, 3], seed=1)  # [0, 1] pixels.
  by_hand = (images - [0.49, 0.48, 0.45]) / [0.20, 0.20, 0.21]
  np.testing.assert_allclose(targets.apply(spec, params, images, 'loop'),
                             targets.apply(plain, params, by_hand, 'loop'),
                             rtol=1e-5, atol=1e-5)
  keras_logits = targets.keras_model(spec, params, index=1)(images)
  np.testing.assert_allclose(
      keras_logits, targets.apply(spec, params, images, 'loop')[1],
      rtol=1e-4, atol=1e-4)


def test_standardisation_needs_one_positive_std_per_channel():
  cifar = targets.get_target('cifar5')
  with pytest.raises(ValueError, match='one value per input channel'):
    targets.standardized(cifar, (0.5,), (0.2,))
  with pytest.raises(ValueError, match='must be positive'):
    targets.standardized(cifar, (0.5,) * 3, (0.2, 0.0, 0.2))


def test_apply_per_network_gives_each_network_its_own_batch():
  spec = targets.get_target('mnist')
  params = _random_params(spec, 3)
  x = tf.random.stateless_uniform([3, 5, 28, 28, 1], [1, 2])
  out = targets.apply_per_network(spec, params, x, 'loop')
  for i in range(3):
    alone = targets.apply(spec, [(k[i:i + 1], b[i:i + 1]) for k, b in params],
                          x[i], 'loop')
    np.testing.assert_allclose(out[i:i + 1], alone, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='one batch per network'):
    targets.apply_per_network(spec, params, x[:2], 'loop')

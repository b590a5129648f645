"""Hypernetwork: parameter shapes, initial scale, configuration checks."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.model import hypernet
from hypergan_tf.model import targets

SMALL = hypernet.HyperNetConfig(noise_dim=16, code_dim=8, hidden_units=64,
                                hidden_layers=2)


@pytest.mark.parametrize('head', hypernet.HEADS)
@pytest.mark.parametrize('name', sorted(targets.TARGETS))
def test_sample_matches_declared_shapes(name, head):
  spec = targets.get_target(name)
  hn = hypernet.HyperNetwork(spec, dataclasses.replace(SMALL, head=head))
  params = hn.sample(5)
  assert len(params) == len(spec.layers)
  for (kernel, bias), (k_shape, b_shape) in zip(params, spec.param_shapes):
    assert tuple(kernel.shape) == (5,) + k_shape
    assert tuple(bias.shape) == (5,) + b_shape
  assert targets.check_params(spec, params) == 5


def test_codes_shape_and_one_generator_per_layer():
  spec = targets.get_target('cifar')
  hn = hypernet.HyperNetwork(spec, SMALL)
  assert hn.codes(tf.zeros([3, 16])).shape == (3, 5, 8)
  assert len(hn.generators) == 5


@pytest.mark.parametrize('head', hypernet.HEADS)
def test_initial_kernels_are_he_scaled_and_diverse(head):
  """Generated kernels start near He scale, and networks differ."""
  spec = targets.get_target('mnist')
  hn = hypernet.HyperNetwork(
      spec, hypernet.HyperNetConfig(noise_dim=32, code_dim=16,
                                    hidden_units=128, head=head))
  params = hn.sample(64, tf.random.Generator.from_seed(0), training=True)
  for (kernel, _), fan_in in zip(params, spec.fan_ins):
    he_std = (2.0 / fan_in)**0.5
    std = float(tf.math.reduce_std(kernel))
    assert 0.5 * he_std < std < 2.0 * he_std, (std, he_std)
    # Spread across networks is a large part of the total spread.
    across = float(tf.reduce_mean(tf.math.reduce_std(kernel, axis=0)))
    assert across > 0.3 * std
  # Fan-in scaled networks give logits of order one, not exploding ones.
  logits = targets.apply(spec, params, tf.random.uniform((16, 28, 28, 1)))
  assert float(tf.math.reduce_std(logits)) < 10.0


@pytest.mark.parametrize('head', hypernet.HEADS)
def test_seeded_sampling_is_reproducible(head):
  hn = hypernet.HyperNetwork(targets.get_target('toy_regression'),
                             dataclasses.replace(SMALL, head=head))
  a = hn.sample(3, tf.random.Generator.from_seed(7))
  b = hn.sample(3, tf.random.Generator.from_seed(7))
  c = hn.sample(3, tf.random.Generator.from_seed(8))
  np.testing.assert_array_equal(a[0][0], b[0][0])
  assert not np.allclose(a[0][0], c[0][0])


def test_rank1_head_is_a_factor_of_one_shared_kernel():
  """Every network's kernel is W * r s^T of the same W; heads are small."""
  spec = targets.get_target('cifar')
  full = hypernet.HyperNetwork(spec, SMALL)
  rank1 = hypernet.HyperNetwork(spec, dataclasses.replace(SMALL,
                                                          head='rank1'))
  kernel = rank1.sample(3)[1][0].numpy()  # [3, h, w, in, out]
  shared = rank1.generators[1].shared_kernel.numpy()
  factor = kernel / shared[None]  # r_i s_j at every (h, w).
  np.testing.assert_allclose(
      factor, np.broadcast_to(factor[:, :1, :1], factor.shape), rtol=1e-4)
  # Rank one in (in, out) per network.
  for n in range(3):
    singular = np.linalg.svd(factor[n, 0, 0], compute_uv=False)
    assert singular[1] < 1e-4 * singular[0]
  size = lambda hn: sum(int(np.prod(v.shape)) for v in hn.weights)
  assert size(rank1) < size(full) / 5


def test_low_rank_head_keeps_networks_in_a_small_subspace():
  spec = targets.get_target('mnist')
  hn = hypernet.HyperNetwork(spec, dataclasses.replace(
      SMALL, head='low_rank', head_rank=4))
  kernel, bias = hn.sample(20)[2]
  flat = np.concatenate([np.reshape(kernel, (20, -1)),
                         np.reshape(bias, (20, -1))], axis=1)
  singular = np.linalg.svd(flat - flat.mean(0), compute_uv=False)
  assert singular[3] > 1e-3 * singular[0]  # Four directions used ...
  assert singular[4] < 1e-4 * singular[0]  # ... and no more.


def test_discriminator_gives_one_logit_per_code():
  hn = hypernet.HyperNetwork(targets.get_target('mnist'), SMALL)
  assert hn.discriminator(tf.zeros([7, 8])).shape == (7, 1)


@pytest.mark.parametrize('kwargs, message', [
    (dict(code_dim=0), 'code_dim must be positive'),
    (dict(hidden_layers=-1), 'hidden_layers must be >= 0'),
    (dict(activation='nope'), 'Unknown activation'),
    (dict(init_gain=0.0), 'init_gain must be positive'),
    (dict(head='rank2'), "Unknown head 'rank2'"),
    (dict(head_rank=0), 'head_rank must be positive'),
])
def test_bad_config_raises(kwargs, message):
  with pytest.raises(ValueError, match=message):
    hypernet.HyperNetConfig(**kwargs)

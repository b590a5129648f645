"""Modes: stratified draws, one base network per mode, the initial scale."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.evaluation import evaluation
from hypergan_tf.model import hypernet
from hypergan_tf.model import modes
from hypergan_tf.model import targets

SMALL = hypernet.HyperNetConfig(noise_dim=16, code_dim=8, hidden_units=64,
                                hidden_layers=2, modes=3)


def test_stratify_spreads_a_draw_over_the_modes_and_keeps_the_rest():
  noise = tf.random.stateless_normal([12, 5], [0, 1])
  stratified = modes.stratify(noise, 3)
  np.testing.assert_array_equal(modes.mode_index(stratified, 3),
                                np.arange(12) % 3)
  np.testing.assert_array_equal(stratified[:, 1:], noise[:, 1:])
  assert modes.stratify(noise, 1) is noise


def test_stratified_first_value_stays_standard_normal():
  noise = tf.random.stateless_normal([30_000, 2], [0, 2])
  first = modes.stratify(noise, 5)[:, 0].numpy()
  assert np.all(np.isfinite(first))
  assert abs(first.mean()) < 0.03 and abs(first.std() - 1.0) < 0.03
  # Extreme inputs stay finite and in their stratum.
  extreme = tf.constant([[-40.0], [40.0], [-40.0], [40.0]])
  np.testing.assert_array_equal(
      modes.mode_index(modes.stratify(extreme, 4), 4), [0, 1, 2, 3])


def test_a_network_is_its_modes_base_plus_the_generated_part():
  hn = hypernet.HyperNetwork(targets.get_target('toy_regression'), SMALL)
  noise = hn.stratify(tf.random.stateless_normal([6, 16], [0, 0]))
  kernels = hn.networks(noise)[0][0].numpy()
  generated = hn.generators[0](hn.codes(noise)[:, 0])[0].numpy()
  base = hn.mode_offsets.kernel_0.numpy()
  np.testing.assert_allclose(kernels, generated + base[np.arange(6) % 3],
                             rtol=1e-5, atol=1e-6)
  # The modes' bases differ like independently initialised networks.
  assert np.std(base[0] - base[1]) > 0.5 * np.std(base[0])


def test_modes_start_at_the_intended_scale_and_train():
  """Base and generated part each start at He / sqrt(2), so their sum starts
  at He scale (measured: within 2% of it, over layers and seeds)."""
  spec = targets.get_target('mnist')
  config = hypernet.HyperNetConfig(noise_dim=32, code_dim=16,
                                   hidden_units=128, modes=4)
  hn = hypernet.HyperNetwork(spec, config)
  noise = hn.stratify(tf.random.stateless_normal([64, 32], [0, 0]))
  params = hn.networks(noise, training=True)
  codes = hn.codes(noise, training=True)
  for i, ((kernel, _), fan_in) in enumerate(zip(params, spec.fan_ins)):
    he_std = (2.0 / fan_in)**0.5
    generated = hn.generators[i](codes[:, i], training=True)[0]
    base = getattr(hn.mode_offsets, f'kernel_{i}')
    # Without the base the sum starts at 0.71 He; without the halving at
    # 1.41 He (and the generated part at 1.0 He).
    assert 0.9 * he_std < float(tf.math.reduce_std(kernel)) < 1.1 * he_std, i
    for part in (generated, base):
      assert (0.9 * he_std / 2**0.5 < float(tf.math.reduce_std(part))
              < 1.1 * he_std / 2**0.5), i
  # The base networks are trained with the generators: they are among the
  # variables the generators' optimizer updates, and a loss of the networks
  # sends a gradient into every mode's base.
  names = {v.path for v in hn.layer_generator_variables}
  bases = hn.mode_offsets.trainable_variables
  assert bases and {v.path for v in bases} <= names
  images = tf.random.stateless_uniform([8, 28, 28, 1], [0, 1])
  with tf.GradientTape() as tape:
    logits = targets.apply(spec, hn.networks(noise, training=True), images)
    loss = tf.reduce_mean(tf.square(logits))
  grads = dict(zip([v.path for v in hn.layer_generator_variables],
                   tape.gradient(loss, hn.layer_generator_variables)))
  for base in bases:
    grad = grads[base.path]
    assert grad is not None, base.path
    grad = tf.convert_to_tensor(grad).numpy()  # From a gather: slices.
    per_mode = np.abs(grad).reshape(config.modes, -1).max(axis=1)
    assert np.all(per_mode > 0), (base.path, per_mode)


def test_one_mode_is_the_plain_generator():
  hn = hypernet.HyperNetwork(targets.get_target('toy_regression'),
                             dataclasses.replace(SMALL, modes=1))
  assert hn.mode_offsets is None
  noise = tf.random.stateless_normal([4, 16], [3, 0])
  assert hn.stratify(noise) is noise


def test_modes_need_the_noise_and_a_positive_count():
  hn = hypernet.HyperNetwork(targets.get_target('toy_regression'), SMALL)
  codes = hn.codes(tf.zeros([2, 16]))
  with pytest.raises(ValueError, match='pass the input noise'):
    hn.generate(codes)
  with pytest.raises(ValueError, match='modes must be >= 1'):
    dataclasses.replace(SMALL, modes=0)


def test_disagreement_by_mode_separates_within_from_across():
  # Six networks, two modes (n mod 2): mode 0 always says class 0; mode 1
  # says class 1 except network 3, which says 2 on the last of 4 images.
  predictions = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0],
                          [1, 1, 1, 2], [0, 0, 0, 0], [1, 1, 1, 1]])
  logits = np.eye(3)[predictions]
  scores = modes.disagreement_by_mode(logits, 2, 'test/')
  # Within: pairs (0,2) (0,4) (2,4) agree; (1,3) (3,5) differ on 1/4; (1,5)
  # agree -> 0.5 / 6. Across: all 9 pairs differ everywhere.
  assert scores['test/disagreement_within_mode'] == pytest.approx(0.5 / 6)
  assert scores['test/disagreement_across_modes'] == pytest.approx(1.0)
  # One network per mode: no pair within a mode, so no such key.
  assert modes.disagreement_by_mode(logits[:2], 2) == {
      'disagreement_across_modes': 1.0}


def test_evaluation_reports_it_only_for_runs_with_modes(tmp_path):
  logits = np.eye(3)[np.array([[0, 1], [1, 1], [0, 1], [1, 0]])]
  for num_modes, keys in ((1, set()), (2, {'v/disagreement_within_mode',
                                            'v/disagreement_across_modes'})):
    (tmp_path / 'config.json').write_text(f'{{"modes": {num_modes}}}')
    assert set(evaluation.by_mode(str(tmp_path), logits, 'v/')) == keys

"""Per-network objectives: each network's label smoothing from its noise."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import objectives
from hypergan_tf.methods.hypergan import training
from hypergan_tf.model import modes
from hypergan_tf.model import targets
from tests.conftest import TINY


def _cfg(**overrides):
  return config.TrainConfig(**{'run_dir': '', **TINY, **overrides})


@pytest.fixture(scope='module')
def batch(tfds_dir):
  ds = data.load('mnist', 'train', 16, training=True, data_dir=tfds_dir,
                 download=False)
  return next(iter(ds))


def test_strength_is_uniform_on_0_spread_and_reads_only_s1():
  noise = tf.random.stateless_normal([20000, 4], seed=[1, 2])
  got = objectives.strength(noise, 0.3).numpy()
  assert got.min() >= 0.0 and got.max() <= 0.3
  assert got.mean() == pytest.approx(0.15, abs=0.005)
  assert np.histogram(got, bins=3, range=(0, 0.3))[0] == pytest.approx(
      [20000 / 3] * 3, rel=0.05)
  # The mode's s_0 (and so stratification) and s_2.. leave it alone.
  moved = tf.concat([noise[:, :1] + 1.0, noise[:, 1:2],
                     -noise[:, 2:]], axis=1)
  np.testing.assert_array_equal(objectives.strength(moved, 0.3), got)
  np.testing.assert_array_equal(
      objectives.strength(modes.stratify(noise, 4), 0.3), got)


@pytest.mark.parametrize('per_network_labels', [False, True])
def test_loss_is_keras_label_smoothing_per_network(per_network_labels):
  n, b, c = 3, 5, 4
  logits = tf.random.stateless_normal([n, b, c], seed=[3, 4]) * 3.0
  labels = tf.random.stateless_uniform(
      [n, b] if per_network_labels else [b], seed=[5, 6], maxval=c,
      dtype=tf.int32)
  smoothing = tf.constant([0.0, 0.1, 0.4])
  own = labels if per_network_labels else tf.stack([labels] * n)
  expected = np.mean([keras.losses.CategoricalCrossentropy(
      from_logits=True, label_smoothing=float(e), reduction=None)(
          tf.one_hot(own[i], c), logits[i]) for i, e in enumerate(smoothing)],
                     axis=0)
  got = objectives.label_smoothing_loss(logits, labels, smoothing)
  assert got.shape == (b,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # No smoothing is the shared cross-entropy.
  np.testing.assert_allclose(
      objectives.label_smoothing_loss(logits, labels, tf.zeros([n])),
      training.classification_loss(logits, labels), rtol=1e-6)


def test_descent_separates_two_identical_networks_to_their_own_optima():
  """Two networks with the same logits and different smoothing move apart,
  each to the confidence its own objective is minimised by."""
  c, smoothing = 5, tf.constant([0.05, 0.3])
  logits = tf.Variable(tf.zeros([2, 1, c]))
  labels = tf.constant([2])
  optimizer = keras.optimizers.SGD(learning_rate=1.0)
  for step in range(300):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(objectives.label_smoothing_loss(
          logits, labels, smoothing))
    optimizer.apply_gradients([(tape.gradient(loss, logits), logits)])
    if step == 0:
      first = tf.nn.softmax(logits)[:, 0, 2].numpy()
      assert first[0] > first[1]  # Apart after one step.
  confidence = tf.nn.softmax(logits)[:, 0, 2].numpy()
  np.testing.assert_allclose(confidence, 1.0 - smoothing + smoothing / c,
                             atol=2e-3)


def test_spread_zero_trains_like_the_shared_objective(batch):
  def losses(**overrides):
    trainer = training.Trainer(_cfg(**overrides))
    return [trainer.train_step(*batch)['task_loss'] for _ in range(3)]
  assert losses(network_objective='label_smoothing',
                objective_spread=0.0) == pytest.approx(losses(), rel=1e-5)


def test_the_step_scores_each_network_with_its_own_smoothing(batch):
  images, labels = batch
  trainer = training.Trainer(_cfg(network_objective='label_smoothing',
                                  objective_spread=0.5))
  # The first step's networks: the trainer generator's first draw,
  # stratified (training.Trainer._distributed_step).
  rng = tf.random.Generator.from_state(trainer.rng.state.numpy(),
                                       trainer.rng.algorithm)
  noise = trainer.hypernet.stratify(
      rng.normal([TINY['num_networks'], TINY['noise_dim']]))
  logits = targets.apply(trainer.spec,
                         trainer.hypernet.networks(noise, training=True),
                         images)
  own = objectives.label_smoothing_loss(
      logits, labels, objectives.strength(noise, 0.5))
  got = trainer.train_step(images, labels)['task_loss']
  assert got == pytest.approx(float(tf.reduce_mean(own)), rel=1e-5)
  assert got != pytest.approx(float(tf.reduce_mean(
      training.classification_loss(logits, labels))), rel=1e-3)


def test_finite_with_modes_and_one_network_per_mode(batch):
  trainer = training.Trainer(_cfg(network_objective='label_smoothing',
                                  modes=4, num_networks=4))
  for _ in range(2):
    assert np.isfinite(trainer.train_step(*batch)['loss'])


def test_bad_values_give_one_clear_error_each():
  with pytest.raises(ValueError, match='Unknown --network_objective'):
    _cfg(network_objective='weight_decay')
  with pytest.raises(ValueError, match='--objective_spread must be <= 0.99'):
    _cfg(network_objective='label_smoothing', objective_spread=1.0)
  with pytest.raises(ValueError, match='needs a classification dataset'):
    config.TrainConfig(run_dir='', dataset='toy_regression',
                       target='toy_regression',
                       network_objective='label_smoothing')
  with pytest.raises(ValueError, match='--noise_dim >= 2, got 1'):
    _cfg(network_objective='label_smoothing', noise_dim=1)
  with pytest.raises(ValueError, match='set --network_chunk=0'):
    _cfg(network_objective='label_smoothing', network_chunk=2)
  with pytest.raises(ValueError, match='Unknown per-network objective'):
    objectives.task_loss('weight_decay', tf.zeros([2, 2]), 0.1,
                         training.classification_loss)

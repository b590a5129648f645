"""Function-space diversity terms, off-manifold inputs, and their wiring."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.methods import loop
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import diversity
from hypergan_tf.methods.hypergan import training
from hypergan_tf.model import hypernet
from hypergan_tf.model import modes
from hypergan_tf.model import targets
from tests.conftest import TINY


def _cfg(**overrides):
  return config.TrainConfig(**{'run_dir': '', **TINY, **overrides})


def _binary_logits(a: float, b: float) -> tf.Variable:
  """Two networks, one input, two classes: logits (a, 0) and (b, 0)."""
  return tf.Variable([[[a, 0.0]], [[b, 0.0]]])


def test_mutual_information_gradient_matches_hand_computation():
  # p_i = sigmoid(a_i), p = mean p_i. With binary entropy H,
  # MI = H(p) - (H(p_1) + H(p_2)) / 2 and dH/dp = log((1 - p) / p), so
  # dMI/da = p_1 (1 - p_1) / 2 * (logit(p_1) - logit(p)) > 0 for a > b:
  # maximising MI pushes the more confident network further away.
  a, b = 0.3, 0.1
  logits = _binary_logits(a, b)
  with tf.GradientTape() as tape:
    loss = diversity.loss('mutual_information', logits)
  grad = tape.gradient(loss, logits).numpy()
  sig = lambda x: 1 / (1 + np.exp(-x))
  p1, p = sig(a), (sig(a) + sig(b)) / 2
  logit = lambda q: np.log(q / (1 - q))
  expected = p1 * (1 - p1) / 2 * (logit(p1) - logit(p))
  np.testing.assert_allclose(-grad[0, 0, 0], expected, rtol=1e-4)
  # Symmetric on the other network; the constant logit only shifts.
  assert grad[0, 0, 0] < 0 < grad[1, 0, 0]


@pytest.mark.parametrize('term', diversity.TERMS)
def test_a_descent_step_pushes_two_close_networks_apart(term):
  logits = _binary_logits(0.3, 0.1)
  gap = lambda: float(tf.abs(tf.nn.softmax(logits[0]) -
                             tf.nn.softmax(logits[1]))[0, 0])
  before = gap()
  with tf.GradientTape() as tape:
    loss = diversity.loss(term, logits)
  logits.assign_sub(0.5 * tape.gradient(loss, logits))
  assert gap() > before


@pytest.mark.parametrize('term', diversity.TERMS)
@pytest.mark.parametrize('n', [1, 2])
def test_terms_are_finite_for_one_and_two_networks(term, n):
  logits = tf.Variable(tf.random.normal([n, 5, 10], seed=1))
  with tf.GradientTape() as tape:
    loss = diversity.loss(term, logits)
  grad = tape.gradient(loss, logits)
  assert np.isfinite(float(loss))
  assert grad is None or np.all(np.isfinite(grad.numpy()))
  if n == 1:
    assert float(loss) == 0.0


@pytest.mark.parametrize('term', diversity.TERMS)
def test_gradients_stay_finite_for_saturated_networks(term):
  # Logits far apart enough that softmax underflows to exactly 0.
  logits = tf.Variable([[[200.0, 0.0, -200.0]], [[-200.0, 0.0, 200.0]]])
  with tf.GradientTape() as tape:
    loss = diversity.loss(term, logits)
  assert np.isfinite(float(loss))
  assert np.all(np.isfinite(tape.gradient(loss, logits).numpy()))


def test_identical_networks_are_least_diverse():
  same = tf.tile(tf.random.normal([1, 8, 10], seed=2), [4, 1, 1])
  spread = tf.random.normal([4, 8, 10], seed=3) * 3
  assert float(diversity.loss('mutual_information', same)) == pytest.approx(
      0.0, abs=1e-5)
  assert float(diversity.loss('mutual_information', spread)) < -0.1
  assert float(diversity.loss('repulsion', same)) == pytest.approx(1.0,
                                                                   abs=1e-5)


def test_unknown_term_is_refused():
  with pytest.raises(ValueError, match='Unknown diversity term'):
    diversity.loss('svgd', tf.zeros([2, 1, 2]))


def _made_from_the_batch(make, images):
  """make(images, seed): seeded, same shape, in [0, 1], every image changed.
  Returns its output for seed (1, 2)."""
  seed = tf.constant([1, 2], tf.int64)
  out = make(images, seed)
  assert out.shape == images.shape
  np.testing.assert_array_equal(out, make(images, seed))
  assert not np.array_equal(out, make(images, tf.constant([1, 3], tf.int64)))
  assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1
  changed = np.abs(out.numpy() - images.numpy()).reshape(len(images), -1)
  assert np.all(changed.max(1) > 0)  # No training image passes unchanged.
  return out


def test_off_manifold_inputs_are_seeded_images_off_the_batch():
  images = tf.random.uniform([64, 28, 28, 1], seed=4)
  out = _made_from_the_batch(diversity.off_manifold, images)
  # The tile shuffle keeps each image's pixels: some outputs are
  # permutations of their input.
  permuted = [np.allclose(np.sort(o.ravel()), np.sort(i.ravel()))
              for o, i in zip(out.numpy(), images.numpy())]
  assert any(permuted)
  inverted = [np.allclose(o, 1 - i) for o, i in zip(out.numpy(),
                                                    images.numpy())]
  assert any(inverted)


def test_off_manifold_refuses_sides_that_do_not_tile():
  with pytest.raises(ValueError, match='divide by 4'):
    diversity.off_manifold(tf.zeros([2, 30, 30, 1]), tf.constant([0, 0]))


def test_bad_values_give_one_clear_error_each():
  with pytest.raises(ValueError, match='diversity_weight must be >= 0'):
    _cfg(diversity_weight=-1.0)
  with pytest.raises(ValueError, match='num_networks >= 2'):
    _cfg(diversity_weight=1.0, num_networks=1)
  with pytest.raises(ValueError, match='classification'):
    config.TrainConfig(run_dir='', dataset='toy_regression',
                       target='toy_regression', diversity_weight=1.0)
  with pytest.raises(ValueError, match='Unknown --diversity_term'):
    _cfg(diversity_term='svgd')
  with pytest.raises(ValueError, match='Unknown --diversity_inputs'):
    _cfg(diversity_inputs='context')


def _losses(cfg, batch, steps=3):
  trainer = training.Trainer(cfg)
  return [trainer.train_step(*batch) for _ in range(steps)], trainer


@pytest.fixture(scope='module')
def batch(tfds_dir):
  ds = data.load('mnist', 'train', 16, training=True, data_dir=tfds_dir,
                 download=False)
  return next(iter(ds))


def test_weight_zero_is_the_plain_hypergan_bit_for_bit(batch):
  plain, plain_trainer = _losses(_cfg(), batch)
  off, off_trainer = _losses(_cfg(diversity_term='repulsion',
                                  diversity_inputs='batch'), batch)
  assert plain == off
  for a, b in zip(plain_trainer.hypernet.variables,
                  off_trainer.hypernet.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize('term', diversity.TERMS)
def test_the_term_enters_the_generator_loss(batch, term):
  losses, _ = _losses(_cfg(diversity_weight=0.5, diversity_term=term,
                           diversity_batch_size=8), batch, steps=2)
  for step in losses:
    assert np.isfinite(step['diversity_loss'])
    expected = (step['task_loss'] + 0.1 * step['adversarial_loss'] +
                0.5 * step['diversity_loss'])
    assert step['loss'] == pytest.approx(expected, rel=1e-5)


def test_training_with_the_term_reads_only_the_training_dataset(
    tfds_dir, monkeypatch):
  # Off-manifold inputs are made from the batch: the training pipeline opens
  # the training dataset and nothing else (never an OOD evaluation set).
  read = []
  original = data.builder

  def recording_builder(name, *args, **kwargs):
    read.append(name)
    return original(name, *args, **kwargs)

  monkeypatch.setattr(data, 'builder', recording_builder)
  data.clear_cache()  # Splits decoded by earlier tests would hide the reads.
  trainer = training.Trainer(_cfg(data_dir=tfds_dir, download=False,
                                  diversity_weight=1.0,
                                  diversity_batch_size=8))
  train_ds, *_ = loop._datasets(trainer, 0)  # pylint: disable=protected-access
  for (images, labels), _ in zip(train_ds, range(2)):
    assert np.isfinite(trainer.train_step(images, labels)['diversity_loss'])
  assert read and set(read) == {'mnist'}


def test_stein_score_points_up_the_density_of_the_others():
  # Three particles on a line: the outer ones' density rises inwards.
  particles = tf.constant([[-1.0], [0.0], [1.0]])
  score = diversity.stein_score(particles).numpy()[:, 0]
  assert score[0] > 0 > score[2]
  assert score[1] == pytest.approx(0.0, abs=1e-5)  # Symmetric middle.
  same = diversity.stein_score(tf.ones([3, 4]))
  assert np.all(np.isfinite(same.numpy()))  # Identical: no direction.


def test_context_inputs_are_seeded_in_range_and_destroy_each_image():
  images = tf.random.uniform([64, 32, 32, 3], seed=5)
  out = _made_from_the_batch(diversity.context, images)
  grey = np.isclose(out.numpy(), 0.5).all(-1).mean((1, 2))
  assert any(grey > 0.5)  # Some large cutouts.
  with pytest.raises(ValueError, match='divide by 4'):
    diversity.context(tf.zeros([2, 30, 30, 1]), tf.constant([0, 0]))


@pytest.mark.parametrize('per_network', [False, True])
def test_batch_and_context_inputs_feed_the_term(batch, per_network):
  images, labels = batch
  n = TINY['num_networks']
  if per_network:
    images, labels = (tf.repeat(x, n, axis=0) for x in (images, labels))
  losses, _ = _losses(_cfg(diversity_weight=1e-3, diversity_term='gfsf',
                           diversity_inputs='batch_and_context',
                           diversity_batch_size=8,
                           per_network_batches=per_network),
                      (images, labels), steps=2)
  assert all(np.isfinite(step['diversity_loss']) for step in losses)


# --- Within-mode pairs (--diversity_pairs=within_mode) ---------

# A small classifier: 4 inputs, 16 hidden units, 3 classes.
_SMALL_SPEC = targets.TargetSpec('small', (4,), (targets.Dense(16, 'relu'),
                                                 targets.Dense(3)))


def _hellinger(logits, i, j) -> float:
  p = tf.sqrt(tf.nn.softmax(logits))
  return float(tf.reduce_mean(tf.reduce_sum(tf.square(p[i] - p[j]), -1)))


@pytest.mark.parametrize('term', diversity.TERMS)
def test_within_mode_terms_compare_only_networks_of_one_mode(term):
  # Network n is in group n mod 2: the term is the mean of each group's.
  logits = tf.Variable(tf.random.stateless_normal([4, 6, 5], [0, 7]))
  with tf.GradientTape() as tape:
    grouped = diversity.loss(term, logits, groups=2)
  expected = (diversity.loss(term, logits[0::2]) +
              diversity.loss(term, logits[1::2])) / 2
  assert float(grouped) == pytest.approx(float(expected), rel=1e-5)
  # Network 0's push comes from network 2 only, never from mode 1's.
  moved = tf.Variable(tf.tensor_scatter_nd_update(
      logits, [[1], [3]], 5.0 * tf.ones([2, 6, 5])))
  with tf.GradientTape() as moved_tape:
    moved_loss = diversity.loss(term, moved, groups=2)
  np.testing.assert_allclose(tape.gradient(grouped, logits)[0::2],
                             moved_tape.gradient(moved_loss, moved)[0::2],
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('term', diversity.TERMS)
def test_a_descent_step_separates_two_close_networks_of_one_mode_and_leaves_the_bases_alone(term):  # pylint: disable=line-too-long
  keras.utils.set_random_seed(0)
  hn = hypernet.HyperNetwork(_SMALL_SPEC, hypernet.HyperNetConfig(
      noise_dim=16, code_dim=8, hidden_units=32, hidden_layers=1, modes=2))
  noise = hn.stratify(tf.random.stateless_normal([4, 16], [1, 1]))
  # Networks 0 and 2 (mode 0), and 1 and 3 (mode 1), have nearly the same
  # noise: two pairs of close networks.
  noise = tf.tensor_scatter_nd_update(noise, [[2], [3]], noise[:2] + tf.concat(
      [tf.zeros([2, 1]), 0.05 * tf.ones([2, 15])], axis=1))
  np.testing.assert_array_equal(modes.mode_index(noise, 2), [0, 1, 0, 1])
  x = tf.random.stateless_normal([32, 4], [2, 2])
  logits = lambda params: targets.apply(_SMALL_SPEC, params, x)
  gaps = lambda: [_hellinger(logits(hn.networks(noise)), i, i + 2)
                  for i in (0, 1)]
  before = gaps()
  bases_before = [v.numpy() for v in hn.mode_offsets.trainable_variables]
  with tf.GradientTape() as tape:
    _, detached = hn.generate(hn.codes(noise), noise=noise,
                              detach_bases=True)
    loss = diversity.loss(term, logits(detached), groups=2)
  variables = hn.generator_variables
  grads = [None if g is None else tf.convert_to_tensor(g)
           for g in tape.gradient(loss, variables)]
  norm = tf.linalg.global_norm([g for g in grads if g is not None])
  for v, g in zip(variables, grads):
    if g is not None:
      v.assign_sub(1e-2 * g / norm)
  assert all(after > 1.01 * old for after, old in zip(gaps(), before))
  for base, old in zip(hn.mode_offsets.trainable_variables, bases_before):
    np.testing.assert_array_equal(base.numpy(), old)


def test_detached_bases_give_the_same_networks_bit_for_bit():
  hn = hypernet.HyperNetwork(_SMALL_SPEC, hypernet.HyperNetConfig(
      noise_dim=16, code_dim=8, hidden_units=32, hidden_layers=1, modes=2))
  noise = hn.stratify(tf.random.stateless_normal([6, 16], [3, 3]))
  params, detached = hn.generate(hn.codes(noise), noise=noise,
                                 detach_bases=True)
  for pair, same, detached_pair in zip(hn.networks(noise), params, detached):
    for a, b, c in zip(pair, same, detached_pair):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
      np.testing.assert_array_equal(a.numpy(), c.numpy())
  plain = hypernet.HyperNetwork(_SMALL_SPEC, hypernet.HyperNetConfig(
      noise_dim=16, code_dim=8, hidden_units=32, hidden_layers=1))
  with pytest.raises(ValueError, match='detach_bases needs .* modes >= 2'):
    plain.generate(plain.codes(noise), noise=noise, detach_bases=True)


@pytest.mark.parametrize('term', diversity.TERMS)
@pytest.mark.parametrize('n, groups', [(4, 4), (2, 2), (4, 3)])
def test_within_mode_terms_are_finite_for_one_network_per_mode(term, n,
                                                               groups):
  logits = tf.Variable(tf.random.normal([n, 5, 10], seed=1))
  with tf.GradientTape() as tape:
    loss = diversity.loss(term, logits, groups=groups)
  grad = tape.gradient(loss, logits)
  assert np.isfinite(float(loss))
  assert grad is None or np.all(np.isfinite(grad.numpy()))
  if n == groups:  # No pair in any mode: nothing to push.
    assert float(loss) == 0.0
  else:  # Only networks 0 and 3 share a group.
    assert float(loss) == pytest.approx(
        float(diversity.loss(term, tf.gather(logits, [0, 3]))), rel=1e-5)


def test_within_mode_bad_values_give_one_clear_error_each():
  with pytest.raises(ValueError, match='Unknown --diversity_pairs'):
    _cfg(diversity_pairs='across_modes')
  with pytest.raises(ValueError, match='needs --modes >= 2, got 1'):
    _cfg(diversity_pairs='within_mode', diversity_weight=1.0)
  with pytest.raises(ValueError, match=r'--num_networks >= 2 x --modes = 8, '
                     'got 4'):
    _cfg(diversity_pairs='within_mode', diversity_weight=1.0, modes=4)
  with pytest.raises(ValueError, match='groups must be >= 1'):
    diversity.loss('repulsion', tf.zeros([2, 1, 2]), groups=0)


def test_within_mode_weight_zero_is_todays_training_bit_for_bit(batch):
  plain, plain_trainer = _losses(_cfg(modes=2), batch)
  off, off_trainer = _losses(_cfg(modes=2, diversity_pairs='within_mode',
                                  diversity_term='repulsion',
                                  diversity_inputs='batch'), batch)
  assert plain == off
  for a, b in zip(plain_trainer.hypernet.variables,
                  off_trainer.hypernet.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize('per_network', [False, True])
def test_within_mode_term_trains_and_spares_the_bases(batch, per_network):
  images, labels = batch
  n = TINY['num_networks']
  if per_network:
    images, labels = (tf.repeat(x, n, axis=0) for x in (images, labels))
  gradients = {}
  for weight in (0.0, 0.5):
    trainer = training.Trainer(_cfg(
        modes=2, diversity_pairs='within_mode', diversity_weight=weight,
        diversity_term='repulsion', diversity_inputs='batch',
        per_network_batches=per_network))
    noise = trainer.hypernet.stratify(
        tf.random.stateless_normal([n, TINY['noise_dim']], [4, 4]))
    prior = tf.random.stateless_normal([n * 3, TINY['code_dim']], [5, 5])
    g_grads, _, losses = trainer._gradients(images, labels, noise, prior)  # pylint: disable=protected-access
    names = [v.path for v in trainer.hypernet.generator_variables]
    gradients[weight] = {name: None if g is None else tf.convert_to_tensor(g)
                         for name, g in zip(names, g_grads)}
    if weight:
      assert np.isfinite(float(losses['diversity_loss']))
      assert float(losses['loss']) == pytest.approx(
          float(losses['task_loss'] + 0.1 * losses['adversarial_loss'] +
                weight * losses['diversity_loss']), rel=1e-5)
  moved = []
  for name, plain in gradients[0.0].items():
    with_term = gradients[0.5][name]
    if 'mode_offsets' in name:  # The task's gradient alone.
      np.testing.assert_array_equal(with_term, plain)
    elif plain is not None:
      moved.append(not np.allclose(with_term, plain))
  assert any(moved)  # The term reaches the generator side.

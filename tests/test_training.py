"""Training: losses, a learning train step, checkpoints and resumption."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.methods import loop
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from hypergan_tf.model import members
from hypergan_tf.model import targets
from hypergan_tf.runtime import checkpoints
from hypergan_tf.runtime import ownership
from hypergan_tf.runtime import rundir
from tests.conftest import TINY


@pytest.fixture(scope='module')
def batch(tfds_dir):
  ds = data.load('mnist', 'train', 32, training=True, data_dir=tfds_dir,
                 download=False)
  return next(iter(ds))


def _cfg(run_dir='', **overrides):
  return config.TrainConfig(run_dir=run_dir, **{**TINY, **overrides})


def _state(trainer):
  """Every variable a resume must restore, by name."""
  out = {f'hypernet/{i}/{v.path}': v.numpy()
         for i, v in enumerate(trainer.hypernet.variables)}
  for name, opt in (('g', trainer.g_optimizer), ('d', trainer.d_optimizer)):
    # Optimizer names are uniquified per instance; their variables' order
    # is not.
    out.update({f'{name}_opt/{i}/{v.path.split("/")[-1]}': v.numpy()
                for i, v in enumerate(opt.variables)})
  out['step'] = trainer.step.numpy()
  out['rng'] = trainer.rng.state.numpy()
  return out


def test_discriminator_loss_is_bce_with_logits():
  big = tf.constant([[20.0]])
  d_loss, g_adv = training.discriminator_losses(big, -big, -big)
  assert float(d_loss) < 1e-6  # Perfect discriminator.
  assert float(g_adv) == pytest.approx(20.0, rel=1e-3)  # Non-saturating.
  zero = tf.zeros([4, 1])
  d_loss, g_adv = training.discriminator_losses(zero, zero, zero)
  assert float(d_loss) == pytest.approx(2 * np.log(2), rel=1e-6)
  assert float(g_adv) == pytest.approx(np.log(2), rel=1e-6)


def test_classification_loss_averages_networks():
  logits = tf.constant([[[10.0, 0.0]], [[0.0, 10.0]]])  # 2 nets, 1 example.
  loss = training.classification_loss(logits, tf.constant([0]))
  expected = (np.log1p(np.exp(-10.0)) + np.log1p(np.exp(10.0))) / 2
  np.testing.assert_allclose(loss, [expected], rtol=1e-5)


def test_moment_matching_loss_small_for_prior_samples():
  prior = tf.random.normal([4000, 3, 4], seed=0)
  assert float(training.moment_matching_loss(prior)) < 0.01
  assert float(training.moment_matching_loss(3.0 * prior + 1.0)) > 1.0


def test_moment_loss_fails_collapsed_codes_at_any_code_size():
  # Codes that ignore the noise: every variance is 0. Averaged over the D^2
  # covariance entries this scored 1 / D (0.003 for CIFAR's 5 x 64 codes).
  for shape in ([500, 3, 4], [500, 5, 64]):
    collapsed = tf.ones(shape) * 0.3
    assert float(training.moment_matching_loss(collapsed)) >= 1.0


def test_pretraining_does_not_stop_on_a_collapsed_mixer():
  trainer = training.Trainer(_cfg(pretrain_mixer_steps=1,
                                  pretrain_mixer_threshold=0.1))
  codes_layer = trainer.hypernet.mixer.get_layer('codes')
  codes_layer.kernel.assign(tf.zeros_like(codes_layer.kernel))
  assert trainer.pretrain_mixer() >= 0.1  # One step cannot undo collapse.


def test_pretraining_matches_mixer_moments():
  trainer = training.Trainer(_cfg(pretrain_mixer_steps=300,
                                  pretrain_mixer_threshold=0.05))
  codes = trainer.hypernet.codes(tf.random.normal([512, 16]), training=True)
  before = float(training.moment_matching_loss(codes))
  loss = trainer.pretrain_mixer()
  assert loss < 0.05 < before
  assert trainer.pretrain_mixer() is None  # Done once, remembered.


def test_train_step_lowers_loss_on_fixed_batch(batch):
  images, labels = batch
  trainer = training.Trainer(_cfg(batch_size=32, learning_rate=3e-3,
                                  lr_schedule='constant'))
  losses = [trainer.train_step(images, labels)['task_loss']
            for _ in range(25)]
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
  assert int(trainer.step.numpy()) == 25


@pytest.mark.parametrize('model', [{'head': 'full'}, {'head': 'rank1'},
                                   {'head': 'low_rank', 'modes': 2}],
                         ids=['full', 'rank1', 'low_rank_modes'])
def test_resume_restores_step_weights_optimizer_exactly(batch, tmp_path,
                                                        model):
  images, labels = batch
  cfg = _cfg(str(tmp_path), batch_size=32, **model)
  first = training.Trainer(cfg)
  for _ in range(3):
    first.train_step(images, labels)
  loop.Checkpoints(first).save()
  saved = _state(first)

  second = training.Trainer(cfg)
  assert any(not np.array_equal(saved[k], v)
             for k, v in _state(second).items())
  assert loop.Checkpoints(second).restored()
  restored = _state(second)
  assert saved.keys() == restored.keys()
  for key, value in saved.items():
    np.testing.assert_array_equal(restored[key], value, err_msg=key)
  assert int(restored['step']) == 3
  # Same state, same noise stream: the next step is identical too.
  a = first.train_step(images, labels)
  b = second.train_step(images, labels)
  assert a == b


def test_every_modes_base_network_trains_every_step(batch):
  """A step's draw is stratified: with as many modes as networks, each
  network has a mode of its own, so every base moves in the first step.
  (Unstratified, 8 networks would cover all 8 modes with chance 8!/8^8.)"""
  images, labels = batch
  trainer = training.Trainer(_cfg(batch_size=32, modes=8, num_networks=8,
                                  weight_decay=0.0))
  bases = trainer.hypernet.mode_offsets
  before = [bases.kernel_0.numpy(), bases.bias_0.numpy()]
  trainer.train_step(images, labels)
  for variable, value in zip((bases.kernel_0, bases.bias_0), before):
    moved = np.abs(variable.numpy() - value).reshape(8, -1).max(axis=1)
    assert np.all(moved > 0), (variable.path, moved)


def test_corrupt_checkpoint_gives_clear_error(batch, tmp_path):
  cfg = _cfg(str(tmp_path), batch_size=32)
  path = loop.Checkpoints(training.Trainer(cfg)).save()
  with open(path + '.data-00000-of-00001', 'r+b') as f:
    f.truncate(100)
  with pytest.raises(RuntimeError, match='cannot be restored'):
    loop.Checkpoints(training.Trainer(cfg))  # Restores as it is made.


def test_foreign_checkpoint_gives_clear_error(tmp_path):
  loop.Checkpoints(training.Trainer(_cfg(str(tmp_path)))).save()
  with pytest.raises(RuntimeError, match='other flags'):
    loop.Checkpoints(training.Trainer(_cfg(str(tmp_path), code_dim=4)))


def _summary_tags(directory) -> set[str]:
  tags = set()
  for path in tf.io.gfile.glob(os.path.join(directory, 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


def test_evaluate_reports_single_and_ensemble(batch, tmp_path):
  images, labels = batch
  trainer = training.Trainer(_cfg(batch_size=32))
  with tf.summary.create_file_writer(str(tmp_path)).as_default():
    result = loop.evaluate(trainer, [(images, labels)], 4, (1, 4, 10),
                           'test', step=7)
  # Scalars, and the ensemble's entropy histogram and reliability diagram.
  assert {'test/accuracy_n4', 'test/disagreement_n4', 'test/entropy_n4',
          'test/reliability_n4'} <= _summary_tags(tmp_path)
  assert {'test/accuracy_n1', 'test/accuracy_n1_std',
          'test/accuracy_n4'} <= set(result)
  assert 'test/accuracy_n10' not in result  # Only 4 networks.
  params = trainer.sample_eval_params(4)
  from hypergan_tf.model import targets  # pylint: disable=g-import-not-at-top
  logits = targets.apply(trainer.spec, params, images).numpy()
  per_net = (logits.argmax(-1) == labels.numpy()).mean(1)
  assert result['test/accuracy_n1'] == pytest.approx(per_net.mean())
  assert result['test/accuracy_n1_std'] == pytest.approx(per_net.std())


def test_nan_loss_stops_naming_step_and_term_and_keeps_checkpoint(
    tfds_dir, tmp_path, monkeypatch):
  real_load = data.load

  def load_with_poisoned_third_batch(*args, **kwargs):
    ds = real_load(*args, **kwargs)
    if not kwargs.get('training'):
      return ds
    poison = lambda i, images: tf.where(i == 2, images * np.nan, images)
    return ds.enumerate().map(lambda i, b: (poison(i, b[0]), b[1]))

  monkeypatch.setattr(loop.data, 'load', load_with_poisoned_third_batch)
  cfg = _cfg(str(tmp_path), data_dir=tfds_dir, download=False,
             checkpoint_every=2)
  with pytest.raises(loop.NonFiniteLossError,
                     match=r'at step 3: task_loss = (nan|inf)\. The last good'):
    training.train(cfg)
  assert ownership.read_record(str(tmp_path)) is None  # Released.
  trainer = training.load_trainer(str(tmp_path))
  assert int(trainer.step.numpy()) == 2  # Not the broken step 3.
  assert checkpoints.all_finite(trainer.variables)


def test_resuming_with_another_model_shape_is_refused(tmp_path):
  (tmp_path / rundir.CONFIG_FILE).write_text(
      json.dumps(_cfg(str(tmp_path)).to_dict()))
  with pytest.raises(ValueError, match=r'--code_dim=8 \(now 4\).*fresh'):
    training.check_same_model(_cfg(str(tmp_path), code_dim=4))
  with pytest.raises(ValueError, match=r'--head=full \(now rank1\)'):
    training.check_same_model(_cfg(str(tmp_path), head='rank1'))
  training.check_same_model(_cfg(str(tmp_path), steps=50))  # More steps: ok.


def test_runs_from_before_the_head_option_load_as_full_heads(tiny_run,
                                                             tmp_path):
  """config.json without 'head' (older runs): the paper's full heads."""
  old = tmp_path / 'old'
  shutil.copytree(tiny_run, old)
  written = json.loads((old / rundir.CONFIG_FILE).read_text())
  del written['head']
  (old / rundir.CONFIG_FILE).write_text(json.dumps(written))
  before, after = members.load(str(tiny_run)), members.load(str(old))
  assert after.hypernet.config.head == 'full'
  for a, b in zip(tf.nest.flatten(before.sample(2, 0)),
                  tf.nest.flatten(after.sample(2, 0))):
    np.testing.assert_array_equal(a, b)


def _one_update(trainer, images, labels):
  """How far each part's variables moved in one step."""
  hn = trainer.hypernet
  parts = {'mixer': hn.mixer.trainable_variables,
           'generators': hn.layer_generator_variables,
           'discriminator': hn.discriminator.trainable_variables}
  before = {k: [v.numpy().copy() for v in vs] for k, vs in parts.items()}
  trainer.train_step(images, labels)
  return {k: max(float(np.abs(v.numpy() - b).max())
                 for v, b in zip(vs, before[k])) for k, vs in parts.items()}


def test_each_part_gets_its_own_learning_rate(batch):
  images, labels = batch[0][:16], batch[1][:16]
  # Adam's first step moves every weight by about its learning rate.
  common = dict(lr_schedule='constant', learning_rate=1e-3)
  moved = _one_update(training.Trainer(_cfg(
      mixer_learning_rate=1e-2, discriminator_learning_rate=1e-5,
      **common)), images, labels)
  assert moved['mixer'] == pytest.approx(1e-2, rel=0.05)
  assert moved['generators'] == pytest.approx(1e-3, rel=0.05)
  assert moved['discriminator'] == pytest.approx(1e-5, rel=0.05)
  same = _one_update(training.Trainer(_cfg(**common)), images, labels)
  assert same['mixer'] == pytest.approx(1e-3, rel=0.05)
  assert same['discriminator'] == pytest.approx(1e-3, rel=0.05)


def test_weight_decay_skips_batch_norm_and_biases():
  trainer = training.Trainer(_cfg(weight_decay=1e-2))
  optimizer = trainer.g_optimizer
  decayed = {v.path for v in trainer.hypernet.layer_generator_variables
             if optimizer._use_weight_decay(v)}  # pylint: disable=protected-access
  assert decayed and all(v.endswith('kernel') for v in decayed)
  assert any('gamma' in v.path or 'bias' in v.path
             for v in trainer.hypernet.layer_generator_variables)


def test_per_network_batches_of_one_repeated_batch_equal_a_shared_one(batch):
  """Each network scores its own slice of the N x B batch: given N copies of
  one batch, the step is the shared-batch step."""
  images, labels = batch[0][:16], batch[1][:16]
  n = TINY['num_networks']
  shared = training.Trainer(_cfg())
  own = training.Trainer(_cfg(per_network_batches=True))
  assert (shared.examples_per_step, own.examples_per_step) == (16, n * 16)
  expected = shared.train_step(images, labels)
  got = own.train_step(tf.repeat(images, n, axis=0),
                       tf.repeat(labels, n, axis=0))
  assert got == pytest.approx(expected, rel=1e-5)


def test_per_network_batches_give_network_n_images_n_n_plus_N_and_so_on(
    batch):
  """Image b * N + n of the batch is network n's (example-major): the step's
  task loss is that of each of its networks on exactly those images."""
  n, b = TINY['num_networks'], 8
  images, labels = batch[0][:n * b], batch[1][:n * b]
  trainer = training.Trainer(_cfg(per_network_batches=True, batch_size=b))
  # The networks of the first step: its noise is the first draw of the
  # trainer's generator, stratified (training.Trainer._distributed_step).
  rng = tf.random.Generator.from_state(trainer.rng.state.numpy(),
                                       trainer.rng.algorithm)
  noise = trainer.hypernet.stratify(rng.normal([n, TINY['noise_dim']]))
  params = trainer.hypernet.networks(noise, training=True)
  logits = targets.apply(trainer.spec, params, images).numpy()  # [N, NB, C]

  def task_loss(owner):  # owner[i]: the network image i is scored by.
    rows = logits[owner, np.arange(len(owner))]
    return float(np.mean(tf.keras.losses.sparse_categorical_crossentropy(
        labels, rows, from_logits=True)))

  example_major = np.arange(n * b) % n
  network_major = np.arange(n * b) // b
  got = trainer.train_step(images, labels)['task_loss']
  assert got == pytest.approx(task_loss(example_major), rel=1e-5)
  assert got != pytest.approx(task_loss(network_major), rel=1e-3)


def test_adversarial_weight_is_capped_relative_to_the_task(batch):
  images, labels = batch[0][:16], batch[1][:16]
  capped = training.Trainer(_cfg(beta=100.0, max_adversarial_ratio=0.5))
  losses = capped.train_step(images, labels)
  weighted = losses['adversarial_weight'] * losses['adversarial_loss']
  assert weighted == pytest.approx(0.5 * losses['task_loss'], rel=1e-4)
  assert losses['loss'] == pytest.approx(1.5 * losses['task_loss'], rel=1e-4)
  loose = training.Trainer(_cfg(beta=1e-6, max_adversarial_ratio=0.5))
  assert loose.train_step(images, labels)['adversarial_weight'] == (
      pytest.approx(1e-6))  # Below the cap: beta as given.


def test_validation_chooses_the_reported_checkpoint(tfds_dir, tmp_path):
  cfg = _cfg(str(tmp_path), data_dir=tfds_dir, download=False,
             validation_size=500, steps=8, eval_every=2)
  results = training.train(cfg)
  best_dir = tmp_path / 'checkpoints' / rundir.BEST_DIR
  best_step = int(tf.train.latest_checkpoint(str(best_dir)).rsplit('-', 1)[1])
  assert results['selected_step'] == best_step
  assert results['steps'] == 8 and best_step in (2, 4, 6, 8)
  # Loading the run gives the selected networks, not the last ones.
  assert members.load(str(tmp_path)).step == best_step
  assert int(training.load_trainer(str(tmp_path)).step.numpy()) == 8
  summaries = tf.io.gfile.glob(str(tmp_path / 'summaries' / 'events*'))
  tags = {v.tag for path in summaries
          for e in tf.compat.v1.train.summary_iterator(path)
          for v in e.summary.value}
  assert 'validation/accuracy_n2' in tags
  assert 'test/accuracy_n2' not in tags  # Test is read once, at the end.
  # ... for the selected networks, so its curve point sits at their step.
  assert rundir.read_scalars(str(tmp_path), 'test/accuracy_n1')[
      'test/accuracy_n1'][0] == [best_step]

"""The target pass in chunks of networks: the gradients of one pass."""

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from tests.conftest import TINY


def _gradients(chunk, images, labels, **overrides):
  cfg = config.TrainConfig(run_dir='', **{**TINY, 'network_chunk': chunk,
                                          **overrides})
  trainer = training.Trainer(cfg)
  noise = tf.random.stateless_normal([cfg.num_networks, cfg.noise_dim],
                                     seed=[1, 2])
  prior = tf.random.stateless_normal(
      [cfg.num_networks * trainer.hypernet.num_codes, cfg.code_dim],
      seed=[3, 4])
  return trainer._gradients(images, labels, noise, prior)


@pytest.mark.parametrize('overrides', [
    {},  # One batch shared by the 4 networks.
    {'per_network_batches': True, 'batch_size': 8, 'modes': 2}])
def test_chunks_give_the_gradients_of_one_pass(mnist_batch, overrides):
  images, labels = mnist_batch
  size = 32 if overrides else 16
  whole = _gradients(0, images[:size], labels[:size], **overrides)
  chunked = _gradients(3, images[:size], labels[:size], **overrides)  # 3 + 1.
  for name in ('task_loss', 'loss', 'accuracy', 'discriminator_loss'):
    np.testing.assert_allclose(chunked[2][name], whole[2][name], rtol=1e-5,
                               err_msg=name)
  for got, want in zip(chunked[0] + chunked[1], whole[0] + whole[1]):
    # The modes' bases get IndexedSlices (a gather).
    got, want = tf.convert_to_tensor(got), tf.convert_to_tensor(want)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_a_trainer_with_chunks_trains(mnist_batch):
  images, labels = mnist_batch
  cfg = config.TrainConfig(run_dir='', **{**TINY, 'network_chunk': 2})
  trainer = training.Trainer(cfg)
  first = [v.numpy() for v in trainer.hypernet.trainable_variables]
  losses = trainer.train_step(images[:16], labels[:16])
  assert np.isfinite(float(losses['loss']))
  assert any(not np.array_equal(a, v.numpy()) for a, v in
             zip(first, trainer.hypernet.trainable_variables))


def test_chunks_and_the_diversity_term_are_refused_together():
  with pytest.raises(ValueError, match='--network_chunk'):
    config.TrainConfig(run_dir='', **{**TINY, 'network_chunk': 2,
                                      'diversity_weight': 0.1})

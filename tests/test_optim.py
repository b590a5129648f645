"""Optimizers: the fused Adam update is Keras' Adam update."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.runtime import optim


def _compiled_update(optimizer, variable):
  return tf.function(lambda g: optimizer.apply_gradients([(g, variable)]))


@pytest.mark.parametrize('weight_decay', [0.0, 0.1])
def test_fused_adam_equals_keras_adam(weight_decay):
  rng = np.random.default_rng(0)
  start = rng.normal(size=(4, 3)).astype(np.float32)
  grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(5)]
  result = {}
  for cls in (keras.optimizers.Adam, optim.FusedAdam):
    variable = keras.Variable(start, name='kernel')
    optimizer = cls(learning_rate=1e-2, beta_1=0.5, beta_2=0.9,
                    weight_decay=weight_decay or None)
    optimizer.build([variable])
    step = _compiled_update(optimizer, variable)
    for g in grads:
      step(tf.constant(g))
    result[cls] = (variable.numpy(), optimizer.variables)
  (ours, ours_slots), (theirs, their_slots) = (result[optim.FusedAdam],
                                               result[keras.optimizers.Adam])
  np.testing.assert_allclose(ours, theirs, atol=1e-6)
  assert not np.allclose(ours, start)
  # The same slots (so checkpoints of either load into the other).
  assert [v.path.split('/')[-1] for v in ours_slots] == [
      v.path.split('/')[-1] for v in their_slots]
  for a, b in zip(ours_slots, their_slots):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_make_optimizer_gives_the_fused_update_under_loss_scaling():
  class Cfg:
    learning_rate, lr_schedule, warmup_steps, min_lr_ratio = 1e-3, 'cosine', 0, 0.0
    steps, optimizer, weight_decay, clipnorm = 10, 'adamw', 1e-4, 0.0
    adam_beta_1, adam_beta_2 = 0.9, 0.999
  optimizer = optim.make_optimizer(Cfg(), loss_scale=True)
  assert isinstance(optimizer.inner_optimizer, optim.FusedAdam)
  variable = keras.Variable(np.ones((2, 2), np.float32), name='kernel')
  optimizer.build([variable])
  optimizer.apply_gradients([(tf.ones((2, 2)), variable)])
  assert np.all(variable.numpy() < 1.0)

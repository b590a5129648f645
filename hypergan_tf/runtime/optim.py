"""Optimizers of every method: Adam / AdamW on a warm-up + cosine schedule.

Configs with the optimizer fields of `config.TrainConfig` (learning_rate,
lr_schedule, warmup_steps, min_lr_ratio, optimizer, weight_decay, clipnorm,
adam_beta_1, adam_beta_2, steps) share this. The Adam update is TF's fused
kernel (`FusedAdam`): a hypernetwork has tens of millions of parameters,
and Keras' update makes several passes over each.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
  """Keras' Adam, each variable updated by TF's fused `ResourceApplyAdam`.

  The same update (m, v, then var -= lr sqrt(1 - b2^t) / (1 - b1^t) m /
  (sqrt(v) + eps)) in one pass over the variable and its slots instead of
  Keras' seven element-wise ops, equal to float rounding (tested); the same
  slot variables, so checkpoints of either load into the other. Decoupled
  weight decay, gradient clipping and loss scaling stay Keras'.
  """

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad:
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    index = self._get_variable_index(variable)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].handle,
        v=self._velocities[index].handle,
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype),
        grad=tf.cast(gradient, dtype), use_locking=False)


def learning_rate_schedule(cfg: Any, peak: float | None = None):
  """Linear warm-up to peak (default cfg.learning_rate), then cosine or flat."""
  peak = peak or cfg.learning_rate
  if cfg.lr_schedule == 'cosine':
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if cfg.warmup_steps else peak,
        decay_steps=cfg.steps - cfg.warmup_steps,
        alpha=cfg.min_lr_ratio,
        warmup_target=peak if cfg.warmup_steps else None,
        warmup_steps=cfg.warmup_steps)
  if cfg.warmup_steps:
    return keras.optimizers.schedules.PolynomialDecay(
        0.0, cfg.warmup_steps, peak, power=1.0)
  return peak


# Variables decoupled weight decay leaves alone (BatchNorm scale and shift,
# biases, BatchEnsemble's fast weights, which start around 1), matched as
# parts of Keras variable names.
NO_DECAY = ('bias', 'gamma', 'beta', 'fast_weight')


def make_optimizer(cfg: Any, loss_scale: bool = False,
                   learning_rate: float | None = None
                   ) -> keras.optimizers.Optimizer:
  """Adam or AdamW on the schedule; loss-scaled for float16 training.

  Args:
    cfg: a config with the optimizer fields of `config.TrainConfig`.
    loss_scale: wrap in a LossScaleOptimizer (float16).
    learning_rate: peak learning rate (default cfg.learning_rate).
  """
  decay = cfg.weight_decay or None
  kwargs = dict(learning_rate=learning_rate_schedule(cfg, learning_rate),
                beta_1=cfg.adam_beta_1, beta_2=cfg.adam_beta_2,
                global_clipnorm=cfg.clipnorm or None, weight_decay=decay)
  # Keras' AdamW is Adam with a weight-decay default; decay is passed here.
  optimizer = FusedAdam(**kwargs)
  if decay:
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
  return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else (
      optimizer)

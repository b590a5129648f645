"""Per-network objectives: each sampled network the optimum of its own loss.

Why: under one shared loss, E_s[loss(G(s))] is minimised by one function for
every s, so a mode's networks close in on it (within-mode disagreement
1.8% on CIFAR-5, RESULTS.md), and repulsion or wider noise buy disagreement
only by pushing networks off that optimum. Hyper-batch ensembles (Wenzel et
al., NeurIPS 2020) train a model conditioned on its hyperparameters over a
range of them, so that members differ because each is the optimum of a
different objective. Here network n's hyperparameter is a function of its
noise coordinate s_1 (s_0 picks the mode, hypergan_tf/model/modes.py),
which the mixer sees: the generator can learn the map from s_1 to the
network that is best for it.
"""

from __future__ import annotations

import tensorflow as tf

from hypergan_tf.methods.hypergan import chunked
from hypergan_tf.model import modes

OBJECTIVES = ('shared', 'label_smoothing')


def strength(noise: tf.Tensor, spread: float) -> tf.Tensor:
  """Each network's hyperparameter [n]: spread x Phi(s_1), uniform on
  [0, spread] for s ~ N(0, I) and independent of the mode's s_0."""
  return spread * modes.normal_cdf(noise[:, 1])


def label_smoothing_loss(logits: tf.Tensor, labels: tf.Tensor,
                         smoothing: tf.Tensor) -> tf.Tensor:
  """Cross-entropy of network n against labels smoothed by smoothing[n]
  (target (1 - e) one_hot + e / C, as `keras.losses.CategoricalCrossentropy`
  with label_smoothing=e), averaged over networks: [N, B, C] -> [B].

  Args:
    labels: [B] shared by all networks, or [N, B] each network's own.
  """
  classes = logits.shape[-1]
  e = tf.cast(smoothing, logits.dtype)[:, None, None]
  target = tf.one_hot(labels, classes, dtype=logits.dtype) * (1.0 - e) + (
      e / classes)
  ce = -tf.reduce_sum(target * tf.nn.log_softmax(logits), axis=-1)
  return tf.reduce_mean(ce, axis=0)


def task_loss(objective: str, noise: tf.Tensor, spread: float,
              shared: chunked.TaskLoss) -> chunked.TaskLoss:
  """The task loss (logits [N, B, C], labels) -> [B] of the step's networks
  of input noise [N, noise_dim]: `shared` itself for objective 'shared'.

  Raises:
    ValueError: an unknown objective.
  """
  if objective == 'shared':
    return shared
  if objective != 'label_smoothing':
    raise ValueError(f'Unknown per-network objective {objective!r}; choose '
                     f'from {OBJECTIVES}.')
  smoothing = strength(noise, spread)
  return lambda logits, labels: label_smoothing_loss(logits, labels,
                                                     smoothing)

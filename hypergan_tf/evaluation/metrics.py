"""Ensemble metrics on member logits [N, B, C], whatever produced them.

HyperGAN samples, independently trained ensembles and MC-dropout members all
reduce to logits of N members on a batch, so every metric here takes those
(or the ensemble's mean probabilities [B, C]) and nothing model-specific.
Calibration uses TFP, ranking metrics Keras; out-of-distribution detection
treats OOD inputs as the positive class and a higher score (entropy) as more
OOD.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

_EPS = 1e-12


def ensemble_probabilities(logits: tf.Tensor) -> tf.Tensor:
  """Mean of the members' softmax: [N, B, C] -> [B, C]."""
  return tf.reduce_mean(tf.nn.softmax(logits), axis=0)


def accuracy(probs: tf.Tensor, labels: tf.Tensor) -> float:
  """Fraction of argmax predictions equal to labels."""
  predicted = tf.argmax(probs, axis=-1, output_type=tf.int32)
  return float(tf.reduce_mean(tf.cast(
      tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32)))


def member_accuracies(logits: tf.Tensor, labels: tf.Tensor) -> np.ndarray:
  """Accuracy of every member on its own: [N]."""
  predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
  correct = tf.equal(predicted, tf.cast(labels, tf.int32)[None])
  return tf.reduce_mean(tf.cast(correct, tf.float32), axis=1).numpy()


def negative_log_likelihood(probs: tf.Tensor, labels: tf.Tensor) -> float:
  """Mean -log p(label) of the ensemble's probabilities."""
  p = tf.gather(probs, tf.cast(labels, tf.int32), axis=-1, batch_dims=1)
  return float(-tf.reduce_mean(tf.math.log(tf.maximum(p, _EPS))))


def brier_score(probs: tf.Tensor, labels: tf.Tensor) -> float:
  """Mean squared distance between probabilities and one-hot labels."""
  one_hot = tf.one_hot(tf.cast(labels, tf.int32), probs.shape[-1],
                       dtype=probs.dtype)
  return float(tf.reduce_mean(tf.reduce_sum((probs - one_hot)**2, -1)))


def expected_calibration_error(probs: tf.Tensor, labels: tf.Tensor,
                               num_bins: int = 15) -> float:
  """ECE over confidence bins (TFP's estimator)."""
  probs = tf.cast(probs, tf.float32)
  return float(tfp.stats.expected_calibration_error(
      num_bins, logits=tf.math.log(tf.maximum(probs, _EPS)),
      labels_true=tf.cast(labels, tf.int32)))


def entropy(probs: tf.Tensor) -> tf.Tensor:
  """Predictive entropy in nats per example: [B, C] -> [B], in [0, log C]."""
  return -tf.reduce_sum(tf.math.multiply_no_nan(
      tf.math.log(probs), probs), axis=-1)


def entropy_of_log_probs(log_probs: tf.Tensor) -> tf.Tensor:
  """Entropy in nats from log-probabilities: [..., C] -> [...].

  Unlike `entropy` of probabilities, the gradient stays finite when a
  probability underflows to 0, which a loss on the entropy needs.
  """
  return -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)


def mutual_information(logits: tf.Tensor) -> tf.Tensor:
  """The members' disagreement per input, in nats: [N, B, C] -> [B].

  Entropy of the mean prediction minus the mean member entropy (the
  epistemic part of the predictive entropy): 0 when all members agree, at
  most log C.
  """
  # In log space: confident members (probabilities that underflow to 0)
  # keep finite gradients, which a training loss on this needs.
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
  members = entropy_of_log_probs(log_probs)
  n = tf.cast(tf.shape(log_probs)[0], tf.float32)
  log_mean = tf.reduce_logsumexp(log_probs, axis=0) - tf.math.log(n)
  total = entropy_of_log_probs(log_mean)
  return total - tf.reduce_mean(members, axis=0)


def disagreement(logits: tf.Tensor) -> float:
  """Mean over inputs and member pairs of [argmax_i != argmax_j].

  From the per-class vote counts v: 1 - sum_c v_c (v_c - 1) / (N (N - 1));
  0 for a single member.
  """
  n, _, c = logits.shape
  if n < 2:
    return 0.0
  votes = tf.reduce_sum(tf.one_hot(tf.argmax(logits, -1), c), axis=0)
  agreeing = tf.reduce_sum(votes * (votes - 1), axis=-1) / (n * (n - 1))
  return float(1.0 - tf.reduce_mean(agreeing))


def function_diversity(logits: tf.Tensor) -> dict[str, float]:
  """How far the members are from one function: {'disagreement': mean
  pairwise argmax disagreement, 'mutual_information': mean over inputs}."""
  return {'disagreement': disagreement(logits),
          'mutual_information': float(tf.reduce_mean(
              mutual_information(logits)))}


def _normalised(in_scores, out_scores):
  """Scores as tie-preserving ranks in [0, 1], and OOD labels.

  Keras' ranking metrics sweep fixed thresholds over [0, 1]. Entropies of
  in-distribution inputs crowd within 1e-4 of zero, so min-max scaling would
  put most of them below the first threshold and, for instance, report an
  FPR at 95% TPR near 1 for a detector with AUROC 0.94. Ranks spread the
  scores evenly over the thresholds; every metric here depends on the order
  of the scores only.
  """
  scores = np.concatenate([np.asarray(in_scores), np.asarray(out_scores)])
  _, ranks = np.unique(scores, return_inverse=True)
  scores = ranks / max(ranks.max(), 1)
  labels = np.concatenate([np.zeros(len(in_scores)),
                           np.ones(len(out_scores))])
  return labels, scores


def ood_detection(in_scores, out_scores,
                  num_thresholds: int = 10_000) -> dict[str, float]:
  """AUROC, AUPR (OOD positive) and FPR at 95% TPR of a score.

  Args:
    in_scores: scores of in-distribution inputs (e.g. entropy), [B_in].
    out_scores: scores of out-of-distribution inputs, [B_out].
    num_thresholds: resolution of the Keras threshold sweeps.

  Returns:
    {'auroc', 'aupr', 'fpr_at_95_tpr'}; 1.0 / 1.0 / 0.0 is perfect.
  """
  labels, scores = _normalised(in_scores, out_scores)
  out = {}
  for name, metric in (
      ('auroc', keras.metrics.AUC(num_thresholds, curve='ROC')),
      ('aupr', keras.metrics.AUC(num_thresholds, curve='PR')),
      ('specificity', keras.metrics.SpecificityAtSensitivity(
          0.95, num_thresholds))):
    metric.update_state(labels, scores)
    out[name] = float(metric.result())
  out['fpr_at_95_tpr'] = 1.0 - out.pop('specificity')
  return out


def parameter_norms(params) -> list[tuple[float, float]]:
  """Mean and std over networks of each layer's L2 norm (paper Table 3).

  Args:
    params: one (kernel [N, ...], bias [N, ...]) pair per layer.

  Returns:
    (mean, std) of the norm of each layer's kernel and bias together.
  """
  out = []
  for kernel, bias in params:
    n = tf.shape(kernel)[0]
    flat = tf.concat([tf.reshape(kernel, [n, -1]), tf.reshape(bias, [n, -1])],
                     axis=1)
    norms = tf.norm(flat, axis=1).numpy()
    out.append((float(norms.mean()), float(norms.std())))
  return out

"""Metrics against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.evaluation import metrics


def test_ensemble_accuracy_on_hand_made_case():
  # Two members disagree on example 1; their mean decides for class 0.
  logits = tf.math.log(tf.constant([
      [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]],
      [[0.8, 0.2], [0.9, 0.1], [0.3, 0.7]],
  ]))
  labels = tf.constant([0, 0, 0])
  probs = metrics.ensemble_probabilities(logits)
  np.testing.assert_allclose(probs[1], [0.65, 0.35], rtol=1e-6)
  assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)
  np.testing.assert_allclose(metrics.member_accuracies(logits, labels),
                             [1 / 3, 2 / 3])


def test_nll_and_brier_by_hand():
  probs = tf.constant([[0.5, 0.5], [0.8, 0.2]])
  labels = tf.constant([0, 1])
  assert metrics.negative_log_likelihood(probs, labels) == pytest.approx(
      -(math.log(0.5) + math.log(0.2)) / 2, rel=1e-6)
  # (0.5^2 + 0.5^2 + 0.8^2 + 0.8^2) / 2
  assert metrics.brier_score(probs, labels) == pytest.approx(0.89, rel=1e-6)


def test_entropy_of_uniform_is_log_c_and_of_one_hot_is_zero():
  c = 10
  uniform = tf.fill([3, c], 1.0 / c)
  np.testing.assert_allclose(metrics.entropy(uniform), [math.log(c)] * 3,
                             rtol=1e-6)
  one_hot = tf.one_hot([1, 2], c)
  np.testing.assert_allclose(metrics.entropy(one_hot), [0.0, 0.0], atol=1e-7)


def test_ece_zero_when_calibrated():
  # Confidence 0.75 everywhere, right on exactly 3 of 4 examples.
  probs = tf.constant([[0.75, 0.25]] * 4)
  labels = tf.constant([0, 0, 0, 1])
  assert metrics.expected_calibration_error(probs, labels) == pytest.approx(
      0.0, abs=1e-6)
  # Always confident (0.75), always right: ECE = 1 - 0.75.
  assert metrics.expected_calibration_error(
      probs, tf.zeros(4, tf.int32)) == pytest.approx(0.25, abs=1e-6)


def test_ood_perfect_separation_and_chance():
  rng = np.random.default_rng(0)
  inside, outside = rng.uniform(0, 1, 500), rng.uniform(2, 3, 500)
  perfect = metrics.ood_detection(inside, outside)
  assert perfect['auroc'] == pytest.approx(1.0, abs=1e-3)
  assert perfect['aupr'] == pytest.approx(1.0, abs=1e-3)
  assert perfect['fpr_at_95_tpr'] == pytest.approx(0.0, abs=1e-3)
  same = metrics.ood_detection(np.ones(100), np.ones(100))
  assert same['auroc'] == pytest.approx(0.5, abs=1e-3)
  reversed_ = metrics.ood_detection(outside, inside)
  assert reversed_['auroc'] == pytest.approx(0.0, abs=1e-3)


def test_ood_auroc_matches_pair_counting():
  rng = np.random.default_rng(1)
  inside, outside = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
  pairs = (outside[None, :] > inside[:, None]).mean()
  assert metrics.ood_detection(inside, outside)['auroc'] == pytest.approx(
      pairs, abs=2e-3)


def test_ood_fpr_at_95_tpr_with_scores_crowded_near_zero():
  """Entropies of confident inputs sit within 1e-4 of zero; still exact."""
  rng = np.random.default_rng(2)
  inside = rng.exponential(1e-5, 5000)
  outside = np.concatenate([rng.exponential(1e-5, 400),
                            rng.uniform(0.1, 2.0, 3600)])
  threshold = np.quantile(outside, 0.05)
  expected_fpr = (inside >= threshold).mean()
  pairs = (outside[None, :] > inside[:, None]).mean()
  out = metrics.ood_detection(inside, outside)
  assert 0.2 < expected_fpr < 0.9  # Neither trivial case.
  assert out['fpr_at_95_tpr'] == pytest.approx(expected_fpr, abs=5e-3)
  assert out['auroc'] == pytest.approx(pairs, abs=2e-3)


def test_parameter_norms():
  kernel = tf.constant([[[3.0]], [[0.0]]])  # Two networks, 1x1 kernels.
  bias = tf.constant([[4.0], [1.0]])
  (mean, std), = metrics.parameter_norms([(kernel, bias)])
  assert mean == pytest.approx(3.0) and std == pytest.approx(2.0)


def test_disagreement_counts_member_pairs_that_differ():
  # 3 members, 2 inputs: votes (0, 0, 1) differ in 2 of 3 pairs; (2, 2, 2)
  # agree.
  logits = tf.one_hot([[0, 2], [0, 2], [1, 2]], 3) * 5.0
  assert metrics.disagreement(logits) == pytest.approx((2 / 3 + 0) / 2)
  assert metrics.disagreement(logits[:1]) == 0.0


def test_mutual_information_is_entropy_of_mean_minus_mean_entropy():
  # Two confident members that disagree: MI ~ log 2; agreeing: MI = 0.
  apart = tf.constant([[[20.0, 0.0]], [[0.0, 20.0]]])
  np.testing.assert_allclose(metrics.mutual_information(apart), [np.log(2)],
                             rtol=1e-5)
  together = tf.constant([[[1.0, 0.0]], [[1.0, 0.0]]])
  np.testing.assert_allclose(metrics.mutual_information(together), [0.0],
                             atol=1e-6)

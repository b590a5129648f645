"""What the generator adds beyond the modes' base networks, on validation.

A K-mode HyperGAN's network is its mode's learned base plus a generated
offset. Scoring the K bases alone as an ensemble (the generator's output
zeroed) beside ensembles of sampled networks separates what the generator
contributes from what K independently initialised bases would give.
Validation split only: this chooses recipes.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import evaluation
from hypergan_tf.evaluation import metrics
from hypergan_tf.model import members


def mode_bases(model: members.Loaded) -> list[tuple[Any, Any]]:
  """The K base networks of a modes run, as members' params [K, ...].

  Raises:
    ValueError: the run has no modes (nothing but the generator).
  """
  offsets = getattr(model.hypernet, 'mode_offsets', None)
  if offsets is None:
    raise ValueError('Only a run trained with --modes >= 2 has base '
                     'networks to ablate.')
  return offsets.bases


def _ensemble(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  probs = metrics.ensemble_probabilities(logits)
  return {'accuracy': metrics.accuracy(probs, labels),
          'nll': metrics.negative_log_likelihood(probs, labels),
          'ece': metrics.expected_calibration_error(probs, labels)}


def _mean_over_draws(logits: np.ndarray, labels: np.ndarray, size: int
                     ) -> dict[str, float]:
  """Ensemble scores of `size` networks, averaged over the disjoint draws
  of that size among the sampled networks (one draw is noisy)."""
  draws = [_ensemble(logits[i:i + size], labels)
           for i in range(0, len(logits) - size + 1, size)]
  return {key: float(np.mean([d[key] for d in draws])) for key in draws[0]}


def generator_ablation(model: members.Loaded, dataset: Iterable,
                       num_networks: int = 100, seed: int = 0
                       ) -> dict[str, dict[str, float]]:
  """Scores of the bases alone and of sampled networks on a dataset.

  Rows: 'bases' (the K bases, generator output zeroed) and 'bases_n1'
  (their mean single accuracy); 'sampled_n1' (mean single network);
  'sampled_nK' (one network per mode: a draw's networks are spread over
  the modes in turn) and 'sampled_n10', both averaged over the disjoint
  draws of that size; 'sampled_n<num_networks>'.
  """
  bases = mode_bases(model)
  k = int(bases[0][0].shape[0])
  sampled = model.sample(num_networks, seed)
  logits, labels, _ = evaluation.collect(
      lambda x: np.concatenate([model.logits(bases, x),
                                model.logits(sampled, x)]), dataset)
  base_logits, logits = logits[:k], logits[k:]
  return {'bases': _ensemble(base_logits, labels),
          'bases_n1': {'accuracy': float(
              metrics.member_accuracies(base_logits, labels).mean())},
          'sampled_n1': {'accuracy': float(
              metrics.member_accuracies(logits, labels).mean())},
          f'sampled_n{k}': _mean_over_draws(logits, labels, k),
          'sampled_n10': _mean_over_draws(logits, labels, 10),
          f'sampled_n{num_networks}': _ensemble(logits, labels)}


def validation_ablation(run_dir: str, num_networks: int = 100, seed: int = 0,
                        data_dir: str | None = None, batch_size: int = 500
                        ) -> dict[str, dict[str, float]]:
  """`generator_ablation` of a run on its validation split."""
  validation_size = evaluation.validation_size_of(run_dir)
  model = members.load(run_dir)
  dataset = data.load(model.dataset, 'validation', batch_size,
                      training=False, validation_size=validation_size,
                      data_dir=data_dir or model.data_dir, download=False)
  return generator_ablation(model, dataset, num_networks, seed)

"""PNG figures of an evaluation (paper Figures 2, 3, 6 and 7, reliability)."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')  # Files only; no display on servers.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, path: str,
                        num_bins: int = 15, title: str = '') -> str:
  """Accuracy against confidence per bin, with the bins' counts."""
  confidence = probs.max(-1)
  correct = probs.argmax(-1) == labels
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  which = np.clip(np.digitize(confidence, edges) - 1, 0, num_bins - 1)
  centres = (edges[:-1] + edges[1:]) / 2
  counts = np.bincount(which, minlength=num_bins)
  accuracy = np.bincount(which, correct, num_bins) / np.maximum(counts, 1)
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  ax.bar(centres[counts > 0], accuracy[counts > 0], width=1.0 / num_bins,
         edgecolor='k', alpha=0.7, label='accuracy')
  ax.plot([0, 1], [0, 1], 'r--', label='perfect calibration')
  ax.set_xlabel('confidence')
  ax.set_ylabel('accuracy')
  ax.set_title(title or 'Reliability diagram')
  ax.legend(loc='upper left')
  return _save(fig, path)


def entropy_ecdf(entropies: dict[str, np.ndarray], path: str,
                 max_entropy: float, title: str = '') -> str:
  """Empirical CDFs of predictive entropy (paper Figure 3)."""
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for name, values in entropies.items():
    x = np.sort(values)
    ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=name)
  ax.set_xlim(0, max_entropy)
  ax.set_xlabel('entropy of the ensemble prediction (nats)')
  ax.set_ylabel('fraction of inputs')
  ax.set_title(title or 'Entropy eCDF')
  ax.legend(loc='lower right', fontsize=8)
  return _save(fig, path)


def regression_predictive(x: np.ndarray, truth: np.ndarray,
                          data_x: np.ndarray, data_y: np.ndarray,
                          predictions: dict[int, np.ndarray], path: str,
                          data_range: tuple[float, float] = (-4.0, 4.0)
                          ) -> str:
  """Predictive mean +- 3 std per ensemble size (paper Figure 2).

  Args:
    x: grid [G]; truth: the true function on it [G].
    data_x, data_y: the training points.
    predictions: ensemble size -> member outputs [k, G].
  """
  fig, axes = plt.subplots(1, len(predictions),
                           figsize=(4 * len(predictions), 3.6), sharey=True)
  for ax, (k, outputs) in zip(np.atleast_1d(axes), predictions.items()):
    mean, std = outputs.mean(axis=0), outputs.std(axis=0)
    ax.axvspan(*data_range, color='0.93', label='training range')
    ax.fill_between(x, mean - 3 * std, mean + 3 * std, color='tab:blue',
                    alpha=0.3, label='mean +- 3 std')
    ax.plot(x, truth, 'k--', lw=1, label='x^3')
    ax.plot(x, mean, color='tab:blue', label='predictive mean')
    ax.plot(data_x, data_y, 'o', color='tab:red', ms=3, label='data')
    ax.set_title(f'{k} sampled networks')
    ax.set_xlabel('x')
  np.atleast_1d(axes)[0].set_ylabel('y')
  np.atleast_1d(axes)[0].legend(loc='upper left', fontsize=7)
  return _save(fig, path)


def first_layer_filters(kernels: np.ndarray, path: str,
                        filters_shown: int = 8) -> str:
  """First-layer filters of up to 25 networks, one row of filters each.

  Args:
    kernels: [N, h, w, c_in, c_out]; the first input channel is shown.
    path: PNG path.
    filters_shown: filters per network.
  """
  n = min(len(kernels), 25)
  shown = min(filters_shown, kernels.shape[-1])
  fig, axes = plt.subplots(n, shown, figsize=(shown * 0.6, n * 0.6),
                           squeeze=False)
  for i in range(n):
    for j in range(shown):
      ax = axes[i, j]
      ax.imshow(kernels[i, :, :, 0, j], cmap='gray')
      ax.set_xticks([])
      ax.set_yticks([])
    axes[i, 0].set_ylabel(str(i), rotation=0, fontsize=6, labelpad=8)
  fig.suptitle('First-layer filters: one sampled network per row',
               fontsize=8)
  return _save(fig, path)


def image_grid(images: np.ndarray, captions: list[str], path: str,
               title: str) -> str:
  """Images with captions (paper Figure 7: uncertain / confident inputs)."""
  n = len(images)
  cols = min(n, 8)
  rows = (n + cols - 1) // cols
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4),
                           squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  for ax, image, caption in zip(axes.ravel(), images, captions):
    ax.imshow(image.squeeze(), cmap='gray' if image.shape[-1] == 1 else None)
    ax.set_title(caption, fontsize=7)
  fig.suptitle(title, fontsize=9)
  return _save(fig, path)

"""PNG figures of an evaluation (paper Figures 2, 3, 6 and 7, reliability)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use('Agg')  # Files only; no display on servers.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from hypergan_tf.runtime import rundir


def _png(fig) -> bytes:
  """The figure as PNG bytes (closed afterwards)."""
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=100)
  plt.close(fig)
  return buffer.getvalue()


def _save(fig, path: str) -> str:
  """Saves a PNG on any TensorFlow filesystem (local, gs://, ram://)."""
  rundir.write_bytes(path, _png(fig))
  return path


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, path: str,
                        num_bins: int = 15, title: str = '') -> str:
  """Accuracy against confidence per bin, as a PNG file."""
  return _save(_reliability(probs, labels, num_bins, title), path)


def reliability_png(probs: np.ndarray, labels: np.ndarray,
                    num_bins: int = 15, title: str = '') -> bytes:
  """The reliability diagram as PNG bytes (for TensorBoard images)."""
  return _png(_reliability(probs, labels, num_bins, title))


def _reliability(probs, labels, num_bins, title):
  """Accuracy against confidence per bin."""
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
  return fig


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


def throughput(rows: list[dict], path: str,
               matmul_gflops: dict[str, float] | None = None,
               train_references: dict[str, float] | None = None) -> str:
  """Train and inference throughput against N, one line per configuration.

  Args:
    rows: `benchmark.measure` results (num_networks, batch_size, method,
      variant, *_net_examples_per_s).
    matmul_gflops: optional peaks, shown in the title for scale.
    train_references: optional label -> networks x examples / s, drawn as
      horizontal lines on the train plot (e.g. the authors' code).
  """
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  lines: dict[tuple, list] = {}
  for row in rows:
    key = (row['method'], row.get('head', 'full'), row.get('variant', 'base'),
           row['batch_size'])
    lines.setdefault(key, []).append(row)
  for ax, kind in zip(axes, ('train', 'inference')):
    for (method, head, variant, batch), points in sorted(lines.items()):
      points = sorted(points, key=lambda r: r['num_networks'])
      ax.plot([r['num_networks'] for r in points],
              [r[f'{kind}_net_examples_per_s'] for r in points], 'o-',
              label=f'{method} {head} head {variant} B={batch}')
    ax.set_xscale('log')
    ax.set_xlabel('sampled networks N')
    ax.set_ylabel('networks x examples / s')
    ax.set_title(f'{kind} step' if kind == 'train' else 'inference')
    ax.grid(alpha=0.3)
  for (label, value), style in zip((train_references or {}).items(),
                                   ('k--', 'k:', 'k-.')):
    axes[0].axhline(value, color=style[0], linestyle=style[1:], lw=1,
                    label=label)
  axes[0].legend(fontsize=7)
  if matmul_gflops:
    fig.suptitle('tf.matmul 2048^2 peak: ' + ', '.join(
        f'{k} {v:.0f} GFLOP/s' for k, v in matmul_gflops.items()),
                 fontsize=9)
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


def metric_vs_epsilon(epsilons: list[float],
                      series: dict[str, dict[tuple[str, str], list[float]]],
                      path: str, ylabel: str, title: str = '') -> str:
  """One panel per attack: a metric against the attack's epsilon.

  Args:
    epsilons: the x values.
    series: attack -> {(label, line style): values, one per epsilon}.
    path: PNG path.
    ylabel: the metric's name.
    title: figure title.
  """
  fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 4),
                           squeeze=False, sharey=True)
  colours = {}
  for ax, (attack, lines) in zip(axes[0], series.items()):
    for (label, style), values in lines.items():
      group = label.split()[0]  # Same colour for one ensemble size.
      colour = colours.setdefault(group, f'C{len(colours)}')
      ax.plot(epsilons, values, style, marker='o', color=colour, label=label)
    ax.set_title(attack.upper())
    ax.set_xlabel('epsilon (L-infinity)')
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel(ylabel)
  axes[0, -1].legend(loc='best', fontsize=7)
  fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def entropy_ecdf_panels(panels: dict[str, dict[str, np.ndarray]], path: str,
                        max_entropy: float, title: str = '',
                        thresholds: dict[str, float] | None = None) -> str:
  """Side-by-side entropy eCDFs (paper Figure 5): one panel per title.

  The entropy axis is logarithmic (floor 1e-6 nats): confident networks put
  clean inputs' entropies many decades below log(C).

  Args:
    panels: panel title -> {curve label: entropies}; a curve labelled
      'clean' is drawn thick and black.
    path: PNG path.
    max_entropy: right end of the axis, log(C).
    title: figure title.
    thresholds: panel title -> detection threshold, drawn as a dashed line.
  """
  floor = 1e-6
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4),
                           squeeze=False, sharey=True)
  for ax, (name, entropies) in zip(axes[0], panels.items()):
    for label, values in entropies.items():
      x = np.sort(np.maximum(values, floor))
      ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=label,
              **({'color': 'k', 'lw': 2} if label == 'clean' else {}))
    if thresholds and name in thresholds:
      ax.axvline(max(thresholds[name], floor), color='r', ls='--', lw=1,
                 label='threshold')
    ax.set_xscale('log')
    ax.set_xlim(floor, max_entropy)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel('entropy of the ensemble prediction (nats)')
  axes[0, 0].set_ylabel('fraction of inputs')
  axes[0, -1].legend(loc='upper left', fontsize=7)
  fig.suptitle(title or 'Entropy eCDF', fontsize=9)
  return _save(fig, path)


def transfer_histograms(fractions: dict[str, dict[str, np.ndarray]],
                        path: str, title: str = '') -> str:
  """Per attack, histograms of the fraction of networks each example fools.

  Args:
    fractions: attack -> {label (e.g. 'eps=0.1'): per-example fractions}.
  """
  fig, axes = plt.subplots(1, len(fractions),
                           figsize=(5 * len(fractions), 4), squeeze=False,
                           sharey=True)
  bins = np.linspace(0.0, 1.0, 21)
  for ax, (attack, per_label) in zip(axes[0], fractions.items()):
    for label, values in per_label.items():
      ax.hist(values, bins=bins, histtype='step', lw=1.5,
              weights=np.full(len(values), 1.0 / max(len(values), 1)),
              label=f'{label} (mean {np.mean(values):.2f})')
    ax.set_title(attack)
    ax.set_xlabel('fraction of the other networks fooled')
    ax.legend(loc='upper center', fontsize=7)  # Means differ per attack.
  axes[0, 0].set_ylabel('fraction of examples')
  fig.suptitle(title or 'Transfer of adversarial examples', fontsize=9)
  return _save(fig, path)


def ensemble_accuracy(panels: dict[str, dict[str, tuple[list, list]]],
                      path: str, title: str = '') -> str:
  """Test accuracy against ensemble size, ours next to the paper's.

  The slope is the point: how much sampling more networks adds says how
  different the sampled networks are.

  Args:
    panels: panel title (a dataset) -> {curve label: (sizes, accuracy %)};
      a curve labelled 'paper' is drawn dashed and black.
  """
  fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 4),
                           squeeze=False)
  for ax, (name, curves) in zip(axes[0], panels.items()):
    for label, (sizes, accuracy) in curves.items():
      ax.plot(sizes, accuracy, marker='o', label=label,
              **({'color': 'k', 'ls': '--'} if label == 'paper' else {}))
    ax.set_xscale('log')
    ax.set_xlabel('networks in the ensemble')
    ax.set_title(name, fontsize=9)
    ax.legend(loc='best', fontsize=7)
  axes[0, 0].set_ylabel('test accuracy (%)')
  fig.suptitle(title or 'Accuracy against ensemble size', fontsize=9)
  return _save(fig, path)


def accuracy_curves(curves: dict[str, tuple[list, list]], path: str,
                    title: str = '') -> str:
  """Accuracy against training step, one line per TensorBoard tag (a tag
  with a single point, such as the final test, is a marker)."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for tag, (steps, values) in sorted(curves.items()):
    ax.plot(steps, 100 * np.asarray(values), marker='o' if len(steps) < 3
            else None, label=tag)
  ax.set_xlabel('training step')
  ax.set_ylabel('accuracy (%)')
  ax.grid(alpha=0.3)
  ax.set_title(title or 'Accuracy against training step', fontsize=9)
  ax.legend(loc='lower right', fontsize=7)
  return _save(fig, path)


def wall_time_curves(curves: dict[str, list[tuple[list, list, list]]],
                     path: str, title: str = '') -> str:
  """Validation accuracy and NLL against training wall time: at equal cost
  the question is which method is ahead at every minute, not only at the
  end.

  Args:
    curves: method label -> one (minutes, accuracy %, NLL) per run (seed),
      drawn in the method's colour.
  """
  fig, (acc_ax, nll_ax) = plt.subplots(1, 2, figsize=(10, 4))
  for index, (label, runs) in enumerate(curves.items()):
    color = f'C{index}'
    for run, (minutes, accuracy, nll) in enumerate(runs):
      name = label if run == 0 else None
      acc_ax.plot(minutes, accuracy, color=color, label=name, alpha=0.8)
      nll_ax.plot(minutes, nll, color=color, label=name, alpha=0.8)
  for ax, what in ((acc_ax, 'validation accuracy (%)'),
                   (nll_ax, 'validation NLL')):
    ax.set_xlabel('training wall time (min)')
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
  acc_ax.legend(loc='lower right', fontsize=7)
  fig.suptitle(title or 'Validation ensemble against training wall time, '
               'one line per seed', fontsize=9)
  return _save(fig, path)


def detection_sweep(epsilons: list[float],
                    panels: dict[str, dict[tuple[str, str], list[float]]],
                    path: str, ylabel: str, title: str = '') -> str:
  """Detection against epsilon, one panel per protocol and attack.

  One colour per ensemble size across panels, so the paper protocol and the
  strong one read side by side; NaN (nothing to detect) leaves a gap.

  Args:
    epsilons: the x values (log scale when all are positive).
    panels: panel title -> {(label starting 'N=<size>', line style):
      values, one per epsilon}.
    path: PNG path.
    ylabel: the metric's name.
    title: figure title.
  """
  cols = min(len(panels), 2)
  rows = (len(panels) + cols - 1) // cols
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows),
                           squeeze=False, sharey=True)
  colours: dict[str, str] = {}
  for ax in axes.ravel()[len(panels):]:
    ax.axis('off')
  for ax, (name, lines) in zip(axes.ravel(), panels.items()):
    for (label, style), values in lines.items():
      group = label.split()[0]
      colour = colours.setdefault(group, f'C{len(colours)}')
      ax.plot(epsilons, np.asarray(values, float), style, marker='o',
              color=colour, label=label)
    if min(epsilons) > 0:
      ax.set_xscale('log')
    ax.set_title(name, fontsize=9)
    ax.set_xlabel('epsilon (L-infinity, pixels in [0, 1])')
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc='best', fontsize=7)
  for ax in axes[:, 0]:
    ax.set_ylabel(ylabel)
  fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def shift_panels(runs: dict[str, dict[str, dict]], kind: str, path: str,
                 title: str = '') -> str:
  """Accuracy and ECE against the shift's level, as Ovadia et al.'s Fig. 2.

  Corruptions: at each severity (0 = clean) a box over the corruption types
  per run, runs side by side. Rotations: a line per run against degrees.

  Args:
    runs: run label -> {set name: {'kind', 'level', 'accuracy', 'ece', ...}}
      (`dataset_shift.evaluate_shift`'s 'sets').
    kind: 'corruption' or 'rotation'.
  """
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  width = 0.8 / max(len(runs), 1)
  for ax, metric, name in zip(axes, ('accuracy', 'ece'), ('accuracy', 'ECE')):
    for i, (label, sets) in enumerate(runs.items()):
      colour = colours[i % len(colours)]
      levels = sorted({s['level'] for s in sets.values()})
      values = [[s[metric] for s in sets.values() if s['level'] == level]
                for level in levels]
      if kind == 'rotation':
        ax.plot(levels, [v[0] for v in values], marker='o', color=colour,
                label=label)
        continue
      positions = np.arange(len(levels)) + (i - (len(runs) - 1) / 2) * width
      parts = ax.boxplot(values, positions=positions, widths=width * 0.9,
                         patch_artist=True, showfliers=False)
      for box in parts['boxes']:
        box.set(facecolor=colour, alpha=0.6)
      ax.plot([], [], color=colour, lw=6, alpha=0.6, label=label)
      ax.set_xticks(np.arange(len(levels)),
                    ['clean' if level == 0 else str(level)
                     for level in levels])
    ax.set_xlabel('rotation (degrees)' if kind == 'rotation'
                  else 'corruption severity')
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
  axes[0].legend(loc='lower left', fontsize=7)
  fig.suptitle(title or 'Dataset shift', fontsize=9)
  return _save(fig, path)

"""The paper's Tables 3 and 4 and our OOD results, filled from run directories.

Reads only what training and evaluation wrote (`comparison.read_run`), so
RESULTS.md's tables are regenerated, not retyped, after every reproduce run.
A run that is missing or not yet evaluated shows as '—'.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

from hypergan_tf.evaluation import comparison

MISSING = comparison.MISSING
ENSEMBLE_SIZES = (1, 5, 10, 100)

# Paper Table 4: accuracy (%) with 1 / 5 / 10 / 100 sampled networks.
PAPER_ACCURACY = {
    'mnist': (98.64, 98.75, 99.22, 99.31),
    'mnist5000': (96.69, 97.24, 97.33, 97.71),
    'cifar5': (84.50, 85.51, 85.54, 85.81),
    'cifar10': (76.32, 76.84, 77.52, 77.71),
    'cifar10_5000': (76.31, 76.41, 77.12, 77.38),
}
# Paper Table 3: layer L2 norms (mean, std) of HyperGAN samples and of 10
# standard networks from different random initialisations, MNIST.
PAPER_NORMS = {
    'HyperGAN (paper)': ((7.49, 1.59), (51.10, 10.62), (22.01, 6.01)),
    'standard training (paper)': ((27.05, 0.31), (160.51, 0.51),
                                  (5.97, 0.06)),
}


def _percent(value) -> str:
  return MISSING if value is None else f'{100 * value:.2f}'


def _read(run_dir: str) -> comparison.Run | None:
  """The run in run_dir, or None where it was not run."""
  return comparison.read_run(run_dir) if os.path.isdir(run_dir) else None


def _eval(run_dir: str) -> dict:
  """The run's eval/metrics.json ({} where not run or not evaluated)."""
  run = _read(run_dir)
  return run.eval if run else {}


def _budget(run: comparison.Run) -> str:
  """'8,000 steps, 68.6 min' from config.json and results.json."""
  steps = run.eval.get('step') or run.config.get('steps')
  seconds = run.results.get('wall_time_s')
  text = f'{steps:,} steps' if steps else MISSING
  return text + (f', {seconds / 60:.1f} min' if seconds else '')


def accuracy_table(runs: Sequence[tuple[str, str, str]]) -> str:
  """Table 4. runs: (label, run directory, key of PAPER_ACCURACY)."""
  lines = ['| run | budget | 1 network | 5 | 10 | 100 | paper 1 / 5 / 10 / '
           '100 | ours - paper, 100 |', '| --- ' * 8 + '|']
  for label, run_dir, paper_key in runs:
    run = _read(run_dir)
    metrics = run.eval if run else {}
    ours = [metrics.get(f'test/accuracy_n{k}') for k in ENSEMBLE_SIZES]
    single = _percent(ours[0])
    if ours[0] is not None and 'test/accuracy_n1_std' in metrics:
      single += f' ± {100 * metrics["test/accuracy_n1_std"]:.2f}'
    paper = PAPER_ACCURACY[paper_key]
    gap = (MISSING if ours[-1] is None
           else f'{100 * ours[-1] - paper[-1]:+.2f}')
    budget = _budget(run) if run else 'not run'
    lines.append(f'| {label} | {budget} | {single} | ' +
                 ' | '.join(_percent(v) for v in ours[1:]) +
                 f' | {" / ".join(f"{p:.2f}" for p in paper)} | {gap} |')
  return '\n'.join(lines) + '\n'


def accuracy_curves(runs: Sequence[tuple[str, str]], paper_key: str
                    ) -> dict[str, tuple[list[int], list[float]]]:
  """Accuracy (%) against ensemble size: the paper's, then each run's.

  A run that is missing or not evaluated is left out.
  """
  curves = {'paper': (list(ENSEMBLE_SIZES), list(PAPER_ACCURACY[paper_key]))}
  for label, run_dir in runs:
    metrics = _eval(run_dir)
    points = [(k, 100 * metrics[f'test/accuracy_n{k}'])
              for k in ENSEMBLE_SIZES if f'test/accuracy_n{k}' in metrics]
    if points:
      sizes, accuracy = zip(*points)
      curves[label] = (list(sizes), list(accuracy))
  return curves


def _norms(metrics: dict, layers: int) -> list[tuple[float, float] | None]:
  return [(metrics[f'diversity/layer_{i}_norm_mean'],
           metrics[f'diversity/layer_{i}_norm_std'])
          if f'diversity/layer_{i}_norm_mean' in metrics else None
          for i in range(layers)]


def diversity_table(runs: Sequence[tuple[str, str]],
                    layer_names: Sequence[str] = ('conv1', 'conv2',
                                                  'linear')) -> str:
  """Table 3: (label, run directory) rows next to the paper's two rows."""
  rows = [(label, _norms(_eval(run_dir), len(layer_names)))
          for label, run_dir in runs]
  rows += [(label, list(norms)) for label, norms in PAPER_NORMS.items()]
  lines = ['| population | ' + ' | '.join(layer_names) + ' |',
           '| --- ' * (len(layer_names) + 1) + '|']
  for label, norms in rows:
    lines.append(f'| {label} | ' + ' | '.join(
        MISSING if n is None else f'{n[0]:.2f} ± {n[1]:.2f}'
        for n in norms) + ' |')
  return '\n'.join(lines) + '\n'


def ood_table(runs: Sequence[tuple[str, str]],
              sizes: Sequence[int] = (5, 10, 100)) -> str:
  """AUROC of ensemble entropy (H) and of mutual information (MI), and
  FPR@95%TPR of entropy, per (label, run directory) and OOD set."""
  columns = [(f'{title} N={k}', f'{metric}_n{k}') for k in sizes
             for title, metric in (('H AUROC', 'auroc'),
                                   ('MI AUROC', 'mi_auroc'),
                                   ('FPR@95', 'fpr_at_95_tpr'))]
  lines = ['| run | OOD set | ' + ' | '.join(t for t, _ in columns) + ' |',
           '| --- ' * (2 + len(columns)) + '|']
  for label, run_dir in runs:
    metrics = _eval(run_dir)
    names = sorted({match.group(1) for match in (
        re.fullmatch(r'ood/(.+?)(_mi)?_auroc_n\d+', k) for k in metrics)
                    if match}) or [MISSING]
    for name in names:
      cells = [metrics.get(f'ood/{name}_{key}') for _, key in columns]
      lines.append(f'| {label} | {name} | ' + ' | '.join(
          MISSING if v is None else f'{v:.3f}' for v in cells) + ' |')
  return '\n'.join(lines) + '\n'

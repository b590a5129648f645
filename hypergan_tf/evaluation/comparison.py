"""One markdown table comparing evaluated runs: a HyperGAN against baselines.

Reads what the other tools wrote into each run directory and computes
nothing itself:
- `config.json` (scripts/train.py or scripts/train_baseline.py): the method;
- `results.json`: training wall time;
- `eval/metrics.json` (scripts/evaluate.py): accuracy, NLL, ECE,
  disagreement, mutual information, the AUROC of every OOD set scored and
  the per-layer weight norms (diversity, paper Table 3);
- `adversarial/metrics.json` (scripts/adversarial.py): detection rates at
  5% false-positive rate by ensemble entropy, on a freshly sampled ensemble
  (`adv/<attack>_eps<eps>_detection_n<N>`) and on the attacked ensemble
  itself (`..._detection_attacked_n<N>`), shown as 'fresh / attacked';
- `shift_eval/metrics.json` (scripts/evaluate.py --shift): cA, cNLL, cECE,
  the means over every shifted test set (CIFAR-10-C, rotated MNIST).
A file or key that is missing shows as '—', so a table can be made before
every evaluation has run; a run with fewer members than a row's ensemble
shows the ensemble of all of them, marked with their number.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable, Iterable

from hypergan_tf.datasets import registry
from hypergan_tf.model import members

MISSING = '—'
ATTACK_ORDER = ('fgsm', 'pgd')
_ADV_KEY = re.compile(
    r'^adv/(?P<attack>\w+?)_eps(?P<eps>[0-9.e+-]+)_detection_n(?P<n>\d+)$')
_SIZED_KEY = re.compile(r'^(?P<metric>.+)_n(?P<n>\d+)$')
_OOD_KEY = re.compile(r'^ood/(?P<set>\w+)_auroc_n\d+$')


@dataclasses.dataclass(frozen=True)
class Run:
  """What a run directory holds; missing files are empty dicts."""
  run_dir: str
  label: str
  method: str
  config: dict[str, Any]
  results: dict[str, Any]
  eval: dict[str, Any]
  adversarial: dict[str, Any]
  shift: dict[str, Any]


def _read_json(path: str) -> dict[str, Any]:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    try:
      payload = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is not valid JSON ({e}).') from None
  return payload if isinstance(payload, dict) else {}


def default_label(method: str, cfg: dict[str, Any]) -> str:
  """'HyperGAN', 'Ensemble (K=10)', 'MC dropout (p=0.25)', ..."""
  name = members.label(method)
  if method in ('ensemble', 'batch_ensemble') and 'num_members' in cfg:
    return f'{name} (K={cfg["num_members"]})'
  if method == 'mc_dropout' and 'dropout_rate' in cfg:
    return f'{name} (p={cfg["dropout_rate"]:g})'
  return name


def read_run(run_dir: str, label: str | None = None) -> Run:
  """Reads a run directory.

  Raises:
    FileNotFoundError: run_dir does not exist.
    ValueError: one of its JSON files is corrupt.
  """
  if not os.path.isdir(run_dir):
    raise FileNotFoundError(f'Run directory {run_dir!r} does not exist.')
  cfg = _read_json(os.path.join(run_dir, 'config.json'))
  method = cfg.get('method', 'hypergan')
  return Run(run_dir=run_dir, label=label or default_label(method, cfg),
             method=method, config=cfg,
             results=_read_json(os.path.join(run_dir, 'results.json')),
             eval=_read_json(os.path.join(run_dir, 'eval', 'metrics.json')),
             adversarial=_read_json(os.path.join(run_dir, 'adversarial',
                                                 'metrics.json')),
             shift=_read_json(os.path.join(run_dir, 'shift_eval',
                                           'metrics.json')))


def _number(value: Any) -> float | None:
  return float(value) if isinstance(value, (int, float)) else None


def _fmt(value: Any, kind: str) -> str:
  value = _number(value)
  if value is None:
    return MISSING
  if kind == 'percent':
    return f'{100 * value:.2f}'
  if kind == 'minutes':
    return f'{value / 60:.1f}'
  if kind == 'int':
    return f'{value:.0f}'
  return f'{value:.{kind}f}'


def _pm(mean: Any, std: Any, kind: str) -> str:
  """'mean ± std' (or only the mean when the std is missing)."""
  text = _fmt(mean, kind)
  if text != MISSING and _number(std) is not None:
    text += f' ± {_fmt(std, kind)}'
  return text


def _pair(first: str, second: str) -> str:
  """'first / second', or '—' when both are missing."""
  if first == MISSING and second == MISSING:
    return MISSING
  return f'{first} / {second}'


def _sized(metrics: dict[str, Any], metric: str, n: int, kind: str) -> str:
  """metric of the ensemble of n members, formatted.

  A run with fewer than n members shows its ensemble of all of them, marked
  with their number ('99.11 (4)': a K = 4 BatchEnsemble in a 10-member
  row), so baselines of any K share one table.
  """
  sizes = [int(m['n']) for key in metrics
           if (m := _SIZED_KEY.match(key)) and m['metric'] == metric]
  if n in sizes:
    return _fmt(metrics[f'{metric}_n{n}'], kind)
  if sizes and max(sizes) < n:
    text = _fmt(metrics[f'{metric}_n{max(sizes)}'], kind)
    return text if text == MISSING else f'{text} ({max(sizes)})'
  return MISSING


def ood_sets(runs: list[Run]) -> list[str]:
  """The OOD sets any run's evaluation scored, sorted."""
  return sorted({m['set'] for run in runs for key in run.eval
                 if (m := _OOD_KEY.match(key))
                 and not m['set'].endswith('_mi')})


def adversarial_settings(runs: list[Run], members: int,
                         epsilons: Iterable[float] | None = None
                         ) -> list[tuple[str, str]]:
  """(attack, eps) pairs found for `members` in any run, FGSM, PGD first.

  Args:
    runs: the runs.
    members: ensemble size N of the keys.
    epsilons: keep only these radii (default: all found).
  """
  keep = None if epsilons is None else {float(e) for e in epsilons}
  found = set()
  for run in runs:
    for key in run.adversarial:
      match = _ADV_KEY.match(key)
      if (match and int(match['n']) == members and
          (keep is None or float(match['eps']) in keep)):
        found.add((match['attack'], match['eps']))
  order = lambda a: (ATTACK_ORDER.index(a) if a in ATTACK_ORDER
                     else len(ATTACK_ORDER), a)
  return sorted(found, key=lambda ae: (order(ae[0]), float(ae[1])))


def rows(runs: list[Run], members: int = 10,
         epsilons: Iterable[float] | None = None
         ) -> list[tuple[str, Callable[[Run], str]]]:
  """(row name, cell of a run) of every row of the table."""
  n = members
  sized = lambda metric, kind: lambda r: _sized(r.eval, metric, n, kind)
  out: list[tuple[str, Callable[[Run], str]]] = [
      ('Test accuracy (%), 1 member (mean ± std over members)',
       lambda r: _pm(r.eval.get('test/accuracy_n1'),
                     r.eval.get('test/accuracy_n1_std'), 'percent')),
  ]
  for k in (5, 10, 100):
    out.append((f'Test accuracy (%), {k} members',
                lambda r, k=k: _sized(r.eval, 'test/accuracy', k,
                                      'percent')))
  out += [
      (f'Test NLL, {n} members', sized('test/nll', '4')),
      (f'Test ECE, {n} members', sized('test/ece', '4')),
      (f'Test disagreement of two members (%), {n} members',
       sized('test/disagreement', 'percent')),
      (f'Test mutual information, {n} members',
       sized('test/mutual_information', '4')),
  ]
  for ood in ood_sets(runs):
    name = registry.label(ood)
    out += [(f'{name} AUROC (entropy), {n} members',
             sized(f'ood/{ood}_auroc', '3')),
            (f'{name} AUROC (mutual information), {n} members',
             sized(f'ood/{ood}_mi_auroc', '3'))]
  settings = adversarial_settings(runs, n, epsilons) or [
      (attack, None) for attack in ATTACK_ORDER]
  for attack, eps in settings:
    what = attack.upper() + (f' ε={eps}' if eps is not None else '')
    key = f'adv/{attack}_eps{eps}_detection'
    out.append((f'{what} detected at 5% FPR (%), {n} members: fresh / '
                'attacked', lambda r, key=key: _pair(
                    _sized(r.adversarial, key, n, 'percent'),
                    _sized(r.adversarial, f'{key}_attacked', n, 'percent'))))
  for key, name, kind in (('cA', 'accuracy (%)', 'percent'),
                          ('cNLL', 'NLL', '4'), ('cECE', 'ECE', '4')):
    out.append((f'Under shift: {key}, mean {name} over shifted test sets',
                lambda r, key=key, kind=kind: _fmt(
                    r.shift.get(f'shift/{key}'), kind)))
  num_layers = max([_count_layers(r.eval) for r in runs] + [0])
  for i in range(num_layers):
    out.append((f'Layer {i} weight L2 norm (mean ± std over members)',
                lambda r, i=i: _pm(
                    r.eval.get(f'diversity/layer_{i}_norm_mean'),
                    r.eval.get(f'diversity/layer_{i}_norm_std'), '2')))
  out += [
      ('Members evaluated',
       lambda r: _fmt(r.eval.get('num_networks'), 'int')),
      ('Training wall time (min)',
       lambda r: _fmt(r.results.get('wall_time_s'), 'minutes')),
  ]
  return out


def _count_layers(metrics: dict[str, Any]) -> int:
  layers = [int(m[1]) for key in metrics
            if (m := re.match(r'^diversity/layer_(\d+)_norm_mean$', key))]
  return max(layers) + 1 if layers else 0


def _escape(text: str) -> str:
  return text.replace('|', '\\|')


def table(runs: list[Run], members: int = 10,
          epsilons: Iterable[float] | None = None) -> str:
  """The comparison as a markdown table: one row per metric, one column per
  run, then a line naming each run's directory."""
  if not runs:
    raise ValueError('Nothing to compare: give at least one run directory.')
  lines = ['| metric | ' + ' | '.join(_escape(r.label) for r in runs) + ' |',
           '| --- |' + ' --- |' * len(runs)]
  for name, cell in rows(runs, members, epsilons):
    lines.append(f'| {name} | ' + ' | '.join(cell(r) for r in runs) + ' |')
  lines.append('')
  lines.append(
      'Adversarial rows: detection by ensemble entropy on a freshly sampled '
      'ensemble / on the attacked ensemble itself; an ensemble of K '
      'networks has no fresh members when N = K, so there both are the '
      'attacked (white-box) rate.')
  lines.append('')
  lines.append('Runs: ' + '; '.join(
      f'{_escape(r.label)} = `{r.run_dir}`' + (
          f' (step {r.eval["step"]})' if 'step' in r.eval else '')
      for r in runs) + '.')
  return '\n'.join(lines) + '\n'


def compare(run_dirs: list[str], labels: list[str] | None = None,
            members: int = 10, epsilons: Iterable[float] | None = None
            ) -> str:
  """Reads run directories and returns the markdown table.

  Args:
    run_dirs: one column each.
    labels: column titles (default: `default_label`).
    members: ensemble size of the NLL, ECE, OOD and adversarial rows.
    epsilons: attack radii shown (default: every one found).
  """
  if labels and len(labels) != len(run_dirs):
    raise ValueError(f'{len(labels)} labels for {len(run_dirs)} runs; give '
                     'one label per run or none.')
  labels = labels or [None] * len(run_dirs)
  return table([read_run(d, l) for d, l in zip(run_dirs, labels)], members,
               epsilons)

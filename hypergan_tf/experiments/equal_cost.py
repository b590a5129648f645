"""Methods compared at equal training cost (scripts/equal_cost.py).

Each method gets the reference recipe's training wall time on this machine:
its steps are the reference's steps times the ratio of their speeds, steps
per second through the training scripts timed back to back, with each
flagfile's validation passes and checkpoints priced in (the speed probe is
recorded and reused, so a rerun resumes the same budget). The cost is
then stated two ways, from what the runs wrote: wall time, and
network-image passes (steps x networks x images per network). Seeds vary;
cells are mean ± std over them. Runs, evaluations and resumes are
`reproduce` stages: rerunning the command finishes what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from typing import Collection, Sequence

import numpy as np

from hypergan_tf.evaluation import comparison
from hypergan_tf.evaluation import figures
from hypergan_tf.experiments import reproduce
from hypergan_tf.experiments import script_speed
from hypergan_tf.runtime import rundir

SPEEDS_FILE = 'speeds.json'
REPORT_FILE = 'equal_cost.md'
FIGURE_FILE = 'equal_cost_wall_time.png'
# Steps are rounded to whole evaluation periods of the flagfiles (1,000), so
# every run's last step is a validation step.
STEP_QUANTUM = 1000
DATASETS = ('cifar5', 'cifar10')


@dataclasses.dataclass(frozen=True)
class Method:
  """One recipe of the comparison and the seeds it is trained with."""
  name: str  # Run directories are <runs_root>/<name>_s<seed>.
  label: str
  flagfile: str  # Relative to the project root.
  seeds: tuple[int, ...]
  args: tuple[str, ...] = ()  # Training flags added to the flagfile's.

  @property
  def script(self) -> str:
    kind = script_speed.script_kind(
        os.path.join(reproduce.PROJECT_ROOT, self.flagfile))
    return script_speed.SCRIPTS[kind]

  def run_dir(self, runs_root: str, seed: int) -> str:
    return os.path.join(runs_root, f'{self.name}_s{seed}')


def methods(dataset: str, seeds: Sequence[int],
            every_seed: Collection[str] = ()) -> tuple[Method, ...]:
  """The comparison on a CIFAR dataset: the HyperGAN recipe (the reference
  whose wall time is the budget) and the K = 5 ensemble with every seed;
  a K = 4 ensemble, BatchEnsemble and MC dropout with the first, or with
  every seed if named in `every_seed` (a user who names them and gives
  seeds 1, 2 wants both).

  Raises:
    ValueError: unknown dataset or no seeds.
  """
  if dataset not in DATASETS:
    raise ValueError(f'Unknown dataset {dataset!r}; choose from {DATASETS}.')
  if not seeds:
    raise ValueError('Give at least one seed.')
  seeds = tuple(seeds)

  def seeds_of(name: str) -> tuple[int, ...]:
    return seeds if name in every_seed else seeds[:1]

  ensemble = f'configs/baseline_ensemble_{dataset}.flags'
  return (
      Method('hypergan', 'HyperGAN, 4 modes', f'configs/{dataset}_diverse.flags',
             seeds),
      Method('ensemble5', 'Ensemble (K=5)', ensemble, seeds),
      Method('ensemble4', 'Ensemble (K=4)', ensemble, seeds_of('ensemble4'),
             ('--num_members=4', '--eval_members=4',
              '--final_eval_members=4')),
      Method('batch_ensemble', 'BatchEnsemble (K=4)',
             f'configs/baseline_batch_ensemble_{dataset}.flags',
             seeds_of('batch_ensemble')),
      Method('mc_dropout', 'MC dropout',
             f'configs/baseline_mc_dropout_{dataset}.flags',
             seeds_of('mc_dropout')),
  )


def select(all_methods: Sequence[Method], names: Sequence[str] | None
           ) -> tuple[Method, ...]:
  """The methods named (the reference, the first, always kept first).

  Raises:
    ValueError: an unknown name.
  """
  if not names:
    return tuple(all_methods)
  known = [m.name for m in all_methods]
  unknown = sorted(set(names) - set(known))
  if unknown:
    raise ValueError(f'Unknown methods {unknown}; choose from {known}.')
  return tuple(m for i, m in enumerate(all_methods)
               if i == 0 or m.name in names)


def measure_speeds(all_methods: Sequence[Method], steps: int, rounds: int,
                   log=print) -> dict[str, float]:
  """Steps per second of each method through its script as a whole run
  trains (validation passes and checkpoints at its flagfile's cadence
  included), the methods alternated `rounds` times on this machine;
  medians."""
  runs = script_speed.time_alternately(
      [(m.flagfile, m.args) for m in all_methods], steps,
      reproduce.PROJECT_ROOT, rounds, log, overheads=True)
  return {m.name: float(np.median([run['run_steps_per_s'] for run in r]))
          for m, r in zip(all_methods, runs)}


def load_or_measure_speeds(all_methods: Sequence[Method], runs_root: str,
                           steps: int, rounds: int, log=print
                           ) -> dict[str, float]:
  """The recorded speeds of <runs_root>/speeds.json, measuring (and
  recording) the methods it lacks: a rerun keeps its budget."""
  path = os.path.join(runs_root, SPEEDS_FILE)
  record = (rundir.read_json(path) if os.path.exists(path)
            else {'steps_per_s': {}, 'machine': platform.processor() or
                  platform.machine(), 'cpus': os.cpu_count()})
  missing = [m for m in all_methods if m.name not in record['steps_per_s']]
  if missing:
    record['steps_per_s'].update(measure_speeds(missing, steps, rounds, log))
    rundir.write_json(path, record)
  return {m.name: record['steps_per_s'][m.name] for m in all_methods}


def budget_steps(reference_steps: int, speeds: dict[str, float],
                 reference: str, quantum: int = STEP_QUANTUM
                 ) -> dict[str, int]:
  """Steps each method trains in the reference's wall time.

  The reference keeps its steps; the others get reference_steps x (their
  speed / the reference's), rounded to a multiple of quantum (at least one).

  Raises:
    ValueError: a speed that is not positive.
  """
  bad = {name: s for name, s in speeds.items() if not s > 0}
  if bad:
    raise ValueError(f'Speeds must be positive steps/s; got {bad}. Delete '
                     f'{SPEEDS_FILE} to measure them again.')
  seconds = reference_steps / speeds[reference]
  return {name: reference_steps if name == reference else
          max(quantum, quantum * round(seconds * s / quantum))
          for name, s in speeds.items()}


def plan(all_methods: Sequence[Method], steps: dict[str, int],
         runs_root: str, data_dir: str | None = None, shift: bool = False
         ) -> list[reproduce.Stage]:
  """Train and test-evaluate (and, with shift, CIFAR-10-C) every method and
  seed, the seeds interleaved so that a partial run covers every method."""
  stages = []
  data_args = (f'--data_dir={data_dir}',) if data_dir else ()
  for seed in sorted({s for m in all_methods for s in m.seeds}):
    for m in all_methods:
      if seed not in m.seeds:
        continue
      run_dir, n = m.run_dir(runs_root, seed), steps[m.name]
      name = os.path.basename(run_dir)
      results = os.path.join(run_dir, rundir.RESULTS_FILE)
      stages.append(reproduce.Stage(
          f'{name}/train',
          (m.script, f'--flagfile={m.flagfile}', f'--run_dir={run_dir}',
           f'--seed={seed}', f'--steps={n}') + m.args + data_args,
          results, n))
      evaluate = ('scripts/evaluate.py', f'--run_dir={run_dir}') + data_args
      stages.append(reproduce.Stage(
          f'{name}/evaluate', evaluate,
          os.path.join(run_dir, 'eval', 'metrics.json'), n, results))
      if shift:
        stages.append(reproduce.Stage(
            f'{name}/shift', evaluate + reproduce.SHIFT_ARGS + (
                f'--shift_data_dir={os.path.join(runs_root, "tfds")}',),
            os.path.join(run_dir, 'shift_eval', 'metrics.json'), n, results))
  return stages


def _largest_size(metrics: dict, prefix: str) -> int | None:
  sizes = [int(m.group(1)) for m in (
      re.fullmatch(re.escape(prefix) + r'accuracy_n(\d+)', k)
      for k in metrics) if m]
  return max(sizes) if sizes else None


def run_summary(run_dir: str) -> dict[str, float]:
  """One run's test numbers and cost; what was not evaluated is absent.

  The ensemble is the run's largest evaluated one (K members, or 100
  sampled networks).
  """
  run = comparison.read_run(run_dir)
  metrics, out = run.eval, {}
  k = _largest_size(metrics, 'test/')
  if k:
    out['networks'] = k
    for name in ('accuracy', 'nll', 'ece'):
      out[name] = metrics[f'test/{name}_n{k}']
    for size in (1, 10, 100):
      if f'test/accuracy_n{size}' in metrics:
        out[f'accuracy_{size}'] = metrics[f'test/accuracy_n{size}']
    ood = [v for key, v in metrics.items()
           if re.fullmatch(rf'ood/.+(?<!_mi)_auroc_n{k}', key)]
    if ood:
      out['ood_auroc'] = float(np.mean(ood))
  shift = run.shift.get('summary', {}).get('overall', {})
  for name in ('cA', 'cNLL', 'cECE'):
    if name in shift:
      out[name] = shift[name]
  cfg = run.config
  steps = run.results.get('steps')
  if steps:
    networks = cfg.get('num_networks') or cfg.get('num_members') or 1
    out['passes'] = steps * networks * cfg.get('batch_size', 0)
  if 'final_evaluation_s' in run.results:
    out['wall_time_s'] = run.results['wall_time_s']
  else:
    # Written before results.json timed the final test evaluation apart:
    # its wall time counts it, so read the training's from the summaries.
    logged = rundir.read_scalars(run_dir, 'train/wall_time_s')
    if logged:
      out['wall_time_s'] = logged['train/wall_time_s'][1][-1]
  return out


# Table columns: (key of run_summary, header, scale, digits).
COLUMNS = (('accuracy', 'ensemble accuracy (%)', 100, 2),
           ('accuracy_1', 'single (%)', 100, 2),
           ('accuracy_10', '10 (%)', 100, 2),
           ('accuracy_100', '100 (%)', 100, 2),
           ('nll', 'NLL', 1, 3), ('ece', 'ECE', 1, 3),
           ('ood_auroc', 'OOD AUROC', 1, 3),
           ('cA', 'cA (%)', 100, 2), ('cNLL', 'cNLL', 1, 3),
           ('cECE', 'cECE', 1, 3),
           ('wall_time_s', 'wall (min)', 1 / 60, 1),
           ('passes', 'network-image passes (M)', 1e-6, 2))


def _cell(values: list[float], scale: float, digits: int) -> str:
  """'mean ± std' (sample std) over seeds; the value for one seed."""
  if not values:
    return comparison.MISSING
  v = scale * np.asarray(values, float)
  if len(v) == 1:
    return f'{v[0]:.{digits}f}'
  return f'{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}'


def summaries(all_methods: Sequence[Method], runs_root: str
              ) -> dict[str, list[dict]]:
  """{method name: [run_summary of each seed that was trained]}."""
  out = {}
  for m in all_methods:
    dirs = [m.run_dir(runs_root, s) for s in m.seeds]
    out[m.name] = [run_summary(d) for d in dirs if os.path.isdir(d)]
  return out


def table(all_methods: Sequence[Method], runs_root: str) -> str:
  """Markdown: one row per method, mean ± std over its evaluated seeds."""
  rows = summaries(all_methods, runs_root)
  lines = ['| method | seeds | networks | ' +
           ' | '.join(h for _, h, _, _ in COLUMNS) + ' |',
           '| --- ' * (3 + len(COLUMNS)) + '|']
  for m in all_methods:
    runs = rows[m.name]
    networks = sorted({r['networks'] for r in runs if 'networks' in r})
    cells = [_cell([r[key] for r in runs if key in r], scale, digits)
             for key, _, scale, digits in COLUMNS]
    lines.append(f'| {m.label} | {len(runs)} | '
                 f'{"/".join(map(str, networks)) or "—"} | ' +
                 ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def wall_time_curve(run_dir: str) -> tuple[list[float], list[float],
                                           list[float]]:
  """Training minutes, validation accuracy (%) and NLL of the run's largest
  validation ensemble, at each validation step.

  Raises:
    ValueError: the run logged no validation ensemble or no wall time.
  """
  scalars = rundir.read_scalars(run_dir, r'validation/(accuracy|nll)_n\d+|'
                                r'train/wall_time_s')
  k = _largest_size(scalars, 'validation/')
  if not k or 'train/wall_time_s' not in scalars:
    raise ValueError(f'{run_dir} logged no validation ensemble and wall '
                     'time; train it with a --validation_size.')
  wall = dict(zip(*scalars['train/wall_time_s']))
  steps, accuracy = scalars[f'validation/accuracy_n{k}']
  nll = dict(zip(*scalars[f'validation/nll_n{k}']))
  points = [(wall[s] / 60, 100 * a, nll[s])
            for s, a in zip(steps, accuracy) if s in wall and s in nll]
  return tuple(map(list, zip(*points))) if points else ([], [], [])


def figure(all_methods: Sequence[Method], runs_root: str, path: str
           ) -> str | None:
  """Validation accuracy and NLL against training wall time, a curve per
  run, one colour per method; None when no run has logged any."""
  curves = {}
  for m in all_methods:
    for seed in m.seeds:
      run_dir = m.run_dir(runs_root, seed)
      if os.path.isdir(run_dir):
        curves.setdefault(m.label, []).append(wall_time_curve(run_dir))
  if not curves:
    return None
  return figures.wall_time_curves(curves, path)


def write_report(all_methods: Sequence[Method], runs_root: str,
                 speeds: dict[str, float], steps: dict[str, int]) -> str:
  """<runs_root>/equal_cost.md: the budget, the table and the figure."""
  budget = ', '.join(f'{m.name} {steps[m.name]:,} steps '
                     f'({speeds[m.name]:.2f} steps/s)' for m in all_methods)
  plot = figure(all_methods, runs_root,
                os.path.join(runs_root, FIGURE_FILE))
  text = '\n'.join([
      '## Equal training cost\n',
      f'Budget: the wall time of {all_methods[0].label} '
      f'({all_methods[0].flagfile}); {budget}. Test split; mean ± sample '
      'std over seeds.\n',
      table(all_methods, runs_root),
      *([f'![wall time]({os.path.basename(plot)})\n'] if plot else [])])
  path = os.path.join(runs_root, REPORT_FILE)
  rundir.write_text(path, text)
  return path

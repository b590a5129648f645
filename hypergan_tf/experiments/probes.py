"""Probe runs: short trainings that each change one thing against a flagfile.

The benchmarks/*_probes.py scripts run each probe's scripts in their own
processes, skip what a probe has already finished (so rerunning resumes), and
tabulate columns read from the probes' JSON files and TensorBoard scalars.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Callable, Sequence

from absl import flags
import numpy as np

from hypergan_tf.runtime import rundir

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def define_probes_flag(known: dict[str, list[str]],
                       default: Sequence[str]) -> flags.FlagHolder:
  """--probes: names among known's keys, checked when flags are parsed."""
  holder = flags.DEFINE_list('probes', list(default),
                             f'Probes to run, among {sorted(known)}.')
  flags.register_validator(
      holder, lambda names: set(names) <= set(known),
      f'--probes must be among {", ".join(sorted(known))}.')
  return holder


def run_script(args: Sequence[str]) -> None:
  """Runs a project script (path, flags) in its own process; raises if it
  fails."""
  print('+', ' '.join(args), flush=True)
  subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, check=True)


def read_json(path: str) -> dict:
  """A JSON file's content, {} if it does not exist (not run yet)."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def train(flagfile: str, run_dir: str, extra_flags: Sequence[str]) -> None:
  """scripts/train.py on flagfile plus extra_flags, unless run_dir finished
  it (its results.json names the selected step)."""
  if 'selected_step' not in read_json(os.path.join(run_dir,
                                                   rundir.RESULTS_FILE)):
    run_script(['scripts/train.py', f'--flagfile={flagfile}',
                f'--run_dir={run_dir}', *extra_flags])


@dataclasses.dataclass(frozen=True)
class Column:
  """One table column: a value read from a probe's run directory."""
  title: str
  read: Callable[[str], float | None]  # run_dir -> value, None if missing.
  format: str = '{:.4f}'


def json_column(title: str, path: str, key: str,
                format: str = '{:.4f}') -> Column:
  """The value of key in the JSON file at path under the run directory."""
  return Column(title, lambda run_dir: read_json(
      os.path.join(run_dir, path)).get(key), format)


def scalar(tag: str, reduce: Callable[[np.ndarray], float]
           ) -> Callable[[str], float | None]:
  """Reads a summary tag of a run and reduces its values (None if absent)."""
  def read(run_dir: str) -> float | None:
    curve = rundir.read_scalars(run_dir, tag).get(tag)
    return float(reduce(np.array(curve[1]))) if curve else None
  return read


def cpu_hours(run_dir: str) -> float | None:
  """Training wall time x the machine's cores, in hours (None if unfinished)."""
  wall = read_json(os.path.join(run_dir, rundir.RESULTS_FILE)).get(
      'wall_time_s')
  return None if wall is None else wall * os.cpu_count() / 3600


def table(out_dir: str, probes: dict[str, list[str]], names: Sequence[str],
          columns: Sequence[Column]) -> str:
  """Markdown: one row per probe (name, its flags), one column each."""
  lines = ['| probe | flags | ' + ' | '.join(c.title for c in columns) + ' |',
           '| --- ' * (len(columns) + 2) + '|']
  for name in names:
    run_dir = os.path.join(out_dir, name)
    cells = []
    for column in columns:
      value = column.read(run_dir)
      cells.append('—' if value is None else column.format.format(value))
    lines.append(f'| {name} | {" ".join(probes[name]) or "—"} | '
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def write_table(out_dir: str, text: str) -> None:
  """Prints the table and writes it to <out_dir>/probes.md."""
  rundir.write_text(os.path.join(out_dir, 'probes.md'), text)
  print(text, flush=True)

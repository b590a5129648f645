"""Network-examples per second of a recipe, timed through its training script.

The speed bar between methods is what a user gets from `scripts/train.py`
and `scripts/train_baseline.py` with a shipped flagfile: the input
pipeline, the loop and the step together, at the flagfile's own shapes.
Each run trains in a temporary run directory with evaluation and
checkpoints pushed past its last step; its logged steps/s windows are read
back, the first (tracing) left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Sequence

import numpy as np

from hypergan_tf.runtime import rundir

WINDOW = 50
SCRIPTS = {'hypergan': 'scripts/train.py',
           'baseline': 'scripts/train_baseline.py'}
_FINAL_EVAL = {'hypergan': '--final_eval_networks=10',  # Its least.
               'baseline': '--final_eval_members=1'}


def script_kind(flagfile: str) -> str:
  """'baseline' for a flagfile that sets --method, else 'hypergan'."""
  with open(flagfile, encoding='utf-8') as f:
    return 'baseline' if any(line.startswith('--method=') for line in f
                             ) else 'hypergan'


def network_examples_per_step(config: dict) -> int:
  """Networks x examples per network in one step of a run's config."""
  networks = config.get('num_networks') or config['num_members']
  return int(networks) * int(config['batch_size'])


def time_script(flagfile: str, steps: int, repo: str,
                args: Sequence[str] = ()) -> dict:
  """Trains flagfile's recipe (plus args) for `steps` steps through its
  script; flagfile is relative to repo, where the script runs.

  Returns steps/s (median of the 50-step windows after the first) and
  network-examples per step and per second. Raises RuntimeError with the
  script's last output if it fails.
  """
  kind = script_kind(os.path.join(repo, flagfile))
  with tempfile.TemporaryDirectory() as run_dir:
    command = [sys.executable, os.path.join(repo, SCRIPTS[kind]),
               f'--flagfile={flagfile}', f'--run_dir={run_dir}',
               f'--steps={steps}', f'--log_every={WINDOW}',
               f'--eval_every={10 * steps}',
               f'--checkpoint_every={10 * steps}', *args, _FINAL_EVAL[kind]]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True,
                          check=False)
    if done.returncode:
      raise RuntimeError(f'{" ".join(command)} failed '
                         f'({done.returncode}):\n{done.stderr[-2000:]}')
    with open(os.path.join(run_dir, rundir.CONFIG_FILE),
              encoding='utf-8') as f:
      config = json.load(f)
    tag = 'train/steps_per_second'
    _, rates = rundir.read_scalars(run_dir, tag)[tag]
  if len(rates) < 2:
    raise ValueError(f'{steps} steps give {len(rates)} windows of {WINDOW}; '
                     f'time at least {3 * WINDOW} steps.')
  steps_per_s = float(np.median(rates[1:]))
  per_step = network_examples_per_step(config)
  return {'flagfile': flagfile, 'steps_per_s': steps_per_s,
          'network_examples_per_step': per_step,
          'network_examples_per_s': steps_per_s * per_step}


def time_alternately(recipes: Sequence[tuple[str, Sequence[str]]], steps: int,
                     repo: str, rounds: int, log=print) -> list[list[dict]]:
  """`time_script` of each (flagfile, args), the recipes alternated `rounds`
  times (A B A B) so that drifts of the machine hit all alike; returns
  each recipe's runs, in its order."""
  runs = [[] for _ in recipes]
  for round_ in range(rounds):
    for (flagfile, args), out in zip(recipes, runs):
      run = time_script(flagfile, steps, repo, args)
      out.append(run)
      log(f'round {round_ + 1}: {flagfile} {" ".join(args)}'.rstrip() +
          f': {run["steps_per_s"]:.2f} steps/s x '
          f'{run["network_examples_per_step"]} = '
          f'{run["network_examples_per_s"]:,.0f} network-examples/s')
  return runs

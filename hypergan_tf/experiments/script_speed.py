"""Network-examples per second of a recipe, timed through its training script.

The speed bar between methods is what a user gets from `scripts/train.py`
and `scripts/train_baseline.py` with a shipped flagfile: the input
pipeline, the loop and the step together, at the flagfile's own shapes.
Each run trains in a temporary run directory with evaluation and
checkpoints pushed past its last step; its logged steps/s windows are read
back, the first (tracing) left out. With `overheads`, the probe also
validates and checkpoints every few windows and prices both, so that a
speed can include them at the recipe's own cadence: what equal wall time
between recipes needs, as periodic validation costs a recipe of short
steps relatively more.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Sequence

import numpy as np

from hypergan_tf.experiments import reproduce
from hypergan_tf.methods.baselines.config import BaselineConfig
from hypergan_tf.methods.hypergan.config import TrainConfig
from hypergan_tf.runtime import rundir

WINDOW = 50
SCRIPTS = {'hypergan': 'scripts/train.py',
           'baseline': 'scripts/train_baseline.py'}
_FINAL_EVAL = {'hypergan': '--final_eval_networks=10',  # Its least.
               'baseline': '--final_eval_members=1'}
_CONFIGS = {'hypergan': TrainConfig, 'baseline': BaselineConfig}
# With overheads: a checkpoint after every 2nd window, a validation pass
# (and checkpoint) after every 4th; the windows after them price each.
_CHECKPOINT_EVERY, _EVAL_EVERY = 2 * WINDOW, 4 * WINDOW
OVERHEAD_STEPS = 12 * WINDOW  # Steps a probe with overheads needs at least.


def script_kind(flagfile: str) -> str:
  """'baseline' for a flagfile that sets --method, else 'hypergan'."""
  with open(flagfile, encoding='utf-8') as f:
    return 'baseline' if any(line.startswith('--method=') for line in f
                             ) else 'hypergan'


def network_examples_per_step(config: dict) -> int:
  """Networks x examples per network in one step of a run's config."""
  networks = config.get('num_networks') or config['num_members']
  return int(networks) * int(config['batch_size'])


def cadence(flagfile: str, repo: str, args: Sequence[str] = ()
            ) -> dict[str, int]:
  """eval_every and checkpoint_every of flagfile's recipe plus args (its
  script's defaults where neither sets them); flagfile is relative to repo,
  as are the flagfiles it nests."""
  names = ('eval_every', 'checkpoint_every')
  values = reproduce.flagfile_values(flagfile, names, args, root=repo)
  kind = script_kind(os.path.join(repo, flagfile))
  return {f.name: int(values.get(f.name, f.default))
          for f in dataclasses.fields(_CONFIGS[kind]) if f.name in names}


def time_script(flagfile: str, steps: int, repo: str,
                args: Sequence[str] = (), overheads: bool = False) -> dict:
  """Trains flagfile's recipe (plus args) for `steps` steps through its
  script; flagfile is relative to repo, where the script runs.

  Returns steps/s (median of the 50-step windows after the first, none
  holding a validation pass or checkpoint) and network-examples per step
  and per second. With overheads (steps >= OVERHEAD_STEPS) also the
  seconds a validation pass and a checkpoint take ('validation_s',
  'checkpoint_s') and 'run_steps_per_s': the speed with both at the
  recipe's cadence, as a whole run trains. Raises RuntimeError with the
  script's last output if it fails.
  """
  kind = script_kind(os.path.join(repo, flagfile))
  if overheads and steps < OVERHEAD_STEPS:
    raise ValueError(f'Pricing validation and checkpoints takes at least '
                     f'{OVERHEAD_STEPS} steps; got {steps}.')
  eval_every, checkpoint_every = ((_EVAL_EVERY, _CHECKPOINT_EVERY)
                                  if overheads else (10 * steps, 10 * steps))
  with tempfile.TemporaryDirectory() as run_dir:
    command = [sys.executable, os.path.join(repo, SCRIPTS[kind]),
               f'--flagfile={flagfile}', f'--run_dir={run_dir}',
               f'--steps={steps}', f'--log_every={WINDOW}', *args,
               f'--eval_every={eval_every}',
               f'--checkpoint_every={checkpoint_every}', _FINAL_EVAL[kind]]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True,
                          check=False)
    if done.returncode:
      raise RuntimeError(f'{" ".join(command)} failed '
                         f'({done.returncode}):\n{done.stderr[-2000:]}')
    with open(os.path.join(run_dir, rundir.CONFIG_FILE),
              encoding='utf-8') as f:
      config = json.load(f)
    tag = 'train/steps_per_second'
    ends, rates = rundir.read_scalars(run_dir, tag)[tag]
  if len(rates) < 2:
    raise ValueError(f'{steps} steps give {len(rates)} windows of {WINDOW}; '
                     f'time at least {3 * WINDOW} steps.')
  # A window holds what ran after the step that began it.
  seconds = {'plain': [], 'checkpoint': [], 'validation': []}
  for end, rate in list(zip(ends, rates))[1:]:
    begin = end - WINDOW
    kind_of_window = ('plain' if begin % checkpoint_every else
                      'validation' if begin % eval_every == 0 else
                      'checkpoint')
    seconds[kind_of_window].append(WINDOW / rate)
  plain = float(np.median(seconds['plain']))
  per_step = network_examples_per_step(config)
  result = {'flagfile': flagfile, 'steps_per_s': WINDOW / plain,
            'network_examples_per_step': per_step,
            'network_examples_per_s': WINDOW / plain * per_step}
  if overheads:
    checkpoint_s = max(0.0, float(np.median(seconds['checkpoint'])) - plain)
    validation_s = max(0.0, float(np.median(seconds['validation'])) - plain
                       - checkpoint_s)
    real = cadence(flagfile, repo, args)
    step_s = (plain / WINDOW + validation_s / real['eval_every'] +
              checkpoint_s / real['checkpoint_every'])
    result.update(validation_s=validation_s, checkpoint_s=checkpoint_s,
                  run_steps_per_s=1 / step_s, **real)
  return result


def time_alternately(recipes: Sequence[tuple[str, Sequence[str]]], steps: int,
                     repo: str, rounds: int, log=print,
                     overheads: bool = False) -> list[list[dict]]:
  """`time_script` of each (flagfile, args), the recipes alternated `rounds`
  times (A B A B) so that drifts of the machine hit all alike; returns
  each recipe's runs, in its order."""
  runs = [[] for _ in recipes]
  for round_ in range(rounds):
    for (flagfile, args), out in zip(recipes, runs):
      run = time_script(flagfile, steps, repo, args, overheads)
      out.append(run)
      line = (f'round {round_ + 1}: {flagfile} {" ".join(args)}'.rstrip() +
              f': {run["steps_per_s"]:.2f} steps/s x '
              f'{run["network_examples_per_step"]} = '
              f'{run["network_examples_per_s"]:,.0f} network-examples/s')
      if overheads:
        line += (f'; validation {run["validation_s"]:.2f} s every '
                 f'{run["eval_every"]}, checkpoint {run["checkpoint_s"]:.2f} '
                 f's every {run["checkpoint_every"]}: '
                 f'{run["run_steps_per_s"]:.2f} steps/s in a run')
      log(line)
  return runs

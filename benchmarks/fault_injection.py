"""Kills training at random moments of its save cycle; checks every resume.

  python benchmarks/fault_injection.py --kills=30 --seed=0

Trains the toy regression through scripts/train.py with a checkpoint every
few steps and SIGKILLs it at a seeded random moment after a checkpoint
appears (some inside the save, some between saves), then starts the same
command again. Each restart must resume at a step >= the newest checkpoint
the index file recorded before the kill, and never at 0 once one was. At
the end the same command runs to completion. Prints (and with --out
writes) kills tried, resumes checked, and steps lost at most.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_KILLS = flags.DEFINE_integer('kills', 30, 'Kills to try.', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the kill moments.')
_EVERY = flags.DEFINE_integer('checkpoint_every', 5, 'Steps between '
                              'checkpoints.', lower_bound=1)
_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory (default: a '
                               'new temporary one).')
_OUT = flags.DEFINE_string('out', None, 'Also write the result as JSON here.')

TOY = ['--dataset=toy_regression', '--target=toy_regression',
       '--num_networks=4', '--batch_size=16', '--noise_dim=16',
       '--code_dim=8', '--hidden_units=32', '--hidden_layers=1',
       '--pretrain_mixer_steps=5', '--warmup_steps=0', '--log_every=1000',
       '--eval_every=1000000', '--eval_networks=2',
       '--final_eval_networks=10', '--keep_checkpoints=2']
_STARTED = re.compile(r'steps (\d+) -> \d+')


def recorded_step(run_dir: str) -> int:
  """The step of the checkpoint the index file names (0: none, unreadable)."""
  try:
    with open(os.path.join(run_dir, 'checkpoints', 'checkpoint')) as f:
      found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', f.read(),
                        re.M)
  except OSError:
    return 0
  return int(found.group(1)) if found else 0


def newest_on_disk(run_dir: str) -> int:
  """The highest step with a .index file (complete or not)."""
  try:
    names = os.listdir(os.path.join(run_dir, 'checkpoints'))
  except OSError:
    return 0
  steps = [int(m.group(1)) for m in map(re.compile(r'ckpt-(\d+)\.index')
                                        .fullmatch, names) if m]
  return max(steps, default=0)


def wait_for(condition, process, timeout=300.0):
  deadline = time.monotonic() + timeout
  while not condition():
    if process.poll() is not None:
      raise RuntimeError(f'training exited with {process.returncode} '
                         'before it was killed; see its log.')
    if time.monotonic() > deadline:
      raise RuntimeError('training made no progress for 300 s.')
    time.sleep(0.01)


def started_at(log_path: str):
  """The step a start resumed at, once its log says so, else None."""
  with open(log_path) as f:
    found = _STARTED.search(f.read())
  return int(found.group(1)) if found else None


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  run_dir = _RUN_DIR.value or tempfile.mkdtemp(prefix='fault_injection_')
  command = [sys.executable, 'scripts/train.py', f'--run_dir={run_dir}',
             *TOY, '--steps=100000000', f'--seed={_SEED.value}',
             f'--checkpoint_every={_EVERY.value}']
  env = {**os.environ, 'PYTHONPATH': REPO, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  log_path = os.path.join(run_dir, 'fault_injection.log')
  os.makedirs(run_dir, exist_ok=True)
  kills, lost, inside = [], 0, 0
  for kill in range(_KILLS.value):
    before = recorded_step(run_dir)
    with open(log_path, 'w') as log:
      process = subprocess.Popen(command, cwd=REPO, env=env,
                                 stdout=log, stderr=log)
    wait_for(lambda: started_at(log_path) is not None, process)
    resumed = started_at(log_path)
    if resumed < before or (before and not resumed):
      process.kill()
      raise SystemExit(f'error: kill {kill}: resumed at step {resumed}, '
                       f'below the recorded checkpoint {before}.')
    lost = max(lost, before - resumed)
    # A new checkpoint, then a moment of the save cycle: half within 30 ms
    # of its index file (inside the save and the one after), half anywhere
    # in the interval between two saves.
    seen = newest_on_disk(run_dir)
    wait_for(lambda: newest_on_disk(run_dir) > seen, process)
    shortly = rng.random() < 0.5
    delay = rng.uniform(0, 0.03) if shortly else rng.uniform(0, 1.0)
    inside += shortly
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kills.append({'resumed_at': resumed, 'recorded_before': before,
                  'delay_s': round(delay, 4),
                  'recorded_after': recorded_step(run_dir),
                  'newest_file_after': newest_on_disk(run_dir)})
    print(f'kill {kill + 1}/{_KILLS.value}: resumed at {resumed} '
          f'(recorded {before}), killed {delay * 1000:.0f} ms after '
          f'checkpoint {newest_on_disk(run_dir)}', flush=True)
  final_step = recorded_step(run_dir) + _EVERY.value
  with open(log_path, 'w') as log:
    done = subprocess.run([*command[:-2], f'--steps={final_step}',
                           f'--seed={_SEED.value}',
                           f'--checkpoint_every={_EVERY.value}'],
                          cwd=REPO, env=env, stdout=log, stderr=log,
                          check=False)
  resumed = started_at(log_path)
  if done.returncode or resumed is None or resumed < final_step - _EVERY.value:
    raise SystemExit(f'error: the final run exited {done.returncode}, '
                     f'resumed at {resumed}; see {log_path}.')
  result = {'kills': len(kills), 'resumes_checked': len(kills) + 1,
            'steps_lost_at_most': lost, 'kills_within_30_ms': inside,
            'final_step': final_step, 'seed': _SEED.value,
            'checkpoint_every': _EVERY.value, 'runs': kills}
  print(json.dumps({k: v for k, v in result.items() if k != 'runs'}))
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  app.run(main)

"""Shipped HyperGAN recipes against their K = 5 ensembles, through the scripts.

  python benchmarks/recipe_speed.py \
      --pairs=configs/cifar5_diverse.flags:configs/baseline_ensemble_cifar5.flags,configs/cifar10_diverse.flags:configs/baseline_ensemble_cifar10.flags \
      --output=benchmarks/results/recipe_speed.json

For each pair, trains both flagfiles through `scripts/train.py` /
`scripts/train_baseline.py` for --steps steps, alternated --rounds times
(A B A B) on this machine, and reports the HyperGAN recipe's
network-examples per second as a multiple of the ensemble's: the speed bar
of RESULTS.md's speed section. Run it on an idle machine.
"""

import json
import os
import platform

from absl import app
from absl import flags
import numpy as np

from hypergan_tf.experiments import script_speed
from hypergan_tf.runtime import rundir

_PAIRS = flags.DEFINE_list(
    'pairs', ['configs/cifar5_diverse.flags:'
              'configs/baseline_ensemble_cifar5.flags',
              'configs/cifar10_diverse.flags:'
              'configs/baseline_ensemble_cifar10.flags'],
    'recipe:reference flagfile pairs.')
_STEPS = flags.DEFINE_integer('steps', 400, 'Steps per timed run.',
                              lower_bound=150)
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Alternations per pair.',
                               lower_bound=1)
_RECIPE_ARGS = flags.DEFINE_list(
    'recipe_args', [], 'Extra flags of every recipe, not of its reference '
    '(e.g. --recipe_args=--mixed_precision).')
_OUTPUT = flags.DEFINE_string('output', None, 'Optional JSON results file.')


def main(argv):
  del argv
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rows = []
  for pair in _PAIRS.value:
    recipe, reference = pair.split(':')
    recipe_runs, reference_runs = (
        [run['network_examples_per_s'] for run in runs]
        for runs in script_speed.time_alternately(
            [(recipe, tuple(_RECIPE_ARGS.value)), (reference, ())],
            _STEPS.value, repo,
            _ROUNDS.value, log=lambda line: print(line, flush=True)))
    ratios = [a / b for a, b in zip(recipe_runs, reference_runs)]
    rows.append({'recipe': recipe, 'recipe_args': _RECIPE_ARGS.value,
                 'reference': reference,
                 'recipe_network_examples_per_s': recipe_runs,
                 'reference_network_examples_per_s': reference_runs,
                 'ratio_per_round': ratios,
                 'ratio': float(np.median(ratios))})
  print(f'\n{"recipe":<34}{"reference":<42}{"x reference":>12}')
  for row in rows:
    print(f'{row["recipe"]:<34}{row["reference"]:<42}{row["ratio"]:>11.2f}x'
          f'  (rounds: {", ".join(f"{r:.2f}" for r in row["ratio_per_round"])})')
  if _OUTPUT.value:
    rundir.write_text(_OUTPUT.value, json.dumps(
        {'machine': platform.processor() or platform.machine(),
         'cpus': os.cpu_count(), 'steps': _STEPS.value, 'rows': rows},
        indent=2) + '\n')


if __name__ == '__main__':
  app.run(main)

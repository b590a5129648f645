"""What a modes run's generator adds beyond its K base networks (validation).

  python benchmarks/generator_ablation.py --run_dirs=runs/cifar5_diverse

Prints, per run, validation accuracy / NLL / ECE of the K bases as an
ensemble (generator output zeroed) and of sampled networks: single, K (one
per mode) and 10 (means over disjoint draws), and all --num_networks.
"""

import json

from absl import app
from absl import flags

from hypergan_tf.experiments import ablations

_RUN_DIRS = flags.DEFINE_list('run_dirs', None, 'Run directories (--modes '
                              '>= 2, trained with --validation_size).',
                              required=True)
_NETWORKS = flags.DEFINE_integer('num_networks', 100, 'Networks sampled.',
                                 lower_bound=10)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the draw.')


def main(argv):
  del argv
  for run_dir in _RUN_DIRS.value:
    rows = ablations.validation_ablation(run_dir, _NETWORKS.value,
                                         _SEED.value)
    print(f'\n{run_dir} (validation)')
    print(f'{"":<14}{"accuracy":>10}{"nll":>8}{"ece":>8}')
    for name, row in rows.items():
      cells = ''.join(f'{row[key]:>{width}.4f}' if key in row else
                      f'{"":>{width}}' for key, width in (
                          ('accuracy', 10), ('nll', 8), ('ece', 8)))
      print(f'{name:<14}{cells}')
    print(json.dumps({'run_dir': run_dir, **rows}))


if __name__ == '__main__':
  app.run(main)

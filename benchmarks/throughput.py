"""Prints train-step and inference throughput (networks x examples / s).

  python benchmarks/throughput.py --num_networks=1,8,32,100 \
      --output=benchmarks/results/throughput.json

Times every forward method in one run, the per-network loop included, so the
speed-up is measured against the formulation it replaced. Run it on an idle
machine.
"""

import json
import os
import platform

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from hypergan_tf import benchmark
from hypergan_tf import targets
from hypergan_tf import training

_NETWORKS = flags.DEFINE_list('num_networks', ['1', '8', '32', '100'],
                              'Numbers of sampled networks N.')
_BATCH = flags.DEFINE_integer('batch_size', 100, 'Examples per step B.',
                              lower_bound=1)
_METHODS = flags.DEFINE_list('methods', list(targets.FORWARD_METHODS),
                             'Forward methods to compare.')
_TARGET = flags.DEFINE_enum('target', 'mnist', ['mnist', 'cifar'],
                            'Target network.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per point.',
                                lower_bound=1)
_OUTPUT = flags.DEFINE_string('output', None, 'Optional JSON results file.')


def main(argv):
  del argv
  unknown = set(_METHODS.value) - set(targets.FORWARD_METHODS)
  if unknown:
    raise app.UsageError(f'Unknown --methods {sorted(unknown)}; choose from '
                         f'{targets.FORWARD_METHODS}.')
  dataset = {'mnist': 'mnist', 'cifar': 'cifar10'}[_TARGET.value]
  rows = []
  print(f'{"N":>5} {"B":>5} {"method":>15} {"train s":>9} '
        f'{"train nxe/s":>12} {"infer s":>9} {"infer nxe/s":>12}')
  for n in map(int, _NETWORKS.value):
    for method in _METHODS.value:
      row = benchmark.measure(n, _BATCH.value, method,
                              repeats=_REPEATS.value, target=_TARGET.value,
                              dataset=dataset)
      rows.append(row)
      print(f'{n:>5} {_BATCH.value:>5} {method:>15} '
            f'{row["train_step_s"]:>9.4f} '
            f'{row["train_net_examples_per_s"]:>12.0f} '
            f'{row["inference_s"]:>9.4f} '
            f'{row["inference_net_examples_per_s"]:>12.0f}', flush=True)
  if _OUTPUT.value:
    training.write_json(_OUTPUT.value, {
        'rows': rows,
        'target': _TARGET.value,
        'machine': {'cpu_count': os.cpu_count(),
                    'processor': platform.processor(),
                    'tensorflow': tf.__version__},
    })
    logging.info('Wrote %s', _OUTPUT.value)


if __name__ == '__main__':
  app.run(main)

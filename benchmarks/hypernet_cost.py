"""The HyperGAN train step against the conventional K-network step it replaces.

  python benchmarks/hypernet_cost.py --output=/tmp/hypernet_cost.json

At the CIFAR-10 flagfile's shapes (configs/cifar10.flags: 8 networks x 128
images; configs/baseline_ensemble_cifar10.flags: K = 5 networks x 128 images
each), each row in a fresh process: a conventional ensemble step, a
BatchEnsemble step, and the HyperGAN step with each generator head, with and
without per-network batches. Reports seconds per step, network-examples/s,
distinct images/s, peak RSS and trained parameters, and each row's
network-examples/s as a ratio to the conventional step's. Run it on an idle
machine: the ratios are what carries over between machines.
"""

import os
import platform

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from hypergan_tf.experiments import benchmark
from hypergan_tf.runtime import rundir

_TARGET = flags.DEFINE_enum('target', 'cifar', ['cifar', 'cifar5', 'mnist'],
                            'Target network.')
_HEADS = benchmark.define_heads_flag()
_NETWORKS = flags.DEFINE_integer('num_networks', 8, 'HyperGAN networks per '
                                 'step.', lower_bound=1)
_MEMBERS = flags.DEFINE_integer('num_members', 5, 'Conventional networks K.',
                                lower_bound=1)
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Images per network.',
                              lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed steps per row.',
                                lower_bound=1)
_OUTPUT = flags.DEFINE_string('output', None, 'Optional JSON results file.')

DATASETS = {'cifar': 'cifar10', 'cifar5': 'cifar5', 'mnist': 'mnist'}


def main(argv):
  del argv
  common = dict(target=_TARGET.value, dataset=DATASETS[_TARGET.value],
                repeats=_REPEATS.value)
  rows = [
      {'name': f'conventional ensemble, K={_MEMBERS.value}',
       **benchmark.measure_isolated(method='ensemble',
                                    num_members=_MEMBERS.value,
                                    batch_size=_BATCH.value, **common)},
      {'name': 'BatchEnsemble, K=4',
       **benchmark.measure_isolated(method='batch_ensemble', num_members=4,
                                    batch_size=_BATCH.value, **common)},
  ]
  for head in _HEADS.value:
    for per_network in (False, True):
      rows.append({
          'name': f'HyperGAN, {head} head' + (
              ', per-network batches' if per_network else ''),
          **benchmark.measure_isolated(
              num_networks=_NETWORKS.value, batch_size=_BATCH.value,
              method='loop', head=head, per_network_batches=per_network,
              **common)})
  reference = rows[0]['train_net_examples_per_s']
  print(f'{"row":<48} {"step s":>7} {"net-ex/s":>9} {"ratio":>6} '
        f'{"images/s":>9} {"params":>11} {"peak GiB":>8}')
  for row in rows:
    row['ratio_to_conventional'] = row['train_net_examples_per_s'] / reference
    params = row.get('hypernet_parameters', row.get('trained_parameters'))
    print(f'{row["name"]:<48} {row["train_step_s"]:>7.3f} '
          f'{row["train_net_examples_per_s"]:>9.0f} '
          f'{row["ratio_to_conventional"]:>6.2f} '
          f'{row["train_distinct_images_per_s"]:>9.0f} {params:>11,} '
          f'{row["peak_rss_gib"]:>8.2f}', flush=True)
  if _OUTPUT.value:
    rundir.write_json(_OUTPUT.value, {
        'rows': rows, 'target': _TARGET.value,
        'machine': {'cpu_count': os.cpu_count(),
                    'processor': platform.processor(),
                    'tensorflow': tf.__version__}})
    logging.info('Wrote %s', _OUTPUT.value)


if __name__ == '__main__':
  app.run(main)

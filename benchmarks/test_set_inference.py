"""Seconds to classify a whole test set with an ensemble of sampled networks.

  python benchmarks/test_set_inference.py --run_dir=runs/mnist \
      --num_networks=100 --output=benchmarks/results/test_set_inference.json

The question a user asks ("how long does 100-network prediction on MNIST's
10k test images take?"; the authors' code: 85-95 s). Each pass reads the
test split, runs every sampled network on every image and takes the
ensemble's prediction; the first pass includes tracing, later ones are warm.
"""

import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import metrics
from hypergan_tf.experiments import benchmark
from hypergan_tf.model import members
from hypergan_tf.model import targets
from hypergan_tf.runtime import rundir

_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Trained run directory.',
                               required=True)
_NETWORKS = flags.DEFINE_integer('num_networks', 100, 'Sampled networks.',
                                 lower_bound=1)
_BATCH = flags.DEFINE_integer('batch_size', 1000, 'Images per call.',
                              lower_bound=1)
_METHODS = benchmark.define_methods_flag()
_JIT = flags.DEFINE_bool('jit_compile', False, 'XLA-compile the pass.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                           'Precision of the target pass (parameters and '
                           'images are cast; the sampling stays float32).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Warm passes (median shown).',
                                lower_bound=1)
_OUTPUT = flags.DEFINE_string('output', None, 'Optional JSON results file.')


def _classify(forward, params, dataset: tf.data.Dataset) -> tuple[float, float]:
  """One pass over dataset: (seconds, ensemble accuracy)."""
  start = time.perf_counter()
  correct = total = 0
  for images, labels in dataset:
    probs = metrics.ensemble_probabilities(
        tf.cast(forward(params, images), tf.float32))
    correct += metrics.accuracy(probs, labels) * len(labels)
    total += len(labels)
  return time.perf_counter() - start, correct / total


def main(argv):
  del argv
  try:
    model = members.load(_RUN_DIR.value)
  except FileNotFoundError as e:
    raise SystemExit(f'error: {e}') from None
  start = time.perf_counter()
  params = tf.nest.map_structure(lambda t: tf.cast(t, _DTYPE.value),
                                 model.sample(_NETWORKS.value, seed=0))
  sample_s = time.perf_counter() - start
  dataset = data.load(model.dataset, 'test', _BATCH.value, training=False,
                      data_dir=model.data_dir)
  rows = []
  for method in _METHODS.value:
    forward = tf.function(
        lambda p, x, m=method: targets.apply(model.spec, p, x, m),
        jit_compile=_JIT.value)
    cold_s, accuracy = _classify(forward, params, dataset)
    warm_s = float(np.median([_classify(forward, params, dataset)[0]
                              for _ in range(_REPEATS.value)]))
    rows.append({'method': method, 'cold_s': cold_s, 'warm_s': warm_s,
                 'ensemble_accuracy': accuracy})
    print(f'{method:>15}: first pass {cold_s:.2f} s, warm {warm_s:.2f} s, '
          f'ensemble accuracy {accuracy:.4f}', flush=True)
  print(f'sampling {_NETWORKS.value} networks: {sample_s:.3f} s')
  if _OUTPUT.value:
    rundir.write_json(_OUTPUT.value, {
        'run_dir': _RUN_DIR.value, 'num_networks': _NETWORKS.value,
        'batch_size': _BATCH.value, 'jit_compile': _JIT.value,
        'dtype': _DTYPE.value,
        'sample_s': sample_s, 'rows': rows})


if __name__ == '__main__':
  app.run(main)

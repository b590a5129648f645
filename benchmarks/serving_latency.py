"""Size on disk and `predict` latency of an exported SavedModel.

  python benchmarks/serving_latency.py --export_dir=runs/mnist/export/1

Loads the SavedModel with TensorFlow alone, as a serving client would.
"""

import os
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

_EXPORT_DIR = flags.DEFINE_string('export_dir', None, 'SavedModel directory.',
                                  required=True)
_NETWORKS = flags.DEFINE_integer('num_networks', 100, 'Sampled networks.',
                                 lower_bound=1)
_IMAGES = flags.DEFINE_integer('num_images', 1000, 'Images per call.',
                               lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls (median shown).',
                                lower_bound=1)


def _size_mb(path: str) -> float:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names) / 2**20


def main(argv):
  del argv
  predict = tf.saved_model.load(_EXPORT_DIR.value).signatures['predict']
  shape = predict.structured_input_signature[1]['images'].shape[1:]
  images = tf.constant(np.random.default_rng(0).uniform(
      size=(_IMAGES.value, *shape)).astype(np.float32))
  count = tf.constant(_NETWORKS.value)
  predict(images=images, num_networks=count)  # Warm-up.
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    predict(images=images, num_networks=count)['probabilities'].numpy()
    times.append(time.perf_counter() - start)
  print(f'SavedModel size: {_size_mb(_EXPORT_DIR.value):.1f} MiB')
  print(f'predict, {_NETWORKS.value} networks x {_IMAGES.value} images: '
        f'median {np.median(times):.3f} s over {_REPEATS.value} calls '
        f'(min {min(times):.3f} s)')


if __name__ == '__main__':
  app.run(main)

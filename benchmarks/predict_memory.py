"""Peak memory (RSS) of one `predict` call of an exported SavedModel.

  python benchmarks/predict_memory.py --export_dir=runs/mnist/export/1 \
      --num_networks=1000 --num_images=100

Run it in a fresh process per setting: ru_maxrss is the peak of the whole
process, so it includes loading TensorFlow and the model (printed apart).
"""

import resource
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

_EXPORT_DIR = flags.DEFINE_string('export_dir', None, 'SavedModel directory.',
                                  required=True)
_NETWORKS = flags.DEFINE_integer('num_networks', 1000, 'Sampled networks.',
                                 lower_bound=1)
_IMAGES = flags.DEFINE_integer('num_images', 100, 'Images per call.',
                               lower_bound=1)
_REMAPPING = flags.DEFINE_bool(
    'grappler_remapping', True, 'False lets exports made before the '
    "network chunks (grouped convolutions) run: Grappler's remapper fuses "
    'their Conv2D+BiasAdd into a kernel that refuses grouped convolutions.')


def _peak_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB.


def main(argv):
  del argv
  tf.config.optimizer.set_experimental_options(
      {'remapping': _REMAPPING.value})
  predict = tf.saved_model.load(_EXPORT_DIR.value).signatures['predict']
  shape = predict.structured_input_signature[1]['images'].shape[1:]
  images = tf.constant(np.random.default_rng(0).uniform(
      size=(_IMAGES.value, *shape)).astype(np.float32))
  loaded = _peak_gib()
  count = tf.constant(_NETWORKS.value)
  seconds = []
  for _ in range(2):  # The first call also optimizes the graph.
    start = time.perf_counter()
    predict(images=images, num_networks=count)['probabilities'].numpy()
    seconds.append(time.perf_counter() - start)
  print(f'predict, {_NETWORKS.value} networks x {_IMAGES.value} images: '
        f'peak RSS {_peak_gib():.2f} GiB (after loading: {loaded:.2f} GiB); '
        f'first call {seconds[0]:.1f} s, second {seconds[1]:.1f} s')


if __name__ == '__main__':
  app.run(main)

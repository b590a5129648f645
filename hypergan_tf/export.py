"""SavedModel export: sample networks and predict with uncertainty at serving.

The SavedModel needs only TensorFlow to load (`tf.saved_model.load` or TF
Serving); this package is not imported by it. Signatures:

- `predict(images, num_networks)`: mean probabilities [B, C] of a freshly
  sampled ensemble, its predictive entropy [B] and the members'
  probabilities [B, N, C] (batch first, as TF Serving expects).
- `sample_parameters(num_networks)`: `layer_<i>_kernel` / `layer_<i>_bias`,
  each [N, ...], the generated parameters of every target layer.
- `predict_with_parameters(images, layer_<i>_kernel, layer_<i>_bias, ...)`:
  logits [N, B, C] of exactly those networks, so a client can fix an ensemble.

Inputs are checked inside the graph: images float32 in [0, 1] with the
target's shape, 1 <= num_networks <= max_networks, parameter sets of one size.
"""

from __future__ import annotations

import os

import tensorflow as tf

from hypergan_tf import hypernet as hypernet_lib
from hypergan_tf import metrics
from hypergan_tf import targets

# Examples evaluated at once by all sampled networks (bounds peak memory:
# about 0.74 GB of feature maps per 100 MNIST networks).
_CHUNK_SIZE = 100


def _param_names(spec: targets.TargetSpec) -> list[str]:
  return [f'layer_{i}_{part}' for i in range(len(spec.layers))
          for part in ('kernel', 'bias')]


class ServingModule(tf.Module):
  """A tf.Module with the serving functions of one trained hypernetwork."""

  def __init__(self, hypernet: hypernet_lib.HyperNetwork,
               max_networks: int = 1000):
    super().__init__(name='hypergan')
    if max_networks < 1:
      raise ValueError(f'max_networks must be >= 1, got {max_networks}.')
    self.hypernet = hypernet
    self._spec = hypernet.spec
    self._max_networks = max_networks
    images = tf.TensorSpec([None, *self._spec.input_shape], tf.float32,
                           name='images')
    count = tf.TensorSpec([], tf.int32, name='num_networks')
    param_specs = [
        tf.TensorSpec([None, *shape], tf.float32, name=name)
        for name, shape in zip(_param_names(self._spec), [
            s for pair in self._spec.param_shapes for s in pair])
    ]
    self.predict = tf.function(self._predict, input_signature=[images, count])
    self.sample_parameters = tf.function(self._sample_parameters,
                                         input_signature=[count])
    self.predict_with_parameters = tf.function(
        self._predict_with_parameters,
        input_signature=[images, *param_specs])

  def _check_images(self, images: tf.Tensor) -> tf.Tensor:
    ok = tf.logical_and(tf.reduce_all(images >= 0.0),
                        tf.reduce_all(images <= 1.0))
    check = tf.debugging.Assert(ok, [
        'images must be float32 pixels in [0, 1] (divide uint8 images by '
        '255); got min', tf.reduce_min(images), 'max', tf.reduce_max(images)])
    with tf.control_dependencies([check]):
      return tf.identity(images)

  def _check_count(self, num_networks: tf.Tensor) -> tf.Tensor:
    ok = tf.logical_and(num_networks >= 1,
                        num_networks <= self._max_networks)
    check = tf.debugging.Assert(ok, [
        f'num_networks must be in [1, {self._max_networks}]; got',
        num_networks])
    with tf.control_dependencies([check]):
      return tf.identity(num_networks)

  def _sample_parameters(self, num_networks):
    params = self.hypernet.sample(self._check_count(num_networks))
    flat = [t for pair in params for t in pair]
    return dict(zip(_param_names(self._spec), flat))

  def _logits(self, images, params):
    return targets.apply_in_chunks(self._spec, params,
                                   self._check_images(images), _CHUNK_SIZE)

  def _predict(self, images, num_networks):
    num_networks = self._check_count(num_networks)
    params = self.hypernet.sample(num_networks)
    logits = self._logits(images, params)
    members = tf.nn.softmax(logits)  # [N, B, C]
    mean = tf.reduce_mean(members, axis=0)
    return {
        'probabilities': mean,
        'entropy': metrics.entropy(mean),
        'member_probabilities': tf.transpose(members, [1, 0, 2]),
    }

  def _predict_with_parameters(self, images, *flat):
    n = tf.shape(flat[0])[0]
    checks = [tf.debugging.assert_equal(
        tf.shape(t)[0], n, message=f'{name} holds a different number of '
        'networks than layer_0_kernel') for name, t in zip(
            _param_names(self._spec), flat)]
    with tf.control_dependencies(checks):
      params = [(tf.identity(flat[i]), tf.identity(flat[i + 1]))
                for i in range(0, len(flat), 2)]
    return {'logits': self._logits(images, params)}


def export(hypernet: hypernet_lib.HyperNetwork, export_dir: str,
           max_networks: int = 1000, overwrite: bool = False) -> str:
  """Writes a SavedModel with the serving signatures to export_dir.

  Raises:
    FileExistsError: export_dir exists and is not empty, and not overwrite.
  """
  if os.path.isdir(export_dir) and os.listdir(export_dir) and not overwrite:
    raise FileExistsError(f'Export directory {export_dir} already exists and '
                          'is not empty; choose another --export_dir or pass '
                          '--overwrite.')
  module = ServingModule(hypernet, max_networks)
  signatures = {
      'serving_default': module.predict,
      'predict': module.predict,
      'sample_parameters': module.sample_parameters,
      'predict_with_parameters': module.predict_with_parameters,
  }
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return export_dir

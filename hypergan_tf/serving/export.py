"""SavedModel export: sample networks and predict with uncertainty at serving.

The SavedModel needs only TensorFlow to load (`tf.saved_model.load` or TF
Serving); this package is not imported by it. Signatures:

- `predict(images, num_networks)`: mean probabilities [B, C] of a freshly
  sampled ensemble, its predictive entropy [B] and the members'
  probabilities [B, N, C] (batch first, as TF Serving expects).
- `predict_seeded(images, num_networks, seed)`: the same for the ensemble
  that the int32 scalar `seed` names: one seed, one set of networks, the same
  outputs on every call and every load (up to float rounding).
- `sample_parameters(num_networks)`: `layer_<i>_kernel` / `layer_<i>_bias`,
  each [N, ...], the generated parameters of every target layer.
- `sample_parameters_seeded(num_networks, seed)`: the parameters of the very
  networks `predict_seeded` evaluates with that seed.
- `predict_with_parameters(images, layer_<i>_kernel, layer_<i>_bias, ...)`:
  logits [N, B, C] of exactly those networks, so a client can fix an ensemble.

Ensembles and BatchEnsembles export the same signatures over their K
members (`FixedMembers`): num_networks is then at most K, and a seed names a
choice and order of members.

Seeds are a separate signature because a SignatureDef has no optional
inputs (TF Serving requires every input); `predict` stays unseeded.

Memory stays bounded for any num_networks: all noise [N, noise_dim] is drawn
up front, then networks are generated and evaluated in chunks of
network_chunk_size, each on chunks of image_chunk_size images. Mixer and
generators run in inference mode, so a network depends only on its noise row
and the chunking does not change which networks an ensemble holds.

Inputs are checked inside the graph: images float32 in [0, 1] with the
target's shape, num_networks and seed scalars, 1 <= num_networks <=
max_networks, parameter sets of one size. Loaded signatures check dtypes
only, so shapes are checked at run time (tf.ensure_shape).
"""

from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf

from hypergan_tf.evaluation import metrics
from hypergan_tf.model import hypernet as hypernet_lib
from hypergan_tf.model import targets

# Feature maps held at once scale with networks x images per chunk (7.4 MB
# per MNIST network x 100 images: the first conv layer's map). Python ints:
# static chunk shapes keep CPU convolutions fast (targets.apply_in_chunks).
# A network chunk is unrolled in the graph and the last one is padded, so it
# stays small; 10 networks already saturate the CPU at inference.
_IMAGE_CHUNK_SIZE = 100
_NETWORK_CHUNK_SIZE = 10

# The parameters of network chunk i of one call (static chunk size).
_ChunkParams = Callable[[tf.Tensor], targets.Params]


def _param_names(spec: targets.TargetSpec) -> list[str]:
  return [f'layer_{i}_{part}' for i in range(len(spec.layers))
          for part in ('kernel', 'bias')]


class Generated(tf.Module):
  """Networks a hypernetwork generates: a draw is a noise row per network."""

  def __init__(self, hypernet: hypernet_lib.HyperNetwork):
    super().__init__(name='generated')
    self.hypernet = hypernet
    self.spec = hypernet.spec
    self.max_networks = None  # Any number.

  def draw(self, num_networks: tf.Tensor, seed: tf.Tensor | None = None
           ) -> tf.Tensor:
    shape = tf.stack([num_networks, self.hypernet.config.noise_dim])
    noise = (tf.random.normal(shape) if seed is None else
             tf.random.stateless_normal(shape, tf.stack([seed, 0])))
    return self.hypernet.stratify(noise)

  def networks(self, noise: tf.Tensor) -> targets.Params:
    return self.hypernet.networks(noise)


class FixedMembers(tf.Module):
  """The K members of an ensemble or BatchEnsemble: a draw picks indices."""

  def __init__(self, spec: targets.TargetSpec, params: targets.Params):
    super().__init__(name='fixed_members')
    self.spec = spec
    self.max_networks = int(params[0][0].shape[0])
    self.params = [(tf.Variable(k, trainable=False, name=f'kernel_{i}'),
                    tf.Variable(b, trainable=False, name=f'bias_{i}'))
                   for i, (k, b) in enumerate(params)]

  def draw(self, num_networks: tf.Tensor, seed: tf.Tensor | None = None
           ) -> tf.Tensor:
    """num_networks distinct member indices, in a seeded random order."""
    if seed is None:
      seed = tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int32)
    order = tf.random.experimental.stateless_shuffle(
        tf.range(self.max_networks), tf.stack([seed, 1]))
    return order[:num_networks]

  def networks(self, indices: tf.Tensor) -> targets.Params:
    return [(tf.gather(k, indices), tf.gather(b, indices))
            for k, b in self.params]


Source = Generated | FixedMembers


class ServingModule(tf.Module):
  """A tf.Module with the serving functions of a trained model's networks.

  source: a hypernetwork (sampled networks) or `FixedMembers` (the K
  members of an ensemble; num_networks is then at most K).
  """

  def __init__(self, source: hypernet_lib.HyperNetwork | Source,
               max_networks: int = 1000,
               network_chunk_size: int = _NETWORK_CHUNK_SIZE,
               image_chunk_size: int = _IMAGE_CHUNK_SIZE):
    super().__init__(name='hypergan')
    for name, value in (('max_networks', max_networks),
                        ('network_chunk_size', network_chunk_size),
                        ('image_chunk_size', image_chunk_size)):
      if value < 1:
        raise ValueError(f'{name} must be >= 1, got {value}.')
    if isinstance(source, hypernet_lib.HyperNetwork):
      source = Generated(source)
    self.source = source
    self._spec = source.spec
    self._max_networks = min(max_networks,
                             source.max_networks or max_networks)
    self._network_chunk = network_chunk_size
    self._image_chunk = image_chunk_size
    images = tf.TensorSpec([None, *self._spec.input_shape], tf.float32,
                           name='images')
    count = tf.TensorSpec([], tf.int32, name='num_networks')
    seed = tf.TensorSpec([], tf.int32, name='seed')
    param_specs = [
        tf.TensorSpec([None, *shape], tf.float32, name=name)
        for name, shape in zip(_param_names(self._spec), [
            s for pair in self._spec.param_shapes for s in pair])
    ]
    self.predict = tf.function(self._predict, input_signature=[images, count])
    self.predict_seeded = tf.function(self._predict_seeded,
                                      input_signature=[images, count, seed])
    self.sample_parameters = tf.function(self._sample_parameters,
                                         input_signature=[count])
    self.sample_parameters_seeded = tf.function(
        self._sample_parameters_seeded, input_signature=[count, seed])
    self.predict_with_parameters = tf.function(
        self._predict_with_parameters,
        input_signature=[images, *param_specs])

  def _check_images(self, images: tf.Tensor) -> tf.Tensor:
    images = tf.ensure_shape(images, [None, *self._spec.input_shape])
    ok = tf.logical_and(tf.reduce_all(images >= 0.0),
                        tf.reduce_all(images <= 1.0))
    check = tf.debugging.Assert(ok, [
        'images must be float32 pixels in [0, 1] (divide uint8 images by '
        '255); got min', tf.reduce_min(images), 'max', tf.reduce_max(images)])
    with tf.control_dependencies([check]):
      return tf.identity(images)

  def _check_scalar(self, t: tf.Tensor) -> tf.Tensor:
    """t, or a clear error if it is not a scalar.

    Loaded signatures check the dtype of their inputs but not the shape, and
    Grappler folds shape checks (tf.size, tf.reshape) with the traced shape;
    EnsureShape checks at run time ('Shape of tensor seed [2] is not
    compatible with expected shape []'), as for images.
    """
    return tf.ensure_shape(t, [])

  def _check_count(self, num_networks: tf.Tensor) -> tf.Tensor:
    num_networks = self._check_scalar(num_networks)
    ok = tf.logical_and(num_networks >= 1,
                        num_networks <= self._max_networks)
    check = tf.debugging.Assert(ok, [
        f'num_networks must be in [1, {self._max_networks}]; got',
        num_networks])
    with tf.control_dependencies([check]):
      return tf.identity(num_networks)

  def _draw(self, num_networks: tf.Tensor,
             seed: tf.Tensor | None = None) -> tf.Tensor:
    """All of one call's draws (noise rows, member indices), up front."""
    return self.source.draw(self._check_count(num_networks), None if seed is
                            None else self._check_scalar(seed))

  def _generate(self, draws: tf.Tensor) -> targets.Params:
    return self.source.networks(draws)

  def _sample_parameters(self, num_networks):
    return self._named(self._generate(self._draw(num_networks)))

  def _sample_parameters_seeded(self, num_networks, seed):
    return self._named(self._generate(self._draw(num_networks, seed)))

  def _named(self, params: targets.Params) -> dict[str, tf.Tensor]:
    flat = [t for pair in params for t in pair]
    return dict(zip(_param_names(self._spec), flat))

  def _logits(self, images: tf.Tensor, num_networks: tf.Tensor,
              chunk_params: _ChunkParams) -> tf.Tensor:
    """Logits [N, B, C], one network chunk after another.

    Each chunk has the static size network_chunk_size (the last one padded)
    and runs targets.apply's 'loop' method, one convolution per network:
    the fastest method on CPU (BUILD_NOTES.md), and on TF 2.21 grouped
    convolutions fail outside training (Grappler fuses them with their
    BiasAdd into a kernel that refuses groups). parallel_iterations=1:
    otherwise the loop may run chunks at once and memory grows with N again.
    """
    images = self._check_images(images)
    chunk = self._network_chunk
    num_chunks = (num_networks + chunk - 1) // chunk

    def body(i, out):
      logits = targets.apply_in_chunks(self._spec, chunk_params(i), images,
                                       self._image_chunk, method='loop')
      return i + 1, out.write(i, tf.cast(logits, tf.float32))

    out = tf.TensorArray(tf.float32, size=num_chunks,
                         element_shape=[chunk, None, self._spec.output_dim])
    _, out = tf.while_loop(lambda i, _: i < num_chunks, body,
                           [tf.constant(0), out], parallel_iterations=1)
    return out.concat()[:num_networks]

  def _chunked(self, t: tf.Tensor) -> tf.Tensor:
    """[N, ...] -> [chunks, network_chunk_size, ...], zero-padded."""
    rest = t.shape[1:]
    padding = [[0, -tf.shape(t)[0] % self._network_chunk]] + [[0, 0]] * len(
        rest)
    return tf.reshape(tf.pad(t, padding), [-1, self._network_chunk, *rest])

  def _ensemble(self, images, draws):
    chunks = self._chunked(draws)
    logits = self._logits(images, tf.shape(draws)[0],
                          lambda i: self._generate(chunks[i]))
    members = tf.nn.softmax(logits)  # [N, B, C]
    mean = tf.reduce_mean(members, axis=0)
    return {
        'probabilities': mean,
        'entropy': metrics.entropy(mean),
        'member_probabilities': tf.transpose(members, [1, 0, 2]),
    }

  def _predict(self, images, num_networks):
    return self._ensemble(images, self._draw(num_networks))

  def _predict_seeded(self, images, num_networks, seed):
    return self._ensemble(images, self._draw(num_networks, seed))

  def _predict_with_parameters(self, images, *flat):
    n = tf.shape(flat[0])[0]
    checks = [tf.debugging.assert_equal(
        tf.shape(t)[0], n, message=f'{name} holds a different number of '
        'networks than layer_0_kernel') for name, t in zip(
            _param_names(self._spec), flat)]
    with tf.control_dependencies(checks):
      chunks = [self._chunked(tf.identity(t)) for t in flat]
    return {'logits': self._logits(
        images, n, lambda i: [(chunks[j][i], chunks[j + 1][i])
                              for j in range(0, len(chunks), 2)])}


def export(source: hypernet_lib.HyperNetwork | Source, export_dir: str,
           max_networks: int = 1000, overwrite: bool = False,
           network_chunk_size: int = _NETWORK_CHUNK_SIZE) -> str:
  """Writes a SavedModel with the serving signatures to export_dir.

  Raises:
    FileExistsError: export_dir exists and is not empty, and not overwrite.
  """
  if os.path.isdir(export_dir) and os.listdir(export_dir) and not overwrite:
    raise FileExistsError(f'Export directory {export_dir} already exists and '
                          'is not empty; choose another --export_dir or pass '
                          '--overwrite.')
  module = ServingModule(source, max_networks, network_chunk_size)
  signatures = {
      'serving_default': module.predict,
      'predict': module.predict,
      'predict_seeded': module.predict_seeded,
      'sample_parameters': module.sample_parameters,
      'sample_parameters_seeded': module.sample_parameters_seeded,
      'predict_with_parameters': module.predict_with_parameters,
  }
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return export_dir

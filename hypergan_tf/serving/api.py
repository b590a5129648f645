"""The Python API: a trained run as an object to sample and predict with.

    model = hypergan_tf.load('runs/mnist')
    out = model.predict(images, num_networks=10, seed=0)
    out.mean_probabilities, out.entropy, out.member_probabilities
    keras_model = model.as_keras_model(num_networks=10, seed=0)

Loading builds only what inference needs (no optimizers) and leaves
TensorFlow's global random state and determinism settings alone. Works for
HyperGAN and baseline runs alike (`members.load`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

# Imported for their registration with `members` (HyperGAN, baselines).
from hypergan_tf.evaluation import metrics
from hypergan_tf.methods import baselines  # pylint: disable=unused-import
from hypergan_tf.methods.hypergan import training  # pylint: disable=unused-import
from hypergan_tf.model import members
from hypergan_tf.model import targets


@dataclasses.dataclass(frozen=True)
class Prediction:
  """An ensemble's prediction for a batch of images.

  Attributes:
    mean_probabilities: [B, C], the mean of the members' softmax.
    entropy: [B], predictive entropy of the mean (nats): the uncertainty.
    member_probabilities: [N, B, C], each member's softmax.
  """
  mean_probabilities: np.ndarray
  entropy: np.ndarray
  member_probabilities: np.ndarray


class Model:
  """A trained run: draws members and predicts with them."""

  def __init__(self, loaded: members.Members):
    self.members = loaded
    self.spec: targets.TargetSpec = loaded.spec
    self.step: int = loaded.step

  def sample(self, num_networks: int, seed: int = 0) -> Any:
    """Parameters of num_networks members; the same seed, the same ones."""
    if num_networks < 1:
      raise ValueError(f'num_networks must be >= 1, got {num_networks}.')
    return self.members.sample(num_networks, seed)

  def predict(self, images, num_networks: int = 10, seed: int = 0,
              batch_size: int = 100) -> Prediction:
    """The ensemble of num_networks members (drawn with seed) on images.

    Args:
      images: [B, *input_shape] pixels in [0, 1].
      num_networks: ensemble size.
      seed: which members.
      batch_size: images per forward pass (bounds memory).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if tuple(images.shape[1:]) != tuple(self.spec.input_shape):
      raise ValueError(f'images must have shape [B, '
                       f'{", ".join(map(str, self.spec.input_shape))}], got '
                       f'{list(images.shape)}.')
    params = self.sample(num_networks, seed)
    logits = np.concatenate(
        [np.asarray(self.members.logits(params, images[i:i + batch_size]))
         for i in range(0, len(images), batch_size)], axis=1)
    member_probabilities = tf.nn.softmax(logits).numpy()
    mean = member_probabilities.mean(axis=0)
    return Prediction(mean, metrics.entropy(mean).numpy(),
                      member_probabilities)

  def as_keras_model(self, num_networks: int = 10, seed: int = 0
                     ) -> keras.Model:
    """A Keras model from [0, 1] images to the ensemble's probabilities.

    The members' parameters are fixed inside it (non-trainable weights),
    so it saves, serves and composes like any Keras model.
    """
    params = self.sample(num_networks, seed)
    inputs = keras.Input(self.spec.input_shape)
    outputs = _Ensemble(self.spec, params)(inputs)
    return keras.Model(inputs, outputs, name=f'{self.spec.name}_ensemble')


class _Ensemble(keras.layers.Layer):
  """Mean softmax of fixed sampled networks (`targets.apply`)."""

  def __init__(self, spec: targets.TargetSpec, params, **kwargs):
    super().__init__(**kwargs)
    self.spec = spec
    self.params = []
    for i, (kernel, bias) in enumerate(params):
      pair = []
      for part, value in (('kernel', kernel), ('bias', bias)):
        weight = self.add_weight(shape=tuple(value.shape), trainable=False,
                                 name=f'layer_{i}_{part}')
        weight.assign(value)
        pair.append(weight)
      self.params.append(tuple(pair))

  def call(self, images):
    logits = targets.apply(self.spec, self.params, images, 'loop')
    return tf.reduce_mean(tf.nn.softmax(logits), axis=0)


def load(run_dir: str) -> Model:
  """The trained model of a run directory (its selected checkpoint).

  Raises:
    FileNotFoundError: run_dir is not a run directory or has no checkpoint.
  """
  return Model(members.load(run_dir))

"""The generator ablation scores what a modes run is without its generator."""

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.experiments import ablations
from hypergan_tf.model import members
from tests.conftest import train_modes_run


@pytest.fixture(scope='module')
def modes_run(mnist_batch, tmp_path_factory):
  """A TINY two-mode MNIST run with a validation split."""
  run_dir = tmp_path_factory.mktemp('ablation') / 'run'
  train_modes_run(run_dir, mnist_batch, validation_size=100)
  return str(run_dir)


def _validation(run_dir, tfds_dir):
  return data.load('mnist', 'validation', 50, training=False,
                   validation_size=100, data_dir=tfds_dir, download=False)


def test_with_the_generator_zeroed_one_network_per_mode_is_the_bases(
    modes_run, tfds_dir):
  model = members.load(modes_run)
  for generator in model.hypernet.generators:
    for variable in generator.head.weights:
      variable.assign(tf.zeros_like(variable))
  rows = ablations.generator_ablation(model, _validation(modes_run, tfds_dir),
                                      num_networks=10)
  assert set(rows) == {'bases', 'bases_n1', 'sampled_n1', 'sampled_n2',
                       'sampled_n10'}
  for key in ('accuracy', 'nll', 'ece'):
    assert rows['sampled_n2'][key] == pytest.approx(rows['bases'][key],
                                                    abs=1e-6)
  assert rows['sampled_n1']['accuracy'] == pytest.approx(
      rows['bases_n1']['accuracy'], abs=1e-6)


def test_bases_differ_from_sampled_networks_of_a_trained_generator(
    modes_run, tfds_dir):
  rows = ablations.validation_ablation(modes_run, num_networks=10,
                                       data_dir=tfds_dir)
  model = members.load(modes_run)
  bases = ablations.mode_bases(model)
  sampled = model.sample(2, 0)  # One network of each mode.
  assert not np.allclose(bases[0][0].numpy(), sampled[0][0].numpy())
  assert 0.0 <= rows['bases']['ece'] <= 1.0 and rows['bases']['nll'] > 0


def test_a_run_without_modes_or_validation_is_refused(tiny_run, tiny_model):
  with pytest.raises(ValueError, match='--modes >= 2'):
    ablations.mode_bases(tiny_model)
  with pytest.raises(ValueError, match='no validation split'):
    ablations.validation_ablation(str(tiny_run))

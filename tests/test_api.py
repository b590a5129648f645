"""The Python API as the README shows it, on HyperGAN and baseline runs."""

import re

import numpy as np
import pytest
import tensorflow as tf
# The public API can set op determinism but not read it.
from tensorflow.python.framework import config as tf_config  # pylint: disable=g-direct-tensorflow-import

import hypergan_tf
from hypergan_tf.methods import baselines
from tests.conftest import REPO


@pytest.fixture(scope='module')
def hypergan_run(tiny_run):
  """The directory holding runs/mnist, as the README example expects."""
  return tiny_run.parents[1]


def test_readme_example_runs(hypergan_run, monkeypatch):
  readme = (REPO / 'README.md').read_text()
  section = readme.split('## Python API', 1)[1]
  code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
  monkeypatch.chdir(hypergan_run)
  scope = {}
  exec(code, scope)  # pylint: disable=exec-used
  out = scope['out']
  assert out.mean_probabilities.shape == (8, 10)
  assert out.member_probabilities.shape == (10, 8, 10)
  np.testing.assert_allclose(out.mean_probabilities,
                             out.member_probabilities.mean(0), rtol=1e-6)
  np.testing.assert_allclose(scope['keras_model'](scope['images']),
                             out.mean_probabilities, rtol=1e-4, atol=1e-6)


def test_load_leaves_global_random_state_and_determinism_alone(
    hypergan_run):
  run_dir = str(hypergan_run / 'runs' / 'mnist')
  determinism = tf_config.is_op_determinism_enabled()
  tf.random.set_seed(11)
  expected = tf.random.uniform([4]).numpy()
  generator_state = tf.random.get_global_generator().state.numpy()
  tf.random.set_seed(11)
  model = hypergan_tf.load(run_dir)
  model.predict(tf.zeros([2, 28, 28, 1]), num_networks=2, seed=1)
  np.testing.assert_array_equal(tf.random.uniform([4]).numpy(), expected)
  np.testing.assert_array_equal(
      tf.random.get_global_generator().state.numpy(), generator_state)
  assert tf_config.is_op_determinism_enabled() == determinism


def test_same_seed_same_networks(hypergan_run):
  model = hypergan_tf.load(str(hypergan_run / 'runs' / 'mnist'))
  images = tf.random.uniform([3, 28, 28, 1], seed=2)
  a = model.predict(images, num_networks=4, seed=5).member_probabilities
  b = model.predict(images, num_networks=4, seed=5).member_probabilities
  c = model.predict(images, num_networks=4, seed=6).member_probabilities
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  with pytest.raises(ValueError, match=r'images must have shape \[B, 28'):
    model.predict(tf.zeros([2, 32, 32, 3]))


def test_load_reads_a_baseline_run(tfds_dir, tmp_path):
  run_dir = str(tmp_path / 'ensemble')
  baselines.train(baselines.BaselineConfig(
      run_dir=run_dir, method='ensemble', num_members=3, batch_size=8,
      steps=2, eval_every=2, eval_members=3, final_eval_members=3,
      data_dir=tfds_dir, download=False))
  model = hypergan_tf.load(run_dir)
  out = model.predict(tf.zeros([2, 28, 28, 1]), num_networks=3)
  assert out.member_probabilities.shape == (3, 2, 10)
  with pytest.raises(ValueError, match='has 3 members'):
    model.predict(tf.zeros([2, 28, 28, 1]), num_networks=4)

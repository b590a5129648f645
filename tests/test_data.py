"""Data pipelines on the real prepared TFDS directory."""

import numpy as np
import pytest

from hypergan_tf import data


def test_mnist_training_batches(tfds_dir):
  ds = data.load('mnist', 'train', 64, training=True, seed=1,
                 data_dir=tfds_dir, download=False)
  images, labels = next(iter(ds))
  assert images.shape == (64, 28, 28, 1) and images.dtype.name == 'float32'
  assert labels.shape == (64,) and labels.dtype.name == 'int32'
  assert 0.0 <= float(np.min(images)) and float(np.max(images)) <= 1.0
  assert float(np.max(images)) > 0.9  # Normalised, not left at 0..255/255.
  assert set(np.unique(labels)) <= set(range(10))


def test_shuffle_is_seeded(tfds_dir):
  def first_labels(seed):
    ds = data.load('mnist', 'train[:2000]', 50, training=True, seed=seed,
                   data_dir=tfds_dir, download=False)
    return next(iter(ds))[1].numpy()
  np.testing.assert_array_equal(first_labels(3), first_labels(3))
  assert not np.array_equal(first_labels(3), first_labels(4))


def test_eval_pass_covers_split_once_in_order(tfds_dir):
  ds = data.load('mnist', 'test[:250]', 100, training=False,
                 data_dir=tfds_dir, download=False)
  sizes = [len(labels) for _, labels in ds]
  assert sizes == [100, 100, 50]
  assert data.num_examples('mnist', 'test', tfds_dir) == 10_000


def test_resolve_data_dir_prefers_flag_then_env(monkeypatch, tmp_path):
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'env'))
  assert data.resolve_data_dir(str(tmp_path / 'flag')) == str(tmp_path /
                                                               'flag')
  assert data.resolve_data_dir() == str(tmp_path / 'env')


def test_missing_dataset_names_directory_and_fix(tmp_path):
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.load('mnist', 'train', 8, training=True, data_dir=str(tmp_path),
              download=False)
  message = str(info.value)
  assert str(tmp_path) in message
  assert 'TFDS_DATA_DIR' in message and 'mnist/3.0.1' in message


def test_unknown_dataset():
  with pytest.raises(ValueError, match="Unknown dataset 'svhn'"):
    data.load('svhn', 'train', 8, training=True)


def test_bad_batch_size(tfds_dir):
  with pytest.raises(ValueError, match='batch_size must be positive'):
    data.load('mnist', 'train', 0, training=True, data_dir=tfds_dir)

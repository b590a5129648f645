"""Data pipelines on the real prepared TFDS directory."""

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data


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


@pytest.mark.parametrize('name, split, size, classes', [
    ('mnist5000', 'train', 5000, range(10)),
    ('cifar10_5000', 'train', 5000, range(10)),
    ('cifar5', 'train', 25_000, range(5)),
    ('cifar5', 'test', 5000, range(5)),
    ('cifar5_ood', 'test', 5000, range(5)),
    ('cifar5_ood', 'train', 25_000, range(5)),  # The validation OOD set.
])
def test_subset_sizes_and_classes(tfds_dir, name, split, size, classes):
  images, labels = data.arrays(name, split, tfds_dir, download=False)
  assert len(images) == len(labels) == size
  counts = np.bincount(labels)
  assert set(np.unique(labels)) == set(classes)
  assert counts.min() == counts.max()  # Balanced: these sets all are.
  assert data.num_examples(name, split, tfds_dir) == size


def test_cifar5_splits_hold_the_right_source_classes(tfds_dir):
  source, source_labels = data.arrays('cifar10', 'test', tfds_dir,
                                      download=False)
  inside, _ = data.arrays('cifar5', 'test', tfds_dir, download=False)
  outside, outside_labels = data.arrays('cifar5_ood', 'test', tfds_dir,
                                        download=False)
  np.testing.assert_array_equal(inside, source[source_labels < 5])
  np.testing.assert_array_equal(outside, source[source_labels >= 5])
  np.testing.assert_array_equal(outside_labels,
                                source_labels[source_labels >= 5] - 5)
  # The validation OOD set: training images of classes 5-9, none of which
  # CIFAR-5's training split holds.
  train, train_labels = data.arrays('cifar10', 'train', tfds_dir,
                                    download=False)
  outside_train, _ = data.arrays('cifar5_ood', 'train', tfds_dir,
                                 download=False)
  np.testing.assert_array_equal(outside_train, train[train_labels >= 5])


def test_subsets_are_fixed(tfds_dir):
  first = data.arrays('mnist5000', 'train', tfds_dir, download=False)
  data.clear_cache()
  second = data.arrays('mnist5000', 'train', tfds_dir, download=False)
  assert first[0] is not second[0]  # Really read twice.
  np.testing.assert_array_equal(first[0], second[0])
  np.testing.assert_array_equal(first[1], second[1])
  # A fixed subset of the real training images, not a resample.
  full, full_labels = data.arrays('mnist', 'train', tfds_dir, download=False)
  chosen = data.stratified_subset(full_labels, 5000)
  np.testing.assert_array_equal(first[0], full[chosen])


def test_subset_slices_and_missing_splits_are_refused(tfds_dir):
  with pytest.raises(ValueError, match='not supported with a fixed subset'):
    data.arrays('mnist5000', 'train[:100]', tfds_dir, download=False)
  with pytest.raises(ValueError, match="has no split 'train'"):
    data.arrays('not_mnist', 'train', tfds_dir, download=False)


def test_out_of_distribution_sets_cannot_be_trained_on():
  assert 'cifar5' in data.TRAINABLE
  assert not {'cifar5_ood', 'not_mnist'} & set(data.TRAINABLE)
  for name, (ood, _) in ((name, spec.validation_ood)
                        for name, spec in data.DATASETS.items()
                        if spec.validation_ood):
    assert data.DATASETS[ood].ood and name in data.TRAINABLE


def test_training_order_is_a_permutation_per_epoch():
  batches = list(
      data.training_order(10, 5, seed=3).take(4).as_numpy_iterator())
  for epoch in (batches[:2], batches[2:]):
    assert sorted(np.concatenate(epoch)) == list(range(10))
  assert not np.array_equal(np.concatenate(batches[:2]),
                            np.concatenate(batches[2:]))


@pytest.mark.parametrize('start', [1, 3, 7])  # Mid-epoch and across epochs.
def test_training_order_resumes_exactly(start):
  full = list(data.training_order(10, 4, seed=1).take(start + 3)
              .as_numpy_iterator())
  resumed = list(data.training_order(10, 4, seed=1, start_batch=start)
                 .take(3).as_numpy_iterator())
  np.testing.assert_array_equal(np.stack(full[start:]), np.stack(resumed))


def test_toy_regression_data():
  x, y = data.arrays('toy_regression', 'train')
  assert x.shape == (20, 1) and y.shape == (20,)
  assert np.all(np.abs(x) <= 4.0)
  noise = y - x[:, 0]**3
  assert 1.0 < noise.std() < 5.0  # N(0, 3^2) noise, 20 draws.
  batch_x, batch_y = next(iter(data.load('toy_regression', 'train', 20,
                                         training=True)))
  assert batch_x.dtype == tf.float32 and batch_y.dtype == tf.float32
  assert sorted(batch_y.numpy()) == pytest.approx(sorted(y))


def _augmented(tfds_dir, seed, start_batch=0):
  return data.load('cifar5', 'train', 8, training=True, seed=seed,
                   start_batch=start_batch, data_dir=tfds_dir,
                   download=False, augment=True)


def test_augmentation_is_a_function_of_seed_and_step(tfds_dir):
  steps = iter(_augmented(tfds_dir, seed=5))
  first, second = next(steps)[0].numpy(), next(steps)[0].numpy()
  resumed = next(iter(_augmented(tfds_dir, seed=5, start_batch=1)))[0]
  np.testing.assert_array_equal(second, resumed.numpy())  # Same (seed, step).
  plain = data.load('cifar5', 'train', 8, training=True, seed=5,
                    data_dir=tfds_dir, download=False)
  assert not np.array_equal(first, next(iter(plain))[0].numpy())
  other_seed = next(iter(_augmented(tfds_dir, seed=6)))[0].numpy()
  assert not np.array_equal(first, other_seed)


def test_crop_flip_shifts_and_mirrors_within_the_padding():
  image = tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32), [1, 32, 32, 3])
  images = tf.repeat(image, 64, axis=0)
  out = data.crop_flip(images, tf.constant([1, 2], tf.int64)).numpy()
  again = data.crop_flip(images, tf.constant([1, 2], tf.int64)).numpy()
  np.testing.assert_array_equal(out, again)
  later = data.crop_flip(images, tf.constant([1, 3], tf.int64)).numpy()
  assert not np.array_equal(out, later)  # Another step, other crops.
  assert out.shape == images.shape
  source = image.numpy()[0]
  padded = np.pad(source, [[4, 4], [4, 4], [0, 0]])
  for crop in out:  # Each is a 32x32 window of the padded image, maybe flipped.
    assert any(np.array_equal(window, crop) or
               np.array_equal(window[:, ::-1], crop)
               for window in (padded[r:r + 32, c:c + 32]
                              for r in range(9) for c in range(9)))
  unflipped = sum(np.array_equal(c, source) for c in out)
  assert unflipped < len(out)  # Not every image left as it was.


def test_crop_flip_of_uint8_is_the_drawn_window_mirrored_when_drawn():
  """One gather crops and flips: equal to cropping, then mirroring."""
  images = tf.cast(tf.random.stateless_uniform([16, 32, 32, 3], [0, 1], 0,
                                               256, tf.int32), tf.uint8)
  seed = tf.constant([5, 9], tf.int64)
  out = data.crop_flip(images, seed).numpy()
  assert out.dtype == np.uint8
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  offsets = tf.random.stateless_uniform([16, 2], crop_seed, 0, 9,
                                        dtype=tf.int32).numpy()
  flips = (tf.random.stateless_uniform([16], flip_seed) < 0.5).numpy()
  padded = np.pad(images.numpy(), [[0, 0], [4, 4], [4, 4], [0, 0]])
  for i, ((r, c), flip) in enumerate(zip(offsets, flips)):
    window = padded[i, r:r + 32, c:c + 32]
    np.testing.assert_array_equal(out[i], window[:, ::-1] if flip else window)
  assert 0 < flips.sum() < 16


def test_validation_is_disjoint_stratified_and_fixed(tfds_dir):
  full, _ = data.arrays('cifar5', 'train', tfds_dir)
  labels = data.arrays('cifar5', 'train', tfds_dir)[1]
  train_idx, val_idx = data.split_indices(labels, None, 2500)
  assert len(np.intersect1d(train_idx, val_idx)) == 0
  assert len(train_idx) + len(val_idx) == len(labels)
  np.testing.assert_array_equal(np.bincount(labels[val_idx]), [500] * 5)
  data.clear_cache()  # Loaded again from disk: the same examples.
  val_images, val_labels = data.arrays('cifar5', 'validation', tfds_dir,
                                       validation_size=2500)
  np.testing.assert_array_equal(val_images, full[val_idx])
  train_images, _ = data.arrays('cifar5', 'train', tfds_dir,
                                validation_size=2500)
  np.testing.assert_array_equal(train_images, full[train_idx])


def test_validation_of_a_fixed_subset_leaves_the_subset_alone(tfds_dir):
  subset, _ = data.arrays('cifar10_5000', 'train', tfds_dir)
  train, _ = data.arrays('cifar10_5000', 'train', tfds_dir,
                         validation_size=1000)
  np.testing.assert_array_equal(train, subset)
  labels = data.arrays('cifar10', 'train', tfds_dir)[1]
  train_idx, val_idx = data.split_indices(labels, 5000, 1000)
  assert len(np.intersect1d(train_idx, val_idx)) == 0


@pytest.mark.parametrize('kwargs, message', [
    (dict(name='cifar5', split='train', validation_size=-1),
     'validation_size must be >= 0'),
    (dict(name='cifar5', split='train', validation_size=25_000),
     'leaves nothing to train on'),
    (dict(name='cifar5', split='validation'), 'needs'),
    (dict(name='mnist', split='train', augment=True), 'no augmentation'),
])
def test_bad_validation_and_augmentation_values(tfds_dir, kwargs, message):
  if message == 'needs':
    message = 'validation split only with --validation_size > 0'
  with pytest.raises(ValueError, match=message):
    data.load(batch_size=8, training=True, data_dir=tfds_dir, download=False,
              **kwargs)

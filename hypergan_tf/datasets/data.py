"""tf.data pipelines backed by TensorFlow Datasets, and the paper's subsets.

`DATASETS` (from `registry`) names every dataset an experiment uses: TFDS datasets, fixed
subsets of them defined in code (MNIST-5000, CIFAR-10-5000, CIFAR-5 and its
OOD split), notMNIST (the project's own TFDS builder) and the synthetic 1-D
regression. A split is read into memory once (uint8 images), so subsets are
plain index arrays and the training order is a pure function of the seed and
the step. Images come out as float32 in [0, 1] (the pixel range attacks clip
to) and labels as int32. The data directory is `data_dir`, else `TFDS_DATA_DIR`, else
TFDS' default; when the dataset is not prepared there and cannot be
downloaded, `DatasetNotFoundError` names the directory and the fix.
"""

from __future__ import annotations

import functools
import os
import socket

import numpy as np

import tensorflow as tf
import tensorflow_datasets as tfds

from hypergan_tf.datasets import not_mnist
# The registry's names, as this module has always offered them.
from hypergan_tf.datasets.registry import DATASETS, DatasetSpec  # pylint: disable=g-multiple-import
from hypergan_tf.datasets.registry import SUPPORTED, TRAINABLE  # pylint: disable=g-multiple-import

SUBSET_SEED = 0  # Fixed: a subset is the same on every machine and run.
VALIDATION_SEED = 1  # Fixed too: the held-out part never moves.
_AUGMENT_STREAM = 0x417567  # Keeps augmentation noise apart from shuffling.


class DatasetNotFoundError(RuntimeError):
  """The dataset is neither prepared in the data directory nor downloadable."""


def resolve_data_dir(data_dir: str | None = None) -> str:
  """The directory TFDS reads from: flag, then TFDS_DATA_DIR, then default."""
  return os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR') or
                            tfds.core.constants.DATA_DIR)


TFDS_SOURCES = ('mnist', 'cifar10', 'not_mnist')


def get_spec(name: str) -> DatasetSpec:
  """Looks up a dataset by name, with an error that lists the choices."""
  try:
    return DATASETS[name]
  except KeyError:
    raise ValueError(f'Unknown dataset {name!r}; choose one of '
                     f'{list(SUPPORTED)}.') from None


def builder(name: str, data_dir: str | None = None, download: bool = True,
            manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """A prepared TFDS builder, downloading when allowed and needed.

  notMNIST is built by the project's own builder from the archive in
  manual_dir, into data_dir (which must then be writable).
  """
  if name not in TFDS_SOURCES:
    raise ValueError(f'Unknown TFDS dataset {name!r}; choose one of '
                     f'{TFDS_SOURCES}.')
  data_dir = resolve_data_dir(data_dir)
  b = tfds.builder(name, data_dir=data_dir)
  if b.is_prepared():
    return b
  if name == 'not_mnist':
    if manual_dir:
      return not_mnist.prepare(data_dir, manual_dir)
    raise DatasetNotFoundError(
        f'notMNIST is not prepared in {data_dir}; pass the directory holding '
        f'{not_mnist.ARCHIVE_NAME} as manual_dir (--manual_dir). '
        f'{not_mnist.NotMnist.MANUAL_DOWNLOAD_INSTRUCTIONS}')
  how = (f'Either point --data_dir (or TFDS_DATA_DIR) at a directory that '
         f'holds {name}/{b.version}, or run once with internet access and '
         f'--download so TFDS fetches it (python -c "import '
         f'tensorflow_datasets as tfds; tfds.load({name!r}, '
         f'data_dir={data_dir!r})").')
  if not download or not _online():
    why = 'downloads are off' if not download else 'there is no internet'
    raise DatasetNotFoundError(f'Dataset {name} {b.version} is not prepared '
                               f'in {data_dir} and {why}. {how}')
  try:
    b.download_and_prepare()
  except Exception as e:  # Offline, blocked, disk full: one clear message.
    raise DatasetNotFoundError(
        f'Dataset {name} {b.version} is not prepared in {data_dir} and '
        f'downloading it failed ({type(e).__name__}: {str(e)[:200]}). '
        f'{how}') from e
  return b


def _online(host: str = 'storage.googleapis.com', timeout: float = 3.0
            ) -> bool:
  """Whether TFDS' download host answers; offline, TFDS retries for minutes."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def stratified_subset(labels: np.ndarray, size: int,
                      seed: int = SUBSET_SEED) -> np.ndarray:
  """Sorted indices of size examples, size / num_classes from each class."""
  classes = np.unique(labels)
  if size % len(classes):
    raise ValueError(f'Subset size {size} is not a multiple of the '
                     f'{len(classes)} classes.')
  rng = np.random.default_rng(seed)
  per_class = size // len(classes)
  chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in classes]
  return np.sort(np.concatenate(chosen))


def toy_regression(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The paper's 1-D data: 20 noisy training points; test: x^3 on [-4, 4]."""
  if split == 'train':
    rng = np.random.default_rng(SUBSET_SEED)
    x = rng.uniform(-4.0, 4.0, 20)
    y = x**3 + rng.normal(0.0, 3.0, 20)
  else:
    x = np.linspace(-4.0, 4.0, 161)
    y = x**3
  return x[:, None].astype(np.float32), y.astype(np.float32)


def split_indices(labels: np.ndarray, train_size: int | None,
                  validation_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(training, validation) indices into the whole train split; disjoint.

  The validation part is stratified and drawn with VALIDATION_SEED. For a
  fixed subset (train_size) it comes from the examples outside the subset,
  so the subset itself never changes; otherwise training is the rest.
  """
  everything = np.arange(len(labels))
  train = (everything if train_size is None
           else stratified_subset(labels, train_size))
  if not validation_size:
    return train, np.zeros([0], np.int64)
  pool = everything if train_size is None else np.setdiff1d(everything, train)
  if validation_size >= len(pool):
    raise ValueError(
        f'--validation_size={validation_size} leaves nothing to train on: '
        f'the pool it is drawn from has {len(pool)} examples; choose a '
        'smaller one (0 turns validation off).')
  validation = pool[stratified_subset(labels[pool], validation_size,
                                      VALIDATION_SEED)]
  if train_size is None:
    train = np.setdiff1d(everything, validation)
  return train, validation


@functools.lru_cache(maxsize=2)
def _decoded(source: str, split: str, data_dir: str | None, download: bool,
             manual_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """A TFDS split decoded once: 'train' and 'validation' both cut from it."""
  b = builder(source, data_dir, download, manual_dir)
  return tfds.as_numpy(b.as_dataset(split=split, batch_size=-1,
                                    as_supervised=True, shuffle_files=False))


def renumber(labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
  """Source labels, all among classes, as their positions 0..k-1 in it."""
  lookup = np.zeros(max(classes) + 1, np.int64)
  lookup[list(classes)] = np.arange(len(classes))
  return lookup[labels]


@functools.lru_cache(maxsize=8)
def arrays(name: str, split: str, data_dir: str | None = None,
           download: bool = True, manual_dir: str | None = None,
           validation_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """All (examples, labels) of a split in memory, subset applied (cached).

  Images stay uint8 (a fraction of the float32 size). TFDS slices such as
  'test[:1000]' apply to the source split, before class filtering. With
  validation_size > 0, 'train' loses a fixed stratified held-out part and
  'validation' is that part (see `split_indices`).
  """
  spec = get_spec(name)
  if validation_size < 0:
    raise ValueError(f'--validation_size must be >= 0, got '
                     f'{validation_size}.')
  base_split = split.split('[')[0]
  if base_split == 'validation' and not validation_size:
    raise ValueError(f'Dataset {name!r} has a validation split only with '
                     '--validation_size > 0.')
  if base_split not in spec.splits + ('validation',):
    raise ValueError(f'Dataset {name!r} has no split {split!r}; it has '
                     f'{list(spec.splits)}.')
  if spec.source == 'synthetic':
    if validation_size:
      raise ValueError(f'{name!r} has too few examples for a validation '
                       'split; use --validation_size=0.')
    return toy_regression(base_split)
  whole_train = base_split in ('train', 'validation') and (
      spec.train_size is not None or validation_size)
  if whole_train and split != base_split:
    raise ValueError(f'Slices like {split!r} of {name!r} are not supported '
                     'with a fixed subset or a validation split.')
  images, labels = _decoded(spec.source,
                            'train' if base_split == 'validation' else split,
                            data_dir, download, manual_dir)
  if spec.classes is not None:
    keep = np.isin(labels, spec.classes)
    images, labels = images[keep], renumber(labels[keep], spec.classes)
  if whole_train:
    train, validation = split_indices(labels, spec.train_size,
                                      validation_size)
    chosen = validation if base_split == 'validation' else train
    images, labels = images[chosen], labels[chosen]
  labels = labels.astype(np.int32)
  for array in (images, labels):
    array.flags.writeable = False  # Shared by the cache.
  return images, labels


def clear_cache() -> None:
  """Forgets every decoded split: the next load reads the files again."""
  _decoded.cache_clear()
  arrays.cache_clear()


def training_order(num_examples: int, batch_size: int, seed: int,
                   start_batch: int = 0) -> tf.data.Dataset:
  """Index batches: a seeded permutation per epoch, from batch start_batch.

  The order is a pure function of (seed, batch number), so a resumed run
  continues exactly where it stopped, without storing a shuffle buffer.
  """
  first = start_batch * batch_size
  epochs = tf.data.Dataset.range(first // num_examples, 2**62)
  order = epochs.map(lambda epoch: tf.random.experimental.stateless_shuffle(
      tf.range(num_examples, dtype=tf.int64),
      seed=tf.stack([tf.constant(seed, tf.int64), epoch])))
  order = order.unbatch().skip(first % num_examples)
  return order.batch(batch_size, drop_remainder=True)


def crop_flip(images: tf.Tensor, seed: tf.Tensor, padding: int = 4
              ) -> tf.Tensor:
  """Random crop after zero padding, then a random horizontal flip.

  The CIFAR augmentation of the authors' code (torchvision's RandomCrop(32,
  padding=4) + RandomHorizontalFlip), as stateless ops of seed [2], so a
  batch's augmentation is a pure function of (seed, step).

  Args:
    images: [B, H, W, C].
    seed: stateless seed, shape [2].
    padding: zero pixels added on every side before cropping.

  Returns:
    Augmented images, same shape and dtype.
  """
  b = tf.shape(images)[0]
  h, w = images.shape[1], images.shape[2]
  padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding],
                           [0, 0]])
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  offsets = tf.random.stateless_uniform([b, 2], crop_seed, 0, 2 * padding + 1,
                                        dtype=tf.int32)
  flip = tf.random.stateless_uniform([b], flip_seed) < 0.5
  rows = offsets[:, :1] + tf.range(h)[None]
  # A flipped image reads its crop's columns right to left: one gather
  # crops and flips.
  cols = offsets[:, 1:] + tf.where(flip[:, None], tf.range(w - 1, -1, -1),
                                   tf.range(w))
  return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols,
                   axis=2, batch_dims=1)


AUGMENTATIONS = {'crop_flip': crop_flip}


def _normalise(examples: tf.Tensor, labels: tf.Tensor):
  if examples.dtype == tf.uint8:
    return tf.cast(examples, tf.float32) / 255.0, labels
  return examples, labels


def check_augmentation(name: str) -> str:
  """The augmentation of a dataset; ValueError if it has none."""
  augmentation = get_spec(name).augmentation
  if augmentation is None:
    raise ValueError(f'Dataset {name!r} has no augmentation (random crops '
                     'and flips would change what digits, letters or 1-D '
                     'points mean); drop --augment.')
  return augmentation


def load(name: str, split: str, batch_size: int, *, training: bool,
         seed: int = 0, start_batch: int = 0, data_dir: str | None = None,
         download: bool = True, manual_dir: str | None = None,
         augment: bool = False, validation_size: int = 0
         ) -> tf.data.Dataset:
  """A batched, normalised dataset.

  Args:
    name: one of SUPPORTED.
    split: split string, e.g. 'train' or 'test[:1000]'.
    batch_size: examples per batch.
    training: if True, shuffle (seeded, per epoch) and repeat forever with
      full batches, starting at batch start_batch; if False, one pass in
      order, the last batch may be smaller.
    seed: shuffle seed.
    start_batch: batches to skip (a resumed run's step), training only.
    data_dir: TFDS data directory (see `resolve_data_dir`).
    download: allow TFDS to download a missing dataset.
    manual_dir: where notMNIST's archive is (see `builder`).
    augment: apply the dataset's augmentation (training only), keyed on
      (seed, batch number) so a resumed run sees the same images.
    validation_size: held out of 'train', read as 'validation' (see
      `split_indices`).

  Returns:
    A dataset of (examples [B, ...] float32, images in [0, 1]; labels [B],
    int32 classes or float32 regression targets).
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  augmentation = check_augmentation(name) if augment else None
  if augment and not training:
    raise ValueError('Augmentation is for training data only.')
  examples, labels = arrays(name, split, data_dir, download, manual_dir,
                            validation_size)
  if not len(labels):
    raise ValueError(f'Split {split!r} of {name!r} is empty.')
  if training:
    constants = (tf.constant(examples), tf.constant(labels))
    ds = training_order(len(labels), batch_size, seed, start_batch).map(
        lambda idx: tuple(tf.gather(c, idx) for c in constants))
  else:
    ds = tf.data.Dataset.from_tensor_slices((examples, labels))
    ds = ds.batch(batch_size)
  if augmentation:  # Before _normalise: uint8 images are 4x less to move.
    transform = AUGMENTATIONS[augmentation]
    stream = tf.constant([seed, _AUGMENT_STREAM], tf.int64)
    ds = ds.enumerate(start_batch).map(
        lambda step, batch: (transform(batch[0], tf.random.experimental.
                                       stateless_fold_in(stream, step)),
                             batch[1]),
        num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.map(_normalise, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def num_examples(name: str, split: str, data_dir: str | None = None) -> int:
  """Number of examples in a split, subsets and class filters applied."""
  return len(arrays(name, split, data_dir, download=False)[1])

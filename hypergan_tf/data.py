"""tf.data pipelines backed by TensorFlow Datasets.

Images come out as float32 in [0, 1] (the pixel range attacks clip to) and
labels as int32. The data directory is `data_dir`, else `TFDS_DATA_DIR`, else
TFDS' default; when the dataset is not prepared there and cannot be
downloaded, `DatasetNotFoundError` names the directory and the fix.
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple

import tensorflow as tf
import tensorflow_datasets as tfds

from hypergan_tf.datasets import not_mnist

class DatasetShape(NamedTuple):
  image_shape: tuple[int, ...]
  num_classes: int


# Known without touching the disk, so configs are checked before any work.
SHAPES: dict[str, DatasetShape] = {
    'mnist': DatasetShape((28, 28, 1), 10),
    'cifar10': DatasetShape((32, 32, 3), 10),
    'not_mnist': DatasetShape((28, 28, 1), 10),  # Test split only (OOD).
}
SUPPORTED = tuple(SHAPES)
TRAINABLE = ('mnist', 'cifar10')


class DatasetNotFoundError(RuntimeError):
  """The dataset is neither prepared in the data directory nor downloadable."""


def resolve_data_dir(data_dir: str | None = None) -> str:
  """The directory TFDS reads from: flag, then TFDS_DATA_DIR, then default."""
  return os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR') or
                            tfds.core.constants.DATA_DIR)


def builder(name: str, data_dir: str | None = None, download: bool = True,
            manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """A prepared TFDS builder, downloading when allowed and needed.

  notMNIST is built by the project's own builder from the archive in
  manual_dir, into data_dir (which must then be writable).
  """
  if name not in SUPPORTED:
    raise ValueError(f'Unknown dataset {name!r}; choose one of {SUPPORTED}.')
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


def _normalise(image: tf.Tensor, label: tf.Tensor):
  return tf.cast(image, tf.float32) / 255.0, tf.cast(label, tf.int32)


def load(name: str, split: str, batch_size: int, *, training: bool,
         seed: int = 0, data_dir: str | None = None, download: bool = True,
         manual_dir: str | None = None) -> tf.data.Dataset:
  """A batched, normalised dataset.

  Args:
    name: TFDS name, one of SUPPORTED.
    split: TFDS split string, e.g. 'train' or 'test[:1000]'.
    batch_size: examples per batch.
    training: if True, shuffle (seeded) and repeat forever with full batches;
      if False, one pass in order, the last batch may be smaller.
    seed: shuffle seed.
    data_dir: TFDS data directory (see `resolve_data_dir`).
    download: allow TFDS to download a missing dataset.
    manual_dir: where notMNIST's archive is (see `builder`).

  Returns:
    A dataset of (images [B, H, W, C] float32 in [0, 1], labels [B] int32).
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  ds = builder(name, data_dir, download, manual_dir).as_dataset(
      split=split, as_supervised=True, shuffle_files=False)
  ds = ds.map(_normalise, num_parallel_calls=tf.data.AUTOTUNE).cache()
  if training:
    ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat().batch(batch_size, drop_remainder=True)
  else:
    ds = ds.batch(batch_size)
  return ds.prefetch(tf.data.AUTOTUNE)


def num_examples(name: str, split: str, data_dir: str | None = None) -> int:
  """Number of examples in a split, read from the prepared dataset's info."""
  return builder(name, data_dir, download=False).info.splits[split].num_examples

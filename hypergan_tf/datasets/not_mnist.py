"""notMNIST (small) as a TFDS dataset: letters A-J, 28x28 grayscale.

notMNIST is not in the TFDS catalogue and its host is not reachable from every
machine, so the builder reads the original `notMNIST_small.tar.gz` from the
manual directory. It has one split, `test`: here notMNIST serves only as an
out-of-distribution test set for models trained on MNIST.
"""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO, Iterator

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

ARCHIVE_NAME = 'notMNIST_small.tar.gz'
HOMEPAGE = 'https://yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html'
URL = 'http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz'
LABELS = tuple('ABCDEFGHIJ')
IMAGE_SHAPE = (28, 28, 1)
# Key in `builder.info.metadata` (saved as metadata.json beside the data, so
# it survives later loads) listing the archive members that did not decode.
SKIPPED_KEY = 'skipped_files'

_INSTRUCTIONS = f"""\
Download {ARCHIVE_NAME} ({URL}) and put it, unextracted, in the manual
directory: `<data_dir>/downloads/manual/` by default, or any directory passed
as `download_config=tfds.download.DownloadConfig(manual_dir=...)` (or use
`hypergan_tf.datasets.not_mnist.prepare(data_dir, manual_dir)`).
"""


class ArchiveNotFoundError(FileNotFoundError):
  """notMNIST_small.tar.gz is not in the manual directory."""


class NotMnist(tfds.core.GeneratorBasedBuilder):
  """notMNIST small: 18,724 readable 28x28 glyphs of the letters A to J."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=IMAGE_SHAPE),
            'label': tfds.features.ClassLabel(names=list(LABELS)),
        }),
        supervised_keys=('image', 'label'),
        homepage=HOMEPAGE,
        # Filled while generating; persisted, so readable after a plain load.
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager
                        ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
    try:
      archive = dl_manager.manual_dir / ARCHIVE_NAME
    except AssertionError as e:
      # TFDS asserts when the manual directory is missing or empty; say
      # which file belongs there instead. It names the directory only in
      # that message and a private attribute.
      manual_dir = getattr(dl_manager, '_manual_dir', None)
      raise ArchiveNotFoundError(_missing_message(
          epath.Path(manual_dir) / ARCHIVE_NAME if manual_dir else None)) from e
    if not archive.exists():
      raise ArchiveNotFoundError(_missing_message(archive))
    return {'test': self._generate_examples(dl_manager.iter_archive(archive))}

  def _generate_examples(self, members: Iterator[tuple[str, BinaryIO]]
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (archive path, example); records the members that won't decode.

    The original archive holds two empty PNGs; they are skipped, counted and
    logged rather than failing the build.
    """
    skipped = []
    for path, fobj in members:
      parts = path.split('/')
      if len(parts) < 2 or parts[-2] not in LABELS:
        continue  # Not a letter image (no such files in the original).
      image = _decode(fobj.read())
      if image is None:
        skipped.append(path)
        continue
      # The archive path is unique and stable, so it is the key.
      yield path, {'image': image, 'label': parts[-2]}
    skipped.sort()
    self.info.metadata[SKIPPED_KEY] = skipped
    if skipped:
      logging.warning('notMNIST: skipped %d unreadable files: %s',
                      len(skipped), ', '.join(skipped))


def _decode(data: bytes) -> np.ndarray | None:
  """The image as uint8 (28, 28, 1), or None when it is not a 28x28 image."""
  pil_image = tfds.core.lazy_imports.PIL_Image
  try:
    with pil_image.open(io.BytesIO(data)) as image:
      array = np.asarray(image.convert('L'), dtype=np.uint8)
  except (OSError, SyntaxError, ValueError):  # PIL's ways to say "not a PNG".
    return None
  if array.shape != IMAGE_SHAPE[:2]:
    return None
  return array[..., np.newaxis]


def _missing_message(expected: epath.Path | None) -> str:
  where = f'at {expected}' if expected else 'in the manual directory'
  return f'notMNIST archive not found {where}.\n{_INSTRUCTIONS}'


def prepare(data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
  """Builds notMNIST into `data_dir` from `manual_dir`/notMNIST_small.tar.gz.

  Only `data_dir` is written, so `manual_dir` may be read-only (a shared data
  folder). Does nothing if already prepared. Afterwards
  `tfds.load('not_mnist', split='test', data_dir=data_dir)` works, and
  `builder.info.metadata[SKIPPED_KEY]` lists the skipped archive members.

  Args:
    data_dir: writable TFDS data directory (run-local or temporary).
    manual_dir: directory holding notMNIST_small.tar.gz.

  Returns:
    The prepared builder.

  Raises:
    ArchiveNotFoundError: the archive is not in `manual_dir`.
  """
  archive = epath.Path(manual_dir) / ARCHIVE_NAME
  builder = NotMnist(data_dir=os.path.expanduser(data_dir))
  if not builder.is_prepared() and not archive.exists():
    raise ArchiveNotFoundError(_missing_message(archive))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder

"""CIFAR-10-C made locally, as the TFDS dataset `cifar10_c`.

The 15 corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) at
severities 1-5, one BuilderConfig `<corruption>_<severity>` each (75), applied
by `hypergan_tf.datasets.corruptions.corrupt` to the CIFAR-10 `test` split of a source
TFDS data directory. TFDS' catalogue has `cifar10_corrupted`, which downloads
the published 2.9 GB archive; this one downloads nothing, so the source
directory may be a read-only shared one, and the builder writes only its own
`data_dir`.

The data is the same on every machine: example i is test image i of TFDS'
`cifar10` (in the split's order, which the data keeps), corrupted with the
fixed `SEED` and its own random stream keyed by i (see `corrupt`); the source
`cifar10` version is recorded in the metadata.

A build may be limited to the first n test images (for tests). Such a build
is kept apart from full ones: it lives under `<data_dir>/cifar10_c_first<n>`,
its metadata records n, and a builder asked for a different n (or for the
whole split) refuses to read it. Its images equal the first n of a full build.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from hypergan_tf.datasets import corruptions

SEED = 0
SOURCE_NAME = 'cifar10'
SOURCE_SPLIT = 'test'
LABELS = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
          'horse', 'ship', 'truck')
# Keys in `builder.info.metadata` (saved beside the data as metadata.json).
NUM_EXAMPLES_KEY = 'num_examples'  # n for a first-n build, None for all.
SEED_KEY = 'seed'
SOURCE_KEY = 'source'  # e.g. 'cifar10:3.0.2 test'.
HOMEPAGE = 'https://github.com/hendrycks/robustness'
# Images corrupted at a time: bounds memory (some corruptions hold several
# float64 copies of their batch) without changing the data.
_CHUNK = 1000

_CITATION = """\
@inproceedings{hendrycks2019robustness,
  title={Benchmarking Neural Network Robustness to Common Corruptions and
         Perturbations},
  author={Dan Hendrycks and Thomas Dietterich},
  booktitle={International Conference on Learning Representations},
  year={2019}
}"""


class SourceNotFoundError(FileNotFoundError):
  """CIFAR-10 is not prepared in the source TFDS directory."""


class Cifar10CConfig(tfds.core.BuilderConfig):
  """One corruption at one severity."""

  def __init__(self, *, corruption: str, severity: int, **kwargs: Any):
    super().__init__(**kwargs)
    self.corruption = corruption
    self.severity = severity


def config_name(corruption: str, severity: int) -> str:
  """The BuilderConfig name, e.g. 'gaussian_noise_3'."""
  return f'{corruption}_{severity}'


class Cifar10C(tfds.core.GeneratorBasedBuilder):
  """CIFAR-10 test images under one CIFAR-10-C corruption and severity."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      Cifar10CConfig(name=config_name(c, s), corruption=c, severity=s,
                     description=f'{c} at severity {s} of 5.')
      for c in corruptions.CORRUPTIONS for s in corruptions.SEVERITIES
  ]

  def __init__(self, *, source_data_dir: str | None = None,
               num_examples: int | None = None, **kwargs: Any):
    """As any TFDS builder, plus where CIFAR-10 is and an optional limit.

    Args:
      source_data_dir: TFDS data directory holding a prepared `cifar10`;
        needed only to build, not to read a finished build.
      num_examples: build or read only the first n test images; the data
        root becomes `<data_dir>/cifar10_c_first<n>` (data_dir required).
      **kwargs: `tfds.core.DatasetBuilder` arguments (data_dir, config...).

    Raises:
      ValueError: a bad num_examples, or a finished build in the data
        directory made for a different num_examples.
    """
    original_data_dir = kwargs.get('data_dir')
    if num_examples is not None:
      if (isinstance(num_examples, bool)
          or not isinstance(num_examples, (int, np.integer))
          or num_examples < 1):
        raise ValueError(f'num_examples must be a positive integer or None; '
                         f'got {num_examples!r}.')
      if not kwargs.get('data_dir'):
        raise ValueError('A cifar10_c build limited to num_examples needs an '
                         'explicit data_dir (it goes in a subdirectory).')
      kwargs['data_dir'] = os.path.join(os.fspath(kwargs['data_dir']),
                                        f'cifar10_c_first{num_examples}')
      num_examples = int(num_examples)
    self._source_data_dir = source_data_dir
    self._num_examples = num_examples
    super().__init__(**kwargs)
    # For pickling: TFDS rebuilds a builder with __init__(**this).
    self._original_state.update(data_dir=original_data_dir,
                                source_data_dir=source_data_dir,
                                num_examples=num_examples)
    if self.is_prepared():
      built = self.info.metadata.get(NUM_EXAMPLES_KEY)
      if built != num_examples:
        raise ValueError(
            f'{self.data_dir} holds cifar10_c built from '
            f'{_describe(built)}, not {_describe(num_examples)}; pass '
            f'num_examples={built!r} with the data directory above it to '
            'read it, or use another data directory.')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=corruptions.IMAGE_SHAPE),
            'label': tfds.features.ClassLabel(names=list(LABELS)),
        }),
        supervised_keys=('image', 'label'),
        homepage=HOMEPAGE,
        citation=_CITATION,
        # Keep the test split's order: example i is CIFAR-10 test image i.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager
                        ) -> dict[str, Iterator[tuple[int, dict[str, Any]]]]:
    del dl_manager  # Nothing to download.
    source = source_builder(self._source_data_dir)
    available = source.info.splits[SOURCE_SPLIT].num_examples
    if self._num_examples is not None and self._num_examples > available:
      raise ValueError(f'num_examples={self._num_examples} exceeds the '
                       f'{available} images of the CIFAR-10 test split.')
    self.info.metadata[NUM_EXAMPLES_KEY] = self._num_examples
    self.info.metadata[SEED_KEY] = SEED
    self.info.metadata[SOURCE_KEY] = (
        f'{SOURCE_NAME}:{source.info.version} {SOURCE_SPLIT}')
    return {'test': self._generate_examples(source)}

  def _generate_examples(self, source: tfds.core.DatasetBuilder
                         ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (index in the CIFAR-10 test split, corrupted example)."""
    config = self.builder_config
    split = SOURCE_SPLIT
    if self._num_examples is not None:
      split = f'{SOURCE_SPLIT}[:{self._num_examples}]'
    dataset = source.as_dataset(
        split=split, batch_size=_CHUNK, shuffle_files=False,
        # One file at a time, so the order is the split's index order.
        read_config=tfds.ReadConfig(interleave_cycle_length=1))
    index = 0
    for batch in tfds.as_numpy(dataset):
      images = corruptions.corrupt(batch['image'], config.corruption,
                                   config.severity, SEED, start=index)
      for image, label in zip(images, batch['label']):
        yield index, {'image': image, 'label': int(label)}
        index += 1


def _describe(num_examples: int | None) -> str:
  if num_examples is None:
    return 'the whole CIFAR-10 test split'
  return f'the first {num_examples} CIFAR-10 test images'


def source_builder(source_data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The prepared `cifar10` builder of `source_data_dir` (read only).

  Raises:
    SourceNotFoundError: no directory given, or cifar10 not prepared there.
  """
  if not source_data_dir:
    raise SourceNotFoundError(
        'cifar10_c is made from the CIFAR-10 test split of a TFDS data '
        'directory: pass source_data_dir (in tfds.load, builder_kwargs='
        "{'source_data_dir': ...}).")
  source = tfds.builder(SOURCE_NAME, data_dir=os.path.expanduser(
      source_data_dir))
  if not source.is_prepared():
    raise SourceNotFoundError(
        f'CIFAR-10 (TFDS {SOURCE_NAME!r}, version {source.version}) is not '
        f'prepared in {source_data_dir}, and cifar10_c is made from its test '
        f'split. Prepare it there (`tfds.builder({SOURCE_NAME!r}, data_dir='
        f"{str(source_data_dir)!r}).download_and_prepare()`) or pass the TFDS "
        'directory that holds it as source_data_dir.')
  names = tuple(source.info.features['label'].names)
  if names != LABELS:
    raise ValueError(f'{SOURCE_NAME} in {source_data_dir} has labels {names}, '
                     f'not CIFAR-10\'s {LABELS}.')
  return source


def prepare(data_dir: str, source_data_dir: str, corruption: str,
            severity: int, num_examples: int | None = None
            ) -> tfds.core.DatasetBuilder:
  """Builds `cifar10_c/<corruption>_<severity>` into `data_dir`.

  Only `data_dir` is written; `source_data_dir` (a TFDS directory with
  `cifar10` prepared) may be read-only. Does nothing if already built.
  Afterwards `tfds.load(f'cifar10_c/{corruption}_{severity}', split='test',
  data_dir=data_dir)` works (with `builder_kwargs={'num_examples': n}` for a
  limited build).

  Args:
    data_dir: writable TFDS data directory.
    source_data_dir: TFDS data directory holding a prepared `cifar10`.
    corruption: one of `corruptions.CORRUPTIONS`.
    severity: one of `corruptions.SEVERITIES`.
    num_examples: build only the first n test images, into
      `<data_dir>/cifar10_c_first<n>`; None for all 10,000.

  Returns:
    The prepared builder.

  Raises:
    ValueError: unknown corruption or severity (listing the choices), bad
      num_examples, or a build for another num_examples already there.
    SourceNotFoundError: cifar10 not prepared in `source_data_dir`.
  """
  corruptions.check(corruption, severity)
  builder = Cifar10C(config=config_name(corruption, severity),
                     data_dir=os.path.expanduser(data_dir),
                     source_data_dir=source_data_dir,
                     num_examples=num_examples)
  if not builder.is_prepared():
    source_builder(source_data_dir)  # Fail early, naming the directory.
  builder.download_and_prepare()
  return builder


def load(data_dir: str, source_data_dir: str, corruption: str, severity: int,
         num_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 32, 32, 3], labels int64 [N]) of one config, in order.

  Builds it first if needed (see `prepare`, which takes the same arguments);
  image i is CIFAR-10 test image i corrupted.
  """
  builder = prepare(data_dir, source_data_dir, corruption, severity,
                    num_examples)
  data = tfds.as_numpy(builder.as_dataset(split='test', batch_size=-1,
                                          shuffle_files=False))
  return data['image'], data['label']

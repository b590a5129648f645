"""Every dataset's facts, one entry each: the one place a new dataset goes.

An entry says what the name means (a TFDS dataset, a fixed subset, or
synthetic data), how it is read, and what the rest of the project does with
it: its label in tables, the target network trained on it by default, the
out-of-distribution sets it is scored against and the dataset shift it is
scored under. Pipelines (`data`), configs, evaluation, dataset shift and
comparison tables read these entries; none keeps a table of its own.
Known without touching the disk, so configs are checked before any work.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a dataset name means: a TFDS dataset, a fixed subset, or synthetic.

  Attributes:
    input_shape: shape of one example.
    num_outputs: classes (classification) or 1 (regression).
    source: TFDS name the examples come from, or 'synthetic'.
    label: the dataset's name in tables and figures.
    default_target: the target network (`targets.TARGETS`) trained on it
      unless --target says otherwise; None for a dataset not trained on.
    classes: keep only these labels, renumbered 0..k-1 in this order.
    train_size: a stratified subset of the 'train' split, train_size /
      num_outputs examples per class, drawn with SUBSET_SEED.
    splits: the splits this dataset has.
    task: 'classification' or 'regression'.
    channel_mean, channel_std: per-channel statistics of the [0, 1] pixels
      for input standardisation (None: the dataset is used as it is).
    augmentation: the training augmentation that fits the images
      ('crop_flip': 4-pixel padding, random 32x32 crop, horizontal flip), or
      None (digits and letters must not be flipped).
    ood: an out-of-distribution set: evaluated against, never trained on.
    ood_set: the out-of-distribution dataset a run trained on this one is
      evaluated against (its test split), or None.
    validation_ood: (dataset, split) of the out-of-distribution images that
      recipes are chosen on, never the split reports read; or None.
    shift: the dataset shift a run trained on this one is scored under
      ('rotation' of its test images, CIFAR-10-C 'corruption'), or None.
      With `classes`, the source's other classes are scored as OOD.
  """
  input_shape: tuple[int, ...]
  num_outputs: int
  source: str
  label: str = ''
  default_target: str | None = None
  classes: tuple[int, ...] | None = None
  train_size: int | None = None
  splits: tuple[str, ...] = ('train', 'test')
  task: str = 'classification'
  channel_mean: tuple[float, ...] | None = None
  channel_std: tuple[float, ...] | None = None
  augmentation: str | None = None
  ood: bool = False
  ood_set: str | None = None
  validation_ood: tuple[str, str] | None = None
  shift: str | None = None


# The statistics the authors' CIFAR code standardises with.
_CIFAR = dict(channel_mean=(0.4914, 0.4822, 0.4465),
              channel_std=(0.2023, 0.1994, 0.2010), augmentation='crop_flip')
_MNIST = dict(default_target='mnist', ood_set='not_mnist', shift='rotation')
DATASETS: dict[str, DatasetSpec] = {
    'mnist': DatasetSpec((28, 28, 1), 10, 'mnist', 'MNIST', **_MNIST),
    'mnist5000': DatasetSpec((28, 28, 1), 10, 'mnist', 'MNIST-5000',
                             train_size=5000, **_MNIST),
    'cifar10': DatasetSpec((32, 32, 3), 10, 'cifar10', 'CIFAR-10', 'cifar',
                           shift='corruption', **_CIFAR),
    'cifar10_5000': DatasetSpec((32, 32, 3), 10, 'cifar10', 'CIFAR-10-5000',
                                'cifar', train_size=5000, shift='corruption',
                                **_CIFAR),
    # CIFAR-5: the first five classes (airplane, automobile, bird, cat, deer);
    # its out-of-distribution set is the test images of the other five, read
    # once for reports; their training images are the OOD set that recipes
    # are chosen on (`validation_ood`). CIFAR-5 training never sees either.
    'cifar5': DatasetSpec((32, 32, 3), 5, 'cifar10', 'CIFAR-5', 'cifar5',
                          classes=(0, 1, 2, 3, 4), ood_set='cifar5_ood',
                          validation_ood=('cifar5_ood', 'train'),
                          shift='corruption', **_CIFAR),
    'cifar5_ood': DatasetSpec((32, 32, 3), 5, 'cifar10',
                              'CIFAR-10 classes 5-9 (CIFAR-5 OOD)',
                              classes=(5, 6, 7, 8, 9), ood=True, **_CIFAR),
    'not_mnist': DatasetSpec((28, 28, 1), 10, 'not_mnist', 'notMNIST',
                             splits=('test',), ood=True),
    # Paper, Sec. 4.3: 20 points x ~ U[-4, 4], y = x^3 + N(0, 3^2).
    'toy_regression': DatasetSpec((1,), 1, 'synthetic', '1-D toy regression',
                                  'toy_regression', task='regression'),
}
SUPPORTED = tuple(DATASETS)
TRAINABLE = tuple(name for name, spec in DATASETS.items()
                  if 'train' in spec.splits and not spec.ood)


def label(name: str) -> str:
  """The dataset's name in tables; the name itself if it has none."""
  spec = DATASETS.get(name)
  return spec.label if spec and spec.label else name

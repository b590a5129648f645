"""The notMNIST TFDS builder, prepared once from the real archive."""

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

import hypergan_tf.datasets  # pylint: disable=unused-import  # Registers it.
from hypergan_tf.datasets import not_mnist

# The original notMNIST_small: 18,726 PNGs, of which A/ and F/ each hold one
# empty file.
EMPTY = ['notMNIST_small/A/RGVtb2NyYXRpY2FCb2xkT2xkc3R5bGUgQm9sZC50dGY=.png',
         'notMNIST_small/F/Q3Jvc3NvdmVyIEJvbGRPYmxpcXVlLnR0Zg==.png']
PER_CLASS = dict(A=1872, B=1873, C=1873, D=1873, E=1873,
                 F=1872, G=1872, H=1872, I=1872, J=1872)


def test_loads_every_readable_image(not_mnist_prepared):
  data_dir, _, _, seconds = not_mnist_prepared
  print(f'not_mnist built in {seconds:.1f} s')
  ds, info = tfds.load('not_mnist', split='test', data_dir=data_dir,
                       with_info=True, download=False)
  assert info.splits['test'].num_examples == 18_724
  assert list(info.splits) == ['test']
  assert info.features['label'].names == list('ABCDEFGHIJ')
  assert info.supervised_keys == ('image', 'label')
  batch = next(iter(ds.batch(18_724)))
  images, labels = batch['image'], batch['label']
  assert images.shape == (18_724, 28, 28, 1) and images.dtype.name == 'uint8'
  assert int(np.max(images)) == 255 and int(np.min(images)) == 0
  names = info.features['label'].names
  counts = collections.Counter(names[i] for i in labels.numpy())
  assert dict(counts) == PER_CLASS


def test_supervised_pairs(not_mnist_prepared):
  data_dir = not_mnist_prepared[0]
  image, label = next(iter(tfds.load('not_mnist', split='test[:1]',
                                     data_dir=data_dir, as_supervised=True)))
  assert image.shape == (28, 28, 1) and image.dtype.name == 'uint8'
  assert 0 <= int(label) < 10


def test_skips_and_logs_the_two_empty_files(not_mnist_prepared):
  data_dir, builder, messages, _ = not_mnist_prepared
  assert builder.info.metadata[not_mnist.SKIPPED_KEY] == EMPTY
  assert [m for m in messages if m.startswith('notMNIST: skipped 2 ')]
  # Recorded beside the data, so a later load still knows.
  reloaded = tfds.builder('not_mnist', data_dir=data_dir)
  assert reloaded.info.metadata[not_mnist.SKIPPED_KEY] == EMPTY


def test_prepare_again_reuses_the_build(not_mnist_prepared):
  data_dir, _, _, _ = not_mnist_prepared
  builder = not_mnist.prepare(data_dir, '/nonexistent')  # Never read again.
  assert builder.info.splits['test'].num_examples == 18_724


def test_missing_archive_names_path_and_instructions(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  with pytest.raises(not_mnist.ArchiveNotFoundError) as info:
    not_mnist.prepare(str(tmp_path / 'data'), str(manual))
  message = str(info.value)
  assert str(manual / 'notMNIST_small.tar.gz') in message
  assert 'yaroslavvb.com/upload/notMNIST' in message


@pytest.mark.parametrize('with_other_file', [False, True])
def test_builder_itself_names_the_missing_archive(tmp_path, with_other_file):
  manual = tmp_path / 'manual'
  manual.mkdir()
  if with_other_file:  # TFDS itself only checks the directory is non-empty.
    (manual / 'notes.txt').write_text('not the archive')
  builder = not_mnist.NotMnist(data_dir=str(tmp_path / 'data'))
  with pytest.raises(not_mnist.ArchiveNotFoundError) as info:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  assert str(manual / 'notMNIST_small.tar.gz') in str(info.value)
  assert 'DownloadConfig(manual_dir=' in str(info.value)

"""CIFAR-10-C corruptions, MNIST rotation and the local cifar10_c builder."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from hypergan_tf.datasets import cifar10_c
from hypergan_tf.datasets import corruptions

SEED = 0
REFERENCE = os.path.join(os.path.dirname(__file__), 'data',
                         'cifar10_c_reference.npz')
NUM_IMAGES = 8
RANDOM = tuple(c for c in corruptions.CORRUPTIONS
               if c not in corruptions.DETERMINISTIC)


@pytest.fixture(scope='module')
def cifar(tfds_dir):
  """The first NUM_IMAGES CIFAR-10 test images and labels (uint8, int64)."""
  if not os.path.isdir(os.path.join(tfds_dir, 'cifar10')):
    pytest.fail(f'Prepared CIFAR-10 not found in {tfds_dir}; set '
                'TFDS_DATA_DIR.')
  data = tfds.as_numpy(tfds.load('cifar10', split=f'test[:{NUM_IMAGES}]',
                                 data_dir=tfds_dir, batch_size=-1))
  return data['image'], data['label']


def _psnr(corrupted, clean):
  """Mean over images of the PSNR (dB) of corrupted against clean."""
  mse = ((corrupted.astype(np.float64) - clean) ** 2).mean(axis=(1, 2, 3))
  return float(np.mean(10 * np.log10(255.**2 / np.maximum(mse, 1e-10))))


def test_corruptions_equal_the_reference_script_bit_for_bit(cifar):
  """The corruptions that draw nothing at random, and Gaussian and shot
  noise given the same draws, against the same images corrupted by the
  CIFAR-10-C script's own functions (make_cifar_c.py of hendrycks/robustness;
  tests/data/make_cifar10_c_reference.py made them, with the library
  versions the file records)."""
  reference = np.load(REFERENCE)
  clean = reference['clean']
  np.testing.assert_array_equal(clean, cifar[0][:len(clean)])
  names = (*corruptions.DETERMINISTIC, 'gaussian_noise', 'shot_noise')
  assert set(names) <= set(reference.files)
  for name in names:
    for severity in corruptions.SEVERITIES:
      np.testing.assert_array_equal(
          corruptions.corrupt(clean, name, severity, int(reference['seed'])),
          reference[name][severity - 1],
          err_msg=f'{name} {severity} ({reference["versions"]})')


@pytest.mark.parametrize('name', corruptions.CORRUPTIONS)
def test_corrupt_is_deterministic_uint8_and_changes_images(cifar, name):
  clean, _ = cifar
  before = clean.copy()
  for severity in corruptions.SEVERITIES:
    out = corruptions.corrupt(clean, name, severity, SEED)
    assert out.dtype == np.uint8 and out.shape == clean.shape
    assert not np.array_equal(out, clean), severity
    np.testing.assert_array_equal(
        corruptions.corrupt(clean, name, severity, SEED), out)
    other_seed = corruptions.corrupt(clean, name, severity, SEED + 1)
    if name in RANDOM:
      assert not np.array_equal(other_seed, out), severity
    else:
      np.testing.assert_array_equal(other_seed, out)
  np.testing.assert_array_equal(clean, before)  # Input untouched.


@pytest.mark.parametrize('name', RANDOM)
def test_corrupt_keys_randomness_by_position(cifar, name):
  # Image i's draws depend on its position only: a chunk corrupted with its
  # offset equals the same images corrupted within the whole batch.
  clean, _ = cifar
  whole = corruptions.corrupt(clean, name, 3, SEED)
  np.testing.assert_array_equal(
      corruptions.corrupt(clean[3:], name, 3, SEED, start=3), whole[3:])
  np.testing.assert_array_equal(
      corruptions.corrupt(clean[:2], name, 3, SEED), whole[:2])


def test_corrupt_leaves_global_numpy_random_state_alone(cifar):
  clean, _ = cifar
  state = np.random.get_state()
  corruptions.corrupt(clean, 'gaussian_noise', 3, SEED)
  after = np.random.get_state()
  assert state[0] == after[0] and np.array_equal(state[1], after[1])


# How mean PSNR against the clean images moves from severity 1 to 5 with the
# original CIFAR-10-C parameters (checked on 1,000 test images and on these 8
# for ten seeds). 'monotone': it never rises and severity 5 is below 1.
_SEVERITY_PATTERN = {name: 'monotone' for name in corruptions.CORRUPTIONS}
_SEVERITY_PATTERN.update({
    # Severities 1-3 shuffle pixels once under a growing blur (sigma 0.05,
    # 0.25, 0.4), which smooths the shuffle back towards the clean image, so
    # PSNR rises; 4-5 shuffle twice and are the strongest.
    'glass_blur': 'two_passes_strongest',
    # Severities 3 and 4 share sigma 2 (radius 6 -> 8 adds taps of weight
    # ~e^-6), so they are equal up to the random angle.
    'motion_blur': 'monotone_but_3_4',
    # After severity 1 the image weight falls (0.9 -> 0.75) about as fast as
    # the frost weight rises (0.4 -> 0.45): which frost picture and crop each
    # image gets varies PSNR more than severity 2-5 does.
    'frost': 'first_weakest',
    # The CIFAR parameters shrink the random affine (2.56 -> 0.96 px) while
    # they grow the elastic field; the affine moves whole images, so PSNR
    # RISES with severity: severity 5 is the closest to the clean images.
    'elastic_transform': 'last_closest',
})


@pytest.mark.parametrize('name', corruptions.CORRUPTIONS)
def test_severity_strength(cifar, name):
  clean, _ = cifar
  psnr = [_psnr(corruptions.corrupt(clean, name, s, SEED), clean)
          for s in corruptions.SEVERITIES]
  p1, p2, p3, p4, p5 = psnr
  pattern = _SEVERITY_PATTERN[name]
  if pattern == 'monotone':
    assert all(np.diff(psnr) <= 0) and p1 > p5, psnr
  elif pattern == 'two_passes_strongest':
    assert p1 > p5 and max(p4, p5) < min(p1, p2, p3), psnr
  elif pattern == 'monotone_but_3_4':
    assert p1 > p2 > p3 and p4 > p5 and p1 > p5, psnr
  elif pattern == 'first_weakest':
    assert p1 > max(p2, p3, p4, p5), psnr
  else:
    assert pattern == 'last_closest'
    assert p5 > max(p1, p2, p3, p4), psnr


def test_float_intermediates_are_clipped_not_wrapped():
  white = np.full((2, 32, 32, 3), 255, np.uint8)
  np.testing.assert_array_equal(
      corruptions.corrupt(white, 'brightness', 5, SEED), white)
  noisy = corruptions.corrupt(white, 'gaussian_noise', 5, SEED)
  # Upward noise clips at 255 (about half the values); none wraps to ~0.
  assert 0.4 < np.mean(noisy == 255) < 0.6
  assert noisy.min() > 150
  black = np.zeros((2, 32, 32, 3), np.uint8)
  assert corruptions.corrupt(black, 'impulse_noise', 5, SEED).max() == 255


def test_unknown_name_or_severity_raises_naming_it(cifar):
  clean, _ = cifar
  with pytest.raises(ValueError, match=r"'foo'.*gaussian_noise, shot_noise"):
    corruptions.corrupt(clean, 'foo', 1, SEED)
  for severity in (0, 6, True, 3.0, '3'):
    with pytest.raises(ValueError, match=r'severity.*1, 2, 3, 4, 5'):
      corruptions.corrupt(clean, 'fog', severity, SEED)
  with pytest.raises(ValueError, match='severity 7'):
    corruptions.corrupt(clean, 'fog', 7, SEED)


def test_bad_images_or_seed_raise(cifar):
  clean, _ = cifar
  with pytest.raises(ValueError, match='uint8'):
    corruptions.corrupt(clean.astype(np.float32), 'fog', 1, SEED)
  with pytest.raises(ValueError, match=r'\[N, 32, 32, 3\]'):
    corruptions.corrupt(clean[0], 'fog', 1, SEED)
  with pytest.raises(ValueError, match='seed'):
    corruptions.corrupt(clean, 'fog', 1, -1)
  empty = clean[:0]
  assert corruptions.corrupt(empty, 'fog', 1, SEED).shape == empty.shape


def _pattern(height=28, width=28):
  """Two uint8 [H, W, 1] 'digits': asymmetric blocks inside the centre."""
  images = np.zeros((2, height, width, 1), np.uint8)
  images[0, 8:20, 10:13] = 255
  images[0, 8:11, 10:18] = 200
  images[1, 12:16, 6:22] = 90
  return images


def test_rotate():
  digits = _pattern()
  assert corruptions.ROTATIONS == (0, 15, 30, 45, 60, 75, 90, 105, 120, 135,
                                   150, 165, 180)
  np.testing.assert_array_equal(corruptions.rotate(digits, 0), digits)
  # Counter-clockwise, like np.rot90.
  np.testing.assert_array_equal(corruptions.rotate(digits, 90),
                                np.rot90(digits, 1, axes=(1, 2)))
  twice = corruptions.rotate(corruptions.rotate(digits, 180), 180)
  assert np.abs(twice.astype(int) - digits).max() <= 1
  for degrees in corruptions.ROTATIONS:
    out = corruptions.rotate(digits, degrees)
    assert out.dtype == np.uint8 and out.shape == digits.shape
  assert not np.array_equal(corruptions.rotate(digits, 45), digits)
  white = np.full((1, 28, 28, 1), 255, np.uint8)
  tilted = corruptions.rotate(white, 45)
  assert tilted[0, 0, 0, 0] == 0 and tilted[0, 14, 14, 0] == 255  # Zero fill.
  wide = np.zeros((3, 20, 30, 2), np.uint8)
  assert corruptions.rotate(wide, 30).shape == wide.shape


def test_rotate_rejects_bad_input():
  digits = _pattern()
  with pytest.raises(ValueError, match='N, H, W, C'):
    corruptions.rotate(digits[0], 15)
  with pytest.raises(ValueError, match='uint8'):
    corruptions.rotate(digits.astype(np.float32), 15)
  for degrees in (float('nan'), float('inf'), 'ten', None):
    with pytest.raises(ValueError, match='finite'):
      corruptions.rotate(digits, degrees)


def test_builder_configs():
  configs = cifar10_c.Cifar10C.BUILDER_CONFIGS
  assert len(configs) == 75
  assert configs[0].name == 'gaussian_noise_1'
  assert {c.name for c in configs} == {
      f'{c}_{s}' for c in corruptions.CORRUPTIONS
      for s in corruptions.SEVERITIES}


def test_builder_matches_corrupt_and_keeps_labels(cifar, tfds_dir, tmp_path):
  clean, labels = cifar
  data_dir = str(tmp_path / 'tfds')
  builder = cifar10_c.prepare(data_dir, tfds_dir, 'frost', 3,
                              num_examples=NUM_IMAGES)
  assert builder.name == 'cifar10_c'
  assert builder.info.splits['test'].num_examples == NUM_IMAGES
  assert builder.info.metadata[cifar10_c.NUM_EXAMPLES_KEY] == NUM_IMAGES
  assert builder.info.features['label'].names == list(cifar10_c.LABELS)
  loaded = tfds.as_numpy(tfds.load(
      'cifar10_c/frost_3', split='test', data_dir=data_dir, batch_size=-1,
      builder_kwargs={'num_examples': NUM_IMAGES}, download=False))
  np.testing.assert_array_equal(
      loaded['image'],
      corruptions.corrupt(clean, 'frost', 3, cifar10_c.SEED))
  np.testing.assert_array_equal(loaded['label'], labels)
  # Loading again reuses the build; a limited build is never read as the
  # full one.
  images, again_labels = cifar10_c.load(data_dir, tfds_dir, 'frost', 3,
                                        num_examples=NUM_IMAGES)
  np.testing.assert_array_equal(images, loaded['image'])
  np.testing.assert_array_equal(again_labels, labels)
  with pytest.raises(ValueError, match=f'first {NUM_IMAGES} CIFAR-10'):
    tfds.load('cifar10_c/frost_3', split='test', download=False,
              data_dir=os.path.join(data_dir, f'cifar10_c_first{NUM_IMAGES}'))


def test_builder_errors(tmp_path):
  missing = str(tmp_path / 'no_cifar')
  with pytest.raises(cifar10_c.SourceNotFoundError,
                     match=f'not prepared in {missing}.*download_and_prepare'):
    cifar10_c.prepare(str(tmp_path / 'out'), missing, 'fog', 2,
                      num_examples=4)
  with pytest.raises(ValueError, match="Unknown corruption 'fogg'"):
    cifar10_c.prepare(str(tmp_path / 'out'), missing, 'fogg', 2)
  with pytest.raises(ValueError, match='num_examples'):
    cifar10_c.prepare(str(tmp_path / 'out'), missing, 'fog', 2,
                      num_examples=0)

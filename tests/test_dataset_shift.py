"""Dataset shift: rotated MNIST and CIFAR-10-C scores of trained runs."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import cifar10_c
from hypergan_tf.datasets import corruptions
from hypergan_tf.datasets import data
from hypergan_tf.evaluation import comparison
from hypergan_tf.evaluation import dataset_shift
from hypergan_tf.evaluation import evaluation
from hypergan_tf.methods import baselines
from hypergan_tf.model import members
from tests.conftest import REPO


def test_rotated_mnist_scores_every_angle(tiny_run, tfds_dir):
  result = dataset_shift.evaluate_shift(str(tiny_run), num_networks=3,
                                        data_dir=tfds_dir, num_examples=40)
  sets = result['sets']
  assert list(sets) == ['clean'] + [f'rotation_{d}'
                                    for d in corruptions.ROTATIONS[1:]]
  # The clean set is scored exactly as evaluation scores the test split.
  model = members.load(str(tiny_run))
  x, y = next(iter(data.load('mnist', 'test[:40]', 40, training=False,
                             data_dir=tfds_dir, download=False)))
  logits = model.logits(model.sample(3, 0), x).numpy()
  expected = dataset_shift.set_scores(logits, y.numpy())
  for metric, value in expected.items():
    assert sets['clean'][metric] == pytest.approx(value, abs=1e-5), metric
  assert sets['rotation_90']['nll'] != sets['clean']['nll']  # Other images.
  # cA is the mean over the rotated sets, not the clean one.
  rotated = [s['accuracy'] for name, s in sets.items() if name != 'clean']
  assert result['shift/cA'] == pytest.approx(np.mean(rotated))
  assert result['summary']['level_180']['cA'] == sets['rotation_180'][
      'accuracy']
  written = json.loads((tiny_run / 'shift_eval' / 'metrics.json').read_text())
  assert written['shift/cECE'] == result['shift/cECE']
  assert (tiny_run / 'shift_eval' / 'shift.png').stat().st_size > 0
  # scripts/compare.py shows the means.
  text = comparison.compare([str(tiny_run)])
  assert f'{100 * result["shift/cA"]:.2f}' in text


def test_rotated_validation_split_for_choosing_recipes(tiny_run, tfds_dir,
                                                       tmp_path):
  """--shift --validation rotates the held-out split, never a test image."""
  run = tmp_path / 'run'
  shutil.copytree(tiny_run, run)
  cfg = json.loads((run / 'config.json').read_text())
  (run / 'config.json').write_text(json.dumps({**cfg,
                                               'validation_size': 100}))
  result = dataset_shift.evaluate_shift(str(run), num_networks=3,
                                        data_dir=tfds_dir, num_examples=40,
                                        validation=True)
  assert result['split'] == 'validation'
  assert len(result['sets']) == len(corruptions.ROTATIONS)
  model = members.load(str(run))
  x, y = next(iter(data.load('mnist', 'validation', 40, training=False,
                             validation_size=100, data_dir=tfds_dir,
                             download=False)))
  logits = model.logits(model.sample(3, 0), x).numpy()
  assert result['sets']['clean']['nll'] == pytest.approx(
      dataset_shift.set_scores(logits, y.numpy())['nll'], abs=1e-5)
  test_scores = dataset_shift.evaluate_shift(
      str(run), num_networks=3, data_dir=tfds_dir, num_examples=40)
  assert test_scores['sets']['clean']['nll'] != result['sets']['clean']['nll']
  assert (run / 'validation_shift_eval' / 'metrics.json').exists()
  with pytest.raises(ValueError, match='has no validation split'):
    dataset_shift.evaluate_shift(str(tiny_run), validation=True)


@pytest.fixture(scope='module')
def cifar5_run(tfds_dir, tmp_path_factory):
  """A BatchEnsemble on CIFAR-5, trained two steps."""
  run_dir = tmp_path_factory.mktemp('cifar5') / 'run'
  baselines.train(baselines.BaselineConfig(
      run_dir=str(run_dir), method='batch_ensemble', dataset='cifar5',
      target='cifar5', num_members=2, batch_size=8, steps=2, log_every=1,
      eval_every=100, eval_members=2, final_eval_members=2,
      checkpoint_every=2, data_dir=tfds_dir, download=False))
  return run_dir


def test_cifar5_scores_corruptions_and_ood_under_shift(cifar5_run, tfds_dir,
                                                        tmp_path):
  result = dataset_shift.evaluate_shift(
      str(cifar5_run), num_networks=2, data_dir=tfds_dir,
      shift_data_dir=str(tmp_path / 'tfds'), num_examples=30,
      corruption_names=('gaussian_noise',))
  sets = result['sets']
  assert list(sets) == ['clean'] + [f'gaussian_noise_{s}'
                                    for s in corruptions.SEVERITIES]
  # Every set's scores, computed here from the members' logits on the same
  # corrupted images: accuracy over classes 0-4, and the AUROC of entropy
  # telling classes 5-9 (positive) from 0-4 (Mann-Whitney, ties count 1/2).
  model, _ = evaluation.load_members(str(cifar5_run), 2)
  params = model.sample(2, 0)
  clean, labels = data.arrays('cifar10', 'test[:30]', tfds_dir, False)
  inside = labels < 5
  for name, scores in sets.items():
    images = clean if name == 'clean' else corruptions.corrupt(
        clean, 'gaussian_noise', int(name[-1]), cifar10_c.SEED)
    logits = model.logits(params, images.astype(np.float32) / 255.0)
    probs = tf.nn.softmax(logits).numpy().mean(axis=0)
    entropy = -np.sum(probs * np.log(np.maximum(probs, 1e-30)), axis=-1)
    accuracy = np.mean(probs[inside][:, :5].argmax(-1) == labels[inside])
    ood, ind = entropy[~inside][:, None], entropy[inside][None, :]
    auroc = np.mean((ood > ind) + 0.5 * (ood == ind))
    assert scores['accuracy'] == pytest.approx(accuracy, abs=1e-6), name
    assert scores['ood_auroc'] == pytest.approx(auroc, abs=1e-3), name
  summary = result['summary']
  assert summary['kind'] == 'corruption'
  assert summary['level_3']['cA'] == sets['gaussian_noise_3']['accuracy']
  assert result['shift/cOOD_AUROC'] == pytest.approx(np.mean(
      [sets[f'gaussian_noise_{s}']['ood_auroc']
       for s in corruptions.SEVERITIES]))
  # In-distribution accuracy is over classes 0-4 only: the clean set
  # matches evaluation's CIFAR-5 test accuracy on the same images.
  model, _ = evaluation.load_members(str(cifar5_run), 2)
  images, labels = data.arrays('cifar10', 'test[:30]', tfds_dir, False)
  x, y = data.arrays('cifar5', 'test[:30]', tfds_dir, False)
  logits = model.logits(model.sample(2, 0), x.astype(np.float32) / 255.0)
  assert sets['clean']['accuracy'] == pytest.approx(
      dataset_shift.set_scores(logits.numpy(), y)['accuracy'])
  assert len(y) == np.sum(labels < 5) < len(images)


def test_summary_leaves_out_unfaithful_corruptions(monkeypatch):
  per_set = {'clean': {'kind': 'clean', 'level': 0, 'accuracy': 0.9}}
  for name, accuracy in (('a', 0.5), ('b', 0.7), ('c', 0.0)):
    per_set[f'{name}_1'] = {'kind': name, 'level': 1, 'accuracy': accuracy}
  monkeypatch.setattr(corruptions, 'UNFAITHFUL', {'c': 'not made here'})
  summary = dataset_shift.summarise(per_set, 'corruption')
  assert summary['level_1']['cA'] == pytest.approx(0.6)
  assert summary['overall']['cA'] == pytest.approx(0.6)


def test_bad_requests_raise_one_clear_error(tiny_run, tmp_path):
  with pytest.raises(ValueError, match="No dataset shift is defined for "
                     "'toy_regression'"):
    dataset_shift.shift_of('toy_regression')
  with pytest.raises(ValueError, match="Unknown corruption 'fog_machine'"):
    list(dataset_shift.shifted_sets('cifar10', None, str(tmp_path), 4,
                                    ('fog_machine',)))
  with pytest.raises(ValueError, match='no validation counterpart'):
    list(dataset_shift.shifted_sets('cifar10', None, str(tmp_path), 4,
                                    validation_size=100))
  with pytest.raises(FileNotFoundError, match='evaluate.py --shift'):
    dataset_shift.read(str(tmp_path))


def test_evaluate_script_shift(cifar5_run, tfds_dir, tmp_path):
  """scripts/evaluate.py --shift on a CIFAR run, and one line on bad flags."""
  base = [sys.executable, 'scripts/evaluate.py', f'--run_dir={cifar5_run}',
          '--shift', '--num_networks=2', '--shift_examples=10',
          f'--shift_data_dir={tmp_path}']
  out = subprocess.run(base + ['--corruptions=contrast'], capture_output=True,
                       text=True, cwd=REPO, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  written = json.loads((cifar5_run / 'shift_eval' / 'metrics.json'
                        ).read_text())
  assert set(written['sets']) == {'clean'} | {
      f'contrast_{s}' for s in corruptions.SEVERITIES}
  assert written['num_examples'] == 10
  for extra, message in ((['--corruptions=fog_machine'],
                          "Unknown corruption 'fog_machine'"),
                         (['--validation'], 'has no validation split')):
    out = subprocess.run(base + extra, capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith('error: ')
    assert message in out.stderr and 'Traceback' not in out.stderr

"""Evaluation: metric tables from member logits, and the script end to end."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

from absl import flags
import numpy as np
import pytest

from hypergan_tf.evaluation import evaluation
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from hypergan_tf.model import members
from hypergan_tf.runtime import rundir
from tests.conftest import REPO
from tests.conftest import SHARED_DATA
from tests.conftest import TINY
from tests.conftest import read_only
from tests.conftest import small_filesystem


def test_classification_on_hand_made_logits():
  labels = np.array([0, 1, 1, 0])
  confident = np.log(np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9],
                               [0.9, 0.1]]))
  wrong_on_last = confident.copy()
  wrong_on_last[3] = confident[3, ::-1]
  logits = np.stack([confident] * 4 + [wrong_on_last])  # 5 members.
  out = evaluation.classification(logits, labels, sizes=(1, 5, 10))
  assert out['test/accuracy_n1'] == pytest.approx((4 * 1.0 + 0.75) / 5)
  assert out['test/accuracy_n5'] == 1.0
  assert 'test/accuracy_n10' not in out  # Only 5 members.
  assert out['test/nll_n5'] < out['test/nll_n1']


def test_ood_from_logits_separates_confident_from_uniform():
  rng = np.random.default_rng(0)
  confident = np.zeros((10, 50, 10))
  confident[..., 0] = 10.0
  uniform = rng.normal(0, 0.01, (10, 60, 10))
  out = evaluation.out_of_distribution(confident, uniform, 'x', sizes=(10,))
  assert out['ood/x_auroc_n10'] == pytest.approx(1.0, abs=1e-3)
  assert out['ood/x_fpr_at_95_tpr_n10'] == pytest.approx(0.0, abs=1e-3)


def test_mutual_information_detects_disagreement_that_entropy_misses():
  # In distribution: every member unsure in the same way (uniform over ten
  # classes). Out: each member sure of one of five classes, two per class,
  # so the mean prediction is less uncertain than in distribution.
  rng = np.random.default_rng(0)
  agreeing = rng.normal(0, 0.01, (10, 50, 10))
  sure = 10.0 * np.eye(10)[np.arange(10) % 5]
  disagreeing = np.broadcast_to(sure[:, None, :], (10, 60, 10))
  out = evaluation.out_of_distribution(agreeing, disagreeing, 'x',
                                       sizes=(10,))
  assert out['ood/x_mi_auroc_n10'] == pytest.approx(1.0, abs=1e-3)
  assert out['ood/x_auroc_n10'] == pytest.approx(0.0, abs=1e-3)


def test_ecdf_draws_what_the_members_allow():
  assert evaluation.ecdf_sizes(5) == [5]
  assert evaluation.ecdf_sizes(100) == [10, 100]
  assert evaluation.ecdf_sizes(1000) == [10, 100]


def test_report_lists_every_metric():
  text = evaluation.report({'test/accuracy_n1': 0.5, 'ood/x_auroc_n10': 0.9},
                           'T', ['/a/b/fig.png'])
  assert '`test/accuracy_n1` | 0.5000' in text
  assert '## ood' in text and '![fig.png](fig.png)' in text


def test_evaluate_script_writes_every_file(tiny_run, not_mnist_prepared):
  """Five networks: the metrics of every kind, at half the cost of ten."""
  run_dir = tiny_run
  out = subprocess.run(
      [sys.executable, 'scripts/evaluate.py', f'--run_dir={run_dir}',
       '--num_networks=5', f'--manual_dir={SHARED_DATA}',
       f'--ood_data_dir={not_mnist_prepared[0]}'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  eval_dir = run_dir / 'eval'
  for name in ('metrics.json', 'report.md', 'reliability.png',
               'entropy_ecdf.png', 'filters.png', 'uncertain_test.png',
               'confident_ood.png', 'accuracy_vs_step.png'):
    assert (eval_dir / name).stat().st_size > 0, name
  results = json.loads((eval_dir / 'metrics.json').read_text())
  for key in ('test/accuracy_n1', 'test/accuracy_n1_std', 'test/accuracy_n5', 'test/nll_n5', 'test/ece_n5',
              'test/brier_n5', 'ood/not_mnist_auroc_n5',
              'ood/not_mnist_aupr_n5', 'ood/not_mnist_fpr_at_95_tpr_n5',
              'diversity/layer_0_norm_mean', 'diversity/layer_2_norm_std',
              'test/disagreement_n5', 'test/mutual_information_n5',
              'ood/not_mnist_high_entropy_n5',
              'ood/not_mnist_disagreement_n5',
              'ood/not_mnist_mutual_information_n5'):
    assert key in results, key
  for key in ('ood/not_mnist_auroc_n5', 'test/disagreement_n5',
              'ood/not_mnist_high_entropy_n5'):
    assert 0.0 <= results[key] <= 1.0, key
  assert 0.0 <= results['test/mutual_information_n5'] <= np.log(5)


def test_a_read_only_run_with_a_cut_off_events_file_is_evaluated_elsewhere(
    tiny_run, tfds_dir, tmp_path, caplog):
  """A run being written (or after a full disk) can end in half an events
  record; a copy on read-only media cannot take eval/."""
  with small_filesystem(tmp_path / 'disk', 64 << 20) as disk:
    run_dir = disk / 'run'
    shutil.copytree(tiny_run, run_dir)
    events, = (run_dir / 'summaries').glob('events.*')
    events.write_bytes(events.read_bytes()[:-7])
    with read_only(disk):
      with pytest.raises(rundir.WriteError) as error:
        evaluation.evaluate_run(str(run_dir), num_networks=2,
                                data_dir=tfds_dir)
      assert f'Cannot write into {run_dir}/eval' in str(error.value)
      assert '--out_dir=' in str(error.value)
      out = subprocess.run(
          [sys.executable, 'scripts/evaluate.py', f'--run_dir={run_dir}',
           '--num_networks=2', f'--out_dir={tmp_path / "eval"}'],
          capture_output=True, text=True, cwd=REPO, check=False,
          env={**os.environ, 'TFDS_DATA_DIR': tfds_dir})
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'Skipping the rest of' in out.stderr
  assert (tmp_path / 'eval' / 'accuracy_vs_step.png').stat().st_size > 0
  written = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
  assert written['out_dir'] == str(tmp_path / 'eval')


def test_a_mistyped_run_directory_creates_nothing(tmp_path):
  with pytest.raises(FileNotFoundError, match='is not a run directory'):
    evaluation.evaluate_run(str(tmp_path / 'typo' / 'run'))
  assert not (tmp_path / 'typo').exists()


def test_toy_regression_fits_data_and_is_unsure_away_from_it(tmp_path):
  """Paper Sec. 4.3: mean within the noise inside [-4, 4], wider outside."""
  fv = flags.FlagValues()
  config.define_flags(fv)
  fv(['train.py', f'--flagfile={REPO / "configs" / "toy_regression.flags"}'])
  # A quarter of the flagfile's steps, to fit CI; the same data, target and
  # sizes. At 700 steps: RMSE 2.58, outside/inside std 4.9 (1,000: 2.24, 5.5).
  cfg = dataclasses.replace(config.from_flags(fv), run_dir=str(tmp_path),
                            steps=700, eval_every=1000,
                            final_eval_networks=10)
  training.train(cfg)
  results, path = evaluation.regression(members.load(str(tmp_path)),
                                        str(tmp_path), sizes=(100,))
  assert results['regression/rmse_inside_n100'] < 3.0  # Noise std is 3.
  assert (results['regression/std_outside_n100'] >
          3 * results['regression/std_inside_n100'])
  assert os.path.getsize(path) > 10_000


def test_validation_scores_read_no_test_image(tfds_dir, tmp_path,
                                              monkeypatch):
  run_dir = str(tmp_path / 'run')
  training.train(config.TrainConfig(**{
      **TINY, 'run_dir': run_dir, 'data_dir': tfds_dir, 'download': False,
      'dataset': 'cifar5', 'target': 'cifar5', 'validation_size': 50,
      'steps': 2}))
  read = []
  real_load = evaluation.data.load

  def recording_load(name, split, *args, **kwargs):
    read.append((name, split))
    return real_load(name, split, *args, **kwargs)

  monkeypatch.setattr(evaluation.data, 'load', recording_load)
  result = evaluation.evaluate_validation(run_dir, num_networks=5,
                                          data_dir=tfds_dir, ood_examples=200)
  assert read == [('cifar5', 'validation'), ('cifar5_ood', 'train')]
  for key in ('validation/accuracy_n1', 'validation/accuracy_n5',
              'validation/nll_n5', 'validation/disagreement_n5',
              'validation/mutual_information_n5',
              'ood/cifar5_ood_train_auroc_n5',
              'ood/cifar5_ood_train_mi_auroc_n5'):
    assert np.isfinite(result[key]), key
  assert 0.0 <= result['ood/cifar5_ood_train_auroc_n5'] <= 1.0
  assert not any(key.startswith('test/') for key in result)
  written = json.loads(open(os.path.join(
      run_dir, evaluation.VALIDATION_DIR, 'metrics.json')).read())
  assert written['ood/cifar5_ood_train_auroc_n5'] == (
      result['ood/cifar5_ood_train_auroc_n5'])


def test_validation_scores_need_a_validation_split(tiny_run):
  with pytest.raises(ValueError, match='has no validation split'):
    evaluation.evaluate_validation(str(tiny_run))

"""The comparison table, from hand-made run directories."""

import json
import subprocess
import sys

import pytest

from hypergan_tf.evaluation import comparison
from tests.conftest import REPO


def _write(path, payload):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(payload))


@pytest.fixture
def runs(tmp_path):
  """A HyperGAN run with every file and an ensemble run with only some."""
  hypergan, ensemble = tmp_path / 'hypergan', tmp_path / 'ensemble'
  _write(hypergan / 'config.json', {'num_networks': 32})  # No 'method'.
  _write(hypergan / 'results.json', {'wall_time_s': 600.0})
  _write(hypergan / 'eval' / 'metrics.json', {
      'test/accuracy_n1': 0.9912, 'test/accuracy_n1_std': 0.0005,
      'test/accuracy_n5': 0.992, 'test/accuracy_n10': 0.9925,
      'test/nll_n10': 0.03456, 'test/ece_n10': 0.0049,
      'ood/not_mnist_auroc_n10': 0.9715,
      'diversity/layer_0_norm_mean': 22.9, 'diversity/layer_0_norm_std': 15.4,
      'diversity/layer_1_norm_mean': 19.2, 'diversity/layer_1_norm_std': 13.8,
      'num_networks': 100, 'step': 8000})
  _write(hypergan / 'adversarial' / 'metrics.json', {
      'adv/fgsm_eps0.1_detection_n10': 0.94,
      'adv/fgsm_eps0.1_detection_attacked_n10': 0.5,  # Another metric.
      'adv/fgsm_eps0.3_detection_n10': 0.785,
      'adv/pgd_eps0.1_detection_n10': 0.725,
      'adv/pgd_eps0.1_detection_n5': 0.6,  # Another ensemble size.
  })
  _write(ensemble / 'config.json', {'method': 'ensemble', 'num_members': 10})
  _write(ensemble / 'eval' / 'metrics.json', {
      'test/accuracy_n1': 0.99, 'test/accuracy_n10': 0.9931,
      'diversity/layer_0_norm_mean': 5.0})
  return [str(hypergan), str(ensemble)]


def _cells(text, row_start):
  line = next(l for l in text.splitlines() if l.startswith(row_start))
  return [c.strip() for c in line.strip('|').split('|')][1:]


def test_table_reads_every_file_and_dashes_what_is_missing(runs):
  text = comparison.compare(runs)
  assert text.splitlines()[0] == '| metric | HyperGAN | Ensemble (K=10) |'
  assert _cells(text, '| Test accuracy (%), 1 member') == [
      '99.12 ± 0.05', '99.00']
  assert _cells(text, '| Test accuracy (%), 5 members') == ['99.20', '—']
  assert _cells(text, '| Test accuracy (%), 10 members') == ['99.25', '99.31']
  assert _cells(text, '| Test NLL, 10 members') == ['0.0346', '—']
  assert _cells(text, '| Test ECE, 10 members') == ['0.0049', '—']
  assert _cells(text, '| notMNIST AUROC') == ['0.972', '—']
  assert _cells(text, '| FGSM ε=0.1 detected') == ['94.00 / 50.00', '—']
  assert _cells(text, '| FGSM ε=0.3 detected') == ['78.50 / —', '—']
  assert _cells(text, '| PGD ε=0.1 detected') == ['72.50 / —', '—']
  assert 'PGD ε=0.3' not in text
  assert _cells(text, '| Layer 0 weight L2 norm') == ['22.90 ± 15.40',
                                                      '5.00']
  assert _cells(text, '| Layer 1 weight L2 norm') == ['19.20 ± 13.80', '—']
  assert _cells(text, '| Members evaluated') == ['100', '—']
  assert _cells(text, '| Training wall time (min)') == ['10.0', '—']
  assert f'HyperGAN = `{runs[0]}` (step 8000)' in text


def test_a_smaller_ensemble_shows_all_its_members(runs, tmp_path):
  batch_ensemble = tmp_path / 'batch_ensemble'
  _write(batch_ensemble / 'config.json',
         {'method': 'batch_ensemble', 'num_members': 4})
  _write(batch_ensemble / 'eval' / 'metrics.json', {
      'test/accuracy_n1': 0.8, 'test/accuracy_n4': 0.85,
      'test/nll_n4': 0.41, 'test/disagreement_n4': 0.125,
      'test/mutual_information_n4': 0.05,
      'ood/cifar5_ood_auroc_n4': 0.7, 'ood/cifar5_ood_mi_auroc_n4': 0.65})
  _write(batch_ensemble / 'adversarial' / 'metrics.json', {
      'adv/fgsm_eps0.1_detection_attacked_n4': 0.25})
  text = comparison.compare(runs + [str(batch_ensemble)])
  assert text.splitlines()[0] == (
      '| metric | HyperGAN | Ensemble (K=10) | BatchEnsemble (K=4) |')
  assert _cells(text, '| Test accuracy (%), 5 members') == [
      '99.20', '—', '85.00 (4)']
  assert _cells(text, '| Test accuracy (%), 100 members') == [
      '99.25 (10)', '99.31 (10)', '85.00 (4)']
  assert _cells(text, '| Test NLL, 10 members') == ['0.0346', '—',
                                                    '0.4100 (4)']
  assert _cells(text, '| Test disagreement') == ['—', '—', '12.50 (4)']
  assert _cells(text, '| Test mutual information') == ['—', '—', '0.0500 (4)']
  # Every OOD set any run scored gets its rows, by entropy and by MI.
  assert _cells(text, '| CIFAR-10 classes 5-9 (CIFAR-5 OOD) AUROC (entropy)'
                ) == ['—', '—', '0.700 (4)']
  assert _cells(text, '| CIFAR-10 classes 5-9 (CIFAR-5 OOD) AUROC (mutual'
                ) == ['—', '—', '0.650 (4)']
  assert _cells(text, '| notMNIST AUROC (entropy)') == ['0.972', '—', '—']
  assert _cells(text, '| FGSM ε=0.1 detected') == [
      '94.00 / 50.00', '—', '— / 25.00 (4)']


def test_adversarial_rows_without_any_adversarial_file(runs, tmp_path):
  (tmp_path / 'hypergan' / 'adversarial' / 'metrics.json').unlink()
  text = comparison.compare(runs, labels=['A', 'B|C'], members=10)
  assert text.splitlines()[0] == '| metric | A | B\\|C |'
  assert _cells(text, '| FGSM detected') == ['—', '—']
  assert _cells(text, '| PGD detected') == ['—', '—']


def test_members_picks_the_ensemble_size(runs):
  text = comparison.compare(runs, members=5)
  assert _cells(text, '| PGD ε=0.1 detected at 5% FPR (%), 5 members') == [
      '60.00 / —', '—']
  assert _cells(text, '| Test NLL, 5 members') == ['—', '—']


def test_epsilons_filter_the_adversarial_rows(runs):
  text = comparison.compare(runs, epsilons=[0.3])
  assert _cells(text, '| FGSM ε=0.3 detected') == ['78.50 / —', '—']
  assert 'ε=0.1' not in text


def test_errors(runs, tmp_path):
  with pytest.raises(ValueError, match='1 labels for 2 runs'):
    comparison.compare(runs, labels=['x'])
  with pytest.raises(FileNotFoundError, match='does not exist'):
    comparison.compare([str(tmp_path / 'nope')])
  (tmp_path / 'ensemble' / 'results.json').write_text('{not json')
  with pytest.raises(ValueError, match='not valid JSON'):
    comparison.compare(runs)


def test_script_prints_and_writes(runs, tmp_path):
  output = tmp_path / 'table.md'
  out = subprocess.run(
      [sys.executable, 'scripts/compare.py', f'--runs={",".join(runs)}',
       f'--output={output}', '--epsilons=0.1'], capture_output=True, text=True, cwd=REPO,
      check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout == output.read_text()
  assert '| Test accuracy (%), 10 members | 99.25 | 99.31 |' in out.stdout
  assert 'FGSM ε=0.1' in out.stdout and 'ε=0.3' not in out.stdout
  out = subprocess.run(
      [sys.executable, 'scripts/compare.py', f'--runs={tmp_path / "nope"}'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert out.returncode == 1
  assert 'error: Run directory' in out.stderr

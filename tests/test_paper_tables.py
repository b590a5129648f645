"""Tables 3 and 4 and the OOD table, from run directories made here."""

import json

import pytest

from hypergan_tf.experiments import paper_tables


def _run(path, metrics, steps=8000, wall_time_s=600.0):
  (path / 'eval').mkdir(parents=True)
  (path / 'config.json').write_text(json.dumps({'steps': steps}))
  (path / 'results.json').write_text(json.dumps({'wall_time_s': wall_time_s}))
  (path / 'eval' / 'metrics.json').write_text(json.dumps(
      {'step': steps, **metrics}))
  return str(path)


def test_accuracy_row_has_ours_paper_and_the_gap(tmp_path):
  run = _run(tmp_path / 'mnist', {
      'test/accuracy_n1': 0.9916, 'test/accuracy_n1_std': 0.0005,
      'test/accuracy_n5': 0.9923, 'test/accuracy_n10': 0.9924,
      'test/accuracy_n100': 0.9940})
  table = paper_tables.accuracy_table([
      ('MNIST', run, 'mnist'),
      ('CIFAR-10', str(tmp_path / 'absent'), 'cifar10')])
  mnist, cifar = table.splitlines()[2:]
  assert mnist == ('| MNIST | 8,000 steps, 10.0 min | 99.16 ± 0.05 | 99.23 '
                   '| 99.24 | 99.40 | 98.64 / 98.75 / 99.22 / 99.31 | +0.09 |')
  assert cifar.startswith('| CIFAR-10 | not run | — | — | — | — |')
  assert cifar.endswith('| 76.32 / 76.84 / 77.52 / 77.71 | — |')


def test_accuracy_curves_start_with_the_paper_and_skip_missing_runs(
    tmp_path):
  run = _run(tmp_path / 'mnist', {'test/accuracy_n1': 0.99,
                                  'test/accuracy_n10': 0.995})
  curves = paper_tables.accuracy_curves(
      [('ours', run), ('absent', str(tmp_path / 'absent'))], 'mnist')
  assert list(curves) == ['paper', 'ours']
  assert curves['paper'] == ([1, 5, 10, 100], [98.64, 98.75, 99.22, 99.31])
  sizes, accuracy = curves['ours']
  assert sizes == [1, 10]
  assert accuracy == pytest.approx([99.0, 99.5])


def test_diversity_rows_put_ours_next_to_the_paper(tmp_path):
  run = _run(tmp_path / 'mnist', {
      f'diversity/layer_{i}_norm_{stat}': value
      for i in range(3) for stat, value in (('mean', 10.0 + i),
                                            ('std', 1.5))})
  lines = paper_tables.diversity_table([('ours', run)]).splitlines()
  assert lines[2] == '| ours | 10.00 ± 1.50 | 11.00 ± 1.50 | 12.00 ± 1.50 |'
  assert lines[3] == '| HyperGAN (paper) | 7.49 ± 1.59 | 51.10 ± 10.62 | 22.01 ± 6.01 |'
  assert len(lines) == 5


def test_ood_rows_name_each_ood_set(tmp_path):
  run = _run(tmp_path / 'mnist', {
      'ood/not_mnist_auroc_n10': 0.9715, 'ood/not_mnist_fpr_at_95_tpr_n10':
      0.1115, 'ood/not_mnist_auroc_n100': 0.9705,
      'ood/not_mnist_mi_auroc_n10': 0.9925})
  lines = paper_tables.ood_table([('MNIST', run)], sizes=(10, 100)
                                 ).splitlines()
  assert lines[0].startswith('| run | OOD set | H AUROC N=10 | MI AUROC N=10')
  assert lines[2] == ('| MNIST | not_mnist | 0.972 | 0.993 | 0.112 | 0.971 '
                      '| — | — |')
  assert len(lines) == 3  # The MI key names no OOD set of its own.

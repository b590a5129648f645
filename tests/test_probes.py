"""Probe runs: the skip rule that makes them resumable, and the table."""

import json
import os

import numpy as np
import tensorflow as tf

from hypergan_tf.experiments import probes
from hypergan_tf.runtime import rundir


def _finished(run_dir, **results):
  run_dir.mkdir(parents=True)
  (run_dir / rundir.RESULTS_FILE).write_text(json.dumps(results))


def test_train_skips_a_finished_probe_and_runs_an_unfinished_one(
    tmp_path, monkeypatch):
  started = []
  monkeypatch.setattr(probes, 'run_script', started.append)
  _finished(tmp_path / 'done', selected_step=10)
  _finished(tmp_path / 'killed', step=7)  # No selected step: not finished.
  for name in ('done', 'killed', 'new'):
    probes.train('configs/x.flags', str(tmp_path / name), ['--beta=0'])
  assert started == [['scripts/train.py', '--flagfile=configs/x.flags',
                      f'--run_dir={tmp_path / name}', '--beta=0']
                     for name in ('killed', 'new')]


def test_table_has_a_row_per_probe_and_marks_what_is_missing(tmp_path):
  _finished(tmp_path / 'a', wall_time_s=12.3, selected_step=5)
  columns = [probes.json_column('wall', rundir.RESULTS_FILE, 'wall_time_s',
                                '{:.0f}'),
             probes.Column('twice', lambda run_dir: 2.0, '{:.1f}')]
  text = probes.table(str(tmp_path), {'a': ['--x=1'], 'b': []}, ['a', 'b'],
                      columns)
  lines = text.splitlines()
  assert lines[0] == '| probe | flags | wall | twice |'
  assert lines[2] == '| a | --x=1 | 12 | 2.0 |'
  assert lines[3] == '| b | — | — | 2.0 |'


def test_scalar_reduces_a_runs_curve_and_cpu_hours_read_results(tmp_path):
  writer = tf.summary.create_file_writer(
      str(tmp_path / rundir.SUMMARY_DIR))
  with writer.as_default():
    for step, value in ((1, 3.0), (2, 1.0), (3, 2.0)):
      tf.summary.scalar('train/steps_per_second', value, step=step)
  writer.close()
  assert probes.scalar('train/steps_per_second', np.median)(
      str(tmp_path)) == 2.0
  assert probes.scalar('train/missing', np.median)(str(tmp_path)) is None
  assert probes.cpu_hours(str(tmp_path)) is None  # Not finished.
  (tmp_path / rundir.RESULTS_FILE).write_text(json.dumps(
      {'wall_time_s': 1800.0}))
  assert probes.cpu_hours(str(tmp_path)) == 0.5 * os.cpu_count()

"""Probe runs: the skip rule that makes them resumable, and the table."""

import json

from hypergan_tf import probes
from hypergan_tf import rundir


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

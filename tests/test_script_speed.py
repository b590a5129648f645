"""Recipes timed through their scripts, with extra flags."""

import pytest

from hypergan_tf.experiments import script_speed
from tests.conftest import REPO


def test_a_baseline_is_timed_with_its_extra_flags(tmp_path, tfds_dir,
                                                  monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  flagfile = tmp_path / 'tiny_ensemble.flags'
  flagfile.write_text('--method=ensemble\n--num_members=3\n--batch_size=8\n'
                      '--eval_members=3\n--nodownload\n')
  assert script_speed.script_kind(str(flagfile)) == 'baseline'
  lines = []
  [[run]] = script_speed.time_alternately(
      [(str(flagfile), ('--num_members=2', '--eval_members=2'))], 150,
      str(REPO), rounds=1, log=lines.append)
  assert run['network_examples_per_step'] == 2 * 8  # The args won.
  assert lines == [f'round 1: {flagfile} --num_members=2 --eval_members=2: '
                   f'{run["steps_per_s"]:.2f} steps/s x 16 = '
                   f'{run["network_examples_per_s"]:,.0f} network-examples/s']
  assert run['steps_per_s'] > 0
  assert run['network_examples_per_s'] == pytest.approx(
      16 * run['steps_per_s'])


def test_a_failing_script_raises_with_its_last_output(tmp_path, tfds_dir,
                                                  monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  flagfile = tmp_path / 'bad.flags'
  flagfile.write_text('--method=ensemble\n--num_members=0\n')
  with pytest.raises(RuntimeError, match='--num_members'):
    script_speed.time_script(str(flagfile), 150, str(REPO))

"""Recipes timed through their scripts, with extra flags."""

import pytest

from hypergan_tf.experiments import script_speed
from hypergan_tf.methods.hypergan import config
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


def test_cadence_reads_nested_flagfiles_args_and_defaults(tmp_path):
  inner = tmp_path / 'inner.flags'
  inner.write_text('--method=ensemble\n--eval_every=700\n')
  outer = tmp_path / 'outer.flags'
  outer.write_text(f'--flagfile={inner}\n--method=ensemble\n'
                   '--checkpoint_every=300\n')
  assert script_speed.cadence(str(outer), str(REPO)) == {
      'eval_every': 700, 'checkpoint_every': 300}
  assert script_speed.cadence(str(outer), str(REPO), ['--eval_every=900'])[
      'eval_every'] == 900
  defaults = script_speed.cadence('configs/mnist_quick.flags', str(REPO))
  assert defaults['eval_every'] == 500  # From the flagfile.
  assert defaults['checkpoint_every'] == (
      config.TrainConfig().checkpoint_every)  # Not set there: the default.


def test_validation_and_checkpoints_are_priced_at_the_recipes_cadence(
    tmp_path, tfds_dir, monkeypatch):
  """A validation set large against the step makes its pass show."""
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  flagfile = tmp_path / 'validating.flags'
  flagfile.write_text('--method=ensemble\n--num_members=2\n--batch_size=8\n'
                      '--eval_members=2\n--validation_size=3000\n'
                      '--eval_every=400\n--checkpoint_every=250\n'
                      '--nodownload\n')
  run = script_speed.time_script(str(flagfile), script_speed.OVERHEAD_STEPS,
                                 str(REPO), overheads=True)
  assert (run['eval_every'], run['checkpoint_every']) == (400, 250)
  assert run['validation_s'] > 0
  assert 1 / run['run_steps_per_s'] == pytest.approx(
      1 / run['steps_per_s'] + run['validation_s'] / 400 +
      run['checkpoint_s'] / 250)
  assert run['run_steps_per_s'] < run['steps_per_s']
  with pytest.raises(ValueError, match='at least 600 steps'):
    script_speed.time_script(str(flagfile), 150, str(REPO), overheads=True)

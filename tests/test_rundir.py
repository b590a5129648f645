"""Run directories on TensorFlow filesystems, not only local disk."""

import uuid

import pytest
import tensorflow as tf

from hypergan_tf import config
from hypergan_tf import evaluation
from hypergan_tf import rundir
from hypergan_tf import training
from tests.conftest import TINY


def test_json_round_trip_and_atomic_write_on_ram_filesystem():
  path = f'ram://{uuid.uuid4().hex}/sub/results.json'
  rundir.write_json(path, {'a': 1})
  rundir.write_json(path, {'a': 2})  # Rewritten, not appended.
  assert rundir.read_json(path) == {'a': 2}
  assert tf.io.gfile.listdir(path.rsplit('/', 1)[0]) == ['results.json']


def test_missing_config_names_the_directory():
  with pytest.raises(FileNotFoundError, match='is not a run directory'):
    rundir.read_config('ram://nowhere')


def test_ram_run_directory_trains_resumes_and_evaluates(tfds_dir):
  run_dir = f'ram://{uuid.uuid4().hex}/run'
  cfg = config.TrainConfig(run_dir=run_dir, data_dir=tfds_dir,
                           download=False, **TINY)
  assert training.train(cfg)['steps'] == 6
  more = training.train(config.TrainConfig(**{**cfg.to_dict(), 'steps': 8}))
  assert (more['start_step'], more['steps']) == (6, 8)
  assert rundir.read_json(rundir.join(run_dir, 'results.json'))['steps'] == 8
  results = evaluation.evaluate_run(run_dir, num_networks=10,
                                    data_dir=tfds_dir)
  written = rundir.read_json(rundir.join(run_dir, 'eval', 'metrics.json'))
  assert written['test/accuracy_n10'] == results['test/accuracy_n10']
  assert tf.io.gfile.exists(rundir.join(run_dir, 'eval', 'reliability.png'))
  # No notMNIST archive given: that part is skipped and says how to get it.
  assert '--manual_dir' in written['skipped']['ood/not_mnist']


def test_read_scalars_matches_tags_in_step_order(tmp_path):
  directory = str(tmp_path / rundir.SUMMARY_DIR)
  for session, steps in enumerate(([1, 2, 3], [3, 4])):  # A resume repeats 3.
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
      for step in steps:
        tf.summary.scalar('validation/accuracy_n10', step + session, step=step)
        tf.summary.scalar('train/loss', 1.0, step=step)
    writer.close()
  curves = rundir.read_scalars(str(tmp_path), r'validation/accuracy_n\d+')
  assert set(curves) == {'validation/accuracy_n10'}
  steps, values = curves['validation/accuracy_n10']
  assert steps == [1, 2, 3, 4]
  assert values == [1.0, 2.0, 4.0, 5.0]  # Step 3 from the resumed session.

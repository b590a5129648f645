"""Run directories on TensorFlow filesystems, not only local disk.

The training round trip (results, summaries, resume) is tested here, on
the in-memory filesystem; tiny_run and the script tests cover local disk.
"""

import os
import uuid

import pytest
import tensorflow as tf

from hypergan_tf.evaluation import evaluation
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from hypergan_tf.runtime import rundir
from tests.conftest import TINY


def test_json_round_trip_and_atomic_write_on_ram_filesystem():
  path = f'ram://{uuid.uuid4().hex}/sub/results.json'
  rundir.write_json(path, {'a': 1})
  rundir.write_json(path, {'a': 2})  # Rewritten, not appended.
  assert rundir.read_json(path) == {'a': 2}
  assert tf.io.gfile.listdir(path.rsplit('/', 1)[0]) == ['results.json']


@pytest.mark.parametrize('content', ['{"dataset": "mni', '[1, 2]', '\xff'])
def test_a_damaged_config_names_the_file(tmp_path, content):
  (tmp_path / rundir.CONFIG_FILE).write_bytes(content.encode('latin-1'))
  with pytest.raises(ValueError) as error:
    rundir.read_config(str(tmp_path))
  assert str(tmp_path / rundir.CONFIG_FILE) in str(error.value)
  assert 'rerun' in str(error.value)


def test_a_failed_write_removes_its_temp_file_and_names_the_file(tmp_path):
  (tmp_path / 'results.json').mkdir()  # Nothing can be renamed onto it.
  with pytest.raises(rundir.WriteError,
                     match=f'Could not write {tmp_path}/results.json'):
    rundir.write_json(str(tmp_path / 'results.json'), {'a': 1})
  assert os.listdir(tmp_path) == ['results.json']


def test_missing_config_names_the_directory():
  with pytest.raises(FileNotFoundError, match='is not a run directory'):
    rundir.read_config('ram://nowhere')


def test_ram_run_directory_trains_resumes_and_evaluates(tfds_dir):
  run_dir = f'ram://{uuid.uuid4().hex}/run'
  cfg = config.TrainConfig(run_dir=run_dir, data_dir=tfds_dir,
                           download=False, **TINY)
  results = training.train(cfg)
  written = rundir.read_json(rundir.join(run_dir, 'results.json'))
  for key in ('test/accuracy_n1', 'test/accuracy_n10', 'steps',
              'wall_time_s', 'flags'):
    assert key in written
  assert written['steps'] == 6 == results['steps']
  assert written['flags']['num_networks'] == 4
  assert 0.0 <= written['test/accuracy_n1'] <= 1.0
  steps, seconds = rundir.read_scalars(run_dir, 'train/wall_time_s')[
      'train/wall_time_s']
  assert steps == [2, 4, 6] and 0 < seconds[0] < seconds[1] < seconds[2]
  # Asking for more steps resumes from step 6 instead of starting over.
  trained_s = tf.train.load_checkpoint(rundir.join(  # The latest: step 6.
      run_dir, rundir.CHECKPOINT_DIR)).get_tensor(
          'wall_time/.ATTRIBUTES/VARIABLE_VALUE')
  more = training.train(config.TrainConfig(**{**cfg.to_dict(), 'steps': 8}))
  assert (more['start_step'], more['steps']) == (6, 8)
  # results.json's wall time is the training's, as checkpointed (the final
  # test evaluation apart); the resumed run's clock goes on from it.
  assert 0 < trained_s == pytest.approx(results['wall_time_s'], abs=0.5)
  assert results['final_evaluation_s'] > 0
  assert more['wall_time_s'] > results['wall_time_s']
  assert rundir.read_json(rundir.join(run_dir, 'results.json'))['steps'] == 8
  evaluated = evaluation.evaluate_run(run_dir, num_networks=5,
                                      data_dir=tfds_dir)
  written = rundir.read_json(rundir.join(run_dir, 'eval', 'metrics.json'))
  assert written['test/accuracy_n5'] == evaluated['test/accuracy_n5']
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
        tf.summary.histogram('validation/accuracy_n2', [0.5, 1.0], step=step)
    writer.close()
  curves = rundir.read_scalars(str(tmp_path), r'validation/accuracy_n\d+')
  assert set(curves) == {'validation/accuracy_n10'}  # Not the histogram.
  steps, values = curves['validation/accuracy_n10']
  assert steps == [1, 2, 3, 4]
  assert values == [1.0, 2.0, 4.0, 5.0]  # Step 3 from the resumed session.

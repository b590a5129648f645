"""Checkpoints that survive a damaged index, a full disk and saving twice.

Real processes killed inside the save cycle are in tests/test_train_script.py
and benchmarks/fault_injection.py.
"""

import contextlib
import glob
import os
import uuid

from absl import logging as absl_logging
import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.runtime import checkpoints
from tests.conftest import small_filesystem


@pytest.fixture
def warnings(caplog):
  absl_logging.use_python_logging()
  return caplog


class Model:
  """A checkpoint whose value says which step wrote it."""

  def __init__(self, directory, size=10, keep=3):
    self.value = tf.Variable(np.zeros(size, np.float32))
    self.checkpoint = tf.train.Checkpoint(value=self.value)
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=keep)

  def save(self, step):
    self.value.assign(np.full(self.value.shape, step, np.float32))
    return checkpoints.save(self.manager, step)


def _saved(directory, steps, **kwargs):
  model = Model(str(directory), **kwargs)
  for step in steps:
    model.save(step)
  return model


def _restored_value(directory):
  value = tf.Variable(np.zeros(10, np.float32), shape=tf.TensorShape(None))
  path = checkpoints.restore_newest(tf.train.Checkpoint(value=value),
                                    str(directory))
  return path, float(value.numpy()[0])


def test_saving_a_recorded_step_again_writes_nothing(tmp_path):
  model = _saved(tmp_path, [10, 20])
  index = tmp_path / 'ckpt-20.index'
  before = (index.stat().st_ino, index.stat().st_mtime_ns)
  model.value.assign(np.full(10, 99.0, np.float32))
  assert model.save(20).endswith('ckpt-20')
  assert (index.stat().st_ino, index.stat().st_mtime_ns) == before
  assert _restored_value(tmp_path) == (str(tmp_path / 'ckpt-20'), 20.0)


@pytest.mark.parametrize('damage', ['empty', 'garbage', 'missing'])
def test_a_damaged_index_file_resumes_from_the_newest_complete(
    tmp_path, damage, warnings):
  _saved(tmp_path, [10, 20, 30])
  index = tmp_path / checkpoints.INDEX_FILE
  if damage == 'missing':
    index.unlink()
  else:
    index.write_text('' if damage == 'empty' else 'model_checkpoint_pa')
  with contextlib.suppress(ValueError):  # On an empty file it raises.
    assert tf.train.latest_checkpoint(str(tmp_path)) is None  # TF gives up.
  assert _restored_value(tmp_path) == (str(tmp_path / 'ckpt-30'), 30.0)
  assert 'Resuming from' in warnings.text and 'ckpt-30' in warnings.text
  assert checkpoints.newest(str(tmp_path)) == str(tmp_path / 'ckpt-30')


def test_an_index_naming_deleted_files_falls_back(tmp_path, warnings):
  _saved(tmp_path, [10, 20])
  for path in glob.glob(str(tmp_path / 'ckpt-20.*')):
    os.remove(path)
  assert _restored_value(tmp_path) == (str(tmp_path / 'ckpt-10'), 10.0)
  assert 'ckpt-20, whose files are missing' in warnings.text


def test_a_truncated_newest_checkpoint_falls_back_to_the_next(tmp_path,
                                                              warnings):
  _saved(tmp_path, [10, 20], size=1000)
  data_file, = glob.glob(str(tmp_path / 'ckpt-20.data-*'))
  with open(data_file, 'r+b') as f:
    f.truncate(100)
  assert _restored_value(tmp_path) == (str(tmp_path / 'ckpt-10'), 10.0)
  assert 'Skipping' in warnings.text and 'cannot be restored' in warnings.text


def test_no_restorable_checkpoint_is_one_error_not_a_fresh_start(tmp_path):
  tf.train.Checkpoint(other=tf.Variable([1.0, 2.0])).write(
      str(tmp_path / 'ckpt-5'))
  with pytest.raises(checkpoints.CheckpointRestoreError,
                     match='ckpt-5 cannot be restored into this model'):
    _restored_value(tmp_path)


def test_a_damaged_index_naming_nothing_is_removed(tmp_path):
  (tmp_path / checkpoints.INDEX_FILE).write_text('')
  checkpoints.repair_index(str(tmp_path))
  assert not (tmp_path / checkpoints.INDEX_FILE).exists()
  Model(str(tmp_path)).save(1)  # The manager can read the directory again.


def test_repaired_index_keeps_the_older_checkpoints(tmp_path):
  _saved(tmp_path, [10, 20, 30])
  (tmp_path / checkpoints.INDEX_FILE).write_text('')
  checkpoints.repair_index(str(tmp_path), str(tmp_path / 'ckpt-30'))
  latest, listed, wrong = checkpoints.recorded(str(tmp_path))
  assert wrong is None and latest == str(tmp_path / 'ckpt-30')
  assert listed == [str(tmp_path / f'ckpt-{n}') for n in (10, 20, 30)]
  # The manager now knows them: the oldest goes when a new one comes.
  model = Model(str(tmp_path))
  model.save(40)
  assert not glob.glob(str(tmp_path / 'ckpt-10.*'))
  assert checkpoints.newest(str(tmp_path)) == str(tmp_path / 'ckpt-40')


def test_leftovers_of_an_unrecorded_save_are_replaced(tmp_path):
  model = _saved(tmp_path, [10])
  (tmp_path / 'ckpt-20.data-00000-of-00001').write_bytes(b'half')
  (tmp_path / 'ckpt-20_temp').mkdir()
  assert checkpoints.newest(str(tmp_path)) == str(tmp_path / 'ckpt-10')
  model.save(20)
  assert _restored_value(tmp_path) == (str(tmp_path / 'ckpt-20'), 20.0)
  assert not (tmp_path / 'ckpt-20_temp').exists()


def test_on_the_in_memory_filesystem():
  directory = f'ram://{uuid.uuid4().hex}/checkpoints'
  model = _saved(directory, [1, 2])
  model.save(2)
  assert _restored_value(directory) == (f'{directory}/ckpt-2', 2.0)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path):
  # One checkpoint of 400 KB fits in 600 KB; a second does not.
  with small_filesystem(tmp_path / 'disk', 600 * 1024) as disk:
    model = _saved(disk, [10], size=100_000)
    model.save(10)  # Saving it again (on SIGTERM, at the end) writes nothing.
    with pytest.raises(checkpoints.CheckpointWriteError) as error:
      model.save(20)
    message = str(error.value)
    assert 'Could not write checkpoint 20' in message
    assert 'No space left on device' in message
    assert f'The previous checkpoint, {disk}/ckpt-10, is intact' in message
    assert '\n' not in message
    assert not glob.glob(str(disk / 'ckpt-20*'))  # No half checkpoint.
    assert _restored_value(disk) == (str(disk / 'ckpt-10'), 10.0)

"""The owner record of a run directory, without training.

Two real `scripts/train.py` processes on one run directory, a SIGKILLed run
taken over, readers during training and a failing checkpoint write are in
tests/test_train_script.py.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

from absl import logging as absl_logging
import pytest
import tensorflow as tf

from hypergan_tf.runtime import ownership
from tests.conftest import REPO
from tests.conftest import beating


def _write_record(run_dir, **fields):
  record = {**ownership.new_record(), **fields}
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, ownership.OWNER_FILE), 'w') as f:
    json.dump(record, f)
  return record


@pytest.fixture
def warnings(caplog):
  """Warnings logged through absl (absl's handler is Python logging's)."""
  absl_logging.use_python_logging()
  return caplog


def test_a_second_writer_is_refused_with_the_first_named(tmp_path):
  run_dir = str(tmp_path / 'run')
  with ownership.owned(run_dir) as owner:
    record = ownership.read_record(run_dir)
    assert record['token'] == owner.record['token']
    assert (record['host'], record['pid']) == (socket.gethostname(),
                                               os.getpid())
    with pytest.raises(ownership.RunDirectoryBusyError) as error:
      ownership.acquire(run_dir)
    message = str(error.value)
    assert f'pid {os.getpid()} on host {socket.gethostname()}' in message
    assert record['command'] in message and '--take_over' in message
    assert '\n' not in message
  assert ownership.read_record(run_dir) is None  # Released.
  ownership.acquire(run_dir).release()  # Free again.


def test_record_of_a_finished_process_on_this_host_is_taken_over(
    tmp_path, warnings):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  run_dir = str(tmp_path)
  _write_record(run_dir, pid=dead.pid, process_start=None)
  with ownership.owned(run_dir) as owner:
    assert ownership.read_record(run_dir)['token'] == owner.record['token']
  assert f'pid {dead.pid}' in warnings.text
  assert 'its process is gone' in warnings.text


def test_a_reused_pid_does_not_keep_a_dead_record_alive(tmp_path):
  # The parent process runs, but it is not the process that wrote this.
  _write_record(str(tmp_path), pid=os.getppid(), process_start=1)
  owner = ownership.acquire(str(tmp_path))
  assert ownership.read_record(str(tmp_path))['pid'] == os.getpid()
  owner.release()


OTHER_MACHINE = dict(host='other-host', pid=4242, boot_id='another-boot')


@pytest.fixture
def short_watch(monkeypatch):
  monkeypatch.setattr(ownership, 'STALE_AFTER_S', 1.0)


def test_a_live_writer_on_another_machine_is_refused(tmp_path, short_watch):
  run_dir = str(tmp_path)
  record = _write_record(run_dir, **OTHER_MACHINE)
  with beating(run_dir, record):
    with pytest.raises(ownership.RunDirectoryBusyError,
                       match='pid 4242 on host other-host'):
      ownership.acquire(run_dir)
  assert ownership.read_record(run_dir)['pid'] == 4242


def test_a_still_record_of_another_machine_is_taken_after_the_watch(
    tmp_path, short_watch, warnings):
  # Its wall-clock heartbeat is fresh (or a skewed clock says so): only the
  # heartbeat standing still on this process's own clock counts.
  run_dir = str(tmp_path)
  _write_record(run_dir, **OTHER_MACHINE, heartbeat=time.time() + 3600)
  start = time.monotonic()
  owner = ownership.acquire(run_dir)
  assert time.monotonic() - start >= 1.0
  assert ownership.read_record(run_dir)['pid'] == os.getpid()
  owner.release()
  assert 'stood still for 1 s' in warnings.text


def test_take_over_flag_takes_a_foreign_record_at_once(tmp_path):
  run_dir = str(tmp_path)
  _write_record(run_dir, **OTHER_MACHINE)
  start = time.monotonic()
  owner = ownership.acquire(run_dir, take_over=True)
  assert time.monotonic() - start < ownership.STALE_AFTER_S
  assert ownership.read_record(run_dir)['pid'] == os.getpid()
  owner.release()


def test_a_renamed_host_finds_its_own_dead_run(tmp_path, warnings):
  """A container restarted under a new host name, same kernel: the pid
  decides, at once."""
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  run_dir = str(tmp_path)
  _write_record(run_dir, host='old-container-name', pid=dead.pid)
  with ownership.owned(run_dir):
    assert ownership.read_record(run_dir)['host'] == socket.gethostname()
  assert 'its process is gone' in warnings.text


def test_a_same_named_machine_is_not_judged_by_its_pid(tmp_path,
                                                       short_watch):
  """Another machine with this host name: its pid means nothing here."""
  run_dir = str(tmp_path)
  # pid 1 runs here, but the record's is another machine's pid 1.
  record = _write_record(run_dir, **{**OTHER_MACHINE, 'pid': 1,
                                     'host': socket.gethostname()})
  with beating(run_dir, record):
    with pytest.raises(ownership.RunDirectoryBusyError):
      ownership.acquire(run_dir)


@pytest.mark.parametrize('content, why', [
    (b'[]', 'holds []'),
    (b'null', 'holds null'),
    (b'{"host": "h", "token": "t"}', 'has no pid'),
    (b'{"host": "h", "token": "t", "pid": "12"}', "its pid is '12'"),
    (b'\xff\xfe{', 'not JSON'),
    (b'', 'not JSON'),
])
def test_a_malformed_record_is_one_line_and_take_over_clears_it(
    tmp_path, content, why):
  run_dir = str(tmp_path)
  (tmp_path / ownership.OWNER_FILE).write_bytes(content)
  with pytest.raises(ownership.MalformedRecordError) as error:
    ownership.acquire(run_dir)
  message = str(error.value)
  assert why in message and '--take_over' in message and '\n' not in message
  assert (tmp_path / ownership.OWNER_FILE).read_bytes() == content
  with ownership.owned(run_dir, take_over=True):
    assert ownership.read_record(run_dir)['pid'] == os.getpid()


def test_the_heartbeat_survives_an_error(tmp_path, monkeypatch, warnings):
  monkeypatch.setattr(ownership, 'HEARTBEAT_S', 0.05)
  real = ownership.read_record
  failures = []

  def flaky(run_dir):
    if not failures:
      failures.append(1)
      raise ValueError('injected')
    return real(run_dir)

  with ownership.owned(str(tmp_path)) as owner:
    monkeypatch.setattr(ownership, 'read_record', flaky)
    deadline = time.time() + 10
    while real(str(tmp_path)).get('beats', 0) < 2 and time.time() < deadline:
      time.sleep(0.02)
    monkeypatch.setattr(ownership, 'read_record', real)
    assert failures and real(str(tmp_path))['beats'] >= 2
    assert owner._thread.is_alive()
  assert 'injected' in warnings.text


def test_file_url_run_directories_take_the_lock(tmp_path):
  with ownership.owned(f'file://{tmp_path}'):
    assert (tmp_path / ownership.LOCK_FILE).exists()
    with pytest.raises(ownership.RunDirectoryBusyError):
      ownership.acquire(str(tmp_path))


def test_an_owner_taken_over_stops_at_its_next_check(tmp_path):
  run_dir = str(tmp_path)
  owner = ownership.acquire(run_dir)
  owner.confirm()  # Still ours: refreshes the heartbeat.
  assert ownership.read_record(run_dir)['heartbeat'] >= (
      owner.record['started'])
  usurper = _write_record(run_dir, host='other-host', pid=7,
                          boot_id='another-boot')
  with pytest.raises(ownership.OwnershipLostError,
                     match='taken over by pid 7 on host other-host'):
    owner.confirm()
  owner.release()
  assert ownership.read_record(run_dir) == usurper  # Not removed: not ours.


def test_heartbeat_refreshes_the_record_while_running(tmp_path, monkeypatch):
  monkeypatch.setattr(ownership, 'HEARTBEAT_S', 0.05)
  with ownership.owned(str(tmp_path)) as owner:
    first = ownership.read_record(str(tmp_path))['heartbeat']
    deadline = time.time() + 10
    while (ownership.read_record(str(tmp_path))['heartbeat'] == first
           and time.time() < deadline):
      time.sleep(0.02)
    assert ownership.read_record(str(tmp_path))['heartbeat'] > first
    owner.check()


def test_works_on_the_in_memory_filesystem():
  run_dir = f'ram://{uuid.uuid4().hex}/run'
  with ownership.owned(run_dir):
    assert tf.io.gfile.exists(f'{run_dir}/{ownership.OWNER_FILE}')
    with pytest.raises(ownership.RunDirectoryBusyError):
      ownership.acquire(run_dir)
  assert not tf.io.gfile.exists(f'{run_dir}/{ownership.OWNER_FILE}')


def test_unwritable_run_directory_is_one_clear_error(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(ownership.RunDirectoryNotWritableError,
                     match=r'Cannot write to the run directory .*a_file/run'):
    ownership.acquire(str(blocker / 'run'))


# A start of the race below: waits at a barrier (one file per process in
# argv[2]) until all argv[3] processes are there, prints when it reaches
# acquire (the monotonic clock is one for all processes), then tries.
# Its rename-without-overwrite checks, holds its check-to-rename window open
# for 1 + 0.25 x argv[4] s, then renames: what TensorFlow's local rename
# does (a check, then a rename), slowed so that without owner.lock every
# start passes the check and each reads back its own record before the next
# rename. The owner says how many renames it held open (none: the record is
# no longer written through tf.io.gfile.rename, and this race is not forced).
_RACER = textwrap.dedent('''
    import os, sys, time
    import tensorflow as tf
    from hypergan_tf.runtime import ownership
    run_dir, barrier, count, index = sys.argv[1:]
    real_rename = tf.io.gfile.rename
    held_open = []

    def slow_rename(src, dst, overwrite=False):
      if overwrite:
        return real_rename(src, dst, overwrite=True)
      if tf.io.gfile.exists(dst):
        raise tf.errors.AlreadyExistsError(None, None, f'{dst} exists')
      held_open.append(dst)
      time.sleep(1.0 + 0.25 * int(index))
      real_rename(src, dst, overwrite=True)

    tf.io.gfile.rename = slow_rename
    open(os.path.join(barrier, index), 'w').close()
    while len(os.listdir(barrier)) < int(count):
      time.sleep(0.001)
    print(time.monotonic(), flush=True)
    try:
      owner = ownership.acquire(run_dir)
    except ownership.RunDirectoryBusyError:
      print('refused', flush=True)
      sys.exit(0)
    print('owner', len(held_open), flush=True)
    sys.stdin.read()  # Holds it until the test has heard from all.
    owner.release()
''')


def test_concurrent_starts_on_one_host_have_exactly_one_winner(tmp_path):
  """Processes that try at the same instant: one owns, the rest are told.

  The race is real: they reach acquire within 0.5 s of each other, while
  each one's check-to-rename window stays open for at least 1 s.
  """
  run_dir, barrier = tmp_path / 'run', tmp_path / 'barrier'
  barrier.mkdir()
  count = 4
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'TF_CPP_MIN_LOG_LEVEL': '2'}
  processes = [subprocess.Popen(
      [sys.executable, '-c', _RACER, str(run_dir), str(barrier), str(count),
       str(i)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
      text=True) for i in range(count)]
  reached = [float(p.stdout.readline()) for p in processes]
  said = sorted(p.stdout.readline().split() for p in processes)
  for p in processes:
    p.communicate(timeout=120)
    assert p.returncode == 0
  assert max(reached) - min(reached) < 0.5, reached
  assert [words[0] for words in said] == ['owner', 'refused', 'refused',
                                          'refused']
  assert int(said[0][1]) >= 1  # Its record went through a held-open rename.
  assert ownership.read_record(str(run_dir)) is None

"""One writer per run directory: an owner record taken before training.

Two trainings in one run directory would interleave their checkpoints,
delete each other's files and mix their TensorBoard curves. So a training
run writes `owner.json` (host, pid, start time, command, heartbeat) into its
run directory before it writes anything else, refreshes the heartbeat while
it runs, and removes the record on every exit it lives through. A record
left by a run that died without removing it (SIGKILL, power loss) is taken
over:
  - on the same host, once its process is gone (pid no longer running);
  - from another host, once its heartbeat is older than `STALE_AFTER_S`,
    or at once when the user says so (`--take_over`).
Readers (evaluation, attacks, export, `hypergan_tf.load`) never take it.

Atomicity. Taking the record is check-then-rename through `tf.io.gfile`, so
it works on every TensorFlow filesystem. On local disk the check and the
rename run under an exclusive `flock` of `owner.lock`, so concurrent starts
on one host are decided exactly. Elsewhere it is as atomic as the
filesystem's rename without overwrite: `ram://` is one process anyway;
on object stores (`gs://`) rename is copy + delete, so two starts within
the same second on different hosts could both win; each re-reads the record
after writing it, which narrows that window but cannot close it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any, Iterator

from absl import logging
import tensorflow as tf

from hypergan_tf import rundir

OWNER_FILE = 'owner.json'
LOCK_FILE = 'owner.lock'  # Local disk only: serialises taking the record.
HEARTBEAT_S = 60.0  # How often a running owner refreshes its record.
# A record of another host whose heartbeat is this old belongs to a dead run.
STALE_AFTER_S = 600.0

_HELD: set[str] = set()  # Tokens of records this process holds now.


class RunDirectoryBusyError(RuntimeError):
  """Another live process owns the run directory."""


class OwnershipLostError(RuntimeError):
  """The run directory was taken over while this run was training."""


class RunDirectoryNotWritableError(RuntimeError):
  """The owner record cannot be written (permissions, full disk, ...)."""


def describe(record: dict[str, Any]) -> str:
  """'pid 123 on host h, started 2026-12-04 23:40:01 (command)'."""
  started = time.strftime('%Y-%m-%d %H:%M:%S',
                          time.localtime(record.get('started', 0)))
  return (f"pid {record.get('pid')} on host {record.get('host')}, started "
          f"{started} ({record.get('command')})")


def _process_start_ticks(pid: int) -> int | None:
  """When a process started, in clock ticks since boot (Linux), else None.

  Tells a recorded process from a later one that reuses its pid.
  """
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
  except (OSError, IndexError):
    return None
  if fields[0] in ('Z', 'X'):  # A zombie has finished running.
    return -1
  return int(fields[19])


def _is_running(record: dict[str, Any]) -> bool:
  """Whether the record's process (on this host) still runs."""
  pid = int(record['pid'])
  if pid == os.getpid():
    return record['token'] in _HELD
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Another user's process: it exists.
  started = _process_start_ticks(pid)
  recorded = record.get('process_start')
  if started == -1:
    return False
  return recorded is None or started is None or started == recorded


def takeover_reason(record: dict[str, Any], take_over: bool,
                    now: float | None = None) -> str | None:
  """Why a found record may be taken over, or None if its owner lives."""
  if take_over:
    return 'asked to by --take_over'
  if record.get('host') == socket.gethostname():
    return None if _is_running(record) else 'its process is gone'
  heartbeat = float(record.get('heartbeat', 0))
  age = (time.time() if now is None else now) - heartbeat
  if age > STALE_AFTER_S:
    return (f'no heartbeat for {age:.0f} s (stale after '
            f'{STALE_AFTER_S:.0f} s)')
  return None


def _is_local(path: str) -> bool:
  return '://' not in path


@contextlib.contextmanager
def _exclusive(run_dir: str) -> Iterator[None]:
  """Serialises owner-record changes of processes on this host (local disk)."""
  if not _is_local(run_dir):
    yield
    return
  with open(os.path.join(run_dir, LOCK_FILE), 'a') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
    yield


def read_record(run_dir: str) -> dict[str, Any] | None:
  """The run directory's owner record, or None if nobody owns it."""
  path = rundir.join(run_dir, OWNER_FILE)
  try:
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)
  except tf.errors.NotFoundError:
    return None
  except json.JSONDecodeError:  # Not a record of ours: treat it as stale.
    return {'host': None, 'pid': None, 'heartbeat': 0, 'token': None,
            'command': f'unreadable {path}'}


def _create(path: str, record: dict[str, Any]) -> bool:
  """Writes the record unless one exists; True if it did."""
  try:
    rundir.write_text(path, json.dumps(record, indent=2), overwrite=False)
  except tf.errors.AlreadyExistsError:
    return False
  return True


class Owner:
  """This process's ownership of a run directory: heartbeat and release."""

  def __init__(self, run_dir: str, record: dict[str, Any]):
    self.run_dir = run_dir
    self.record = record
    self.path = rundir.join(run_dir, OWNER_FILE)
    self.lost_to: dict[str, Any] | None = None
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat_forever, daemon=True,
                                    name='run-directory-heartbeat')
    _HELD.add(record['token'])
    self._thread.start()

  def _beat_forever(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      self.beat()

  def beat(self) -> None:
    """Refreshes the heartbeat if the record is still ours (else notes it).

    A heartbeat that cannot be written (a full disk) is only logged: the
    checkpoint write that follows says what is wrong.
    """
    with self._lock, _exclusive(self.run_dir):
      if self.lost_to is not None:
        return
      current = read_record(self.run_dir)
      if current is None or current.get('token') != self.record['token']:
        self.lost_to = current or {'command': 'removed by someone else'}
        return
      self.record = {**self.record, 'heartbeat': time.time()}
      try:
        rundir.write_text(self.path, json.dumps(self.record, indent=2))
      except (tf.errors.OpError, OSError) as e:
        logging.warning('Could not refresh %s: %s', self.path, e)

  def check(self) -> None:
    """Raises OwnershipLostError if a heartbeat found the record taken."""
    if self.lost_to is not None:
      who = (describe(self.lost_to) if 'pid' in self.lost_to
             else self.lost_to['command'])
      raise OwnershipLostError(
          f'{self.run_dir} was taken over by {who}; this run stopped '
          'without writing more. Let that run finish, or stop it and rerun '
          'this command with --take_over.')

  def confirm(self) -> None:
    """Refreshes the heartbeat now, and raises if the record is not ours."""
    self.beat()
    self.check()

  def release(self) -> None:
    """Stops the heartbeat and removes the record if it is still ours."""
    self._stop.set()
    self._thread.join()
    _HELD.discard(self.record['token'])
    try:
      with self._lock, _exclusive(self.run_dir):
        current = read_record(self.run_dir)
        if current and current.get('token') == self.record['token']:
          tf.io.gfile.remove(self.path)
    except (tf.errors.OpError, OSError) as e:
      logging.warning('Could not remove %s (%s); the next run on this host '
                      'takes it over.', self.path, e)


def new_record() -> dict[str, Any]:
  now = time.time()
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'process_start': _process_start_ticks(os.getpid()),
          'started': now, 'heartbeat': now,
          'command': ' '.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
                     if sys.argv and sys.argv[0] else 'python',
          'token': uuid.uuid4().hex}


def acquire(run_dir: str, take_over: bool = False) -> Owner:
  """Takes the run directory's owner record, or says who has it.

  Raises:
    RunDirectoryBusyError: a live process owns it (named in the message).
    RunDirectoryNotWritableError: the record cannot be written.
  """
  record = new_record()
  path = rundir.join(run_dir, OWNER_FILE)
  try:
    tf.io.gfile.makedirs(run_dir)
    with _exclusive(run_dir):
      for _ in range(3):  # Another start may take it between two looks.
        if _create(path, record):
          written = read_record(run_dir) or {}  # Not overwritten remotely?
          if written.get('token') == record['token']:
            return Owner(run_dir, record)
        current = read_record(run_dir)
        if current is None:
          continue  # Released meanwhile.
        reason = takeover_reason(current, take_over)
        if reason is None:
          raise RunDirectoryBusyError(
              f'{run_dir} is being trained by {describe(current)}. Wait for '
              'it to finish, stop it, or pick another --run_dir; if that '
              'process is dead on another host, rerun with --take_over.')
        logging.warning('Taking over %s from %s: %s.', run_dir,
                        describe(current), reason)
        with contextlib.suppress(tf.errors.NotFoundError):
          tf.io.gfile.remove(path)
  except (tf.errors.OpError, OSError) as e:
    raise RunDirectoryNotWritableError(
        f'Cannot write to the run directory {run_dir} ({e}). Free space, '
        'fix its permissions, or pick another --run_dir.') from e
  raise RunDirectoryBusyError(f'{run_dir}: another run keeps taking the '
                              'owner record; try again.')


@contextlib.contextmanager
def owned(run_dir: str, take_over: bool = False) -> Iterator[Owner]:
  """Holds the run directory's owner record for the duration of the block."""
  owner = acquire(run_dir, take_over)
  try:
    yield owner
  finally:
    owner.release()

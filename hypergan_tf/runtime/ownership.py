"""One writer per run directory: an owner record taken before training.

Two trainings in one run directory would interleave their checkpoints,
delete each other's files and mix their TensorBoard curves. So a training
run writes `owner.json` into its run directory before it writes anything
else, refreshes its heartbeat while it runs, confirms the record is still
its own before each checkpoint, and removes it on every exit it lives
through. The record names the writer by more than its host name: the
kernel's boot id and pid namespace, the pid and the process's start time,
so a renamed container finds its own dead run and two machines that share
a host name never mistake each other. A record left by a run that died
without removing it (SIGKILL, power loss) is taken over:
  - from the same boot and pid namespace, once its process is gone (the pid
    is not running, or runs a later process);
  - from anywhere else, once its heartbeat has not changed for
    `STALE_AFTER_S` on this process's own monotonic clock (no wall clocks
    are compared: machines' clocks may disagree), or at once when the user
    says so (`--take_over`).
A record that is not one of ours (malformed JSON, missing fields) stops
the start with one line; `--take_over` replaces it.
Readers (evaluation, attacks, export, `hypergan_tf.load`) never take it.

What each filesystem guarantees. Taking the record is check-then-rename
through `tf.io.gfile`. On local disk (plain paths and `file://`) the check
and the rename run under an exclusive `flock` of `owner.lock`, so
concurrent starts on one host are decided exactly (NFS: as exactly as its
lock daemon). `ram://` is one process anyway. On object stores (`gs://`)
rename is copy + delete, so two starts within the same second on different
hosts could both win; each re-reads the record after writing it, which
narrows that window but cannot close it, and the loser finds out at its
next heartbeat or checkpoint, before it writes one.
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

from hypergan_tf.runtime import rundir

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


class MalformedRecordError(RuntimeError):
  """owner.json is not an owner record; --take_over replaces it."""


def _read_first_line(path: str) -> str | None:
  try:
    with open(path) as f:
      return f.readline().strip() or None
  except OSError:
    return None


def _pid_namespace() -> str | None:
  try:
    return os.readlink('/proc/self/ns/pid')
  except OSError:
    return None


# Who this process is, beyond its host name (Linux; None elsewhere).
BOOT_ID = _read_first_line('/proc/sys/kernel/random/boot_id')
PID_NAMESPACE = _pid_namespace()


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


def _same_process_space(record: dict[str, Any]) -> bool:
  """Whether this process can see the record's pid: same boot, same pid
  namespace (records written before these were kept: same host name)."""
  if record.get('boot_id') is None or BOOT_ID is None:
    return record.get('host') == socket.gethostname()
  return (record['boot_id'] == BOOT_ID
          and record.get('pid_namespace') == PID_NAMESPACE)


def _is_running(record: dict[str, Any]) -> bool:
  """Whether the record's process (in this process space) still runs."""
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


def problem(record: dict[str, Any]) -> str | None:
  """What makes a found record unusable, or None if it is one of ours."""
  if record.get('unreadable'):
    return record['unreadable']
  missing = [k for k in ('pid', 'token', 'host') if record.get(k) is None]
  if missing:
    return f"it has no {', '.join(missing)}"
  if not isinstance(record['pid'], int) or isinstance(record['pid'], bool):
    return f"its pid is {record['pid']!r}"
  return None


def _signature(record: dict[str, Any] | None) -> tuple:
  """What changes while a record's writer lives."""
  if record is None:
    return (None,)
  return (record.get('token'), record.get('beats'), record.get('heartbeat'))


def watch(run_dir: str, record: dict[str, Any]) -> str | None:
  """Watches a record of another machine on this process's monotonic clock.

  Returns:
    Why it may be taken over (its heartbeat stood still for STALE_AFTER_S),
    or None if it changed (its writer lives) or went away.
  """
  logging.warning('%s is owned by %s on another machine; watching its '
                  'heartbeat for up to %.0f s before taking it over '
                  '(--take_over skips the wait).', run_dir, describe(record),
                  STALE_AFTER_S)
  start = last_report = time.monotonic()
  seen = _signature(record)
  while time.monotonic() - start < STALE_AFTER_S:
    time.sleep(min(5.0, STALE_AFTER_S / 10))
    if _signature(read_record(run_dir)) != seen:
      return None
    if time.monotonic() - last_report >= 60:
      last_report = time.monotonic()
      logging.info('Heartbeat of %s unchanged for %.0f s.', run_dir,
                   last_report - start)
  return f'its heartbeat stood still for {STALE_AFTER_S:.0f} s'


def takeover_reason(record: dict[str, Any], take_over: bool) -> str | None:
  """Why a record of this process space may be taken over, or None if its
  owner lives. Records of other machines need `watch`.

  Raises:
    MalformedRecordError: the record is not one of ours (unless take_over).
  """
  if take_over:
    return 'asked to by --take_over'
  wrong = problem(record)
  if wrong:
    raise MalformedRecordError(
        f'{OWNER_FILE} in this run directory is not an owner record '
        f'({wrong}). If no training runs there, rerun with --take_over.')
  return None if _is_running(record) else 'its process is gone'


@contextlib.contextmanager
def _exclusive(run_dir: str) -> Iterator[None]:
  """Serialises owner-record changes of processes on this host (local disk)."""
  local = rundir.local_path(run_dir)
  if local is None:
    yield
    return
  with open(os.path.join(local, LOCK_FILE), 'a') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
    yield


def read_record(run_dir: str) -> dict[str, Any] | None:
  """The run directory's owner record, or None if nobody owns it."""
  path = rundir.join(run_dir, OWNER_FILE)
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      record = json.loads(f.read())
  except tf.errors.NotFoundError:
    return None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    return {'unreadable': f'not JSON: {e}', 'command': f'unreadable {path}'}
  if not isinstance(record, dict):
    return {'unreadable': f'it holds {json.dumps(record)[:40]}',
            'command': f'unreadable {path}'}
  return record


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
    """Beats until released; an error is logged and the next beat tried."""
    while not self._stop.wait(HEARTBEAT_S):
      try:
        self.beat()
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('Heartbeat of %s failed (%s); trying again in '
                        '%.0f s.', self.path, e, HEARTBEAT_S)

  def beat(self) -> None:
    """Refreshes the heartbeat if the record is still ours (else notes it).

    A heartbeat that cannot be written (a full disk, a read-only directory)
    is only logged: the checkpoint write that follows says what is wrong.
    """
    try:
      with self._lock, _exclusive(self.run_dir):
        if self.lost_to is not None:
          return
        current = read_record(self.run_dir)
        if current is None or current.get('token') != self.record['token']:
          self.lost_to = current or {'command': 'removed by someone else'}
          return
        self.record = {**self.record, 'heartbeat': time.time(),
                       'beats': self.record.get('beats', 0) + 1}
        rundir.write_text(self.path, json.dumps(self.record, indent=2))
    except (tf.errors.OpError, OSError, rundir.WriteError) as e:
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
          'boot_id': BOOT_ID, 'pid_namespace': PID_NAMESPACE,
          'started': now, 'heartbeat': now, 'beats': 0,
          'command': ' '.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
                     if sys.argv and sys.argv[0] else 'python',
          'token': uuid.uuid4().hex}


def acquire(run_dir: str, take_over: bool = False) -> Owner:
  """Takes the run directory's owner record, or says who has it.

  Raises:
    RunDirectoryBusyError: a live process owns it (named in the message).
    MalformedRecordError: owner.json is not a record (without take_over).
    RunDirectoryNotWritableError: the record cannot be written.
  """
  record = new_record()
  path = rundir.join(run_dir, OWNER_FILE)
  try:
    tf.io.gfile.makedirs(run_dir)
    for _ in range(3):  # Another start may take it between two looks.
      with _exclusive(run_dir):
        if _create(path, record):
          written = read_record(run_dir) or {}  # Not overwritten remotely?
          if written.get('token') == record['token']:
            return Owner(run_dir, record)
        current = read_record(run_dir)
        if current is None:
          continue  # Released meanwhile.
        foreign = (not take_over and problem(current) is None
                   and not _same_process_space(current))
        reason = None if foreign else takeover_reason(current, take_over)
      if foreign:
        reason = watch(run_dir, current)
      if reason is None:
        if foreign and read_record(run_dir) is None:
          continue  # It finished while watched.
        raise RunDirectoryBusyError(
            f'{run_dir} is being trained by {describe(current)}. Wait for '
            'it to finish, stop it, or pick another --run_dir; if that '
            'process is dead on another machine, rerun with --take_over.')
      with _exclusive(run_dir):
        if _signature(read_record(run_dir)) != _signature(current):
          continue  # It changed meanwhile: look again.
        logging.warning('Taking over %s from %s: %s.', run_dir,
                        describe(current), reason)
        with contextlib.suppress(tf.errors.NotFoundError):
          tf.io.gfile.remove(path)
  except (tf.errors.OpError, OSError, rundir.WriteError) as e:
    raise RunDirectoryNotWritableError(
        f'Cannot write to the run directory {run_dir} '
        f'({rundir.first_line(e)}). Free space, fix its permissions, or '
        'pick another --run_dir.') from e
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

"""Checkpoints that survive a kill, a full disk and a damaged index file.

A run's checkpoints are `ckpt-<step>.index` + `ckpt-<step>.data-*` files and
the index file `checkpoint` that names the latest. TensorFlow's
CheckpointManager writes a new checkpoint's files, then the index, then
deletes the oldest, so a kill or a full disk during a save costs at most
that save. Three things around it could still lose a run, and this module
closes them:

- Saving a step again (at the end of training, on SIGTERM) would rewrite
  files that are the latest checkpoint: a kill in between left none. A step
  that is already recorded and complete is never written again.
- A damaged index (empty, unparsable, naming missing files) made TensorFlow
  report no checkpoint at all, so training silently started over.
  `newest` falls back to the newest complete checkpoint on disk and says
  why; `restore_newest` tries them newest first.
- Files reach the disk in order: after a save the data and `.index` files
  are fsynced before the index file is rewritten and fsynced (local disk).
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Iterable

from absl import logging
import tensorflow as tf

from hypergan_tf.runtime import rundir

INDEX_FILE = 'checkpoint'  # TensorFlow's name for the list of checkpoints.
_NUMBERED = re.compile(r'ckpt-(\d+)\.index')


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written; the previous one is intact."""


class CheckpointRestoreError(RuntimeError):
  """No checkpoint of the run can be restored into this model."""


def number(path: str) -> int:
  """The step of 'dir/ckpt-<step>'."""
  return int(path.rsplit('-', 1)[1])


def recorded(directory: str) -> tuple[str | None, list[str], str | None]:
  """(latest, all listed, what is wrong) as the index file says.

  Paths are joined to the directory. Never raises: a missing, empty or
  unparsable index file gives (None, [], why).
  """
  path = rundir.join(directory, INDEX_FILE)
  try:
    with tf.io.gfile.GFile(path) as f:
      text = f.read()
  except tf.errors.NotFoundError:
    return None, [], f'{path} does not exist'
  except (tf.errors.OpError, OSError, UnicodeDecodeError) as e:
    return None, [], f'{path} cannot be read ({e})'
  latest = re.search(r'^model_checkpoint_path: "([^"]+)"', text, re.M)
  if latest is None:
    return None, [], f'{path} is empty or damaged'
  listed = re.findall(r'^all_model_checkpoint_paths: "([^"]+)"', text, re.M)
  absolute = lambda p: p if p.startswith('/') or '://' in p else rundir.join(
      directory, p)
  return absolute(latest.group(1)), [absolute(p) for p in listed], None


def is_complete(prefix: str) -> bool:
  """Whether a checkpoint's .index and every data shard it names exist."""
  try:
    if not tf.io.gfile.exists(f'{prefix}.index'):
      return False
    shards = tf.io.gfile.glob(f'{prefix}.data-*-of-*')
    if not shards:
      return False
    total = int(shards[0].rsplit('-of-', 1)[1])
    return len(shards) == total
  except (tf.errors.OpError, OSError, ValueError):
    return False


def complete_on_disk(directory: str) -> list[str]:
  """Prefixes of the complete checkpoints in directory, newest first."""
  try:
    names = tf.io.gfile.listdir(directory)
  except tf.errors.NotFoundError:
    return []
  numbers = sorted((int(m.group(1)) for m in map(_NUMBERED.fullmatch, names)
                    if m), reverse=True)
  prefixes = [rundir.join(directory, f'ckpt-{n}') for n in numbers]
  return [p for p in prefixes if is_complete(p)]


def candidates(directory: str) -> tuple[list[str], str | None]:
  """Checkpoints to restore, best first, and why not the recorded latest.

  The recorded latest comes first when it is complete and the newest;
  otherwise the newest complete checkpoint, with the reason (damaged index,
  missing files) for the caller to log.
  """
  latest, _, wrong = recorded(directory)
  found = complete_on_disk(directory)
  if latest is not None and latest in found:
    if found[0] == latest:
      return found, None
    wrong = (f'{found[0]} is complete and newer than {latest}, the latest '
             'the index file names')
  elif latest is not None:
    wrong = f'the index file names {latest}, whose files are missing'
  if not found:
    return [], None
  return found, wrong


def newest(directory: str) -> str | None:
  """The newest complete checkpoint (readers: nothing is written)."""
  found, wrong = candidates(directory)
  if found and wrong:
    logging.warning('Reading %s: %s.', found[0], wrong)
  return found[0] if found else None


def selected(run_dir: str) -> str | None:
  """The checkpoint a run reports: chosen on validation, else the newest."""
  checkpoints = rundir.join(run_dir, rundir.CHECKPOINT_DIR)
  return (newest(rundir.join(checkpoints, rundir.BEST_DIR))
          or newest(checkpoints))


def restore(checkpoint: tf.train.Checkpoint, path: str | None,
            partial: bool = False) -> bool:
  """Restores path into checkpoint; False if path is None.

  Args:
    partial: the checkpoint holds more than `checkpoint` asks for (an
      inference model restored from a training checkpoint); skips the
      warnings about unused values.

  Raises:
    CheckpointRestoreError: the checkpoint is truncated or of another model.
  """
  if path is None:
    return False
  try:
    status = checkpoint.restore(path)
    if partial:
      status.expect_partial()
    status.assert_existing_objects_matched()
  except Exception as e:  # Truncated files raise IndexError, others vary.
    raise CheckpointRestoreError(
        f'Checkpoint {path} cannot be restored into this model ({e}). It is '
        'corrupt or was written with other flags; use the original flags or '
        'a fresh --run_dir.') from e
  return True


def restore_newest(checkpoint: tf.train.Checkpoint, directory: str,
                   partial: bool = False) -> str | None:
  """Restores the newest checkpoint that restores; its path, or None.

  A damaged newest one (truncated by a full disk, say) is skipped with a
  warning for the next older one: resuming a few steps back beats
  starting over.

  Raises:
    CheckpointRestoreError: checkpoints exist and none restores (another
      model's, or all damaged); the message names the newest.
  """
  found, wrong = candidates(directory)
  first_error = None
  for path in found:
    try:
      restore(checkpoint, path, partial)
    except CheckpointRestoreError as e:
      first_error = first_error or e
      logging.warning('Skipping %s: %s.', path, str(e).split(' (', 1)[0])
      wrong = f'the newer {path} cannot be restored'
      continue
    if wrong:
      logging.warning('Resuming from %s, the newest complete checkpoint: '
                      '%s.', path, wrong)
    return path
  if first_error is not None:
    raise first_error
  return None


def record(directory: str, latest: str, older: Iterable[str]) -> None:
  """Rewrites the index file (fsynced, atomic): older ones, then latest.

  Each gets its file's time, as the manager records it: a checkpoint listed
  without one would be kept forever.
  """
  paths = [*older, latest]
  names = [p.rsplit('/', 1)[-1] for p in paths]
  times = [tf.io.gfile.stat(f'{p}.index').mtime_nsec / 1e9 for p in paths]
  rundir.write_text(rundir.join(directory, INDEX_FILE), ''.join(
      [f'model_checkpoint_path: "{names[-1]}"\n',
       *(f'all_model_checkpoint_paths: "{n}"\n' for n in names),
       *(f'all_model_checkpoint_timestamps: {t}\n' for t in times)]))


def repair_index(directory: str, resumed_from: str | None = None) -> None:
  """Makes the index file name the checkpoint a run resumed from.

  Called before a CheckpointManager reads the index (it fails on an empty
  one), so that it keeps (and later deletes) the older complete checkpoints
  instead of forgetting them, and saves newer steps over damaged ones.

  Args:
    resumed_from: the checkpoint restored (default: the newest complete).
  """
  resumed_from = resumed_from or newest(directory)
  latest, _, wrong = recorded(directory)
  index = rundir.join(directory, INDEX_FILE)
  if resumed_from is None:
    if wrong and tf.io.gfile.exists(index):  # Damaged, naming nothing.
      tf.io.gfile.remove(index)
      logging.warning('Removed %s: %s, and no checkpoint is complete.',
                      index, wrong)
    return
  if latest == resumed_from and wrong is None:
    return
  older = [p for p in complete_on_disk(directory)
           if number(p) < number(resumed_from)]
  record(directory, resumed_from, reversed(older))
  logging.info('Rewrote %s to name %s.', index, resumed_from)


def _remove_files(directory: str, step: int) -> None:
  """Removes the files of checkpoint `step`, complete or half-written."""
  for path in tf.io.gfile.glob(rundir.join(directory, f'ckpt-{step}.*')):
    tf.io.gfile.remove(path)
  for path in tf.io.gfile.glob(rundir.join(directory, f'ckpt-{step}_temp*')):
    tf.io.gfile.rmtree(path)


def save(manager: tf.train.CheckpointManager, step: int) -> str:
  """Saves checkpoint `step`; never loses the previous complete one.

  A step already recorded with complete files is not written again (its
  weights are the same: only the step's wall time would change). Leftovers
  of an unrecorded save of this step (a kill, a full disk) are removed
  first: no filesystem appends to them then.

  Raises:
    CheckpointWriteError: the write failed (full disk, permissions, ...),
      in one line naming the checkpoint that is still intact.
  """
  directory = manager.directory
  prefix = rundir.join(directory, f'ckpt-{step}')
  latest, listed, _ = recorded(directory)
  if prefix in listed + [latest] and is_complete(prefix):
    return prefix
  try:
    _remove_files(directory, step)
    path = manager.save(checkpoint_number=step)
    _sync(path, directory)
    return path
  except (tf.errors.OpError, OSError) as e:
    latest, listed, _ = recorded(directory)
    if prefix not in listed + [latest]:  # Else it was written after all.
      with contextlib.suppress(tf.errors.OpError, OSError):
        _remove_files(directory, step)
    intact = newest(directory)
    kept = (f'The previous checkpoint, {intact}, is intact' if intact
            else 'No earlier checkpoint exists')
    raise CheckpointWriteError(
        f'Could not write checkpoint {step} to {directory} '
        f'({rundir.first_line(e)}). {kept}; free space or fix the '
        'directory, then rerun the same command to resume.') from e


def _sync(prefix: str, directory: str) -> None:
  """Local disk: the checkpoint's files reach the disk before its record.

  The manager renamed the index file into place already; it is written
  again, fsynced, after the data it names.
  """
  local = rundir.local_path(directory)
  if local is None:
    return
  for path in tf.io.gfile.glob(f'{prefix}.*'):
    rundir.fsync(path)
  with open(rundir.join(local, INDEX_FILE)) as f:
    rundir.write_text(rundir.join(directory, INDEX_FILE), f.read())


def all_finite(variables: Iterable[tf.Variable]) -> bool:
  return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables)


def save_if_finite(manager: tf.train.CheckpointManager | None,
                   step: tf.Variable, wall_time: tf.Variable, variables,
                   clock: float | None = None) -> str | None:
  """Saves a checkpoint numbered by step, unless variables are not finite.

  Args:
    clock: time.time() at which this run would have started had it never
      stopped; sets the run's recorded wall time.

  Returns:
    The checkpoint path, or None (no manager, or broken weights: the last
    good checkpoint stays the latest).
  """
  if manager is None:
    return None
  if clock is not None:
    wall_time.assign(time.time() - clock)
  if not all_finite(variables):
    logging.error('Not saving step %d: weights are not finite.',
                  int(step.numpy()))
    return None
  return save(manager, int(step.numpy()))

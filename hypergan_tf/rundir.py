"""Run directories: config and results files, and checkpoints, on any filesystem.

Everything goes through `tf.io.gfile` and `tf.train`, so a run directory can
be local, on a bucket (`gs://...`) or in TensorFlow's in-memory filesystem
(`ram://...`). A run directory holds:

    config.json         the flags of the run (written before training)
    results.json        written when the run reaches its --steps
    checkpoints/        the latest checkpoints (full training state)
    checkpoints/best/   the networks chosen on validation (if any)
    summaries/          TensorBoard events
    owner.json          the training that writes it now (`ownership`)
    owner.lock          local disk: serialises taking owner.json
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import time
from typing import Any, Iterable

from absl import logging
import tensorflow as tf

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'  # Written when a run reaches its --steps.
CHECKPOINT_DIR = 'checkpoints'
BEST_DIR = 'best'  # Under checkpoints/: the step chosen on validation.
SUMMARY_DIR = 'summaries'  # TensorBoard events.


def join(*parts: str) -> str:
  """Joins path parts with '/', which every TensorFlow filesystem takes."""
  return posixpath.join(*parts)


def write_text(path: str, text: str, overwrite: bool = True) -> None:
  """Writes a file atomically (temp file + rename): never half-written.

  Filesystems without an atomic rename (object stores) still never show a
  half-written file under `path`: the temp file is renamed when complete.

  Raises:
    tf.errors.AlreadyExistsError: overwrite is False and path exists (as
      atomic as the filesystem's rename without overwrite).
  """
  directory, name = posixpath.split(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  # Not '<path>.tmp': ram:// finds a file "existing" if a name extends it.
  tmp = join(directory, f'.{name}.tmp-{time.time_ns()}')
  with tf.io.gfile.GFile(tmp, 'w') as f:
    f.write(text)
  try:
    tf.io.gfile.rename(tmp, path, overwrite=overwrite)
  except tf.errors.AlreadyExistsError:
    tf.io.gfile.remove(tmp)
    raise


def write_bytes(path: str, payload: bytes) -> None:
  """Writes a binary file (a PNG, an .npz) on any TensorFlow filesystem."""
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(payload)


def write_json(path: str, payload: dict[str, Any]) -> None:
  """Writes JSON atomically (see `write_text`)."""
  write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def read_json(path: str) -> dict[str, Any]:
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def read_config(run_dir: str, made_by: str = 'scripts/train.py'
                ) -> dict[str, Any]:
  """The flags a run was trained with.

  Raises:
    FileNotFoundError: run_dir is not a run directory.
  """
  path = join(run_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found: {run_dir!r} is not a run '
                            f'directory of {made_by}.')
  return read_json(path)


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


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written; the previous one is intact."""


def _remove_checkpoint_files(directory: str, number: int) -> None:
  """Removes the files of checkpoint `number`, complete or half-written."""
  for path in tf.io.gfile.glob(join(directory, f'ckpt-{number}.*')):
    tf.io.gfile.remove(path)
  for path in tf.io.gfile.glob(join(directory, f'ckpt-{number}_temp*')):
    tf.io.gfile.rmtree(path)


def save(manager: tf.train.CheckpointManager, number: int) -> str:
  """Saves checkpoint `number`; a failed write leaves the previous latest.

  The manager names a new checkpoint latest only once its files are
  complete, so a full disk or an unwritable directory costs only the new
  one, whose partial files are removed.

  Raises:
    CheckpointWriteError: the write failed (full disk, permissions, ...),
      in one line naming the checkpoint that is still intact.
  """
  try:
    # Saving a step again (e.g. to record the final wall time) rewrites its
    # files; some filesystems (ram://) append to an existing file instead.
    _remove_checkpoint_files(manager.directory, number)
    return manager.save(checkpoint_number=number)
  except (tf.errors.OpError, OSError) as e:
    reason = re.sub(r'\{\{.*?\}\}\s*|\s*\[Op:\w+\]', '',
                    str(getattr(e, 'message', e))).strip().splitlines()[0]
    with contextlib.suppress(tf.errors.OpError, OSError):
      _remove_checkpoint_files(manager.directory, number)
    previous = tf.train.latest_checkpoint(manager.directory)
    raise CheckpointWriteError(
        f'Could not write checkpoint {number} to {manager.directory} '
        f'({reason}). The previous checkpoint, {previous}, is intact; free '
        'space or fix the directory, then rerun the same command to '
        'resume.') from e


def restore(checkpoint: tf.train.Checkpoint, path: str | None,
            partial: bool = False) -> bool:
  """Restores path into checkpoint; False if path is None.

  Args:
    partial: the checkpoint holds more than `checkpoint` asks for (an
      inference model restored from a training checkpoint); skips the
      warnings about unused values.

  Raises:
    RuntimeError: the checkpoint is truncated or of another model.
  """
  if path is None:
    return False
  try:
    status = checkpoint.restore(path)
    if partial:
      status.expect_partial()
    status.assert_existing_objects_matched()
  except Exception as e:  # Truncated files raise IndexError, others vary.
    raise RuntimeError(
        f'Checkpoint {path} cannot be restored into this model ({e}). It is '
        'corrupt or was written with other flags; use the original flags or '
        'a fresh --run_dir.') from e
  return True


def selected_checkpoint(run_dir: str) -> str | None:
  """The checkpoint a run reports: chosen on validation, else the latest."""
  return (tf.train.latest_checkpoint(join(run_dir, CHECKPOINT_DIR, BEST_DIR))
          or tf.train.latest_checkpoint(join(run_dir, CHECKPOINT_DIR)))


def read_scalars(run_dir: str, pattern: str) -> dict[str, tuple[list, list]]:
  """The TensorBoard scalars of a run whose tag matches a regex.

  Returns:
    {tag: (steps, values)}, in step order; a later write of a step (a
    resumed run repeating it) replaces the earlier one. Later is by the
    events' wall time: file names do not order writers of the same second
    (their last field is a per-process counter, '10' before '9').
  """
  matcher = re.compile(pattern)
  points: dict[str, dict[int, tuple[float, float]]] = {}
  for path in tf.io.gfile.glob(join(run_dir, SUMMARY_DIR, 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if not (matcher.fullmatch(value.tag) and value.HasField('tensor')):
          continue
        array = tf.make_ndarray(value.tensor)
        if array.ndim == 0:  # Not a histogram or image under a matching tag.
          steps = points.setdefault(value.tag, {})
          written = (event.wall_time, float(array))
          steps[event.step] = max(steps.get(event.step, written), written)
  return {tag: (sorted(steps), [steps[s][1] for s in sorted(steps)])
          for tag, steps in points.items()}

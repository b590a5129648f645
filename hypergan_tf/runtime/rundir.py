"""Run directories: config, results and event files, on any filesystem.

Everything goes through `tf.io.gfile`, so a run directory can
be local, on a bucket (`gs://...`) or in TensorFlow's in-memory filesystem
(`ram://...`). A run directory holds:

    config.json         the flags of the run (written before training)
    results.json        written when the run reaches its --steps
    checkpoints/        the latest checkpoints (full training state;
                        written and found by `checkpoints`)
    checkpoints/best/   the networks chosen on validation (if any)
    summaries/          TensorBoard events
    owner.json          the training that writes it now (`ownership`)
    owner.lock          local disk: serialises taking owner.json
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import time
from typing import Any, Iterator

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


class WriteError(RuntimeError):
  """A file of the run directory could not be written (full disk, ...)."""


def first_line(error: Exception) -> str:
  """One line of an OSError (with its file) or a TensorFlow error (without
  the op decorations)."""
  if isinstance(error, OSError) and error.filename and error.strerror:
    return f'{error.strerror}: {error.filename}'
  text = re.sub(r'\{\{.*?\}\}\s*|\s*\[Op:\w+\]', '',
                str(getattr(error, 'message', None) or error)).strip()
  return (text.splitlines() or [type(error).__name__])[0]


def local_path(path: str) -> str | None:
  """The path on local disk (plain or file://), else None (gs://, ram://)."""
  if path.startswith('file://'):
    return path[len('file://'):]
  return None if '://' in path else path


def fsync(path: str) -> None:
  """Local disk: flushes a file (or a directory's entries) to the disk."""
  local = local_path(path)
  if local is None:
    return
  fd = os.open(local, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def write_text(path: str, text: str, overwrite: bool = True) -> None:
  """Writes a file atomically (temp file + rename): never half-written.

  On local disk the file is fsynced before the rename and the directory
  after it, so a power loss leaves the old file or the new one. Filesystems
  without an atomic rename (object stores) still never show a half-written
  file under `path`: the temp file is renamed when complete. A failed write
  removes its temp file.

  Raises:
    tf.errors.AlreadyExistsError: overwrite is False and path exists (as
      atomic as the filesystem's rename without overwrite).
    WriteError: the file cannot be written; one line naming it.
  """
  directory, name = posixpath.split(path)
  # Not '<path>.tmp': ram:// finds a file "existing" if a name extends it.
  tmp = join(directory, f'.{name}.tmp-{time.time_ns()}')
  try:
    if directory:
      tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(tmp, 'w') as f:
      f.write(text)
    fsync(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=overwrite)
    fsync(directory or '.')
  except tf.errors.AlreadyExistsError:
    _remove_quietly(tmp)
    raise
  except (tf.errors.OpError, OSError) as e:
    _remove_quietly(tmp)
    raise WriteError(f'Could not write {path} ({first_line(e)}). Free '
                     'space or fix the permissions of its directory, then '
                     'rerun the same command.') from e


def _remove_quietly(path: str) -> None:
  with contextlib.suppress(tf.errors.OpError, OSError):
    tf.io.gfile.remove(path)


def write_bytes(path: str, payload: bytes) -> None:
  """Writes a binary file (a PNG, an .npz) on any TensorFlow filesystem.

  Raises:
    WriteError: the file cannot be written; one line naming it.
  """
  try:
    with tf.io.gfile.GFile(path, 'wb') as f:
      f.write(payload)
  except (tf.errors.OpError, OSError) as e:
    _remove_quietly(path)
    raise WriteError(f'Could not write {path} ({first_line(e)}). Free '
                     'space or fix the permissions of its directory, or '
                     'write elsewhere.') from e


def write_json(path: str, payload: dict[str, Any]) -> None:
  """Writes JSON atomically (see `write_text`)."""
  write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def read_json(path: str) -> Any:
  """A JSON file's value.

  Raises:
    ValueError: the file is not valid JSON (truncated, say), naming it.
  """
  with tf.io.gfile.GFile(path, 'rb') as f:
    raw = f.read()
  try:
    return json.loads(raw)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'{path} is not valid JSON ({e}): it was cut off or '
                     'edited. Restore it, or remove it and rerun the command '
                     'that writes it.') from None


def writable_dir(path: str, flag: str) -> str:
  """Makes an output directory, or says in one line how to choose another.

  Raises:
    WriteError: path cannot be created or written, naming `flag`.
  """
  probe = join(path, f'.write-test-{time.time_ns()}')
  try:
    tf.io.gfile.makedirs(path)
    with tf.io.gfile.GFile(probe, 'w') as f:
      f.write('')
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    _remove_quietly(probe)
    raise WriteError(f'Cannot write into {path} ({first_line(e)}); pass '
                     f'{flag}=<a writable directory>.') from e
  return path


def read_config(run_dir: str, made_by: str = 'scripts/train.py'
                ) -> dict[str, Any]:
  """The flags a run was trained with.

  Raises:
    FileNotFoundError: run_dir is not a run directory.
    ValueError: its config.json is damaged, naming it.
  """
  path = join(run_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found: {run_dir!r} is not a run '
                            f'directory of {made_by}.')
  config = read_json(path)
  if not isinstance(config, dict):
    raise ValueError(f'{path} holds no flags: it was edited. Restore it, or '
                     'rerun the training command with the original flags.')
  return config


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
    for event in _events(path):
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


def _events(path: str) -> Iterator[Any]:
  """The events of one file; a cut-off last record (a live writer, a full
  disk) ends it with a log line instead of an error."""
  try:
    yield from tf.compat.v1.train.summary_iterator(path)
  except tf.errors.DataLossError as e:
    logging.warning('Skipping the rest of %s: %s', path, first_line(e))

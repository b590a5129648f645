"""The one training loop every method runs: HyperGAN and the baselines alike.

A method plugs in as a `Learner`: it builds its model and optimizers, takes a
training step, evaluates N members on a dataset and names its checkpoint
objects. The loop does everything else the same way for all of them: data
(resumed at the batch the step would see, augmentation, validation split),
checkpoints (numbered by step, never of broken weights, the validation
choice in checkpoints/best), periodic evaluation, TensorBoard summaries,
progress lines, SIGTERM and NaN handling, and the final results.json.
Under a multi-worker cluster a signal to any worker stops them all, after a
checkpoint at one common step (`preemption_handler`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Protocol

from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import evaluation
from hypergan_tf.runtime import checkpoints as checkpoints_lib
from hypergan_tf.runtime import ownership
from hypergan_tf.runtime import rundir


# Evaluation members are drawn with --seed + this: a stream apart from training.
EVAL_SEED_OFFSET = 1_000_003


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or Inf; the last good checkpoint is left untouched."""


class Preempted(KeyboardInterrupt):
  """A signal to one worker of a cluster stopped all, saved at one step.

  The message is the signal's name, as for KeyboardInterrupt('SIGTERM'), so
  `script_errors` ends the script the same way on every worker.
  """


class Learner(Protocol):
  """What a method gives the loop.

  Attributes:
    cfg: its config; the loop reads the fields every config has (run_dir,
      dataset, data_dir, download, seed, steps, augment, validation_size,
      log_every, eval_every, checkpoint_every, keep_checkpoints,
      take_over).
    strategy: the tf.distribute strategy it was built under.
    chief: whether this process writes files.
    step, wall_time, best_score: checkpointed counters.
    checkpoint: the whole training state.
    model_checkpoint: step + what inference needs (the validation choice).
    examples_per_step: size of a training batch.
    eval_members, final_eval_members: members evaluated periodically / at
      the end.
    variables: the trained variables (checked for finiteness, fingerprinted).
  """
  cfg: Any
  strategy: tf.distribute.Strategy
  chief: bool
  step: tf.Variable
  wall_time: tf.Variable
  best_score: tf.Variable
  checkpoint: tf.train.Checkpoint
  model_checkpoint: tf.train.Checkpoint
  examples_per_step: int
  eval_members: int
  final_eval_members: int
  variables: list[tf.Variable]

  def prepare(self) -> dict[str, Any]:
    """Work before the first step (e.g. mixer pre-training); results."""

  def train_step(self, images, labels) -> dict[str, float]:
    """One update on a (distributed) batch; the step's losses."""

  def member_outputs(self, dataset: Iterable, num_members: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Outputs [N, B, C] of N evaluation members over a dataset, labels [B]."""

  def learning_rate(self) -> float:
    """The current learning rate, for progress lines."""

  def write_summaries(self, step: int) -> None:
    """Method-specific TensorBoard summaries at evaluation time."""

  def describe(self) -> dict[str, Any]:
    """Facts for results.json (sizes of the model, ...)."""


class Checkpoints:
  """The loop's checkpoint managers for one learner in its run directory."""

  def __init__(self, learner: Learner,
               owner: ownership.Owner | None = None):
    cfg = learner.cfg
    self.learner = learner
    self.owner = owner  # The chief's hold on the run directory.
    # Every worker resumes from the run directory's checkpoints (shared by a
    # cluster) so all start at the same step with the same weights.
    self.shared = rundir.join(cfg.run_dir, rundir.CHECKPOINT_DIR)
    # Every worker saves (saving is collective); only the chief's count.
    self.directory = (self.shared if learner.chief
                      else tempfile.mkdtemp(prefix='hypergan_worker_'))
    self.resumed_from = checkpoints_lib.restore_newest(learner.checkpoint,
                                                       self.shared)
    best_directory = rundir.join(self.directory, rundir.BEST_DIR)
    if learner.chief:  # Before the managers read the index files.
      checkpoints_lib.repair_index(self.shared, self.resumed_from)
      checkpoints_lib.repair_index(best_directory)
    self.latest = tf.train.CheckpointManager(
        learner.checkpoint, self.directory,
        max_to_keep=cfg.keep_checkpoints)
    self.best = None
    if cfg.validation_size:
      self.best = tf.train.CheckpointManager(
          learner.model_checkpoint, best_directory, max_to_keep=1)

  def restored(self) -> bool:
    """Whether the run resumed from a checkpoint (restored on creation).

    The newest complete one: a damaged index file or newest checkpoint
    falls back to the next with a warning, never to step 0.
    """
    if self.resumed_from:
      logging.info('Resumed from %s at step %d.', self.resumed_from,
                   int(self.learner.step.numpy()))
    return self.resumed_from is not None

  def save(self, clock: float | None = None) -> str | None:
    """Saves the latest state unless the weights are broken."""
    if self.owner:
      self.owner.confirm()
    learner = self.learner
    return checkpoints_lib.save_if_finite(self.latest, learner.step,
                                 learner.wall_time, learner.variables, clock)

  def save_if_best(self, score: float) -> bool:
    """Keeps the model as the validation choice if score is the best yet."""
    learner = self.learner
    if self.best is None or score <= float(learner.best_score.numpy()):
      return False
    if self.owner:
      self.owner.confirm()
    learner.best_score.assign(score)
    checkpoints_lib.save(self.best, int(learner.step.numpy()))
    return True

  def restore_selected(self) -> int:
    """Restores the validation choice, if any; returns its step."""
    chosen = self.best and checkpoints_lib.newest(self.best.directory)
    if chosen:
      # Partial: a checkpoint object that never saved lacks save_counter.
      checkpoints_lib.restore(self.learner.model_checkpoint, chosen,
                              partial=True)
    return int(self.learner.step.numpy())

  def remove_if_worker(self) -> None:
    """Non-chief checkpoints only took part in the collective saves."""
    if not self.learner.chief:
      shutil.rmtree(self.directory, ignore_errors=True)


def selection_score(result: dict[str, float], split: str,
                    num_members: int) -> float:
  """Higher is better: ensemble accuracy, or minus its squared error."""
  accuracy = result.get(f'{split}/accuracy_n{num_members}')
  if accuracy is not None:
    return accuracy
  return -result[f'{split}/mse_n{num_members}']


@contextlib.contextmanager
def signal_handler(handler: Callable, signums: Iterable[int]
                   ) -> Iterator[None]:
  """Installs a handler for the signals, then restores the previous ones.

  Outside the main thread (where Python allows no handlers) it leaves
  signals alone.
  """
  try:
    previous = {s: signal.signal(s, handler) for s in signums}
  except ValueError:
    yield
    return
  try:
    yield
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)


# Exit codes of a run stopped by Ctrl-C / SIGTERM after saving (128 + signal).
INTERRUPTED = (128 + signal.SIGINT, 128 + signal.SIGTERM)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  """Whether training spans processes, so one must not stop alone."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and resolver is not None and bool(resolver.cluster_spec().jobs))


class RecordedSignals:
  """SIGINT and SIGTERM, recorded for the preemption handler to poll.

  A worker of a cluster that stopped by itself would leave its peers waiting
  in a collective forever, so a signal only sets a flag.
  """

  def __init__(self):
    self.received: list[int] = []
    self.polled = threading.Event()  # The handler is watching.

  def record(self, signum, frame) -> None:
    del frame
    self.received.append(signum)

  def arrived(self) -> bool:
    """The handler's termination watcher (it calls this every second)."""
    self.polled.set()
    return bool(self.received)

  def name(self) -> str:
    """The first signal's name; peers of the worker that got it: SIGTERM."""
    return signal.Signals(self.received[0] if self.received
                          else signal.SIGTERM).name


@contextlib.contextmanager
def recorded_signals(signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM)
                     ) -> Iterator[RecordedSignals]:
  """Records the signals instead of raising, then restores their handlers."""
  signals = RecordedSignals()
  with signal_handler(signals.record, signums):
    yield signals


@contextlib.contextmanager
def sigterm_between_steps() -> Iterator[Callable[[Callable], Any]]:
  """Yields how to run a step so that SIGTERM stops the loop between two.

  The handler only records the signal: an exception raised wherever it
  lands (half way through a checkpoint write, say) is the likely cause of
  one run that died with SIGSEGV instead of saving. KeyboardInterrupt('SIGTERM') comes before the
  next step, so the loop saves weights whose losses it has checked, or on
  exit if the signal came after the last step (the checkpoint is saved then).
  """
  with recorded_signals((signal.SIGTERM,)) as signals:
    def stop_if_signalled():
      if signals.received:
        raise KeyboardInterrupt(signals.name())

    def run_step(step_fn):
      stop_if_signalled()
      return step_fn()

    yield run_step
    stop_if_signalled()


def preemption_handler(
    learner: Learner, checkpoints: Checkpoints, clock: float,
    signals: RecordedSignals
) -> tf.distribute.experimental.PreemptionCheckpointHandler:
  """Saves every worker at one step once any got a signal, then stops them.

  The worker that got the signal names the step (its next one) through the
  cluster's coordination service; all save there with the loop's own save
  (numbered by step, never broken weights) and raise `Preempted`.
  """
  def save():
    logging.warning('Interrupted at step %d; saving a checkpoint on every '
                    'worker.', int(learner.step.numpy()))
    checkpoints.save(clock)

  def stop():
    raise Preempted(signals.name())

  config = tf.distribute.experimental.TerminationConfig(
      termination_watcher_fn=signals.arrived, exit_fn=stop, save_fn=save,
      grace_period=0)  # Else 1 h more training on GCE GPU VMs.
  # It adds its step counter to the checkpoint and restores the manager's
  # latest: the chief's again (what it holds already), nothing on the other
  # workers (temp directories). Theirs came with `Checkpoints.restore`, from
  # the run's checkpoint (applied once added), so all counters agree.
  return tf.distribute.experimental.PreemptionCheckpointHandler(
      learner.strategy.cluster_resolver, checkpoints.latest,
      termination_config=config)


# A working handler polls its watcher as it starts. TF turns it off where
# it finds a GCE CPU or TPU VM (a GCE metadata server answers): no polling.
HANDLER_START_TIMEOUT_S = 5.0


@contextlib.contextmanager
def interruptible(learner: Learner, checkpoints: Checkpoints,
                  clock: float) -> Iterator[Callable[[Callable], Any]]:
  """Yields how to run a training step so that a signal stops cleanly.

  In a cluster every step goes through the preemption handler; on one
  machine (or where TF has no handler) SIGTERM becomes KeyboardInterrupt
  before the next step (`sigterm_between_steps`) and the loop saves.
  """
  if is_multi_worker(learner.strategy):
    with recorded_signals() as signals:
      handler = preemption_handler(learner, checkpoints, clock, signals)
      try:
        if signals.polled.wait(HANDLER_START_TIMEOUT_S):
          yield handler.run
          return
      finally:
        # Stops its watcher threads while every worker is still up; one left
        # waiting on the coordination service of a chief that finished
        # first dies with a traceback. TF stops them only in __del__, which
        # never runs by itself: the threads hold the handler.
        handler.__del__()
    logging.warning('TensorFlow has no PreemptionCheckpointHandler on this '
                    'platform: a signal to one worker can leave the others '
                    'waiting.')
  with sigterm_between_steps() as run_step:
    yield run_step


@contextlib.contextmanager
def script_errors():
  """Ends a training script with one line and no traceback.

  Bad input, a broken run or a failed write: 'error: ...' (printed once)
  and exit 1. Ctrl-C or SIGTERM (after the loop saved a checkpoint): one
  line and exit 128 + signal.
  """
  try:
    yield
  except KeyboardInterrupt as e:
    signum = signal.SIGTERM if str(e) == 'SIGTERM' else signal.SIGINT
    print(f'Stopped by {signal.Signals(signum).name}; the checkpoint is '
          'saved. Rerun the same command to resume.', file=sys.stderr)
    raise SystemExit(128 + signum) from None
  except (ValueError, data.DatasetNotFoundError, RuntimeError,
          NonFiniteLossError) as e:
    raise SystemExit(f'error: {e}') from None
  except (OSError, tf.errors.OpError) as e:  # I/O not wrapped where it fails.
    raise SystemExit(f'error: {rundir.first_line(e)}. Free space or fix the '
                     'permissions of the run directory, then rerun the same '
                     'command to resume.') from None


def check_finite(losses: dict[str, float], step: int, run_dir: str) -> None:
  """Raises NonFiniteLossError naming the step and the broken loss terms."""
  bad = [name for name, value in losses.items() if not math.isfinite(value)]
  if not bad:
    return
  terms = [name for name in bad if name != 'loss'] or bad  # The cause first.
  listed = ', '.join(f'{name} = {losses[name]}' for name in terms)
  raise NonFiniteLossError(
      f'Training stopped at step {step}: {listed}. The last good checkpoint '
      f'is kept in {rundir.join(run_dir, rundir.CHECKPOINT_DIR)}; lower '
      '--learning_rate or set --clipnorm and rerun to resume.')


def weights_fingerprint(variables) -> str:
  """SHA-256 of the variables' bytes: equal runs give equal fingerprints."""
  digest = hashlib.sha256()
  for v in variables:
    digest.update(np.ascontiguousarray(v.numpy()).tobytes())
  return digest.hexdigest()


def fmt(values: dict[str, float]) -> str:
  return '  '.join(f'{k} {v:.4f}' for k, v in values.items())


def evaluate(learner: Learner, dataset: Iterable, num_members: int,
             sizes: Iterable[int], split: str, step: int | None = None
             ) -> dict[str, float]:
  """Metrics of the learner's members, named 'split/metric_n<k>' for every
  method; with a step, also its TensorBoard scalars and pictures."""
  outputs, labels = learner.member_outputs(dataset, num_members)
  result = evaluation.scores(outputs, labels,
                             data.DATASETS[learner.cfg.dataset].task, sizes,
                             split)
  if step is not None:
    for name, value in result.items():
      tf.summary.scalar(name, value, step=step)
    evaluation.write_summaries(outputs, labels, split, step)
  return result


def member_outputs(logits_fn: Callable, params, dataset: Iterable
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Logits [N, B, C] of the members params on a dataset, and its labels."""
  outputs, labels, _ = evaluation.collect(lambda x: logits_fn(params, x),
                                          dataset)
  return outputs, labels


def _datasets(learner: Learner, start_step: int):
  """(training, periodic evaluation, test) datasets and the periodic split.

  Periodic evaluation (and the choice of the reported step) uses the
  held-out validation split; without one, test, and the last step is
  reported. The test split is then read once, at the end.
  """
  cfg = learner.cfg
  common = dict(data_dir=cfg.data_dir, download=cfg.download,
                validation_size=cfg.validation_size)
  train_ds = data.load(cfg.dataset, 'train', learner.examples_per_step,
                       training=True, seed=cfg.seed, start_batch=start_step,
                       augment=cfg.augment, **common)
  # Bounds memory: members x batch feature maps per forward pass.
  eval_batch = max(1, 10_000 // max(learner.eval_members,
                                    learner.final_eval_members))
  test_ds = data.load(cfg.dataset, 'test', eval_batch, training=False,
                      **common)
  if not cfg.validation_size:
    return train_ds, test_ds, test_ds, 'test'
  eval_ds = data.load(cfg.dataset, 'validation', eval_batch, training=False,
                      **common)
  return train_ds, eval_ds, test_ds, 'validation'


def run(learner: Learner) -> dict[str, Any]:
  """Trains (or resumes) a learner in its run directory and evaluates it.

  The chief holds the run directory's owner record throughout, so a second
  training of the same directory stops before it writes anything.

  Returns the results dict that is also written to <run_dir>/results.json.
  """
  if not learner.chief:
    return _train(learner, None)
  with ownership.owned(learner.cfg.run_dir, learner.cfg.take_over) as owner:
    return _train(learner, owner)


def _train(learner: Learner, owner: ownership.Owner | None
           ) -> dict[str, Any]:
  cfg = learner.cfg
  checkpoints = Checkpoints(learner, owner)
  checkpoints.restored()
  if learner.chief:  # After the restore: a foreign checkpoint fails first.
    rundir.write_json(rundir.join(cfg.run_dir, rundir.CONFIG_FILE),
                      cfg.to_dict())
  start_step = int(learner.step.numpy())
  clock = time.time() - float(learner.wall_time.numpy())
  train_ds, eval_ds, test_ds, eval_split = _datasets(learner, start_step)
  writer = (tf.summary.create_file_writer(rundir.join(cfg.run_dir,
                                                      rundir.SUMMARY_DIR))
            if learner.chief else tf.summary.create_noop_writer())
  prepared = learner.prepare()
  if start_step == 0:
    checkpoints.save(clock)
    with writer.as_default():  # The run's flags, for TensorBoard's HParams tab.
      hparams.hparams({k: v for k, v in cfg.to_dict().items()
                       if isinstance(v, (bool, int, float, str))})
  # In-memory data has no files to shard: workers split each global batch.
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  batches = iter(learner.strategy.experimental_distribute_dataset(
      train_ds.with_options(options)))
  logging.info('Training %s on %s: %d examples per step, steps %d -> %d.',
               type(learner).__name__, cfg.dataset,
               learner.examples_per_step, start_step, cfg.steps)
  window_start, window_steps, sums = time.time(), 0, {}
  # On a terminal a progress bar; in logs (nohup, CI) the periodic lines.
  progress = (keras.utils.Progbar(cfg.steps)
              if sys.stderr.isatty() and learner.chief else None)
  with (interruptible(learner, checkpoints, clock) as run_step,
        writer.as_default()):
    try:
      while int(learner.step.numpy()) < cfg.steps:
        losses = run_step(lambda: learner.train_step(*next(batches)))
        step = int(learner.step.numpy())
        check_finite(losses, step, cfg.run_dir)
        if owner:
          owner.check()
        if progress:
          progress.update(step, list(losses.items()))
        for name, value in losses.items():
          sums[name] = sums.get(name, 0.0) + value
        window_steps += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
          elapsed = time.time() - window_start
          means = {k: v / window_steps for k, v in sums.items()}
          lr = learner.learning_rate()
          for name, value in means.items():
            tf.summary.scalar(f'train/{name}', value, step=step)
          tf.summary.scalar('train/learning_rate', lr, step=step)
          tf.summary.scalar('train/steps_per_second', window_steps / elapsed,
                            step=step)
          # Training time so far, over resumes: curves against cost.
          tf.summary.scalar('train/wall_time_s', time.time() - clock,
                            step=step)
          if not progress:
            logging.info('step %d/%d  %s  lr %.2e  %.2f steps/s  eta %.0f s',
                         step, cfg.steps, fmt(means), lr,
                         window_steps / elapsed,
                         (cfg.steps - step) * elapsed / window_steps)
          window_start, window_steps, sums = time.time(), 0, {}
        periodic = step % cfg.eval_every == 0 and step != cfg.steps
        if periodic or (cfg.validation_size and step == cfg.steps):
          result = evaluate(learner, eval_ds, learner.eval_members,
                            (learner.eval_members,), eval_split, step)
          learner.write_summaries(step)
          best = checkpoints.save_if_best(selection_score(
              result, eval_split, learner.eval_members))
          logging.info('step %d  %s%s', step, fmt(result),
                       '  (best so far)' if best else '')
        if step % cfg.checkpoint_every == 0:
          checkpoints.save(clock)
    except Preempted:  # Saved already, by every worker at the same step.
      checkpoints.remove_if_worker()
      raise
    except KeyboardInterrupt:
      logging.warning('Interrupted at step %d; saving a checkpoint.',
                      int(learner.step.numpy()))
      checkpoints.save(clock)
      raise
    checkpoints.save(clock)  # Unless this step's checkpoint exists.
    steps_done = int(learner.step.numpy())
    # The training's time over all sessions, as checkpointed: a resume goes
    # on from it. The final test evaluation is timed apart.
    trained_s = float(learner.wall_time.numpy())
    evaluation_start = time.time()
    selected_step = checkpoints.restore_selected()
    final = evaluate(learner, test_ds, learner.final_eval_members,
                     (1, 5, 10, 100), 'test', selected_step)
  writer.flush()
  results = {
      **final,
      **prepared,
      **learner.describe(),
      'steps': steps_done,
      'selected_step': selected_step,
      'start_step': start_step,
      'wall_time_s': trained_s,
      'final_evaluation_s': time.time() - evaluation_start,
      'weights_sha256': weights_fingerprint(learner.variables),
      'flags': cfg.to_dict(),
  }
  checkpoints.remove_if_worker()
  if not learner.chief:
    return results
  path = rundir.join(cfg.run_dir, rundir.RESULTS_FILE)
  rundir.write_json(path, results)
  logging.info('Final test: %s; results in %s', fmt(final), path)
  return results

"""scripts/train.py as a user runs it: killed and resumed, and bad input."""

import glob
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import evaluation
from hypergan_tf.methods import loop
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from hypergan_tf.model import members
from hypergan_tf.runtime import ownership
from hypergan_tf.runtime import rundir
from tests.conftest import REPO
from tests.conftest import TINY
from tests.conftest import beating
from tests.conftest import read_only
from tests.conftest import small_filesystem

# TINY as flags, long enough that a kill lands mid-run.
STEPS = 40
FLAGS = [f'--{k}={v}' for k, v in {**TINY, 'steps': STEPS, 'log_every': 1,
                                   'checkpoint_every': 10}.items()]


# The resume test trains CIFAR-5 with augmentation and a validation split, so
# it also shows that both keep a resume exact.
AUGMENTED = ['--dataset=cifar5', '--target=cifar5', '--augment',
             '--validation_size=50']
# The in-memory toy data, where the dataset does not matter: no decoding.
TOY = ['--dataset=toy_regression', '--target=toy_regression']


def _command(run_dir, *extra):
  return [sys.executable, 'scripts/train.py', f'--run_dir={run_dir}',
          *FLAGS, *extra]


def _env(tfds_dir):
  return {**os.environ, 'TFDS_DATA_DIR': tfds_dir,
          'PYTHONPATH': str(REPO), 'TF_CPP_MIN_LOG_LEVEL': '2'}


def _run(command, tfds_dir):
  return subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                        env=_env(tfds_dir), check=False, timeout=600)


def _losses(run_dir):
  """train/loss by step; a rewritten step keeps the last."""
  steps, values = rundir.read_scalars(str(run_dir), 'train/loss')['train/loss']
  return dict(zip(steps, values))


def _latest_checkpoint_step(run_dir):
  path = tf.train.latest_checkpoint(os.path.join(run_dir, 'checkpoints'))
  return int(path.rsplit('-', 1)[1]) if path else 0


def test_sigkill_then_resume_repeats_the_uninterrupted_run(tfds_dir,
                                                           tmp_path):
  # Per-network batches, as the CIFAR recipes train; a shared batch resumes
  # exactly too (test_sigkill_right_after_the_last_checkpoint_resumes_there).
  batches = ['--per_network_batches']
  whole, killed = tmp_path / 'whole', tmp_path / 'killed'
  process = subprocess.Popen(_command(killed, '--deterministic', *AUGMENTED,
                                      *batches),
                             cwd=REPO,
                             env=_env(tfds_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while _latest_checkpoint_step(killed) < 10 and time.time() < deadline:
    assert process.poll() is None, 'training ended before it was killed'
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  resumed_from = _latest_checkpoint_step(killed)
  assert 10 <= resumed_from < STEPS
  # The killed run's owner record is left behind; the same command takes it.
  assert ownership.read_record(str(killed))['pid'] == process.pid
  for run_dir in (killed, whole):
    done = _run(_command(run_dir, '--deterministic', *AUGMENTED, *batches),
                tfds_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ('Taking over' in done.stderr) == (run_dir == killed)
    assert ownership.read_record(str(run_dir)) is None
  expected, got = _losses(whole), _losses(killed)
  after = [step for step in expected if step > resumed_from]
  assert len(after) == STEPS - resumed_from
  np.testing.assert_array_equal([got[s] for s in after],
                                [expected[s] for s in after])


def test_sigterm_saves_and_exits_with_one_line(tfds_dir, tmp_path):
  # Toy steps are fast: enough of them that the signal lands mid-run. One run
  # here once died with SIGSEGV when SIGTERM raised inside whatever Python
  # was doing (BUILD_NOTES, "Things that bit"); now it stops between steps.
  process = subprocess.Popen(_command(tmp_path, *TOY, '--steps=2000'),
                             cwd=REPO, env=_env(tfds_dir),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
  deadline = time.time() + 300
  while _latest_checkpoint_step(tmp_path) < 10 and time.time() < deadline:
    assert process.poll() is None, 'training ended before the signal'
    time.sleep(0.05)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 128 + signal.SIGTERM
  assert 'Traceback' not in stderr
  assert 'Stopped by SIGTERM; the checkpoint is saved' in stderr
  logged = [line for line in stderr.splitlines() if 'Interrupted at step' in line]
  stopped_at = int(logged[-1].split('Interrupted at step ')[1].split(';')[0])
  assert _latest_checkpoint_step(tmp_path) == stopped_at
  assert ownership.read_record(str(tmp_path)) is None  # Released.


def test_sigkill_right_after_the_last_checkpoint_resumes_there(tfds_dir,
                                                               tmp_path):
  """Killed inside the window where the last step used to be saved again
  (deleted, then rewritten): the same command resumes at that step, with
  the weights an uninterrupted run ends with, and does not train again."""
  flags_ = ['--deterministic', *TOY, '--steps=20']
  whole, killed = tmp_path / 'whole', tmp_path / 'killed'
  reference = _run(_command(whole, *flags_), tfds_dir)
  assert reference.returncode == 0, reference.stderr[-3000:]
  process = subprocess.Popen(_command(killed, *flags_), cwd=REPO,
                             env=_env(tfds_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  index = killed / rundir.CHECKPOINT_DIR / 'ckpt-20.index'
  _wait_for(index.exists, process, 'checkpoint 20')
  time.sleep(0.35)
  process.send_signal(signal.SIGKILL)
  process.wait()
  again = _run(_command(killed, *flags_), tfds_dir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'ckpt-20 at step 20' in again.stderr
  results = [json.loads((run_dir / rundir.RESULTS_FILE).read_text())
             for run_dir in (whole, killed)]
  assert results[1]['start_step'] == 20 == results[1]['steps']
  assert results[1]['weights_sha256'] == results[0]['weights_sha256']


def test_a_run_directory_turned_read_only_is_one_line_and_resumes(
    tfds_dir, tmp_path):
  with small_filesystem(tmp_path / 'disk', 64 << 20) as disk:
    run_dir = disk / 'run'
    process = subprocess.Popen(_command(run_dir, *TOY, '--steps=100000'),
                               cwd=REPO, env=_env(tfds_dir),
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _latest_checkpoint_step(run_dir) >= 10, process,
              'checkpoint 10')
    with read_only(disk):
      _, stderr = process.communicate(timeout=300)
      assert process.returncode == 1
      error, = _errors(stderr)
      assert 'Read-only file system' in error and 'is intact' in error
      assert 'Traceback' not in stderr
      saved = _latest_checkpoint_step(run_dir)
    again = _run(_command(run_dir, *TOY, f'--steps={saved + 2}'), tfds_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f'ckpt-{saved} at step {saved}' in again.stderr


def test_a_failing_results_write_is_one_line_and_leaves_no_temp_file(
    tfds_dir, tmp_path, monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  (tmp_path / rundir.RESULTS_FILE).mkdir()  # Nothing can be renamed onto it.
  with pytest.raises(SystemExit) as error:
    _main_in_process([f'--run_dir={tmp_path}', *FLAGS, *TOY, '--steps=4'])
  message = str(error.value.code)
  assert message.startswith(f'error: Could not write {tmp_path}/results.json')
  assert 'rerun the same command' in message and '\n' not in message
  assert not glob.glob(str(tmp_path / '.results.json.tmp-*'))
  assert _latest_checkpoint_step(tmp_path) == 4  # The training is kept.


def _wait_for(condition, process, what):
  deadline = time.time() + 300
  while not condition():
    assert process.poll() is None, f'training ended before {what}'
    assert time.time() < deadline, f'no {what} after 300 s'
    time.sleep(0.05)


def _errors(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error: ')]


def test_second_writer_is_refused_and_readers_are_free(tfds_dir, tmp_path):
  """While one training runs: a second one on its run directory stops at
  once, naming the first; loading and evaluating it take nothing; the first
  ends with the weights it has when it runs alone."""
  alone, shared = tmp_path / 'alone', tmp_path / 'shared'
  with open(tmp_path / 'first.log', 'w') as log:
    first, reference = (
        subprocess.Popen(_command(run_dir, '--deterministic'), cwd=REPO,
                         env=_env(tfds_dir), stdout=log, stderr=log)
        for run_dir in (shared, alone))
  _wait_for(lambda: _latest_checkpoint_step(shared) >= 10, first,
            'checkpoint 10')
  first.send_signal(signal.SIGSTOP)  # Mid-run, for as long as this takes.
  try:
    second = _run(_command(shared, '--deterministic'), tfds_dir)
    loaded = members.load(str(shared))
    logits = loaded.logits(loaded.sample(2, seed=0), tf.zeros([3, 28, 28, 1]))
    evaluated = evaluation.evaluate_run(str(shared), num_networks=2,
                                        data_dir=tfds_dir)
    record = ownership.read_record(str(shared))
  finally:
    first.send_signal(signal.SIGCONT)
  assert second.returncode == 1
  error, = _errors(second.stderr)
  assert f'pid {first.pid} on host {socket.gethostname()}, started' in error
  assert f'train.py --run_dir={shared}' in error and 'Wait for it' in error
  assert 'Traceback' not in second.stderr
  assert logits.shape == (2, 3, 10) and loaded.step >= 10
  # What evaluation read is what the loaded networks score on the test set.
  images, labels = data.arrays('mnist', 'test', tfds_dir, download=False)
  params = loaded.sample(2, seed=0)  # evaluate_run's networks (its seed 0).
  correct = np.concatenate([
      loaded.logits(params, images[i:i + 2000].astype(np.float32) / 255.0
                    ).numpy().argmax(-1) == labels[i:i + 2000]
      for i in range(0, len(images), 2000)], axis=1)
  assert evaluated['test/accuracy_n1'] == pytest.approx(correct.mean(),
                                                        abs=1e-6)
  assert record['pid'] == first.pid  # The readers took nothing.
  for process in (first, reference):
    assert process.wait(timeout=600) == 0, (tmp_path / 'first.log').read_text()
  results = [json.loads((run_dir / rundir.RESULTS_FILE).read_text())
             for run_dir in (shared, alone)]
  assert results[0]['steps'] == STEPS and results[0]['start_step'] == 0
  assert results[0]['weights_sha256'] == results[1]['weights_sha256']
  assert ownership.read_record(str(shared)) is None


def _file_size_limit(limit):
  """Run before the child's exec: files it writes stop at limit bytes.

  A write beyond fails with EFBIG, as one on a full disk fails with ENOSPC:
  the same error path, and it needs no root to mount a small filesystem.
  (Python ignores SIGXFSZ, so the write fails instead of killing it.)
  """
  return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_failing_checkpoint_write_is_one_line_and_keeps_the_last(tfds_dir,
                                                                 tmp_path):
  run_dir = tmp_path / 'run'
  done = _run(_command(run_dir, *TOY, '--steps=10'), tfds_dir)
  assert done.returncode == 0, done.stderr[-3000:]
  data_file, = glob.glob(str(run_dir / rundir.CHECKPOINT_DIR /
                             'ckpt-10.data-*'))
  limit = os.path.getsize(data_file) // 2
  failed = subprocess.run(_command(run_dir, *TOY, '--steps=20'),
                          capture_output=True,
                          text=True, cwd=REPO, env=_env(tfds_dir), timeout=600,
                          preexec_fn=_file_size_limit(limit), check=False)
  assert failed.returncode == 1
  error, = _errors(failed.stderr)
  assert 'Could not write checkpoint 20' in error
  assert 'ckpt-10, is intact' in error and 'rerun the same command' in error
  assert 'Traceback' not in failed.stderr
  checkpoints = run_dir / rundir.CHECKPOINT_DIR
  assert not glob.glob(str(checkpoints / 'ckpt-20*'))  # No half checkpoint.
  assert _latest_checkpoint_step(run_dir) == 10
  assert int(training.load_trainer(str(run_dir)).step.numpy()) == 10
  assert ownership.read_record(str(run_dir)) is None


def test_take_over_flag_takes_a_live_foreign_record(tfds_dir, tmp_path,
                                                    monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  monkeypatch.setattr(ownership, 'STALE_AFTER_S', 1.0)
  foreign = {**ownership.new_record(), 'host': 'other-host', 'pid': 4242,
             'boot_id': 'another-machine'}
  argv = [f'--run_dir={tmp_path}', *FLAGS, '--steps=2']
  with beating(str(tmp_path), foreign):
    with pytest.raises(SystemExit,
                       match='trained by pid 4242 on host other-h'):
      _main_in_process(argv)
  assert not tmp_path.joinpath(rundir.CHECKPOINT_DIR).exists()  # Untouched.
  _main_in_process([*argv, '--take_over'])
  assert json.loads(tmp_path.joinpath('results.json').read_text())['steps'] == 2
  assert ownership.read_record(str(tmp_path)) is None


def _copy_run(run_dir, tmp_path):
  """The run's config and checkpoints (not other tests' outputs)."""
  copy = tmp_path / 'run'
  shutil.copytree(run_dir / rundir.CHECKPOINT_DIR,
                  copy / rundir.CHECKPOINT_DIR)
  shutil.copy(run_dir / 'config.json', copy)
  return copy


def _truncate_checkpoints(run_dir):
  """Every checkpoint: with one intact, training resumes from it instead
  (tests/test_checkpoints.py)."""
  for data_file in glob.glob(str(run_dir / rundir.CHECKPOINT_DIR /
                                 'ckpt-*.data-*')):
    with open(data_file, 'r+b') as f:
      f.truncate(100)


def _foreign_checkpoint(run_dir):
  """Replaces the run's checkpoints with one of some other model."""
  shutil.rmtree(run_dir / rundir.CHECKPOINT_DIR)
  tf.train.Checkpoint(other=tf.Variable([1.0, 2.0])).save(
      str(run_dir / rundir.CHECKPOINT_DIR / 'ckpt'))


def _main_in_process(argv):
  """scripts/train.py's main, without the cost of a new process.

  Flag errors surface as absl's flags.Error (app.run prints them in one
  line); the rest as the one-line SystemExit of loop.script_errors. A real
  process's one-line exit is checked by tests/test_reproduce.py (the log of
  its failed training stage) and the SIGTERM test above.
  """
  fv = flags.FlagValues()
  config.define_flags(fv)
  fv(['train.py', *argv])
  with loop.script_errors():
    training.train(config.from_flags(fv))


@pytest.mark.parametrize('case, flags_, message', [
    ('unknown dataset', ['--dataset=svhn'], "value should be one of"),
    ('unknown target', ['--target=resnet'], 'value should be one of'),
    ('no networks', ['--num_networks=0'], 'num_networks'),
    ('negative batch', ['--batch_size=-1'], 'batch_size'),
    ('target and data disagree', ['--target=cifar'],
     'pick a matching --target'),
    ('inconsistent latent sizes', ['--code_dim=4'],
     r'--code_dim=8 \(now 4\)'),
    ('missing data directory', ['--data_dir=/nonexistent/tfds',
                                '--nodownload'], 'TFDS_DATA_DIR'),
    ('empty data directory', ['--data_dir={empty}', '--nodownload'],
     'is not prepared in'),
    ('truncated checkpoint', [], 'is corrupt or was written with other'),
    ('foreign checkpoint', [], 'is corrupt or was written with other'),
])
def test_bad_input_gives_one_clear_error(case, flags_, message, tiny_run,
                                         tfds_dir, tmp_path, monkeypatch):
  """Each mistake stops before training, naming the problem and the fix."""
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  run_dir = tmp_path / 'fresh'
  if case in ('inconsistent latent sizes', 'truncated checkpoint',
              'foreign checkpoint'):
    run_dir = _copy_run(tiny_run, tmp_path)
  if case == 'truncated checkpoint':
    _truncate_checkpoints(run_dir)
  if case == 'foreign checkpoint':
    _foreign_checkpoint(run_dir)
  (tmp_path / 'empty').mkdir()
  flags_ = [f.format(empty=tmp_path / 'empty') for f in flags_]
  with pytest.raises((SystemExit, flags.Error), match=message):
    _main_in_process([f'--run_dir={run_dir}', *FLAGS, *flags_])

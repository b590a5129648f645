"""Shared test setup: quiet TF, the prepared TFDS directory, tiny configs."""

import contextlib
import fcntl
import json
import logging
import os
import pathlib
import shutil
import subprocess
import threading
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# TensorFlow turns oneDNN on by itself only on CPUs with AVX-512; without it
# the CPU kernels have no gradient for grouped convolutions, which the
# 'grouped' forward method needs (measured on an AVX2-only EPYC).
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

import pytest  # pylint: disable=g-import-not-at-top

from hypergan_tf.datasets import data  # pylint: disable=g-import-not-at-top
from hypergan_tf.methods import loop  # pylint: disable=g-import-not-at-top
from hypergan_tf.methods.hypergan import config  # pylint: disable=g-import-not-at-top
from hypergan_tf.methods.hypergan import training  # pylint: disable=g-import-not-at-top
from hypergan_tf.model import members  # pylint: disable=g-import-not-at-top
from hypergan_tf.runtime import rundir  # pylint: disable=g-import-not-at-top
from hypergan_tf.datasets import not_mnist  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'
SHARED_TFDS = SHARED_DATA / 'tensorflow_datasets'


# Modules holding the longest tests (30-115 s each, --durations), run first:
# pytest-xdist hands out tests in collection order, and a long test that
# starts last leaves the other worker idle while it runs. Whole modules
# move, so module fixtures stay on one worker.
SLOW_MODULES = ('test_train_script.py', 'test_training_distributed.py',
                'test_reproduce.py', 'test_rundir.py', 'test_evaluation.py')


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_MODULES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope='session')
def tfds_dir() -> str:
  """The prepared TFDS directory: $TFDS_DATA_DIR, else ../shared beside us."""
  path = os.environ.get('TFDS_DATA_DIR') or str(SHARED_TFDS)
  if not os.path.isdir(os.path.join(path, 'mnist')):
    pytest.fail(f'Prepared MNIST not found in {path}; set TFDS_DATA_DIR.')
  return path


# A hypernetwork small enough to train a few steps in seconds on CPU. No
# periodic evaluation (each is a pass over the test split); tests of it set
# eval_every.
TINY = dict(num_networks=4, batch_size=16, steps=6, warmup_steps=0,
            noise_dim=16, code_dim=8, hidden_units=32, hidden_layers=1,
            pretrain_mixer_steps=5, log_every=2, eval_every=1000,
            eval_networks=2, final_eval_networks=10, checkpoint_every=2)


def _once_per_session(tmp_path_factory, name, build):
  """(directory, value) of build(directory), run by the first worker to ask.

  A session fixture runs once per pytest-xdist worker; the expensive ones
  build here instead, under a lock in the directory the workers of one
  session share, and the other workers read the JSON value it returned.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # This session's, shared by its workers.
  directory, record = root / name, root / f'{name}.json'
  with open(root / f'{name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
    if not record.exists():
      record.write_text(json.dumps(build(directory)))
  return directory, json.loads(record.read_text())


@pytest.fixture(scope='session')
def tiny_run(tfds_dir, tmp_path_factory) -> pathlib.Path:
  """A TINY MNIST HyperGAN trained once per session, in <root>/runs/mnist.

  Each worker gets its own copy: tests load it and may write their own
  outputs (adversarial/, eval/) into it, but must not train it further.
  """
  def train(directory):
    training.train(config.TrainConfig(run_dir=str(directory),
                                      data_dir=tfds_dir, download=False,
                                      **TINY))

  trained, _ = _once_per_session(tmp_path_factory, 'tiny_mnist', train)
  path = tmp_path_factory.mktemp('tiny') / 'runs' / 'mnist'
  shutil.copytree(trained, path)
  return path


@pytest.fixture(scope='module')
def tiny_model(tiny_run):
  """tiny_run's networks (`members.load`), loaded once per test module."""
  return members.load(str(tiny_run))


@pytest.fixture(scope='module')
def mnist_batch(tfds_dir):
  """The first 32 MNIST test images (float32 in [0, 1]) and labels, numpy."""
  x, y = next(iter(data.load('mnist', 'test[:32]', 32, training=False,
                             data_dir=tfds_dir, download=False)))
  return x.numpy(), y.numpy()


def train_modes_run(run_dir: pathlib.Path, batch, **overrides):
  """A TINY MNIST run with two modes, trained two steps in process on
  `batch` (only its shape matters) and saved as a run directory; returns
  its trainer."""
  cfg = config.TrainConfig(run_dir=str(run_dir),
                           **{**TINY, 'modes': 2, **overrides})
  trainer = training.Trainer(cfg)
  images, labels = batch
  for _ in range(2):
    trainer.train_step(images[:16], labels[:16])
  loop.Checkpoints(trainer).save()
  (run_dir / rundir.CONFIG_FILE).write_text(json.dumps(cfg.to_dict()))
  return trainer


class _Warnings(logging.Handler):

  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture(scope='session')
def not_mnist_prepared(tmp_path_factory):
  """(data_dir, builder, warnings logged, seconds) of one real notMNIST build.

  Built once per session (all workers) from the archive in ../shared/data;
  tests that evaluate on notMNIST read it from data_dir (--ood_data_dir).
  """
  if not (SHARED_DATA / not_mnist.ARCHIVE_NAME).is_file():
    pytest.fail(f'notMNIST archive not found in {SHARED_DATA}; it belongs in '
                'shared/data beside the repository.')
  def build(directory):
    records = _Warnings()
    absl_logger = logging.getLogger('absl')
    absl_logger.addHandler(records)
    try:
      start = time.perf_counter()
      not_mnist.prepare(str(directory), str(SHARED_DATA))
      return records.messages, time.perf_counter() - start
    finally:
      absl_logger.removeHandler(records)

  data_dir, (messages, seconds) = _once_per_session(
      tmp_path_factory, 'not_mnist_tfds', build)
  # Reading the finished build back is quick (and what the build returns).
  builder = not_mnist.prepare(str(data_dir), str(SHARED_DATA))
  return str(data_dir), builder, messages, seconds


@contextlib.contextmanager
def beating(run_dir: str, record: dict):
  """A live writer on another machine: its owner record's heartbeat
  changes every 50 ms while the block runs."""
  path = os.path.join(run_dir, 'owner.json')
  stop = threading.Event()

  def beat():
    beats = 0
    while True:
      beats += 1
      with open(path + '.tmp', 'w') as f:
        json.dump({**record, 'beats': beats}, f)
      os.replace(path + '.tmp', path)
      if stop.wait(0.05):
        return

  thread = threading.Thread(target=beat)
  thread.start()
  try:
    yield
  finally:
    stop.set()
    thread.join()


@contextlib.contextmanager
def small_filesystem(path: pathlib.Path, size: int):
  """A real tmpfs of `size` bytes mounted at path (root, as CI runs; else
  the test is skipped). Remount it read-only with `remount(path, 'ro')`."""
  path.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}',
                            'tmpfs', str(path)], capture_output=True,
                           text=True, check=False)
  if mounted.returncode:
    pytest.skip(f'cannot mount a tmpfs here: {mounted.stderr.strip()}')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


@contextlib.contextmanager
def read_only(path: pathlib.Path):
  """Makes a mounted directory read-only while the block runs, even with
  files open for writing there (a read-only bind mount over it: new opens
  fail with EROFS). Root ignores permission bits, so chmod cannot."""
  subprocess.run(['mount', '--bind', str(path), str(path)], check=True)
  try:
    subprocess.run(['mount', '-o', 'remount,bind,ro', str(path)], check=True)
    yield path
  finally:
    subprocess.run(['umount', str(path)], check=True)

"""Training under tf.distribute strategies, XLA and mixed precision.

Strategies need devices configured before TensorFlow starts, so each case
runs in a fresh process.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tests.conftest import TINY

# Losses of three steps on the same batches, one strategy per process.
_STEPS = '''
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from hypergan_tf import config, data, training
cfg = config.TrainConfig(**json.loads(sys.argv[1]))
trainer = training.Trainer(cfg, training.make_strategy(cfg.strategy))
trainer.pretrain_mixer()
batches = data.load('mnist', 'train', cfg.batch_size, training=True,
                    download=False).take(3)
losses = [trainer.train_step(*batch) for batch in
          trainer.strategy.experimental_distribute_dataset(batches)]
print(json.dumps({'replicas': trainer.strategy.num_replicas_in_sync,
                  'losses': losses}))
'''


def _python(code, *args, env=None, **kwargs):
  return subprocess.run([sys.executable, '-c', code, *args],
                        capture_output=True, text=True, cwd=REPO,
                        env={**os.environ, 'PYTHONPATH': str(REPO),
                             **(env or {})},
                        check=False, timeout=600, **kwargs)


def _steps(tfds_dir, **overrides):
  cfg = {**TINY, 'batch_size': 16, **overrides}
  out = _python(_STEPS, json.dumps(cfg), env={'TFDS_DATA_DIR': tfds_dir})
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_close(a, b, rtol, names=None):
  for step_a, step_b in zip(a['losses'], b['losses'], strict=True):
    for name in names or step_a:
      np.testing.assert_allclose(step_a[name], step_b[name], rtol=rtol,
                                 atol=1e-6, err_msg=name)


@pytest.fixture(scope='module')
def one_device(tfds_dir):
  """The reference: default strategy, float32, no XLA."""
  return _steps(tfds_dir)


def test_mirrored_over_two_cpus_equals_one_device(tfds_dir, one_device):
  two = _steps(tfds_dir, strategy='mirrored')
  assert (one_device['replicas'], two['replicas']) == (1, 2)
  _assert_close(one_device, two, rtol=1e-4)


def test_xla_gives_the_same_losses(tfds_dir, one_device):
  _assert_close(one_device, _steps(tfds_dir, jit_compile=True), rtol=1e-3)


def test_mixed_precision_trains_in_bfloat16(tfds_dir, one_device):
  full = one_device
  mixed = _steps(tfds_dir, mixed_precision=True)
  # bfloat16 has 8 mantissa bits; accuracy may flip an example or two.
  _assert_close(full, mixed, rtol=0.1, names=['loss', 'task_loss'])
  assert mixed['losses'] != full['losses']  # Really computed differently.


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


_WORKER = '''
import json, sys
from hypergan_tf import config, training
cfg = config.TrainConfig(**json.loads(sys.argv[1]))
print(json.dumps(training.train(cfg)))
'''


def test_multi_worker_trains_identically_and_only_chief_writes(tfds_dir,
                                                               tmp_path):
  ports = _free_ports(2)
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  workers = []
  for index in range(2):
    cfg = {**TINY, 'run_dir': str(tmp_path / f'worker{index}'),
           'strategy': 'multi_worker', 'data_dir': tfds_dir}
    tf_config = json.dumps({'cluster': cluster,
                            'task': {'type': 'worker', 'index': index}})
    workers.append(subprocess.Popen(
        [sys.executable, '-c', _WORKER, json.dumps(cfg)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, 'PYTHONPATH': str(REPO), 'TF_CONFIG': tf_config}))
  results = []
  for worker in workers:
    stdout, stderr = worker.communicate(timeout=600)
    assert worker.returncode == 0, stderr[-3000:]
    results.append(json.loads(stdout.strip().splitlines()[-1]))
  assert results[0]['steps'] == results[1]['steps'] == TINY['steps']
  assert results[0]['weights_sha256'] == results[1]['weights_sha256']
  chief, other = tmp_path / 'worker0', tmp_path / 'worker1'
  assert (chief / 'results.json').exists()
  assert os.listdir(chief / 'checkpoints')
  assert not other.exists()  # Nothing written by the non-chief worker.

"""Training under tf.distribute strategies, XLA and mixed precision.

Strategies need devices configured before TensorFlow starts, so they run in
fresh processes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from tests.conftest import REPO
from tests.conftest import TINY

# Losses of three steps on the same batches for each named config, in one
# process (two logical CPUs for 'mirrored'): one start-up instead of four.
_STEPS = '''
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from hypergan_tf.datasets import data
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
out = {}
for name, overrides in json.loads(sys.argv[1]).items():
  cfg = config.TrainConfig(**overrides)
  trainer = training.Trainer(cfg, training.make_strategy(cfg.strategy))
  trainer.pretrain_mixer()
  batches = data.load('mnist', 'train', trainer.examples_per_step,
                      training=True, download=False).take(3)
  losses = [trainer.train_step(*batch) for batch in
            trainer.strategy.experimental_distribute_dataset(batches)]
  out[name] = {'replicas': trainer.strategy.num_replicas_in_sync,
               'losses': losses}
print(json.dumps(out))
'''


def _python(code, *args, env=None, **kwargs):
  return subprocess.run([sys.executable, '-c', code, *args],
                        capture_output=True, text=True, cwd=REPO,
                        env={**os.environ, 'PYTHONPATH': str(REPO),
                             **(env or {})},
                        check=False, timeout=600, **kwargs)


def _assert_close(a, b, rtol, names=None):
  for step_a, step_b in zip(a['losses'], b['losses'], strict=True):
    for name in names or step_a:
      np.testing.assert_allclose(step_a[name], step_b[name], rtol=rtol,
                                 atol=1e-6, err_msg=name)


def test_mirrored_xla_and_mixed_precision_match_one_device(tfds_dir):
  """One test, so the four configs share one process on one xdist worker."""
  configs = {'one_device': {}, 'mirrored': {'strategy': 'mirrored'},
             'xla': {'jit_compile': True}, 'mixed': {'mixed_precision': True},
             'own_batches': {'per_network_batches': True},
             'own_batches_mirrored': {'per_network_batches': True,
                                      'strategy': 'mirrored'}}
  configs = {name: {**TINY, 'batch_size': 16, **overrides}
             for name, overrides in configs.items()}
  out = _python(_STEPS, json.dumps(configs), env={'TFDS_DATA_DIR': tfds_dir})
  assert out.returncode == 0, out.stderr[-3000:]
  runs = json.loads(out.stdout.strip().splitlines()[-1])
  one = runs['one_device']
  # Mirrored over two CPUs: the same losses.
  assert (one['replicas'], runs['mirrored']['replicas']) == (1, 2)
  _assert_close(one, runs['mirrored'], rtol=1e-4)
  # XLA: the same losses.
  _assert_close(one, runs['xla'], rtol=1e-3)
  # Mixed precision: bfloat16 has 8 mantissa bits; accuracy may flip an
  # example or two.
  _assert_close(one, runs['mixed'], rtol=0.1, names=['loss', 'task_loss'])
  assert runs['mixed']['losses'] != one['losses']  # Computed differently.
  # Per-network batches split over replicas: each network's images are
  # spread over both, and the step is the one-device step.
  _assert_close(runs['own_batches'], runs['own_batches_mirrored'], rtol=1e-4)


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
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
cfg = config.TrainConfig(**json.loads(sys.argv[1]))
print(json.dumps(training.train(cfg)))
'''


def test_multi_worker_trains_identically_and_only_chief_writes(tmp_path):
  ports = _free_ports(2)
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  workers = []
  for index in range(2):
    # The in-memory toy data: what is shown here does not depend on it.
    cfg = {**TINY, 'run_dir': str(tmp_path / f'worker{index}'),
           'strategy': 'multi_worker', 'dataset': 'toy_regression',
           'target': 'toy_regression'}
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
  assert not (chief / 'owner.json').exists()  # The chief's record, released.


# TINY as flags for scripts/train.py, cheaper: the in-memory toy regression
# data, no mixer pre-training, one checkpoint at step 0 (so the only later
# one is the preemption's). The handler polls for signals every second:
# enough steps that it lands mid-run on a fast machine too (about 10 steps
# pass between the signal and the save on a loaded 2-core machine).
_PREEMPT_STEPS = 100
_PREEMPT_FLAGS = [f'--{k}={v}' for k, v in {
    **TINY, 'dataset': 'toy_regression', 'target': 'toy_regression',
    'steps': _PREEMPT_STEPS, 'pretrain_mixer_steps': 0,
    'log_every': 1, 'checkpoint_every': 1000,
    'strategy': 'multi_worker'}.items()]


def _start_cluster(run_dir, logs, temp_dirs):
  """Two workers of scripts/train.py sharing run_dir (a shared filesystem).

  Each has its own TMPDIR, where a non-chief worker's saves go.
  """
  cluster = {'worker': [f'127.0.0.1:{p}' for p in _free_ports(2)]}
  workers = []
  for index in range(2):
    tf_config = json.dumps({'cluster': cluster,
                            'task': {'type': 'worker', 'index': index}})
    with open(logs[index], 'w') as log:  # Files: a full pipe would block.
      workers.append(subprocess.Popen(
          [sys.executable, 'scripts/train.py', f'--run_dir={run_dir}',
           '--nodownload', *_PREEMPT_FLAGS],
          cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
          env={**os.environ, 'PYTHONPATH': str(REPO), 'TF_CONFIG': tf_config,
               'TMPDIR': str(temp_dirs[index])}))
  return workers


def _wait_for_line(log, text, workers, timeout):
  """Waits until log shows text; fails if a worker ended or on timeout."""
  deadline = time.time() + timeout
  while text not in log.read_text():
    assert time.time() < deadline, f'no {text!r} in {timeout} s'
    assert all(w.poll() is None for w in workers), log.read_text()[-3000:]
    time.sleep(0.05)


def _interrupted_step(log):
  """The step at which the loop logged it saved after the signal."""
  lines = [line for line in log.read_text().splitlines()
           if 'Interrupted at step' in line]
  assert lines, log.read_text()[-3000:]
  return int(lines[-1].split('Interrupted at step ')[1].split(';')[0])


def test_sigterm_to_one_worker_stops_both_at_one_step_then_resumes(tmp_path):
  """SIGTERM to the non-chief: both save at one step and exit 143, no hang.

  The same command then resumes both from that step to the end.
  """
  run_dir = tmp_path / 'run'
  temp_dirs = [tmp_path / 'tmp0', tmp_path / 'tmp1']
  for path in temp_dirs:
    path.mkdir()
  stopped = [tmp_path / 'stopped0.log', tmp_path / 'stopped1.log']
  resumed = [tmp_path / 'resumed0.log', tmp_path / 'resumed1.log']
  workers = []
  try:
    workers = _start_cluster(run_dir, stopped, temp_dirs)
    _wait_for_line(stopped[0], f'step 5/{_PREEMPT_STEPS}', workers, 300)
    workers[1].send_signal(signal.SIGTERM)
    for worker, log in zip(workers, stopped):
      worker.wait(timeout=120)  # A worker waiting in a collective would hang.
      text = log.read_text()
      assert worker.returncode == 128 + signal.SIGTERM, text[-3000:]
      assert 'Stopped by SIGTERM; the checkpoint is saved' in text
      assert 'Traceback' not in text
    saved = _interrupted_step(stopped[0])
    assert _interrupted_step(stopped[1]) == saved
    assert 5 < saved < _PREEMPT_STEPS
    path = tf.train.latest_checkpoint(str(run_dir / 'checkpoints'))
    assert path.endswith(f'ckpt-{saved}')
    reader = tf.train.load_checkpoint(path)
    assert reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE') == saved
    assert not os.listdir(temp_dirs[1])  # The non-chief's copy is removed.

    workers = _start_cluster(run_dir, resumed, temp_dirs)
    for worker, log in zip(workers, resumed):
      worker.wait(timeout=300)
      assert worker.returncode == 0, log.read_text()[-3000:]
      assert 'Traceback' not in log.read_text()  # E.g. from TF's threads.
    results = json.loads((run_dir / 'results.json').read_text())
    assert (results['start_step'], results['steps']) == (saved,
                                                         _PREEMPT_STEPS)
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
        worker.wait()

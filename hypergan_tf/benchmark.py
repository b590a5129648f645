"""Throughput of the train step and of inference, in networks x examples/s.

Every forward method of `targets.apply` is timed in the same process, so the
batched formulations are compared with the per-network Python loop they
replace on the same machine and load.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import tensorflow as tf

from hypergan_tf import config as config_lib
from hypergan_tf import training


def _time(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
  """Median seconds per call after warm-up (the first call traces)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def measure(num_networks: int, batch_size: int, method: str,
            warmup: int = 2, repeats: int = 5,
            **overrides) -> dict[str, float]:
  """Times one train step and one inference pass for one configuration.

  Args:
    num_networks: networks sampled per step (N).
    batch_size: examples per step (B).
    method: forward method of the target pass.
    warmup: untimed calls (tracing, allocator warm-up).
    repeats: timed calls; the median is reported.
    **overrides: other TrainConfig fields (target, dataset, sizes).

  Returns:
    Seconds per train step and per inference pass, and the corresponding
    networks x examples per second.
  """
  cfg = config_lib.TrainConfig(
      num_networks=num_networks, batch_size=batch_size, forward_method=method,
      pretrain_mixer_steps=0, warmup_steps=0, steps=10**6, **overrides)
  trainer = training.Trainer(cfg)
  shape = (batch_size,) + cfg.spec.input_shape
  images = tf.random.uniform(shape, seed=0)
  labels = tf.random.uniform((batch_size,), 0, cfg.spec.output_dim, tf.int32,
                             seed=1)
  step_s = _time(lambda: trainer.train_step(images, labels), warmup, repeats)
  params = trainer.sample_eval_params(num_networks)
  infer_s = _time(lambda: trainer.logits(params, images).numpy(), warmup,
                  repeats)
  work = num_networks * batch_size
  return {
      'num_networks': num_networks,
      'batch_size': batch_size,
      'method': method,
      'train_step_s': step_s,
      'train_net_examples_per_s': work / step_s,
      'inference_s': infer_s,
      'inference_net_examples_per_s': work / infer_s,
  }

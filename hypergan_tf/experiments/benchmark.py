"""Throughput of the train step and of inference, in networks x examples/s.

Every forward method of `targets.apply` is timed in the same process, so the
batched formulations are compared with the per-network Python loop they
replace on the same machine and load.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from typing import Any, Callable, Iterator

from absl import flags
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.methods import baselines
from hypergan_tf.methods.hypergan import config as config_lib
from hypergan_tf.methods.hypergan import training
from hypergan_tf.model import hypernet
from hypergan_tf.model import targets


def define_methods_flag() -> flags.FlagHolder:
  """--methods: forward methods to time, checked when flags are parsed."""
  holder = flags.DEFINE_list('methods', list(targets.FORWARD_METHODS),
                             'Forward methods to time.')
  flags.register_validator(
      holder, lambda methods: set(methods) <= set(targets.FORWARD_METHODS),
      f'--methods must be among {", ".join(targets.FORWARD_METHODS)}.')
  return holder


def define_heads_flag(default: tuple[str, ...] = hypernet.HEADS
                      ) -> flags.FlagHolder:
  """--heads: generator heads to time, checked when flags are parsed."""
  holder = flags.DEFINE_list('heads', list(default),
                             'Generator heads to time.')
  flags.register_validator(
      holder, lambda heads: set(heads) <= set(hypernet.HEADS),
      f'--heads must be among {", ".join(hypernet.HEADS)}.')
  return holder


def median_seconds(fn: Callable[[], Any], warmup: int, repeats: int
                   ) -> float:
  """Median seconds per call after warm-up (the first call traces)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def training_batches(cfg: config_lib.TrainConfig, size: int
                     ) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
  """Batches of size images as cfg's training reads them (augmented)."""
  return iter(data.load(cfg.dataset, 'train', size, training=True,
                        seed=cfg.seed, augment=cfg.augment,
                        validation_size=cfg.validation_size,
                        data_dir=cfg.data_dir, download=False))


def matmul_gflops(size: int = 2048, dtype: str = 'float32',
                  repeats: int = 5) -> float:
  """GFLOP/s of one large square tf.matmul: the machine's practical peak."""
  a = tf.random.uniform((size, size), dtype=tf.float32)
  a = tf.cast(a, dtype)
  matmul = tf.function(lambda: tf.matmul(a, a))
  seconds = median_seconds(lambda: matmul().numpy(), 2, repeats)
  return 2 * size**3 / seconds / 1e9


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
  images, labels = _batch(cfg.spec, trainer.examples_per_step)
  step_s = median_seconds(lambda: trainer.train_step(images, labels), warmup,
                          repeats)
  # The process's peak so far: training's (inference comes next).
  train_peak_gib = peak_rss_gib()
  images = images[:batch_size]
  params = trainer.sample_eval_params(num_networks)
  infer_s = median_seconds(lambda: trainer.logits(params, images).numpy(),
                           warmup, repeats)
  work = num_networks * batch_size
  flops = work * cfg.spec.flops_per_example
  return {
      'num_networks': num_networks,
      'batch_size': batch_size,
      'method': method,
      'head': cfg.head,
      'hypernet_parameters': sum(
          int(tf.size(v)) for v in trainer.hypernet.weights),
      'jit_compile': cfg.jit_compile,
      'mixed_precision': cfg.mixed_precision,
      'network_chunk': cfg.network_chunk,
      'train_step_s': step_s,
      'train_peak_rss_gib': train_peak_gib,
      'train_net_examples_per_s': work / step_s,
      'train_distinct_images_per_s': trainer.examples_per_step / step_s,
      # Forward + backward of the target networks ~ 3 forward passes.
      'train_target_gflops': 3 * flops / step_s / 1e9,
      'inference_s': infer_s,
      'inference_net_examples_per_s': work / infer_s,
      'inference_gflops': flops / infer_s / 1e9,
  }


def _batch(spec: targets.TargetSpec, size: int
           ) -> tuple[tf.Tensor, tf.Tensor]:
  """A fixed random batch of images in [0, 1] and labels."""
  images = tf.random.uniform((size,) + spec.input_shape, seed=0)
  labels = tf.random.uniform((size,), 0, spec.output_dim, tf.int32, seed=1)
  return images, labels


def measure_baseline(method: str, num_members: int, batch_size: int,
                     warmup: int = 2, repeats: int = 5,
                     **overrides) -> dict[str, float]:
  """Times one train step of a baseline (e.g. K conventional networks).

  Args:
    method: a `baselines.METHODS` name.
    num_members: K (ensembles) or members per step.
    batch_size: examples per member (shared by all, for batch_ensemble).
    **overrides: other BaselineConfig fields (target, dataset).
  """
  cfg = baselines.BaselineConfig(method=method, num_members=num_members,
                                 batch_size=batch_size, steps=10**6,
                                 **overrides)
  trainer = baselines.BaselineTrainer(cfg, num_train_examples=50_000)
  images, labels = _batch(cfg.spec, trainer.examples_per_step)
  step_s = median_seconds(lambda: trainer.train_step(images, labels), warmup,
                          repeats)
  return {
      'method': method,
      'num_networks': num_members,
      'batch_size': batch_size,
      'trained_parameters': sum(int(tf.size(v))
                                for v in trainer.model.weights),
      'train_step_s': step_s,
      'train_net_examples_per_s': num_members * batch_size / step_s,
      'train_distinct_images_per_s': trainer.examples_per_step / step_s,
  }


def peak_rss_gib() -> float:
  """The peak resident memory of this process so far (Linux: KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _measure_with_peak_memory(kwargs: dict[str, Any]) -> dict[str, float]:
  fn = measure_baseline if 'num_members' in kwargs else measure
  row = fn(**kwargs)
  row['peak_rss_gib'] = peak_rss_gib()
  return row


def measure_isolated(**kwargs) -> dict[str, float]:
  """`measure` (or, given num_members, `measure_baseline`) in a fresh
  process, adding that process's peak memory."""
  with multiprocessing.get_context('spawn').Pool(1) as pool:
    return pool.apply(_measure_with_peak_memory, (kwargs,))

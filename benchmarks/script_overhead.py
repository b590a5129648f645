"""The training script's steps/s against the bare train step's, same shapes.

  python benchmarks/script_overhead.py --flagfile=configs/cifar10_fast.flags

In one process: trains the flagfile's configuration through the training
loop (`training.train`, what scripts/train.py runs) for --timed_steps steps
in a temporary run directory, with no periodic evaluation or checkpoint
inside them, and reads its logged steps/s (the median of its 50-step
windows, the first one, which traces, left out); then times the bare train
step of the same configuration on one fixed batch, as the throughput
benchmarks do, and the input pipeline's time per batch. The ratio is what
the script costs beyond the step: the data pipeline on the same cores, the
loop's per-step Python work, logging. Run it on an idle machine.
"""

import dataclasses
import tempfile

from absl import app
from absl import flags
import numpy as np

from hypergan_tf.experiments import benchmark
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from hypergan_tf.runtime import rundir

config.define_flags()
flags.FLAGS.set_default('run_dir', 'unused')  # A temporary one is used.
_STEPS = flags.DEFINE_integer('timed_steps', 600, 'Steps of the loop to '
                              'time (50 a window).', lower_bound=150)
_REPEATS = flags.DEFINE_integer('repeats', 20, 'Timed bare steps.',
                                lower_bound=1)
WINDOW = 50


def script_steps_per_second(cfg: config.TrainConfig, steps: int) -> float:
  """Median steps/s of the training loop's logging windows, tracing left out."""
  with tempfile.TemporaryDirectory() as run_dir:
    training.train(dataclasses.replace(
        cfg, run_dir=run_dir, steps=steps, log_every=WINDOW,
        warmup_steps=min(cfg.warmup_steps, steps - 1),
        eval_every=10 * steps, checkpoint_every=10 * steps,
        final_eval_networks=10))
    tag = 'train/steps_per_second'
    _, rates = rundir.read_scalars(run_dir, tag)[tag]
  return float(np.median(rates[1:]))


def bare_step_seconds(cfg: config.TrainConfig, repeats: int
                      ) -> tuple[float, float]:
  """Seconds of one train step on a fixed batch, and of one input batch."""
  cfg = dataclasses.replace(cfg, run_dir='', pretrain_mixer_steps=0)
  trainer = training.Trainer(cfg)
  batches = benchmark.training_batches(cfg, trainer.examples_per_step)
  images, labels = next(batches)
  step_s = benchmark.median_seconds(
      lambda: trainer.train_step(images, labels), 2, repeats)
  return step_s, benchmark.median_seconds(lambda: next(batches), 2, repeats)


def main(argv):
  del argv
  cfg = config.from_flags()
  script = script_steps_per_second(cfg, _STEPS.value)
  step_s, input_s = bare_step_seconds(cfg, _REPEATS.value)
  print(f'{cfg.num_networks} networks x {cfg.batch_size} images, '
        f'{cfg.head} head, per-network batches {cfg.per_network_batches}')
  print(f'bare train step          {1 / step_s:8.2f} steps/s '
        f'({1000 * step_s:.1f} ms)')
  print(f'input pipeline, a batch  {1000 * input_s:8.1f} ms')
  print(f'training script          {script:8.2f} steps/s '
        f'({1000 / script:.1f} ms)')
  print(f'script / bare step       {script * step_s:8.3f}')


if __name__ == '__main__':
  app.run(main)

"""Trains a HyperGAN: python scripts/train.py --flagfile=configs/mnist.flags.

Rerunning the same command resumes from the latest checkpoint in --run_dir.
"""

from absl import app

from hypergan_tf.methods import loop
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training

config.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  with loop.script_errors():
    training.train(config.from_flags())


if __name__ == '__main__':
  app.run(main)

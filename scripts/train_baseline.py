"""Trains a baseline on the HyperGAN's target network and data.

  python scripts/train_baseline.py --flagfile=configs/baseline_ensemble.flags

--method is ensemble (K independently initialised networks), mc_dropout or
variational (mean-field Gaussian posterior). Rerunning the same command
resumes from the latest checkpoint in --run_dir; scripts/evaluate.py and
scripts/compare.py read the run directory like a HyperGAN's.
"""

from absl import app

from hypergan_tf.methods import baselines
from hypergan_tf.methods import loop

baselines.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  with loop.script_errors():
    baselines.train(baselines.from_flags())


if __name__ == '__main__':
  app.run(main)

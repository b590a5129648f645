"""Adversarial examples (FGSM, PGD) against sampled ensembles (paper Sec. 4.5).

  python scripts/adversarial.py --run_dir=runs/mnist

Transfer from one sampled network to many (Figure 4), and ensembles of N
networks attacked through their fused logits, tested on themselves and on a
freshly sampled ensemble, with detection by ensemble entropy at 5% false
positives on clean images (Figure 5). Takes HyperGAN and baseline runs alike.
Writes metrics.json, report.md and PNG figures into <run_dir>/adversarial/.
"""

from absl import app
from absl import flags
from absl import logging

from hypergan_tf import attacks
from hypergan_tf import data

_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory of '
                               'scripts/train.py (or a baseline run).',
                               required=True)
_ATTACKS = flags.DEFINE_list('attacks', list(attacks.ATTACKS),
                             f'Attacks, among {list(attacks.ATTACKS)}.')
_EPSILONS = flags.DEFINE_list('epsilons', ['0.01', '0.03', '0.1', '0.2',
                                           '0.3'],
                              'L-infinity radii (pixels in [0, 1]).')
_SIZES = flags.DEFINE_list('ensemble_sizes', ['5', '10', '100'],
                           'Ensemble sizes N attacked; sizes above a '
                           "baseline's member count are skipped.")
_EXAMPLES = flags.DEFINE_integer('num_examples', 500, 'First test images '
                                 'attacked.', lower_bound=1)
_PGD_STEPS = flags.DEFINE_integer('pgd_steps', 10, 'PGD iterations.',
                                  lower_bound=1)
_PGD_STEP = flags.DEFINE_float('pgd_step_size', 0.25, 'PGD step as a '
                               'fraction of epsilon.', lower_bound=0.0,
                               upper_bound=1.0)
_PGD_RAND = flags.DEFINE_boolean('pgd_rand_init', True, 'PGD starts at a '
                                 'random point of the epsilon ball.')
_TRANSFER = flags.DEFINE_integer('transfer_networks', 500, 'Networks the '
                                 'examples against one network are tested '
                                 'on (0 skips the transfer experiment).',
                                 lower_bound=0)
_FPR = flags.DEFINE_float('fpr', 0.05, 'False-positive rate on clean images '
                          'that sets the entropy threshold.', lower_bound=0.0,
                          upper_bound=1.0)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the sampled networks and '
                             'PGD starts.')
_BATCH = flags.DEFINE_integer('batch_size', 100, 'Images per pass.',
                              lower_bound=1)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory '
                                '(default: as trained).')


def _floats(name, values):
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise ValueError(f'--{name} must be numbers, got {values}.') from None


def _ints(name, values):
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f'--{name} must be integers, got {values}.') from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    cfg = attacks.AdversarialConfig(
        attacks=tuple(_ATTACKS.value),
        epsilons=_floats('epsilons', _EPSILONS.value),
        ensemble_sizes=_ints('ensemble_sizes', _SIZES.value),
        num_examples=_EXAMPLES.value, pgd_steps=_PGD_STEPS.value,
        pgd_step_size=_PGD_STEP.value, pgd_rand_init=_PGD_RAND.value,
        transfer_networks=_TRANSFER.value, fpr=_FPR.value, seed=_SEED.value,
        batch_size=_BATCH.value)
    results = attacks.run_experiments(_RUN_DIR.value, cfg, _DATA_DIR.value)
  except (FileNotFoundError, RuntimeError, ValueError,
          data.DatasetNotFoundError) as e:
    raise SystemExit(f'error: {e}') from None
  headline = sorted(k for k in results if k.startswith('adv/') and (
      '_eps0.1_' in k or '_eps0.3_' in k or 'clean_accuracy' in k))
  logging.info('Wrote %s/adversarial/ (%.0f s)\n%s', _RUN_DIR.value,
               results['diagnostics']['seconds']['total'],
               '\n'.join(f'{k}: {results[k]:.4f}' for k in headline))


if __name__ == '__main__':
  app.run(main)

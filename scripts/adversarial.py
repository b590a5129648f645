"""Adversarial detection by ensemble entropy, two protocols (paper Sec. 4.5).

  python scripts/adversarial.py --run_dir=runs/mnist            # ~20 min
  python scripts/adversarial.py --run_dir=runs/mnist --full_sweep  # hours

`--protocol=paper`: the authors' protocol (examples against one sampled
network, early-stopped iterative FGSM, successful examples only, scored on
fresh ensembles of 10 / 100 / 1000). `--protocol=strong`: white-box, the
scored ensemble itself attacked (PGD with random start). Both by default,
plus the transfer experiment (Figure 4). Takes HyperGAN and baseline runs
alike. Writes into <run_dir>/adversarial/: metrics.json, report.md,
protocols.md (the RESULTS.md table), entropies.npz, detection_sweep.png and
the other figures.
"""

from absl import app
from absl import flags
from absl import logging

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import adversarial_protocols
from hypergan_tf.evaluation import attacks

_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory of '
                               'scripts/train.py (or a baseline run).',
                               required=True)
_PROTOCOL = flags.DEFINE_list(
    'protocol', list(attacks.PROTOCOLS), 'Detection protocols, among '
    f'{list(attacks.PROTOCOLS)}: paper = the authors\' (one sampled network '
    'attacked, early-stopped, successful examples scored on fresh '
    'ensembles); strong = the scored ensemble attacked, PGD random start.')
_ATTACKS = flags.DEFINE_list(
    'attacks', list(attacks.DEFAULT_ATTACKS),
    f'Attacks, among {list(attacks.ATTACKS)} (in the paper protocol pgd is '
    'the authors\' BIM; pgd_entropy, the adaptive attack that also lowers '
    'the ensemble\'s entropy, runs in the strong protocol and transfer only).')
_EPSILONS = flags.DEFINE_list(
    'epsilons', [f'{e:g}' for e in attacks.AdversarialConfig.epsilons],
    'L-infinity radii (pixels in [0, 1]).')
_SIZES = flags.DEFINE_list(
    'ensemble_sizes',
    [str(n) for n in attacks.AdversarialConfig.ensemble_sizes],
    "Strong protocol: ensemble sizes N attacked; sizes above a baseline's "
    'member count are skipped.')
_PAPER_SIZES = flags.DEFINE_list(
    'paper_ensemble_sizes',
    [str(n) for n in attacks.AdversarialConfig.paper_ensemble_sizes],
    'Paper protocol: sizes of the fresh ensembles that score the examples.')
_EXAMPLES = flags.DEFINE_integer(
    'num_examples', attacks.AdversarialConfig.num_examples,
    'First test images attacked (the default fits ~6 minutes on 2 CPU '
    'cores for the MNIST model).', lower_bound=1)
_PGD_STEPS = flags.DEFINE_integer('pgd_steps', 10, 'Strong PGD iterations.',
                                  lower_bound=1)
_PGD_STEP = flags.DEFINE_float('pgd_step_size', 0.25, 'Strong PGD step as a '
                               'fraction of epsilon.', lower_bound=0.0,
                               upper_bound=1.0)
_PGD_ENTROPY = flags.DEFINE_float(
    'pgd_entropy_weight', attacks.AdversarialConfig.pgd_entropy_weight,
    'pgd_entropy: lower the target class\'s cross-entropy plus this times '
    "the attacked ensemble's entropy.", lower_bound=0.0)
_PGD_RAND = flags.DEFINE_boolean('pgd_rand_init', True, 'Strong PGD starts '
                                 'at a random point of the epsilon ball.')
_PAPER_STEPS = flags.DEFINE_integer('paper_steps', 10, 'Paper protocol: '
                                    'most iterative-FGSM steps (foolbox '
                                    "BIM's default).", lower_bound=1)
_PAPER_STEP = flags.DEFINE_float('paper_step_size', 1.0, 'Paper protocol: '
                                 'step in pixel units (the authors\' '
                                 'stepsize=1 jumps to the ball\'s corner).',
                                 lower_bound=0.0, upper_bound=1.0)
_SCALE_SIZE = flags.DEFINE_integer(
    'scale_check_size', 100, 'Paper protocol: ensemble size at which the '
    "authors' input-scale mismatch is measured (one of "
    '--paper_ensemble_sizes).', lower_bound=1)
_TRANSFER = flags.DEFINE_integer(
    'transfer_networks', attacks.AdversarialConfig.transfer_networks,
    'Networks the examples against one network are tested on (0 skips the '
    'transfer experiment).', lower_bound=0)
_FPR = flags.DEFINE_float('fpr', 0.05, 'False-positive rate on clean images '
                          'that sets the entropy threshold.', lower_bound=0.0,
                          upper_bound=1.0)
_STRICT_FPR = flags.DEFINE_float('strict_fpr', 0.01, 'A second, stricter '
                                 'false-positive rate.', lower_bound=0.0,
                                 upper_bound=1.0)
_FULL = flags.DEFINE_boolean(
    'full_sweep', False, 'The full sweep (hours on 2 CPU cores): '
    + ', '.join(f'{k}={v}' for k, v in attacks.FULL_SWEEP.items())
    + '; flags given explicitly win.')
_LABEL = flags.DEFINE_string('model_label', None, 'Model column of '
                             "protocols.md (default: from the run's method).")
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the sampled networks and '
                             'PGD starts.')
_BATCH = flags.DEFINE_integer('batch_size', 100, 'Images per pass.',
                              lower_bound=1)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory '
                                '(default: as trained).')


def _parses(kind, check):
  """A list-flag validator: every item parses as kind and passes check."""
  def validate(values):
    try:
      return bool(values) and all(check(kind(v)) for v in values)
    except ValueError:
      return False
  return validate


flags.register_validator(
    'protocol', lambda v: bool(v) and set(v) <= set(attacks.PROTOCOLS),
    f'--protocol must be a non-empty list among {list(attacks.PROTOCOLS)}.')
flags.register_validator(
    'attacks', lambda v: bool(v) and set(v) <= set(attacks.ATTACKS),
    f'--attacks must be a non-empty list among {list(attacks.ATTACKS)}.')
flags.register_validator(
    'epsilons', _parses(float, lambda e: 0 <= e <= 1),
    '--epsilons must be numbers in [0, 1], e.g. 0.01,0.1,0.3.')
for _name in ('ensemble_sizes', 'paper_ensemble_sizes'):
  flags.register_validator(_name, _parses(int, lambda n: n >= 1),
                           f'--{_name} must be positive integers, e.g. '
                           '10,100.')


def _value(name: str, flag, parse=None):
  """The flag's value; under --full_sweep, the sweep's unless given."""
  swept = _FULL.value and name in attacks.FULL_SWEEP
  if swept and not flags.FLAGS[name].present:
    return attacks.FULL_SWEEP[name]
  value = flag.value
  return tuple(parse(v) for v in value) if parse else value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    cfg = attacks.AdversarialConfig(
        protocols=tuple(_PROTOCOL.value), attacks=tuple(_ATTACKS.value),
        epsilons=tuple(_value('epsilons', _EPSILONS, float)),
        ensemble_sizes=tuple(_value('ensemble_sizes', _SIZES, int)),
        paper_ensemble_sizes=tuple(int(n) for n in _PAPER_SIZES.value),
        num_examples=_value('num_examples', _EXAMPLES),
        pgd_steps=_PGD_STEPS.value, pgd_step_size=_PGD_STEP.value,
        pgd_rand_init=_PGD_RAND.value,
        pgd_entropy_weight=_PGD_ENTROPY.value, paper_steps=_PAPER_STEPS.value,
        paper_step_size=_PAPER_STEP.value,
        scale_check_size=_SCALE_SIZE.value,
        transfer_networks=_value('transfer_networks', _TRANSFER),
        fpr=_FPR.value, strict_fpr=_STRICT_FPR.value, seed=_SEED.value,
        batch_size=_BATCH.value)
    results = adversarial_protocols.run(_RUN_DIR.value, cfg, _DATA_DIR.value,
                                        _LABEL.value)
  except (FileNotFoundError, RuntimeError, ValueError,
          data.DatasetNotFoundError) as e:
    raise SystemExit(f'error: {e}') from None
  headline = sorted(k for k in results if k.startswith('adv') and (
      '_eps0.1_detection_n' in k or 'clean_accuracy' in k or
      'authors_scale' in k))
  logging.info('Wrote %s/adversarial/ (protocols.md, detection_sweep.png; '
               '%.0f s)\n%s', _RUN_DIR.value,
               results['diagnostics']['seconds']['total'],
               '\n'.join(f'{k}: {results[k]:.4f}' for k in headline))


if __name__ == '__main__':
  app.run(main)

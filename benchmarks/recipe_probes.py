"""Probes of the CIFAR recipe: short CIFAR-5 runs, one change each.

  python benchmarks/recipe_probes.py --out_dir=/tmp/recipe_probes \
      --probes=recipe,no_cap,no_adversarial,discriminator_lr_1e-3

Each probe trains `configs/cifar5.flags` for --steps plus its flags
(scripts/train.py, its own process; a finished probe is skipped, an
interrupted one resumes). The table is read from validation and training
summaries only, never from the test split: the adversarial-weight probes
(is the adversarial term kept from swamping the task, and by what) and
the cost probes (networks per step, batch size, mixed
precision against validation accuracy and CPU time). Prints and writes
<out_dir>/probes.md, the BUILD_NOTES.md table. Run it on an idle machine:
the CPU-hours are wall time x cores.
"""

import os

from absl import app
from absl import flags
import numpy as np

from hypergan_tf.experiments import probes
from hypergan_tf.runtime import rundir

PROBES = {
    'recipe': [],
    # Adversarial weight (item 5).
    'no_cap': ['--max_adversarial_ratio=0'],
    'no_adversarial': ['--beta=0'],
    'beta_1': ['--beta=1'],
    'discriminator_lr_1e-3': ['--discriminator_learning_rate=1e-3'],
    'adam_betas_0.9_0.999': ['--adam_beta_1=0.9', '--adam_beta_2=0.999'],
    # Cost (item 6).
    'networks_16': ['--num_networks=16'],
    'networks_32': ['--num_networks=32'],
    'batch_128': ['--batch_size=128'],
    'mixed_precision': ['--mixed_precision'],
}
_OUT = flags.DEFINE_string('out_dir', None, 'Where the probe runs go.',
                           required=True)
_PROBES = probes.define_probes_flag(PROBES, list(PROBES))
_STEPS = flags.DEFINE_integer('steps', 3000, 'Training steps per probe (the '
                              'cosine schedule ends there).', lower_bound=1)
_ARGS = flags.DEFINE_list('extra_flags', [], 'Flags added to every probe '
                          '(e.g. --validation_size=100 for a smoke run).')
EARLY_STEPS = 1000  # Where an unbounded adversarial term swamped the task.


def _early_adversarial_share(run_dir: str) -> float | None:
  """Largest weighted adversarial term / task loss over the first steps.

  Without a cap the weight is not logged: it is the run's constant --beta.
  """
  curves = rundir.read_scalars(
      run_dir, 'train/(adversarial_weight|adversarial_loss|task_loss)')
  if not {'train/adversarial_loss', 'train/task_loss'} <= curves.keys():
    return None
  steps = np.array(curves['train/task_loss'][0])
  adversarial, task = (np.array(curves[f'train/{tag}'][1])
                       for tag in ('adversarial_loss', 'task_loss'))
  weight = (np.array(curves['train/adversarial_weight'][1])
            if 'train/adversarial_weight' in curves
            else rundir.read_config(run_dir)['beta'])
  early = steps <= EARLY_STEPS
  return float(np.max((weight * adversarial / task)[early]))


COLUMNS = [
    probes.Column('val 1 net (end)',
                  probes.scalar('validation/accuracy_n1', lambda v: v[-1])),
    probes.Column('val 10 (end)',
                  probes.scalar('validation/accuracy_n10', lambda v: v[-1])),
    probes.Column('val 10 (best)',
                  probes.scalar('validation/accuracy_n10', np.max)),
    probes.Column(f'max beta x adv / task, steps <= {EARLY_STEPS}',
                  _early_adversarial_share, '{:.3f}'),
    probes.Column('adv loss (end)',
                  probes.scalar('train/adversarial_loss', lambda v: v[-1]),
                  '{:.3f}'),
    probes.Column('disc loss (end)',
                  probes.scalar('train/discriminator_loss', lambda v: v[-1]),
                  '{:.3f}'),
    probes.Column('steps/s (median)',
                  probes.scalar('train/steps_per_second', np.median),
                  '{:.2f}'),
    probes.Column('CPU-h', probes.cpu_hours, '{:.2f}'),
]


def main(argv):
  del argv
  for name in _PROBES.value:
    probes.train('configs/cifar5.flags', os.path.join(_OUT.value, name),
                 [f'--steps={_STEPS.value}', *PROBES[name], *_ARGS.value])
    probes.write_table(_OUT.value, probes.table(_OUT.value, PROBES,
                                                _PROBES.value, COLUMNS))


if __name__ == '__main__':
  app.run(main)

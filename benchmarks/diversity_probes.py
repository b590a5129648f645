"""Probes of the diversity term: quick MNIST runs, one change each.

  python benchmarks/diversity_probes.py --out_dir=/tmp/probes \
      --manual_dir=../shared/data --probes=plain,mi_off,repulsion_off

Each probe trains `configs/mnist_quick.flags` plus its flags (scripts/
train.py), evaluates it (scripts/evaluate.py: accuracy, disagreement, mutual
information, notMNIST) and attacks it (scripts/adversarial.py, strong
protocol, PGD eps = 0.1 on N = 10, scored on a fresh ensemble), each in its
own process; finished parts are skipped, so rerunning resumes. Prints and
writes <out_dir>/probes.md, the BUILD_NOTES.md table.
"""

import os

from absl import app
from absl import flags

from hypergan_tf.experiments import probes

PROBES = {
    'plain': [],
    'mi_off': ['--diversity_weight=1'],
    'mi_off_w0.1': ['--diversity_weight=0.1'],
    'mi_off_w0.3': ['--diversity_weight=0.3'],
    'mi_off_w3': ['--diversity_weight=3'],
    'mi_batch': ['--diversity_weight=1', '--diversity_inputs=batch'],
    'repulsion_off': ['--diversity_weight=1', '--diversity_term=repulsion'],
    'repulsion_batch': ['--diversity_weight=1', '--diversity_term=repulsion',
                        '--diversity_inputs=batch'],
}
_OUT = flags.DEFINE_string('out_dir', None, 'Where the probe runs go.',
                           required=True)
_PROBES = probes.define_probes_flag(PROBES,
                                    ['plain', 'mi_off', 'repulsion_off'])
_MANUAL = flags.DEFINE_string('manual_dir', None, 'Directory holding '
                              'notMNIST_small.tar.gz.')
_EXAMPLES = flags.DEFINE_integer('num_examples', 200, 'Test images attacked.',
                                 lower_bound=1)
_ARGS = flags.DEFINE_list('extra_flags', [], 'Flags added to every probe '
                          '(e.g. --steps=300 for a smoke run).')

COLUMNS = [probes.json_column(title, path, key) for title, path, key in (
    ('1 net', 'eval/metrics.json', 'test/accuracy_n1'),
    ('10', 'eval/metrics.json', 'test/accuracy_n10'),
    ('100', 'eval/metrics.json', 'test/accuracy_n100'),
    ('disagree test', 'eval/metrics.json', 'test/disagreement_n10'),
    ('MI test', 'eval/metrics.json', 'test/mutual_information_n10'),
    ('MI notMNIST', 'eval/metrics.json', 'ood/not_mnist_mutual_information_n10'),
    ('AUROC notMNIST', 'eval/metrics.json', 'ood/not_mnist_auroc_n10'),
    ('notMNIST H>=0.8', 'eval/metrics.json', 'ood/not_mnist_high_entropy_n10'),
    ('MI PGD', 'adversarial/metrics.json',
     'adv/pgd_eps0.1_mutual_information_n10'),
    ('PGD 0.1 detected', 'adversarial/metrics.json',
     'adv/pgd_eps0.1_detection_n10'))] + [
         probes.json_column('train s', 'results.json', 'wall_time_s', '{:.0f}')]


def probe(name: str) -> None:
  run_dir = os.path.join(_OUT.value, name)
  probes.train('configs/mnist_quick.flags', run_dir,
               [*PROBES[name], *_ARGS.value])
  if not os.path.exists(os.path.join(run_dir, 'eval', 'metrics.json')):
    manual = [f'--manual_dir={_MANUAL.value}'] if _MANUAL.value else []
    probes.run_script(['scripts/evaluate.py', f'--run_dir={run_dir}',
                       *manual])
  if not os.path.exists(os.path.join(run_dir, 'adversarial',
                                     'metrics.json')):
    probes.run_script([
        'scripts/adversarial.py', f'--run_dir={run_dir}',
        '--protocol=strong', '--attacks=pgd', '--epsilons=0.1',
        '--ensemble_sizes=10', '--transfer_networks=0',
        f'--num_examples={_EXAMPLES.value}'])


def main(argv):
  del argv
  for name in _PROBES.value:
    probe(name)
    probes.write_table(_OUT.value, probes.table(_OUT.value, PROBES,
                                                _PROBES.value, COLUMNS))


if __name__ == '__main__':
  app.run(main)

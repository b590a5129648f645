"""One markdown table: a HyperGAN run against baseline runs.

  python scripts/compare.py --runs=runs/mnist,runs/baseline_ensemble,\
runs/baseline_mc_dropout,runs/baseline_variational --output=runs/compare.md

Reads each run's eval/metrics.json (scripts/evaluate.py), adversarial/
metrics.json (scripts/adversarial.py) and results.json; what is missing
shows as '—'. Prints the table and writes it to --output if given.
"""

from absl import app
from absl import flags

from hypergan_tf.evaluation import comparison

_RUNS = flags.DEFINE_list('runs', None, 'Run directories, one column each '
                          '(the HyperGAN first, by convention).',
                          required=True)
_LABELS = flags.DEFINE_list('labels', None, 'Column titles, one per run '
                            '(default: the method, e.g. "Ensemble (K=10)").')
_MEMBERS = flags.DEFINE_integer('members', 10, 'Ensemble size of the NLL, '
                                'ECE, OOD and adversarial rows.',
                                lower_bound=1)
_EPSILONS = flags.DEFINE_list('epsilons', None, 'Attack radii shown in the '
                              'adversarial rows (default: all found).')
_OUTPUT = flags.DEFINE_string('output', None, 'Markdown file to write.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    epsilons = _EPSILONS.value and [float(e) for e in _EPSILONS.value]
    text = comparison.compare(_RUNS.value, _LABELS.value, _MEMBERS.value,
                              epsilons)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      f.write(text)
  print(text, end='')


if __name__ == '__main__':
  app.run(main)

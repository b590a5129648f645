"""Accuracy and calibration under dataset shift (Ovadia et al., NeurIPS 2019).

A trained run's members are scored on shifted copies of its test set:
CIFAR-10 and CIFAR-5 on the 15 corruptions of CIFAR-10-C at 5 severities
(`corruptions`, built and cached by the `cifar10_c` TFDS builder), MNIST on
test digits rotated 0 to 180 degrees in 15-degree steps. Every (shift,
level) gets the ensemble's accuracy, NLL, ECE and mean predictive entropy;
CIFAR-5 also the OOD AUROC (by entropy) of the test images of classes 5-9
under the same corruption and severity. The means over corruption types per
severity and over every corrupted set are uncertainty-baselines' cA, cNLL
and cECE; corruptions `corruptions.UNAVAILABLE` / `UNFAITHFUL` name are left
out of the means. For rotations, the means are over the rotated sets
(15-180 degrees). Rotations also apply to the run's validation split
(`validation=True`), for choosing MNIST recipes without the test set.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from hypergan_tf.datasets import cifar10_c
from hypergan_tf.datasets import corruptions
from hypergan_tf.datasets import data
from hypergan_tf.evaluation import evaluation
from hypergan_tf.evaluation import figures
from hypergan_tf.evaluation import metrics
from hypergan_tf.runtime import rundir

OUT_DIR = 'shift_eval'  # Under the run directory.
VALIDATION_OUT_DIR = 'validation_shift_eval'
# Training datasets with a shift (their registry entry's `shift`).
SHIFTED = tuple(name for name, spec in data.DATASETS.items() if spec.shift)


@dataclasses.dataclass(frozen=True)
class ShiftedSet:
  """One shifted copy of a test set: images uint8 [B, ...], labels [B]."""
  name: str  # 'clean', '<corruption>_<severity>' or 'rotation_<degrees>'.
  kind: str  # 'clean', a corruption name, or 'rotation'.
  level: int  # 0 for clean; a severity; degrees.
  images: np.ndarray
  labels: np.ndarray


def shift_of(dataset: str) -> str:
  """The kind of shift a dataset is scored under, with a clear error."""
  if dataset not in SHIFTED:
    raise ValueError(f'No dataset shift is defined for {dataset!r}; '
                     f'--shift evaluates runs trained on {sorted(SHIFTED)}.')
  return data.DATASETS[dataset].shift


def shifted_sets(dataset: str, data_dir: str | None, shift_data_dir: str,
                 num_examples: int | None = None,
                 corruption_names: tuple[str, ...] | None = None,
                 validation_size: int = 0) -> Iterator[ShiftedSet]:
  """The clean test set, then each shifted copy (labels as in the source).

  CIFAR test sets are CIFAR-10's, all ten classes (CIFAR-5 splits them
  itself); corrupted copies are built into shift_data_dir once. With
  validation_size, the run's validation split instead of test: rotations
  only, as CIFAR-10-C's corrupted sets are made from test images.

  Args:
    dataset: the run's training dataset.
    data_dir: TFDS directory holding the clean dataset.
    shift_data_dir: writable TFDS directory for the corrupted copies.
    num_examples: the first num_examples test images only (None: all).
    corruption_names: a subset of `corruptions.CORRUPTIONS` (None: every
      one that can be made).
    validation_size: the run's --validation_size, to shift its validation
      split (0: the test split).
  """
  kind = shift_of(dataset)
  if validation_size and kind != 'rotation':
    raise ValueError(f'{dataset!r} is shifted by corrupted copies of its '
                     'test split, which have no validation counterpart; '
                     'choose its recipes with --validation alone.')
  names = corruption_names or tuple(
      c for c in corruptions.CORRUPTIONS if c not in corruptions.UNAVAILABLE)
  for name in names:  # Before any work: the corrupted sets come last.
    corruptions.check(name, corruptions.SEVERITIES[0])
  if validation_size:
    images, labels = data.arrays(dataset, 'validation', data_dir,
                                 download=False,
                                 validation_size=validation_size)
    images, labels = images[:num_examples], labels[:num_examples]
  else:
    split = f'test[:{num_examples}]' if num_examples else 'test'
    images, labels = data.arrays(data.DATASETS[dataset].source, split,
                                 data_dir, download=False)
  yield ShiftedSet('clean', 'clean', 0, images, labels)
  if kind == 'rotation':
    for degrees in corruptions.ROTATIONS[1:]:
      yield ShiftedSet(f'rotation_{degrees}', 'rotation', degrees,
                       corruptions.rotate(images, degrees), labels)
    return
  for name in names:
    for severity in corruptions.SEVERITIES:
      shifted, shifted_labels = cifar10_c.load(
          shift_data_dir, data.resolve_data_dir(data_dir), name, severity,
          num_examples)
      yield ShiftedSet(f'{name}_{severity}', name, severity, shifted,
                       shifted_labels)


def set_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Accuracy, NLL, ECE and mean entropy of the members' mean prediction."""
  probs = metrics.ensemble_probabilities(logits)
  return {
      'accuracy': metrics.accuracy(probs, labels),
      'nll': metrics.negative_log_likelihood(probs, labels),
      'ece': metrics.expected_calibration_error(probs, labels),
      'entropy': float(np.mean(metrics.entropy(probs))),
  }


def summarise(per_set: dict[str, dict[str, Any]], kind: str
              ) -> dict[str, dict[str, float]]:
  """Means over shift types per level, and over every shifted set.

  'level_<l>' and 'overall' hold cA / cNLL / cECE / cEntropy (and the mean
  OOD AUROC when the sets have one); corruptions that cannot be made
  faithfully are left out.
  """
  excluded = set(corruptions.UNAVAILABLE) | set(corruptions.UNFAITHFUL)
  shifted = [s for s in per_set.values()
             if s['kind'] != 'clean' and s['kind'] not in excluded]
  names = {'accuracy': 'cA', 'nll': 'cNLL', 'ece': 'cECE',
           'entropy': 'cEntropy', 'ood_auroc': 'cOOD_AUROC'}

  def means(sets):
    return {names[m]: float(np.mean([s[m] for s in sets]))
            for m in names if sets and all(m in s for s in sets)}
  out = {f'level_{level}': means([s for s in shifted if s['level'] == level])
         for level in sorted({s['level'] for s in shifted})}
  out['overall'] = means(shifted)
  out['kind'] = kind
  return out


def evaluate_shift(run_dir: str, num_networks: int = 10, seed: int = 0,
                   data_dir: str | None = None,
                   shift_data_dir: str | None = None,
                   num_examples: int | None = None,
                   corruption_names: tuple[str, ...] | None = None,
                   batch_size: int = 500,
                   out_dir: str | None = None,
                   validation: bool = False) -> dict[str, Any]:
  """Scores a run's members under dataset shift; writes <run_dir>/shift_eval/.

  Writes metrics.json (per set, per level, overall, and flat 'shift/cA'-style
  keys for `comparison`) and shift.png (accuracy and ECE against the level).

  Args:
    run_dir: a run directory of scripts/train.py or train_baseline.py.
    num_networks: members in the evaluated ensemble (at most K).
    seed: seed of the sampled members.
    data_dir: TFDS directory of the clean dataset (default: as trained).
    shift_data_dir: writable TFDS directory caching the corrupted sets
      (default: TFDS' own default directory).
    num_examples: score the first num_examples test images only.
    corruption_names: a subset of the corruptions (default: all).
    batch_size: images per forward pass of all members.
    out_dir: where the outputs go (default: <run_dir>/shift_eval, or
      validation_shift_eval with validation).
    validation: shift the run's validation split instead of test
      (rotations only), for choosing recipes.
  """
  validation_size = (evaluation.validation_size_of(run_dir) if validation
                     else 0)
  model, num_networks = evaluation.load_members(run_dir, num_networks)
  kind = shift_of(model.dataset)
  default_dir = VALIDATION_OUT_DIR if validation else OUT_DIR
  out_dir = rundir.writable_dir(out_dir or rundir.join(run_dir, default_dir),
                                '--out_dir')
  # A class subset (CIFAR-5) is scored on its classes of the source's test
  # set; the source's other classes are its out-of-distribution images.
  classes = data.DATASETS[model.dataset].classes
  other_is_ood = classes is not None
  params = model.sample(num_networks, seed)
  shift_data_dir = shift_data_dir or os.path.expanduser(
      tfds.core.constants.DATA_DIR)
  per_set = {}
  for shifted in shifted_sets(model.dataset, data_dir or model.data_dir,
                              shift_data_dir, num_examples,
                              corruption_names, validation_size):
    logits = _logits(model, params, shifted.images, batch_size)
    labels = shifted.labels
    if classes is None:
      inside, in_labels = np.ones(len(labels), bool), labels
    else:
      inside = np.isin(labels, classes)
      in_labels = data.renumber(labels[inside], classes)
    scores = set_scores(logits[:, inside], in_labels)
    if other_is_ood:
      scores['ood_auroc'] = metrics.ood_detection(
          evaluation.ensemble_entropy(logits[:, inside], num_networks),
          evaluation.ensemble_entropy(logits[:, ~inside], num_networks)
      )['auroc']
    per_set[shifted.name] = {'kind': shifted.kind, 'level': shifted.level,
                             **scores}
    logging.info('shift %s: %s', shifted.name, ', '.join(
        f'{k} {v:.4f}' for k, v in scores.items()))
  summary = summarise(per_set, kind)
  flat = {f'shift/{name}': value
          for name, value in summary['overall'].items()}
  payload = {**flat, 'summary': summary, 'sets': per_set,
             'num_networks': num_networks, 'seed': seed, 'step': model.step,
             'run_dir': run_dir, 'out_dir': out_dir,
             'num_examples': num_examples,
             'split': 'validation' if validation else 'test'}
  rundir.write_json(rundir.join(out_dir, 'metrics.json'), payload)
  figures.shift_panels({run_dir: per_set}, kind,
                       rundir.join(out_dir, 'shift.png'),
                       f'{model.dataset} under dataset shift '
                       f'({num_networks} members'
                       f'{", validation" if validation else ""})')
  return payload


def _logits(model, params, images: np.ndarray, batch_size: int
            ) -> np.ndarray:
  """Member logits [N, B, C] of uint8 images, in [0, 1] like data.load's."""
  return np.concatenate([
      np.asarray(model.logits(params, images[i:i + batch_size].astype(
          np.float32) / 255.0))
      for i in range(0, len(images), batch_size)], axis=1)


def read(run_dir: str) -> dict[str, Any]:
  """A run's shift metrics, with a clear error when they were not made."""
  path = rundir.join(run_dir, OUT_DIR, 'metrics.json')
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(
        f'{path} not found: run scripts/evaluate.py --shift '
        f'--run_dir={run_dir} first.')
  return rundir.read_json(path)


def _cell(value: Any, percent: bool = False) -> str:
  if not isinstance(value, (int, float)):
    return '—'
  return f'{100 * value:.2f}' if percent else f'{value:.4f}'


def table(runs: list[tuple[str, str, str]]) -> str:
  """Markdown table of evaluated runs: (dataset label, method label, run dir).

  Clean accuracy, then cA, cNLL, cECE and (CIFAR-5) the mean OOD AUROC
  under shift; '—' for a run not (yet) evaluated under shift.
  """
  lines = ['| dataset | method | members | clean accuracy (%) | cA (%) | '
           'cNLL | cECE | OOD AUROC under shift |',
           '| --- | --- | --- | --- | --- | --- | --- | --- |']
  for dataset, method, run_dir in runs:
    try:
      result = read(run_dir)
    except FileNotFoundError:
      result = {'sets': {}, 'summary': {'overall': {}}}
    clean = result['sets'].get('clean', {})
    overall = result['summary']['overall']
    lines.append(
        f'| {dataset} | {method} | {result.get("num_networks", "—")} | '
        f'{_cell(clean.get("accuracy"), True)} | '
        f'{_cell(overall.get("cA"), True)} | {_cell(overall.get("cNLL"))} | '
        f'{_cell(overall.get("cECE"))} | '
        f'{_cell(overall.get("cOOD_AUROC"))} |')
  return '\n'.join(lines) + '\n'


def figure(runs: dict[str, str], path: str, title: str = '') -> str | None:
  """`figures.shift_panels` of the evaluated runs among {label: run dir}."""
  sets, kinds = {}, set()
  for label, run_dir in runs.items():
    try:
      result = read(run_dir)
    except FileNotFoundError:
      continue
    sets[label] = result['sets']
    kinds.add(result['summary']['kind'])
  if not sets:
    return None
  if len(kinds) > 1:
    raise ValueError(f'Runs under different shifts ({sorted(kinds)}) do not '
                     'share a figure.')
  return figures.shift_panels(sets, kinds.pop(), path, title)

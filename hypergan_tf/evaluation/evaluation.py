"""Evaluation of a trained model: accuracy, calibration, OOD, diversity.

Works on member logits [N, B, C], so any model that can give them (a sampled
HyperGAN, an ensemble) is evaluated the same way. Metric names follow
`split/metric_n<members>`, e.g. 'test/accuracy_n10', 'ood/not_mnist_auroc_n100'.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any, Callable, Iterable

from absl import logging
import numpy as np
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import figures
from hypergan_tf.evaluation import metrics
from hypergan_tf.model import members
from hypergan_tf.model import modes
from hypergan_tf.runtime import rundir

LogitsFn = Callable[[tf.Tensor], tf.Tensor]  # images [B, ...] -> [N, B, C]


def collect(logits_fn: LogitsFn, dataset: Iterable
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Runs the members over a dataset: (logits [N, B, C], labels, images)."""
  logits, labels, images = [], [], []
  for x, y in dataset:
    logits.append(np.asarray(logits_fn(x)))
    labels.append(np.asarray(y))
    images.append(np.asarray(x))
  if not logits:
    raise ValueError('The evaluation dataset is empty.')
  return (np.concatenate(logits, axis=1), np.concatenate(labels),
          np.concatenate(images))


def classification(logits: np.ndarray, labels: np.ndarray,
                   sizes: Iterable[int] = (1, 5, 10, 100),
                   split: str = 'test') -> dict[str, float]:
  """Accuracy, NLL, Brier and ECE of single members and of ensembles.

  N = 1 is reported as mean and std over all members; N = k > 1 is the
  ensemble of the first k members (mean of softmax). The ensemble of all
  members is always among them (a K = 4 BatchEnsemble gets n4).
  """
  logits = np.asarray(logits, np.float32)
  n = logits.shape[0]
  out = {}
  single = metrics.member_accuracies(logits, labels)
  out[f'{split}/accuracy_n1'] = float(single.mean())
  out[f'{split}/accuracy_n1_std'] = float(single.std())
  per_member = {'nll': [], 'brier': [], 'ece': []}
  for member in logits:
    probs = tf.nn.softmax(member)
    per_member['nll'].append(metrics.negative_log_likelihood(probs, labels))
    per_member['brier'].append(metrics.brier_score(probs, labels))
    per_member['ece'].append(
        metrics.expected_calibration_error(probs, labels))
  for name, values in per_member.items():
    out[f'{split}/{name}_n1'] = float(np.mean(values))
  for k in sorted(set(sizes) | {n}):
    if k <= 1 or k > n:
      continue
    probs = metrics.ensemble_probabilities(logits[:k])
    out[f'{split}/accuracy_n{k}'] = metrics.accuracy(probs, labels)
    out[f'{split}/nll_n{k}'] = metrics.negative_log_likelihood(probs, labels)
    out[f'{split}/brier_n{k}'] = metrics.brier_score(probs, labels)
    out[f'{split}/ece_n{k}'] = metrics.expected_calibration_error(probs,
                                                                  labels)
    out.update(disagreement(logits[:k], f'{split}/', f'_n{k}'))
  return out


def by_mode(run_dir: str, logits: np.ndarray, prefix: str
            ) -> dict[str, float]:
  """`modes.disagreement_by_mode` of a run trained with --modes > 1."""
  num_modes = rundir.read_config(run_dir).get('modes', 1)
  if num_modes <= 1:
    return {}
  return modes.disagreement_by_mode(logits, num_modes, prefix)


def disagreement(logits: np.ndarray, prefix: str, suffix: str
                 ) -> dict[str, float]:
  """`metrics.function_diversity`, named prefix + metric + suffix."""
  return {f'{prefix}{name}{suffix}': value
          for name, value in metrics.function_diversity(logits).items()}


def scores(outputs: np.ndarray, labels: np.ndarray, task: str,
           sizes: Iterable[int] = (1, 5, 10, 100), split: str = 'test'
           ) -> dict[str, float]:
  """`classification` or `regression_scores` of member outputs [N, B, C]."""
  if task == 'regression':
    return regression_scores(outputs, labels, sizes, split)
  return classification(outputs, labels, sizes, split)


def write_summaries(outputs: np.ndarray, labels: np.ndarray, split: str,
                    step: int) -> None:
  """TensorBoard pictures of a classification evaluation of N members: the
  ensemble's entropy histogram and reliability diagram."""
  n, _, num_classes = outputs.shape
  if num_classes < 2:  # Regression: no probabilities.
    return
  probs = metrics.ensemble_probabilities(outputs)
  tf.summary.histogram(f'{split}/entropy_n{n}', metrics.entropy(probs), step)
  png = figures.reliability_png(probs.numpy(), labels,
                                title=f'{split}, ensemble of {n}, step {step}')
  tf.summary.image(f'{split}/reliability_n{n}',
                   tf.image.decode_png(png, channels=3)[None], step)


def regression_scores(outputs: np.ndarray, targets: np.ndarray,
                      sizes: Iterable[int] = (1, 5, 10, 100),
                      split: str = 'test') -> dict[str, float]:
  """Mean squared error of single members and of ensembles (mean output).

  outputs: [N, B, 1]; N = 1 is reported as mean and std over all members.
  """
  outputs = np.asarray(outputs, np.float32)[..., 0]
  targets = np.asarray(targets, np.float32)
  single = np.mean((outputs - targets[None])**2, axis=1)
  out = {f'{split}/mse_n1': float(single.mean()),
         f'{split}/mse_n1_std': float(single.std())}
  for k in sizes:
    if 1 < k <= len(outputs):
      out[f'{split}/mse_n{k}'] = float(
          np.mean((outputs[:k].mean(axis=0) - targets)**2))
  return out


def ensemble_entropy(logits: np.ndarray, k: int) -> np.ndarray:
  """Predictive entropy of the first k members' mean softmax: [B]."""
  return metrics.entropy(metrics.ensemble_probabilities(logits[:k])).numpy()


def ecdf_sizes(num_networks: int) -> list[int]:
  """Ensemble sizes of the entropy eCDF figure: 10 and 100, capped at the
  members there are (a K = 5 ensemble draws N = 5, not nothing)."""
  return sorted({min(k, num_networks) for k in (10, 100)})


# The paper (Sec. 4.4): none of its outliers had an entropy below 0.8 nats.
HIGH_ENTROPY = 0.8


def out_of_distribution(in_logits: np.ndarray, out_logits: np.ndarray,
                        name: str, sizes: Iterable[int] = (5, 10, 100)
                        ) -> dict[str, float]:
  """AUROC, AUPR and FPR@95%TPR of ensemble entropy (OOD = positive),
  the AUROC of the members' mutual information (`mi_auroc`: disagreement
  only, blind to inputs every member finds ambiguous), the fraction of OOD
  inputs with entropy >= HIGH_ENTROPY, and the members' disagreement on
  them. Five is the size of the conventional K = 5 ensemble baseline, which
  has no ten members to evaluate; the ensemble of all members is always
  scored too."""
  out = {}
  n = min(in_logits.shape[0], out_logits.shape[0])
  for k in sorted(set(sizes) | {n}):
    if k > n:
      continue
    out_entropy = ensemble_entropy(out_logits, k)
    scores = metrics.ood_detection(ensemble_entropy(in_logits, k),
                                   out_entropy)
    for metric, value in scores.items():
      out[f'ood/{name}_{metric}_n{k}'] = value
    out[f'ood/{name}_mi_auroc_n{k}'] = metrics.ood_detection(
        metrics.mutual_information(in_logits[:k]).numpy(),
        metrics.mutual_information(out_logits[:k]).numpy())['auroc']
    out[f'ood/{name}_high_entropy_n{k}'] = float(
        np.mean(out_entropy >= HIGH_ENTROPY))
    out.update(disagreement(out_logits[:k], f'ood/{name}_', f'_n{k}'))
  return out


def diversity(params) -> dict[str, float]:
  """Mean and std over networks of each layer's parameter L2 norm."""
  out = {}
  for i, (mean, std) in enumerate(metrics.parameter_norms(params)):
    out[f'diversity/layer_{i}_norm_mean'] = mean
    out[f'diversity/layer_{i}_norm_std'] = std
  return out


def report(results: dict[str, float], title: str,
           figures: Iterable[str] = ()) -> str:
  """A markdown report: one table per metric family, then the figures."""
  lines = [f'# {title}', '']
  families: dict[str, list[tuple[str, float]]] = {}
  for key, value in sorted(results.items()):
    families.setdefault(key.split('/')[0], []).append((key, value))
  for family, rows in families.items():
    lines += [f'## {family}', '', '| metric | value |', '| --- | --- |']
    lines += [f'| `{key}` | {value:.4f} |' for key, value in rows]
    lines.append('')
  for figure in figures:
    name = os.path.basename(figure)
    lines += [f'![{name}]({name})', '']
  return '\n'.join(lines)


def summary(results: dict[str, Any]) -> str:
  """One line per headline number, for the console."""
  keys = [k for k in results
          if k.startswith(('test/accuracy', 'validation/accuracy', 'ood/'))
          and ('auroc' in k or 'accuracy' in k)]
  return '\n'.join(f'{k}: {results[k]:.4f}' for k in sorted(keys))


def regression(model, out_dir: str, seed: int = 0,
               sizes: Iterable[int] = (10, 100, 1000),
               data_range: tuple[float, float] = (-4.0, 4.0)
               ) -> tuple[dict[str, float], str]:
  """Predictive mean and spread of a 1-D regression model (paper Fig. 2).

  Members are evaluated on a grid over 1.5x the data range. Reports, per
  ensemble size k: RMSE of the predictive mean against x^3 inside the data
  range, and the mean predictive std inside it and beyond 1.25x its edge.

  Returns:
    (metrics, path of the figure).
  """
  low, high = data_range
  x = np.linspace(1.5 * low, 1.5 * high, 241).astype(np.float32)
  truth = x**3
  inside = (x >= low) & (x <= high)
  outside = (x < 1.25 * low) | (x > 1.25 * high)
  out, predictions = {}, {}
  for k in sizes:
    params = model.sample(k, seed)
    outputs = np.asarray(model.logits(params, x[:, None]))[..., 0]
    predictions[k] = outputs
    mean, std = outputs.mean(axis=0), outputs.std(axis=0)
    out[f'regression/rmse_inside_n{k}'] = float(
        np.sqrt(np.mean((mean[inside] - truth[inside])**2)))
    out[f'regression/max_error_inside_n{k}'] = float(
        np.max(np.abs(mean[inside] - truth[inside])))
    out[f'regression/std_inside_n{k}'] = float(std[inside].mean())
    out[f'regression/std_outside_n{k}'] = float(std[outside].mean())
  data_x, data_y = data.arrays(model.dataset, 'train')
  path = figures.regression_predictive(
      x, truth, data_x[:, 0], data_y, predictions,
      rundir.join(out_dir, 'regression.png'), data_range)
  return out, path


def load_members(run_dir: str, num_networks: int
                 ) -> tuple[members.Members, int]:
  """The run's members, and how many of them can be evaluated (an ensemble
  of K has K; the shortfall is logged)."""
  model = members.load(run_dir)
  if model.max_members is not None and num_networks > model.max_members:
    logging.warning('%s has %d members; evaluating %d, not %d.', run_dir,
                    model.max_members, model.max_members, num_networks)
    num_networks = model.max_members
  return model, num_networks


def evaluate_run(run_dir: str, num_networks: int = 100, seed: int = 0,
                 data_dir: str | None = None, ood_data_dir: str | None = None,
                 manual_dir: str | None = None,
                 batch_size: int = 100,
                 out_dir: str | None = None) -> dict[str, Any]:
  """Evaluates the model of a run directory; writes <run_dir>/eval/.

  Writes metrics.json, report.md and PNG figures: reliability diagram,
  accuracy against training step (from the run's TensorBoard summaries),
  entropy eCDFs (in-distribution vs OOD), first-layer filters, the most
  uncertain test images and the most confident OOD images.

  Args:
    run_dir: a run directory of scripts/train.py.
    num_networks: networks sampled (the largest ensemble evaluated).
    seed: seed of the sampled networks.
    data_dir: TFDS directory of the training dataset.
    ood_data_dir: writable TFDS directory for the project-built OOD set
      (default: <out_dir>/tfds).
    manual_dir: directory holding the OOD archive (notMNIST_small.tar.gz).
    batch_size: images per forward pass of all networks.
    out_dir: where the outputs go (default: <run_dir>/eval).

  Returns:
    The metrics dict written to metrics.json.

  Raises:
    rundir.WriteError: out_dir cannot be written (checked before any work,
      after the run directory: a mistyped --run_dir creates nothing).
  """
  model, num_networks = load_members(run_dir, num_networks)
  out_dir = rundir.writable_dir(out_dir or rundir.join(run_dir, 'eval'),
                                '--out_dir')
  dataset = model.dataset
  if data.DATASETS[dataset].task == 'regression':
    results, path = regression(model, out_dir, seed)
    return _write(results, [path], out_dir, num_networks, seed, model.step,
                  run_dir)
  params = model.sample(num_networks, seed)
  logits_fn = lambda x: model.logits(params, x)
  test = data.load(dataset, 'test', batch_size, training=False,
                   data_dir=data_dir or model.data_dir, download=False)
  logits, labels, images = collect(logits_fn, test)
  results: dict[str, Any] = classification(logits, labels)
  results.update(by_mode(run_dir, logits, 'test/'))
  results.update(diversity(params))
  num_classes = logits.shape[-1]
  paths = []
  probs = metrics.ensemble_probabilities(logits[:min(10, num_networks)])
  paths.append(figures.reliability_diagram(
      probs.numpy(), labels, rundir.join(out_dir, 'reliability.png'),
      title=f'Reliability, ensemble of {min(10, num_networks)}'))
  curves = rundir.read_scalars(
      run_dir, r'train/accuracy|(validation|test)/accuracy_n\d+')
  if curves:
    paths.append(figures.accuracy_curves(
        curves, rundir.join(out_dir, 'accuracy_vs_step.png'),
        f'{run_dir}: accuracy against step'))
  paths.append(figures.first_layer_filters(
      params[0][0].numpy(), rundir.join(out_dir, 'filters.png')))
  k = num_networks
  in_entropy = ensemble_entropy(logits, k)
  order = np.argsort(-in_entropy)[:16]
  paths.append(figures.image_grid(
      images[order], [f'y={labels[i]} H={in_entropy[i]:.2f}' for i in order],
      rundir.join(out_dir, 'uncertain_test.png'),
      f'Most uncertain {dataset} test images (N={k})'))
  ood_name = data.DATASETS[dataset].ood_set
  skipped = {}
  ood = None
  if ood_name:
    # notMNIST is built here from its archive; others are TFDS subsets.
    built_here = data.DATASETS[ood_name].source == 'not_mnist'
    ood_dir = ((ood_data_dir or _local_tfds_dir(out_dir)) if built_here
               else data_dir or model.data_dir)
    try:
      ood = data.load(ood_name, 'test', batch_size, training=False,
                      data_dir=ood_dir, manual_dir=manual_dir,
                      download=False)
    except data.DatasetNotFoundError as e:
      skipped[f'ood/{ood_name}'] = str(e)
      logging.warning('Skipping the out-of-distribution part: %s', e)
  if ood is not None:
    ood_logits, _, ood_images = collect(logits_fn, ood)
    results.update(out_of_distribution(logits, ood_logits, ood_name))
    entropies = {}
    for size in ecdf_sizes(num_networks):
      entropies[f'{dataset} N={size}'] = ensemble_entropy(logits, size)
      entropies[f'{ood_name} N={size}'] = ensemble_entropy(ood_logits, size)
    paths.append(figures.entropy_ecdf(
        entropies, rundir.join(out_dir, 'entropy_ecdf.png'),
        float(np.log(num_classes)),
        f'Predictive entropy: {dataset} vs {ood_name}'))
    ood_entropy = ensemble_entropy(ood_logits, k)
    order = np.argsort(ood_entropy)[:16]
    ood_pred = metrics.ensemble_probabilities(ood_logits[:, order]).numpy()
    paths.append(figures.image_grid(
        ood_images[order],
        [f'pred {p.argmax()} H={ood_entropy[i]:.2f}'
         for p, i in zip(ood_pred, order)],
        rundir.join(out_dir, 'confident_ood.png'),
        f'Most confident {ood_name} images (N={k})'))
  return _write(results, paths, out_dir, num_networks, seed, model.step,
                run_dir, skipped)


VALIDATION_DIR = 'validation_eval'  # Under the run directory.


def validation_size_of(run_dir: str) -> int:
  """The run's --validation_size, or a clear error if it held none out."""
  validation_size = rundir.read_config(run_dir).get('validation_size', 0)
  if not validation_size:
    raise ValueError(f'{run_dir} has no validation split (it was trained '
                     'with --validation_size=0); evaluate it on test with '
                     'scripts/evaluate.py, or train with --validation_size.')
  return validation_size


def evaluate_validation(run_dir: str, num_networks: int = 10, seed: int = 0,
                        data_dir: str | None = None, ood_examples: int = 5000,
                        batch_size: int = 100,
                        out_dir: str | None = None) -> dict[str, Any]:
  """Scores for choosing recipes, from no test image at all.

  The run's validation split (held out of training by --validation_size)
  and, where the dataset has one, its validation OOD set
  (the dataset's `validation_ood`; CIFAR-5: CIFAR-10 training images of classes
  5-9, the first ood_examples of them): accuracy, NLL, ECE, disagreement
  and mutual information of ensembles up to num_networks, and OOD AUROC by
  entropy and by mutual information. Writes
  <run_dir>/validation_eval/metrics.json.

  Raises:
    ValueError: the run was trained without a validation split.
  """
  validation_size = validation_size_of(run_dir)
  model, num_networks = load_members(run_dir, num_networks)
  out_dir = rundir.writable_dir(
      out_dir or rundir.join(run_dir, VALIDATION_DIR), '--out_dir')
  params = model.sample(num_networks, seed)
  logits_fn = lambda x: model.logits(params, x)
  common = dict(data_dir=data_dir or model.data_dir, download=False)
  validation = data.load(model.dataset, 'validation', batch_size,
                         training=False, validation_size=validation_size,
                         **common)
  logits, labels, _ = collect(logits_fn, validation)
  results = classification(logits, labels, split='validation')
  results.update(by_mode(run_dir, logits, 'validation/'))
  if data.DATASETS[model.dataset].validation_ood:
    name, split = data.DATASETS[model.dataset].validation_ood
    ood = data.load(name, split, batch_size, training=False, **common)
    ood_logits, _, _ = collect(
        logits_fn, ood.take(math.ceil(ood_examples / batch_size)))
    results.update(out_of_distribution(logits, ood_logits, f'{name}_{split}'))
  payload = {**{key: float(value) for key, value in results.items()},
             'num_networks': num_networks, 'seed': seed, 'step': model.step,
             'run_dir': run_dir, 'out_dir': out_dir,
             'ood_examples': ood_examples}
  rundir.write_json(rundir.join(out_dir, 'metrics.json'), payload)
  return payload


def _local_tfds_dir(out_dir: str) -> str:
  """Where notMNIST is built: <out_dir>/tfds, or a temp dir off local disk.

  The TFDS builder writes with local tools, so a remote or in-memory run
  directory gets its OOD data in a temporary directory instead.
  """
  if '://' in out_dir:
    return os.path.join(tempfile.gettempdir(), 'hypergan_tfds')
  return os.path.join(out_dir, 'tfds')


def _write(results: dict[str, Any], paths: list[str], out_dir: str,
           num_networks: int, seed: int, step: int, run_dir: str,
           skipped: dict[str, str] | None = None) -> dict[str, Any]:
  """Writes metrics.json and report.md atomically; returns the payload.

  skipped: parts left out ({name: why and how to get them}).
  """
  results = {key: float(value) for key, value in results.items()}
  payload = {**results, 'num_networks': num_networks, 'seed': seed,
             'step': step, 'run_dir': run_dir, 'out_dir': out_dir,
             'skipped': skipped or {}}
  rundir.write_json(rundir.join(out_dir, 'metrics.json'), payload)
  text = report(results, f'Evaluation of {run_dir} (step {step}, '
                f'{num_networks} sampled networks)', paths)
  if skipped:
    text += '\n\nSkipped:\n' + '\n'.join(
        f'- {name}: {why}' for name, why in skipped.items()) + '\n'
  rundir.write_text(rundir.join(out_dir, 'report.md'), text)
  return payload

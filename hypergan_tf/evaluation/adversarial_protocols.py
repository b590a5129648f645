"""The paper's adversarial-detection protocol beside the strong one.

The paper reports that HyperGAN ensembles detect over 97% of FGSM and PGD
examples by their predictive entropy; the strong, white-box protocol of
`attacks.ensemble_attacks` finds far less. This module rebuilds what the
authors' scripts did (neale/HyperGAN up to 75e60fa, `run_adv_hyper`) so the
two can be read side by side, differing one thing at a time:

- Paper protocol (`paper_protocol`): examples are made against ONE sampled
  network (a finite ensemble, which cannot sample: all its members through
  their mean logits, the authors' `FusedNet`) by an iterative FGSM that
  stops, per example, at the first step that fools that network (foolbox
  BIM with `stepsize=1`, at most 10 steps, no random start; FGSM is the same
  with one step). Only successful examples of images the source classifies
  correctly are kept, and they are scored on freshly sampled ensembles of
  10 / 100 / 1000 networks that share no parameters with the source.
- Strong protocol (`attacks.ensemble_attacks`): the scored ensemble itself is
  attacked (PGD with a random start on its mean softmax); detection over all
  adversarial images, and over the successful ones only.

Both report per-image entropies, detection at 5% and 1% clean false
positives, the AUROC of clean vs adversarial entropy, the number of examples
scored and the accuracy on them.

The input-scale effect: the authors standardised clean inputs with the MNIST
mean and std (0.1307, 0.3081) but fed foolbox's [0, 1] adversarial images
to the same network unstandardised. In the [0, 1] pixel space of this
project's models that network saw x_adv * 0.3081 + 0.1307 (`authors_scale`),
a low-contrast image. `input_scale_check` scores the kept examples so, the
clean ones unchanged, to show how much detection the mismatch alone buys.
It is a measurement, not a feature.
"""

from __future__ import annotations

import dataclasses
import io
import time
from typing import Any, Sequence

from absl import logging
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
import numpy as np
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import attacks
from hypergan_tf.evaluation import evaluation
from hypergan_tf.evaluation import figures
from hypergan_tf.evaluation import metrics
from hypergan_tf.model import members
from hypergan_tf.runtime import rundir

# The authors' MNIST standardisation, as constants: whatever a model does
# inside, the check reproduces what their network received.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# Attack names in the paper protocol: its 'pgd' row is the authors' BIM.
PAPER_ATTACKS = {'fgsm': 'fgsm', 'pgd': 'bim'}
# Attack names in tables and figure panels.
ATTACK_NAMES = {'fgsm': 'FGSM', 'pgd': 'PGD',
                'pgd_entropy': 'PGD, wrong and sure (adaptive)'}
# Seed offsets of the paper protocol's networks (the strong protocol and
# the transfer experiment use seed + 0..3).
_SOURCE_SEED, _FRESH_SEED = 4, 5


def authors_scale(images: np.ndarray) -> np.ndarray:
  """What the authors' network saw of a [0, 1] adversarial image."""
  return (np.asarray(images, np.float32) * MNIST_STD +
          MNIST_MEAN).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class EarlyStopped:
  """An early-stopped attack's outcome, one entry per image.

  Attributes:
    adversarial: [B, ...] the image when the attack stopped.
    clean_correct: [B] the source classifies the clean image correctly.
    steps: [B] the step that first fooled the source; 0 for images it gets
      wrong when clean (not attacked), -1 for images never fooled.
  """
  adversarial: np.ndarray
  clean_correct: np.ndarray
  steps: np.ndarray

  @property
  def kept(self) -> np.ndarray:
    """Successful examples of correctly classified images: [B] bool."""
    return self.clean_correct & (self.steps > 0)


def _predictions(attacker: attacks.EnsembleAttack, x: tf.Tensor) -> np.ndarray:
  return tf.argmax(attacker.model_fn(x), axis=1).numpy()


def _early_stopped_batch(attacker: attacks.EnsembleAttack, images: np.ndarray,
                         labels: np.ndarray, eps: float, max_steps: int,
                         step_size: float) -> EarlyStopped:
  """One fixed-shape batch of `early_stopped_fgsm`."""
  x0 = tf.constant(images, tf.float32)
  y = tf.constant(labels, tf.int64)  # One dtype: no retrace.
  correct = _predictions(attacker, x0) == labels
  steps = np.where(correct, -1, 0)
  x = x0
  mask_shape = [-1] + [1] * (len(images.shape) - 1)
  for step in range(1, max_steps + 1):
    active = steps < 0
    if eps == 0 or not active.any():
      break
    # cleverhans' FGSM from the current point, then back into the eps-ball.
    stepped = fast_gradient_method(
        attacker.model_fn, x, step_size, np.inf, clip_min=attacks.CLIP_MIN,
        clip_max=attacks.CLIP_MAX, y=y)
    projected = tf.clip_by_value(
        x0 + tf.clip_by_value(stepped - x0, -eps, eps), attacks.CLIP_MIN,
        attacks.CLIP_MAX)
    x = tf.where(tf.reshape(active, mask_shape), projected, x)
    fooled = _predictions(attacker, x) != labels
    steps = np.where(active & fooled, step, steps)
  return EarlyStopped(np.asarray(x), correct, steps)


def early_stopped_fgsm(attacker: attacks.EnsembleAttack, images: np.ndarray,
                       labels: np.ndarray, eps: float, max_steps: int = 10,
                       step_size: float = 1.0,
                       batch_size: int = 100) -> EarlyStopped:
  """The authors' attack: iterative FGSM that stops at each first success.

  Each step is cleverhans' FGSM of `step_size` (pixel units; the authors'
  foolbox `stepsize=1` jumps to the eps-ball's corner) from the current
  image, projected back into the L-infinity eps-ball around the clean image
  and [0, 1]. An image stops changing at the first step whose result the
  attacked network misclassifies; images it misclassifies when clean are
  not attacked. `max_steps=1` is FGSM with its failures marked.

  Args:
    attacker: an `attacks.EnsembleAttack` holding the source network(s); its
      persistent `model_fn` keeps this at one trace per attacker.
    images: [B, ...] in [0, 1].
    labels: [B] true labels.
    eps: L-infinity radius (0 attacks nothing).
    max_steps: most steps per image.
    step_size: step in pixel units.
    batch_size: images per attacked batch (padded: one traced shape).
  """
  if eps < 0:
    raise ValueError(f'eps must be >= 0, got {eps}.')
  if max_steps < 1 or step_size <= 0:
    raise ValueError(f'max_steps ({max_steps}) and step_size ({step_size}) '
                     'must be positive.')
  labels = np.asarray(labels)
  parts = []
  for start, (batch, real) in zip(range(0, len(images), batch_size),
                                  attacks.fixed_batches(images, batch_size)):
    y = labels[start:start + batch_size]
    y = np.concatenate([y, np.repeat(y[:1], batch_size - real)])
    part = _early_stopped_batch(attacker, batch, y, eps, max_steps,
                                step_size)
    parts.append(EarlyStopped(part.adversarial[:real],
                              part.clean_correct[:real], part.steps[:real]))
  return EarlyStopped(*(np.concatenate([getattr(p, f.name) for p in parts])
                        for f in dataclasses.fields(EarlyStopped)))


def _slice(params, n: int):
  return tf.nest.map_structure(lambda p: p[:n], params)


@dataclasses.dataclass
class PaperNetworks:
  """The attacked source and the fresh networks that score its examples."""
  source: Any  # Parameter nest of the source member(s).
  fresh: Any  # Parameter nest of max(sizes) members; size n is [:n].
  sizes: list[int]
  fuse: str  # How the source members are fused ('softmax': one network).
  overlap: bool  # Fresh members may be source members (finite ensembles).


def paper_networks(model, sizes: Sequence[int], seed: int) -> PaperNetworks:
  """One sampled source network and fresh ensembles that share none of it.

  A finite ensemble (`max_members` K) cannot sample new networks: its
  source is all K members through their mean logits, as the authors
  attacked ordinary ensembles, and it is scored on its own members (sizes
  above K are dropped; `overlap` says so).
  """
  k = model.max_members
  if k is None:
    return PaperNetworks(model.sample(1, seed + _SOURCE_SEED),
                         model.sample(max(sizes), seed + _FRESH_SEED),
                         sorted(set(sizes)), 'softmax', overlap=False)
  fitting = sorted({n for n in sizes if n <= k}) or [k]
  if fitting != sorted(set(sizes)):
    logging.warning('Paper protocol: the model has %d members; ensemble '
                    'sizes %s instead of %s.', k, fitting, sorted(sizes))
  everyone = model.sample(k, seed + _SOURCE_SEED)
  return PaperNetworks(everyone, _slice(everyone, max(fitting)), fitting,
                       'logits', overlap=True)


def _paper_attacks(cfg: attacks.AdversarialConfig) -> list[str]:
  """The requested attacks the paper protocol has (not the adaptive one)."""
  return [a for a in cfg.attacks if a in PAPER_ATTACKS]


def _paper_key(attack: str, eps: float, what: str) -> str:
  return f'adv_paper/{PAPER_ATTACKS[attack]}_eps{eps:g}_{what}'


def paper_protocol(model, images: np.ndarray, labels: np.ndarray,
                   cfg: attacks.AdversarialConfig
                   ) -> tuple[dict[str, float], dict[Any, np.ndarray], int]:
  """The authors' protocol: attack one network, score on fresh ensembles.

  Returns:
    (metrics keyed 'adv_paper/...', per-image entropies {('clean', n):
    [B], (attack, eps, n): entropies of the kept examples}, traces of the
    attack's model_fn: one for the whole sweep).
  """
  nets = paper_networks(model, cfg.paper_ensemble_sizes, cfg.seed)
  num_source = int(tf.nest.flatten(nets.source)[0].shape[0])
  attacker = attacks.EnsembleAttack(model, num_source, fuse=nets.fuse)
  attacker.set_members(nets.source)
  eval_kw = dict(batch_size=cfg.batch_size)
  fresh_clean = attacks.member_logits(model, nets.fresh, images, **eval_kw)
  clean_entropy = {n: attacks.entropies(fresh_clean[:n]) for n in nets.sizes}
  out: dict[str, float] = {'adv_paper/source_networks': float(num_source),
                           'adv_paper/members_overlap': float(nets.overlap)}
  for n in nets.sizes:
    out[f'adv_paper/clean_accuracy_n{n}'] = metrics.accuracy(
        metrics.ensemble_probabilities(fresh_clean[:n]), labels)
    out[f'adv_paper/entropy_threshold_n{n}'] = attacks.entropy_threshold(
        clean_entropy[n], cfg.fpr)
  per_image: dict[Any, np.ndarray] = {
      ('clean', n): v for n, v in clean_entropy.items()}
  scale_n = cfg.scale_check_size if cfg.scale_check_size in nets.sizes else (
      None)
  for attack in _paper_attacks(cfg):
    max_steps = 1 if attack == 'fgsm' else cfg.paper_steps
    for eps in cfg.epsilons:
      start = time.time()
      result = early_stopped_fgsm(attacker, images, labels, eps, max_steps,
                                  cfg.paper_step_size, cfg.batch_size)
      kept = result.kept
      key = lambda what, a=attack, e=eps: _paper_key(a, e, what)
      out['adv_paper/source_clean_accuracy'] = float(
          result.clean_correct.mean())
      out[key('num_kept')] = float(kept.sum())
      out[key('source_fooled')] = float(kept.sum() / max(
          result.clean_correct.sum(), 1))
      out[key('mean_steps')] = (float(result.steps[kept].mean())
                                if kept.any() else float('nan'))
      adv = result.adversarial[kept]
      logits = (attacks.member_logits(model, nets.fresh, adv, **eval_kw)
                if kept.any() else None)
      for n in nets.sizes:
        entropy = (attacks.entropies(logits[:n]) if logits is not None
                   else np.zeros([0], np.float32))
        per_image[(attack, eps, n)] = entropy
        scores = attacks.detection_summary(clean_entropy[n], entropy,
                                           cfg.fpr, cfg.strict_fpr)
        for what, value in scores.items():
          out[key(f'{what}_n{n}')] = value
        out[key(f'accuracy_n{n}')] = (
            metrics.accuracy(metrics.ensemble_probabilities(logits[:n]),
                             labels[kept])
            if logits is not None else float('nan'))
      if scale_n is not None:
        out[key(f'detection_authors_scale_n{scale_n}')] = input_scale_check(
            model, _slice(nets.fresh, scale_n), adv, clean_entropy[scale_n],
            cfg.fpr, cfg.batch_size)
      logging.info(
          'paper %s eps=%g: kept %d of %d (source right on %d), detection '
          '%s (%.1f s, %d traces)', PAPER_ATTACKS[attack], eps, kept.sum(),
          len(kept), result.clean_correct.sum(),
          ', '.join(f'N={n} {out[key(f"detection_n{n}")]:.3f}'
                    for n in nets.sizes), time.time() - start,
          attacker.trace_count)
  return out, per_image, attacker.trace_count


def input_scale_check(model, params, adversarial: np.ndarray,
                      clean_entropy: np.ndarray, fpr: float,
                      batch_size: int = 100) -> float:
  """Detection rate with only the adversarial images at the authors' scale.

  Args:
    model: a `members.Members`.
    params: the scoring ensemble.
    adversarial: [K, ...] kept adversarial images in [0, 1].
    clean_entropy: the same ensemble's entropies on clean images, which set
      the threshold (unchanged: that is the mismatch being measured).
    fpr: clean false-positive rate of the threshold.
    batch_size: images per pass.
  """
  if not len(adversarial):
    return float('nan')
  logits = attacks.member_logits(model, params, authors_scale(adversarial),
                                 batch_size=batch_size)
  return attacks.detection_rate(attacks.entropies(logits),
                                attacks.entropy_threshold(clean_entropy, fpr))


def _cell(value: float | None) -> str:
  if value is None or not np.isfinite(value):
    return '—'
  return f'{100 * value:.1f}'


def protocols_table(label: str, results: dict[str, float],
                    cfg: attacks.AdversarialConfig) -> str:
  """Detection (%) rows of one model, RESULTS.md's shape.

  Columns: model, attack, epsilon, paper protocol at each
  `paper_ensemble_sizes`, strong protocol at each `ensemble_sizes`. Tables
  of two runs concatenate under one header.
  """
  head = (['model', 'attack', 'ε'] +
          [f'paper N={n}' for n in cfg.paper_ensemble_sizes] +
          [f'strong N={n}' for n in cfg.ensemble_sizes])
  lines = ['| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
  names = {**ATTACK_NAMES, 'pgd': 'PGD / iterative'}  # Its row holds BIM.
  for attack in cfg.attacks:
    for eps in cfg.epsilons:
      row = [label, names[attack], f'{eps:g}']
      row += [_cell(results.get(_paper_key(attack, eps, f'detection_n{n}'))
                    if attack in PAPER_ATTACKS else None)
              for n in cfg.paper_ensemble_sizes]
      row += [_cell(results.get(f'adv/{attack}_eps{eps:g}_detection_n{n}'))
              for n in cfg.ensemble_sizes]
      lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines) + '\n'


def _headline_eps(cfg: attacks.AdversarialConfig) -> float:
  return 0.1 if 0.1 in cfg.epsilons else max(cfg.epsilons)


def input_scale_note(results: dict[str, float],
                     cfg: attacks.AdversarialConfig) -> str:
  """One sentence: paper-protocol detection with and without the mismatch."""
  n, eps = cfg.scale_check_size, _headline_eps(cfg)
  parts = []
  for attack in _paper_attacks(cfg):
    scaled = results.get(_paper_key(attack, eps,
                                    f'detection_authors_scale_n{n}'))
    same = results.get(_paper_key(attack, eps, f'detection_n{n}'))
    if scaled is None:
      continue
    parts.append(f'{PAPER_ATTACKS[attack].upper()} {_cell(scaled)}% '
                 f'(same scale: {_cell(same)}%)')
  if not parts:
    return (f'Input scale: not measured (needs the paper protocol with '
            f'N={n} among its ensemble sizes).\n')
  return (f'Input scale: with the adversarial images passed as the authors\' '
          f'network saw them (x·{MNIST_STD} + {MNIST_MEAN}, clean images '
          f'unchanged), the paper protocol at ε = {eps:g}, N = {n} detects '
          + '; '.join(parts) + ' at 5% clean false positives.\n')


def _details(results: dict[str, float], cfg: attacks.AdversarialConfig
             ) -> str:
  """Every number behind the main table, one row per setting."""
  lines = []
  if 'paper' in cfg.protocols:
    lines += ['### Paper protocol', '',
              '| attack | ε | kept | source fooled % | mean steps | N | '
              'det. 5% | det. 1% | AUROC % | accuracy on kept % | '
              'mean entropy (nats) | det. 5%, authors\' scale |',
              '|' + '---|' * 12]
    for attack in _paper_attacks(cfg):
      for eps in cfg.epsilons:
        get = lambda w, a=attack, e=eps: results.get(_paper_key(a, e, w))
        for n in cfg.paper_ensemble_sizes:
          if get(f'detection_n{n}') is None:
            continue
          scale = get(f'detection_authors_scale_n{n}')
          lines.append(
              f'| {PAPER_ATTACKS[attack]} | {eps:g} | '
              f'{int(get("num_kept"))} | {_cell(get("source_fooled"))} | '
              f'{get("mean_steps"):.2f} | {n} | '
              f'{_cell(get(f"detection_n{n}"))} | '
              f'{_cell(get(f"detection_fpr1_n{n}"))} | '
              f'{_cell(get(f"auroc_n{n}"))} | '
              f'{_cell(get(f"accuracy_n{n}"))} | '
              f'{get(f"entropy_mean_n{n}"):.4f} | '
              f'{_cell(scale) if scale is not None else ""} |')
    lines.append('')
  if 'strong' in cfg.protocols:
    lines += ['### Strong protocol (fresh ensemble)', '',
              '| attack | ε | N | det. 5% | det. 1% | AUROC % | accuracy % | '
              'successful | det. 5% succ. | det. 1% succ. | '
              'accuracy succ. % |', '|' + '---|' * 11]
    for attack in cfg.attacks:
      for eps in cfg.epsilons:
        for n in cfg.ensemble_sizes:
          get = lambda w, a=attack, e=eps, n=n: results.get(
              f'adv/{a}_eps{e:g}_{w}_n{n}')
          if get('detection') is None:
            continue
          lines.append(
              f'| {attack} | {eps:g} | {n} | {_cell(get("detection"))} | '
              f'{_cell(get("detection_fpr1"))} | {_cell(get("auroc"))} | '
              f'{_cell(get("accuracy_fresh"))} | '
              f'{int(get("num_successful"))} | '
              f'{_cell(get("detection_successful"))} | '
              f'{_cell(get("detection_fpr1_successful"))} | '
              f'{_cell(get("accuracy_successful"))} |')
    lines.append('')
  return '\n'.join(lines)


def protocols_markdown(label: str, results: dict[str, float],
                       cfg: attacks.AdversarialConfig,
                       num_examples: int) -> str:
  """protocols.md: the RESULTS.md table, the input-scale number, details."""
  return '\n'.join([
      f'Detection (%) of adversarial examples by ensemble entropy at '
      f'{cfg.fpr:.0%} false positives on {num_examples} clean MNIST test '
      'images. Paper protocol: examples against one sampled network, '
      'early-stopped (FGSM: 1 step; iterative: BIM, step 1, at most '
      f'{cfg.paper_steps} steps, no random start), only successful ones on '
      'correctly classified images, scored on fresh ensembles. Strong '
      'protocol: the ensemble itself attacked (cleverhans FGSM; PGD, '
      f'{cfg.pgd_steps} steps of {cfg.pgd_step_size:g}·ε, random start), '
      'all adversarial images, scored on a fresh ensemble. — : not run.',
      '',
      protocols_table(label, results, cfg),
      input_scale_note(results, cfg),
      '## Details', '',
      'Detection rates (det.) in % of the scored examples. Paper: `kept` '
      'successful examples of images the source classifies correctly, '
      '`mean steps` to the first success. Strong: `successful` = images the '
      'attacked ensemble classifies correctly when clean and wrongly when '
      'attacked.', '',
      _details(results, cfg)])


def detection_sweep_panels(results: dict[str, float],
                           cfg: attacks.AdversarialConfig,
                           paper_sizes: Sequence[int],
                           strong_sizes: Sequence[int]) -> dict:
  """Figure series: panel per protocol x attack, line per ensemble size."""
  panels: dict[str, dict[tuple[str, str], list[float]]] = {}
  nan = float('nan')
  for attack in _paper_attacks(cfg):
    if 'paper' in cfg.protocols and paper_sizes:
      name = ('paper: FGSM' if attack == 'fgsm' else
              'paper: iterative FGSM (BIM), early-stopped')
      lines = {(f'N={n}', '-'): [results.get(_paper_key(
          attack, e, f'detection_n{n}'), nan) for e in cfg.epsilons]
               for n in paper_sizes}
      n = cfg.scale_check_size
      if n in paper_sizes:
        lines[(f'N={n} authors\' input scale', ':')] = [results.get(
            _paper_key(attack, e, f'detection_authors_scale_n{n}'), nan)
                                                     for e in cfg.epsilons]
      panels[name] = lines
  for attack in cfg.attacks:
    if 'strong' in cfg.protocols and strong_sizes:
      lines = {}
      for n in strong_sizes:
        for what, style, suffix in (('detection', '-', 'all'),
                                    ('detection_successful', '--',
                                     'successful only')):
          lines[(f'N={n} {suffix}', style)] = [results.get(
              f'adv/{attack}_eps{e:g}_{what}_n{n}', nan)
                                               for e in cfg.epsilons]
      panels[f'strong: {ATTACK_NAMES[attack]}'] = lines
  return panels


def model_label(run_dir: str, model) -> str:
  """'HyperGAN', 'Ensemble (K=10)', ...: the run's method, for tables."""
  method = rundir.read_config(run_dir).get('method', 'hypergan')
  label = members.label(method)
  if model.max_members is not None:
    label += f' (K={model.max_members})'
  return label


def _load_test_images(model, cfg: attacks.AdversarialConfig,
                      data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  images, labels = [], []
  for x, y in data.load(model.dataset, f'test[:{cfg.num_examples}]',
                        cfg.batch_size, training=False,
                        data_dir=data_dir or model.data_dir, download=False):
    images.append(x.numpy())
    labels.append(y.numpy())
  return np.concatenate(images), np.concatenate(labels)


def _strong_sizes(model, cfg: attacks.AdversarialConfig) -> list[int]:
  sizes = []
  for n in cfg.ensemble_sizes:
    if model.max_members is not None and n > model.max_members:
      logging.warning('Strong protocol: skipping N=%d, the model has %d '
                      'members.', n, model.max_members)
      continue
    sizes.append(n)
  return sizes


def _save_entropies(path: str, strong: dict, paper: dict) -> None:
  """Per-image entropies as flat arrays in one .npz."""
  arrays = {}
  for n, per_image in strong.items():
    for key, value in per_image.items():
      if key == 'clean':
        arrays[f'strong_n{n}_clean'] = value
      elif len(key) == 2:
        arrays[f'strong_n{n}_{key[0]}_eps{key[1]:g}'] = value
      else:
        arrays[f'strong_n{n}_{key[0]}_eps{key[1]:g}_successful'] = value
  for key, value in paper.items():
    if key[0] == 'clean':
      arrays[f'paper_n{key[1]}_clean'] = value
    else:
      arrays[f'paper_n{key[2]}_{PAPER_ATTACKS[key[0]]}_eps{key[1]:g}'] = value
  buffer = io.BytesIO()  # zipfile reads back what it writes: not a GFile.
  np.savez_compressed(buffer, **arrays)
  rundir.write_bytes(path, buffer.getvalue())


def run(run_dir: str, cfg: attacks.AdversarialConfig,
        data_dir: str | None = None, label: str | None = None
        ) -> dict[str, Any]:
  """Transfer, strong and paper protocols on a run; writes adversarial/.

  Writes metrics.json (rewritten after each stage), report.md, protocols.md
  (the RESULTS.md table, input-scale number, details), entropies.npz
  (per-image entropies) and PNG figures, detection_sweep.png among them.

  Returns:
    The payload written to metrics.json.
  """
  wall = time.time()
  model = members.load(run_dir)  # First: a mistyped run_dir creates nothing.
  out_dir = rundir.join(run_dir, 'adversarial')
  tf.io.gfile.makedirs(out_dir)
  if data.DATASETS[model.dataset].task != 'classification':
    raise ValueError(f'{run_dir} is a {model.dataset!r} regression model; '
                     'adversarial detection needs a classifier.')
  label = label or model_label(run_dir, model)
  tf.random.set_seed(cfg.seed)  # PGD's random starts.
  images, labels = _load_test_images(model, cfg, data_dir)
  logging.info('Attacking %d %s test images.', len(labels), model.dataset)

  results: dict[str, float] = {}
  diagnostics: dict[str, Any] = {'traces': {}, 'seconds': {}}
  strong_sizes = _strong_sizes(model, cfg) if 'strong' in cfg.protocols else []
  config = dataclasses.asdict(cfg)
  config.update(num_examples_used=int(len(labels)),
                ensemble_sizes_run=strong_sizes, model_label=label,
                members_may_overlap=model.max_members is not None)

  def write(complete: bool) -> dict[str, Any]:
    """metrics.json now; partial ones after each stage of a long run."""
    diagnostics['seconds']['total'] = time.time() - wall
    payload = {**{k: float(v) for k, v in results.items()},
               'config': config, 'diagnostics': diagnostics,
               'complete': complete, 'run_dir': run_dir,
               'step': int(model.step)}
    rundir.write_json(rundir.join(out_dir, 'metrics.json'), payload)
    return payload

  fractions = {}
  if cfg.transfer_networks:
    start = time.time()
    part, fractions = attacks.transfer(model, images, labels, cfg)
    results.update(part)
    diagnostics['seconds']['transfer'] = time.time() - start
    write(complete=False)
  paper_entropies, paper_sizes = {}, []
  if 'paper' in cfg.protocols:
    start = time.time()
    part, paper_entropies, traces = paper_protocol(model, images, labels, cfg)
    results.update(part)
    paper_sizes = sorted({k[1] for k in paper_entropies if k[0] == 'clean'})
    config['paper_ensemble_sizes_run'] = paper_sizes
    diagnostics['traces']['paper_source'] = traces
    diagnostics['seconds']['paper'] = time.time() - start
    write(complete=False)
  strong_entropies = {}
  for n in strong_sizes:
    start = time.time()
    part, strong_entropies[n], traces = attacks.ensemble_attacks(
        model, images, labels, n, cfg)
    results.update(part)
    diagnostics['traces'][f'n{n}'] = traces
    diagnostics['seconds'][f'n{n}'] = time.time() - start
    write(complete=False)

  paths = _strong_figures(out_dir, results, cfg, strong_sizes,
                          strong_entropies, int(model.num_classes))
  if fractions:
    paths.append(figures.transfer_histograms(
        {attack.upper(): {f'eps={eps:g}': v for eps, v in per_eps.items()}
         for attack, per_eps in fractions.items()},
        rundir.join(out_dir, 'transfer.png'),
        f'Examples against one network, tested on '
        f'{int(results["adv/transfer_networks"])} others'))
  panels = detection_sweep_panels(results, cfg, paper_sizes, strong_sizes)
  if panels:
    paths.append(figures.detection_sweep(
        list(cfg.epsilons), panels,
        rundir.join(out_dir, 'detection_sweep.png'),
        f'detection rate at {cfg.fpr:.0%} clean FPR',
        f'{label}: adversarial detection by ensemble entropy, paper vs '
        'strong protocol'))
  _save_entropies(rundir.join(out_dir, 'entropies.npz'), strong_entropies,
                  paper_entropies)
  rundir.write_text(rundir.join(out_dir, 'protocols.md'),
                      protocols_markdown(label, results, cfg, len(labels)))
  payload = write(complete=True)
  text = evaluation.report(
      {k: float(v) for k, v in results.items()},
      f'Adversarial examples on {run_dir} (step {model.step})', paths)
  text += '\n' + _DEFINITIONS.format(**config)
  rundir.write_text(rundir.join(out_dir, 'report.md'), text)
  return payload


def _strong_figures(out_dir: str, results: dict[str, float],
                    cfg: attacks.AdversarialConfig, sizes: list[int],
                    per_image: dict, num_classes: int) -> list[str]:
  """Detection / accuracy vs epsilon and entropy eCDFs of the strong one."""
  if not sizes:
    return []
  key = attacks.strong_key
  paths = []
  for what, ylabel in (('detection', f'detection rate at {cfg.fpr:.0%} FPR'),
                       ('accuracy', 'accuracy under attack')):
    series = {}
    for attack in cfg.attacks:
      series[attack] = {}
      for n in sizes:
        for which, style in (('fresh', '-'), ('attacked', '--')):
          name = (f'detection{"" if which == "fresh" else "_attacked"}_n{n}'
                  if what == 'detection' else f'accuracy_{which}_n{n}')
          series[attack][f'N={n} {which}', style] = [
              results[key(attack, eps, name)] for eps in cfg.epsilons]
    paths.append(figures.metric_vs_epsilon(
        list(cfg.epsilons), series, rundir.join(out_dir, f'{what}.png'),
        ylabel, f'Strong protocol: {what} vs epsilon (solid: fresh ensemble, '
        'dashed: attacked ensemble)'))
  for attack in cfg.attacks:
    panels, thresholds = {}, {}
    for n in sizes:
      name = f'{attack.upper()}, fresh ensemble N={n}'
      thresholds[name] = results[f'adv/entropy_threshold_n{n}']
      panels[name] = {'clean': per_image[n]['clean'],
                      **{f'eps={eps:g}': per_image[n][(attack, eps)]
                         for eps in cfg.epsilons}}
    paths.append(figures.entropy_ecdf_panels(
        panels, rundir.join(out_dir, f'entropy_{attack}.png'),
        float(np.log(num_classes)),
        f'Ensemble entropy, clean vs {attack.upper()} inputs', thresholds))
  return paths


_DEFINITIONS = """## Definitions

- Strong protocol (`adv/`): cleverhans FGSM and PGD (L-infinity,
  {pgd_steps} steps of {pgd_step_size} x eps, random start:
  {pgd_rand_init}), pixels clipped to [0, 1], untargeted on the true labels
  of the first {num_examples_used} test images, against the fused logits
  log(mean softmax) of the attacked ensemble.
  `accuracy_attacked_n<N>` / `accuracy_fresh_n<N>`: accuracy of the attacked
  ensemble / of a freshly sampled ensemble of the same size (seed + 1) on the
  adversarial images. Members may overlap: {members_may_overlap}.
  `detection_n<N>` (fresh ensemble) / `detection_attacked_n<N>`: fraction of
  all adversarial images whose ensemble entropy exceeds the threshold that
  flags {fpr:.0%} of the clean versions of the same images (the
  `entropy_threshold_n<N>`); `detection_fpr1_*`: the same at {strict_fpr:.0%}.
  `*_successful_n<N>`: over the `num_successful` images the attacked
  ensemble classifies correctly when clean and wrongly when attacked.
  `auroc_n<N>`: AUROC of entropy, adversarial vs clean. `pgd_entropy`
  (asked for with --attacks): the adaptive attack, targeted PGD toward the
  attacked ensemble's likeliest wrong class, lowering its cross-entropy
  plus {pgd_entropy_weight} x the entropy of the fused prediction: wrong
  and sure.
- Paper protocol (`adv_paper/`): examples against one sampled network (a
  finite ensemble: all members, mean logits), iterative FGSM of step
  {paper_step_size} (pixels) projected into the eps-ball, stopped per image
  at the first step that fools the source (`fgsm`: 1 step; `bim`: at most
  {paper_steps}), no random start. `num_kept`: successful examples of
  images the source classifies correctly; only those are scored, on fresh
  ensembles of N networks that share none of the source's parameters (a
  finite ensemble is scored on its own members). Detection thresholds are
  set on the same ensemble's entropies on all clean images.
  `detection_authors_scale_n{scale_check_size}`: the same, with the kept
  images passed as x * 0.3081 + 0.1307 (the authors' unstandardised input),
  clean images unchanged.
- `transfer_fooled`: examples crafted against one sampled network, tested
  on `transfer_networks` others; over the test images the source classifies
  correctly, the mean fraction of the other networks that misclassify the
  adversarial image. `_successful`: only images that fool the source;
  `_all`: fraction of images that fool every network; `transfer_source_fooled`:
  the source's own error rate on them.
"""

"""Adversarial examples against sampled ensembles, detected by entropy.

Paper, Sec. 4.5 and Figures 4 and 5. Attacks are cleverhans' FGSM and PGD
(L-infinity, pixels clipped to [0, 1]) on the *fused* logits of an ensemble,
log(mean_n softmax(l_n)), so the attack targets the averaged prediction (for
one member this is its log-softmax, which has the same softmax as its
logits).

cleverhans' gradient is a module-level `tf.function` that takes `model_fn` as
a Python argument, so every new callable retraces it. `EnsembleAttack` holds
one persistent `model_fn` per ensemble size whose parameters live in
`tf.Variable`s shaped like the model's parameter nest; a new ensemble is
assigned into them, so a sweep over ensembles, epsilons and PGD steps traces
once per ensemble size (and image batch shape, which is why batches are
padded to a fixed size). `trace_count` counts the traces.

Only the `members.Members` protocol is used, so HyperGAN runs and baseline
runs (independently trained ensembles...) are attacked the same way.

Two experiments:
- Transfer (Figure 4): examples crafted against ONE sampled network, tested
  on T other sampled networks. "Fooled" = a network's prediction on the
  adversarial image differs from the true label. Reported over the test
  images the source network classifies correctly when clean: the mean over
  those images of the fraction of the T networks fooled
  (`transfer_fooled`), the same over the images that also fool the source
  (`transfer_fooled_successful`), the fraction fooling all T networks, and
  the source's own fooling rate.
- The strong protocol (Figure 5, `ensemble_attacks`): for each size N,
  sample an ensemble, attack its fused logits, evaluate the examples on it
  ('attacked') and on a freshly sampled ensemble of the same size ('fresh',
  a different seed). Detection: an input is flagged when its ensemble
  entropy exceeds the threshold at the (1 - fpr) quantile of the same
  ensemble's entropies on the clean versions of the attacked test images
  (so fpr = 5% of clean images are flagged); the detection rate is the
  fraction of all adversarial inputs flagged, whether or not the attack
  changed the prediction, and also over the successful ones only.

The paper's own protocol (one sampled network attacked with an early-stopped
iterative FGSM, successful examples scored on fresh ensembles) and the
driver that runs both are in `adversarial_protocols.py`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from absl import logging
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.projected_gradient_descent import (
    projected_gradient_descent)
import numpy as np
import tensorflow as tf

from hypergan_tf.evaluation import metrics

# 'pgd_entropy' is the adaptive attack: PGD toward the attacked ensemble's
# most likely wrong class that also lowers its entropy, the detector's score
# (Carlini & Wagner, 2017, on attacks that know the detector): wrong and
# sure. Not run unless asked for.
ATTACKS = ('fgsm', 'pgd', 'pgd_entropy')
DEFAULT_ATTACKS = ('fgsm', 'pgd')
CLIP_MIN, CLIP_MAX = 0.0, 1.0  # data.load's pixel range.


def fused_logits(member_logits: tf.Tensor) -> tf.Tensor:
  """Logits of the ensemble average: [N, B, C] -> log mean softmax [B, C]."""
  n = tf.cast(tf.shape(member_logits)[0], member_logits.dtype)
  return (tf.reduce_logsumexp(tf.nn.log_softmax(member_logits), axis=0) -
          tf.math.log(n))


def mean_logits(member_logits: tf.Tensor) -> tf.Tensor:
  """Mean of the members' logits: how the authors fused ordinary ensembles."""
  return tf.reduce_mean(member_logits, axis=0)


FUSIONS = {'softmax': fused_logits, 'logits': mean_logits}


def entropy_threshold(clean_entropy: np.ndarray, fpr: float = 0.05) -> float:
  """Entropy above which at most a fraction fpr of clean inputs lie."""
  if not 0.0 < fpr < 1.0:
    raise ValueError(f'fpr must be in (0, 1), got {fpr}.')
  if not len(clean_entropy):
    raise ValueError('No clean entropies to set a threshold on.')
  return float(np.quantile(np.asarray(clean_entropy, np.float64), 1.0 - fpr))


def detection_rate(entropy: np.ndarray, threshold: float) -> float:
  """Fraction of inputs whose entropy exceeds threshold (flagged)."""
  entropy = np.asarray(entropy)
  if not len(entropy):
    return float('nan')
  return float(np.mean(entropy > threshold))


def fixed_batches(images: np.ndarray, batch_size: int):
  """Yields (batch of exactly batch_size, number of real rows): one shape."""
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    real = len(batch)
    if real < batch_size:  # Pad with copies so no new shape is traced.
      pad = np.repeat(batch[:1], batch_size - real, axis=0)
      batch = np.concatenate([batch, pad])
    yield batch, real


def member_logits(model, params, images: np.ndarray, batch_size: int = 100,
                  member_chunk: int = 100) -> np.ndarray:
  """Logits [N, B, C] of the members in params, in image and member chunks.

  Args:
    model: a `members.Members`.
    params: its parameter nest, every leaf leading with the member axis N.
    images: [B, ...] float32.
    batch_size: images per forward pass.
    member_chunk: members per forward pass (bounds memory for large N).
  """
  n = int(tf.nest.flatten(params)[0].shape[0])
  chunks = []
  for start in range(0, n, member_chunk):
    part = tf.nest.map_structure(lambda p, s=start: p[s:s + member_chunk],
                                 params)
    rows = [np.asarray(model.logits(part, tf.constant(batch)))[:, :real]
            for batch, real in fixed_batches(images, batch_size)]
    chunks.append(np.concatenate(rows, axis=1))
  return np.concatenate(chunks, axis=0)


class EnsembleAttack:
  """FGSM / PGD on the fused logits of an ensemble of num_members members.

  One instance per ensemble size: `model_fn` is built once and reads the
  members' parameters from variables, so assigning a new ensemble with
  `set_members` does not retrace cleverhans' gradient function.
  """

  def __init__(self, model, num_members: int, fuse: str = 'softmax',
               entropy_weight: float = 1.0):
    """
    Args:
      model: a `members.Members`.
      num_members: the ensemble size N every assigned ensemble must have.
      fuse: 'softmax' attacks log(mean softmax) (the ensemble's prediction);
        'logits' attacks the mean of the members' logits (the authors'
        `FusedNet`). The same for one member.
      entropy_weight: 'pgd_entropy' lowers the cross-entropy of the target
        class plus this times the entropy of the fused prediction.
    """
    if num_members < 1:
      raise ValueError(f'num_members must be positive, got {num_members}.')
    if entropy_weight < 0:
      raise ValueError(f'entropy_weight must be >= 0, got {entropy_weight}.')
    if fuse not in FUSIONS:
      raise ValueError(f'Unknown fuse {fuse!r}; choose one of '
                       f'{sorted(FUSIONS)}.')
    fusion = FUSIONS[fuse]
    self.model = model
    self.num_members = num_members
    self.trace_count = 0  # Graph traces of model_fn's Python body.
    self._variables = None

    def model_fn(x: tf.Tensor) -> tf.Tensor:
      if self._variables is None:
        raise RuntimeError('Assign an ensemble with set_members() first.')
      if not tf.executing_eagerly():
        self.trace_count += 1
      params = tf.nest.map_structure(lambda v: v.read_value(),
                                     self._variables)
      return fusion(self.model.logits(params, x))

    def sure_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
      """Lowered by the targeted attack: the target's CE plus entropy.

      Entropy from log_softmax, not `metrics.entropy` of probabilities:
      saturated predictions would put log(0) into the gradient.
      """
      entropy = metrics.entropy_of_log_probs(tf.nn.log_softmax(logits))
      return (tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=labels, logits=logits) + entropy_weight * entropy)

    self.model_fn = model_fn
    # One callable per instance: cleverhans' gradient retraces per loss_fn.
    self._sure_loss = sure_loss

  def set_members(self, params) -> None:
    """Makes params (a nest with leading axis num_members) the ensemble."""
    leaves = tf.nest.flatten(params)
    n = {int(p.shape[0]) for p in leaves}
    if n != {self.num_members}:
      raise ValueError(f'This attack is for ensembles of {self.num_members} '
                       f'members; got parameters for {sorted(n)}.')
    if self._variables is None:
      self._variables = tf.nest.map_structure(
          lambda p: tf.Variable(p, trainable=False), params)
      return
    tf.nest.assert_same_structure(self._variables, params)
    for variable, value in zip(tf.nest.flatten(self._variables), leaves):
      if tuple(variable.shape) != tuple(value.shape):
        raise ValueError(f'Parameter of shape {list(value.shape)} does not '
                         f'fit the ensemble\'s {list(variable.shape)}.')
      variable.assign(value)

  def loss(self, images: tf.Tensor, labels: tf.Tensor) -> np.ndarray:
    """Per-example cross-entropy of the fused logits: [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int64),
        logits=self.model_fn(tf.cast(images, tf.float32))).numpy()

  def attack_batch(self, attack: str, images: tf.Tensor, eps: float,
                   labels: tf.Tensor | None = None, pgd_steps: int = 10,
                   pgd_step_size: float = 0.25,
                   pgd_rand_init: bool = True) -> tf.Tensor:
    """Adversarial images for one batch, in [0, 1] and within eps (L-inf).

    Args:
      attack: 'fgsm', 'pgd' or 'pgd_entropy' (targeted PGD toward the
        most likely class other than the label, lowering its cross-entropy
        plus entropy_weight x the fused prediction's entropy).
      images: [B, ...] in [0, 1].
      eps: L-infinity radius.
      labels: true labels (untargeted: raise their loss); None attacks the
        ensemble's own predictions.
      pgd_steps: PGD iterations.
      pgd_step_size: PGD step as a fraction of eps.
      pgd_rand_init: PGD starts at a uniform random point in the eps-ball
        (Madry et al.); False is the basic iterative method.
    """
    if eps < 0:
      raise ValueError(f'eps must be >= 0, got {eps}.')
    images = tf.cast(images, tf.float32)
    if labels is None:
      labels = tf.argmax(self.model_fn(images), axis=1)
    labels = tf.cast(labels, tf.int64)  # One dtype: no retrace.
    if attack == 'fgsm':
      return fast_gradient_method(
          self.model_fn, images, eps, np.inf, clip_min=CLIP_MIN,
          clip_max=CLIP_MAX, y=labels)
    if attack in ('pgd', 'pgd_entropy'):
      adaptive = attack == 'pgd_entropy'
      if adaptive:  # The target: the likeliest class that is wrong.
        fused = self.model_fn(images)
        labels = tf.argmax(fused - 1e9 * tf.one_hot(labels, fused.shape[-1]),
                           axis=1)
      return projected_gradient_descent(
          self.model_fn, images, eps, min(eps, pgd_step_size * eps),
          pgd_steps, np.inf, loss_fn=self._sure_loss if adaptive else None,
          clip_min=CLIP_MIN, clip_max=CLIP_MAX, y=labels, targeted=adaptive,
          rand_init=pgd_rand_init)
    raise ValueError(f'Unknown attack {attack!r}; choose one of {ATTACKS}.')

  def attack(self, attack: str, images: np.ndarray, labels: np.ndarray,
             eps: float, batch_size: int = 100, **kwargs) -> np.ndarray:
    """`attack_batch` over all images in fixed-size batches: [B, ...]."""
    out = []
    for start, (batch, real) in zip(
        range(0, len(images), batch_size),
        fixed_batches(images, batch_size)):
      y = labels[start:start + batch_size]
      y = np.concatenate([y, np.repeat(y[:1], batch_size - real)])
      adv = self.attack_batch(attack, batch, eps, y, **kwargs)
      out.append(np.asarray(adv)[:real])
    return np.concatenate(out)


PROTOCOLS = ('strong', 'paper')


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
  """What the adversarial experiments do; see scripts/adversarial.py's flags.

  The defaults fit the MNIST model in about 6 minutes on 2 idle CPU cores;
  `FULL_SWEEP` holds the paper's full sweep.
  """
  protocols: tuple[str, ...] = PROTOCOLS
  attacks: tuple[str, ...] = DEFAULT_ATTACKS
  epsilons: tuple[float, ...] = (0.01, 0.03, 0.1, 0.2, 0.3)
  ensemble_sizes: tuple[int, ...] = (10, 100)  # Strong protocol.
  paper_ensemble_sizes: tuple[int, ...] = (10, 100, 1000)
  num_examples: int = 200
  pgd_steps: int = 10
  pgd_step_size: float = 0.25
  pgd_rand_init: bool = True
  pgd_entropy_weight: float = 1.0  # The adaptive attack's, 'pgd_entropy'.
  paper_steps: int = 10  # foolbox BIM's default iterations.
  paper_step_size: float = 1.0  # foolbox stepsize=1: the whole pixel range.
  scale_check_size: int = 100  # Ensemble size of the input-scale check.
  transfer_networks: int = 100
  fpr: float = 0.05
  strict_fpr: float = 0.01
  seed: int = 0
  batch_size: int = 100

  def __post_init__(self):
    unknown = set(self.protocols) - set(PROTOCOLS)
    if not self.protocols or unknown:
      raise ValueError(f'protocols must be among {PROTOCOLS}, got '
                       f'{list(self.protocols)}.')
    unknown = set(self.attacks) - set(ATTACKS)
    if not self.attacks or unknown:
      raise ValueError(f'attacks must be among {ATTACKS}, got '
                       f'{list(self.attacks)}.')
    if not self.epsilons or any(not 0 <= e <= 1 for e in self.epsilons):
      raise ValueError('epsilons must be in [0, 1] (pixels in [0, 1]), got '
                       f'{list(self.epsilons)}.')
    for name in ('ensemble_sizes', 'paper_ensemble_sizes'):
      sizes = getattr(self, name)
      if not sizes or any(n < 1 for n in sizes):
        raise ValueError(f'{name} must be positive integers, got '
                         f'{list(sizes)}.')
    for name in ('num_examples', 'pgd_steps', 'paper_steps', 'batch_size',
                 'scale_check_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be positive, got '
                         f'{getattr(self, name)}.')
    if self.transfer_networks < 0:
      raise ValueError('transfer_networks must be >= 0 (0 skips transfer).')
    if self.pgd_entropy_weight < 0:
      raise ValueError('pgd_entropy_weight must be >= 0, got '
                       f'{self.pgd_entropy_weight}.')
    if not 0.0 < self.pgd_step_size <= 1.0:
      raise ValueError('pgd_step_size is a fraction of eps in (0, 1], got '
                       f'{self.pgd_step_size}.')
    if not 0.0 < self.paper_step_size <= 1.0:
      raise ValueError('paper_step_size is in pixel units, in (0, 1], got '
                       f'{self.paper_step_size}.')
    for name in ('fpr', 'strict_fpr'):
      if not 0.0 < getattr(self, name) < 1.0:
        raise ValueError(f'{name} must be in (0, 1), got '
                         f'{getattr(self, name)}.')


# The paper's sweep (its epsilons plus ours): hours, not minutes.
FULL_SWEEP = dict(epsilons=(0.01, 0.03, 0.08, 0.1, 0.2, 0.3, 0.5, 1.0),
                  ensemble_sizes=(5, 10, 100), num_examples=1000,
                  transfer_networks=500)


def strong_key(attack: str, eps: float, what: str) -> str:
  """Metric name of the strong protocol and transfer: adv/<attack>_eps<e>_."""
  return f'adv/{attack}_eps{eps:g}_{what}'


def _attack_kwargs(cfg: AdversarialConfig) -> dict[str, Any]:
  return dict(batch_size=cfg.batch_size, pgd_steps=cfg.pgd_steps,
              pgd_step_size=cfg.pgd_step_size,
              pgd_rand_init=cfg.pgd_rand_init)


def _probs(logits: np.ndarray) -> np.ndarray:
  return metrics.ensemble_probabilities(logits).numpy()


def entropies(logits: np.ndarray) -> np.ndarray:
  """Per-image entropy of the ensemble's mean softmax: [N, B, C] -> [B]."""
  return metrics.entropy(metrics.ensemble_probabilities(logits)).numpy()



def detection_summary(clean_entropy: np.ndarray, adv_entropy: np.ndarray,
                      fpr: float, strict_fpr: float) -> dict[str, float]:
  """Detection at two clean false-positive rates, AUROC and mean entropy.

  An empty adversarial set gives NaNs (nothing to detect), not an error, so
  an epsilon too small to fool anything still fills its table row.
  """
  if not len(adv_entropy):
    nan = float('nan')
    return {'detection': nan, 'detection_fpr1': nan, 'auroc': nan,
            'entropy_mean': nan}
  return {
      'detection': detection_rate(adv_entropy,
                                  entropy_threshold(clean_entropy, fpr)),
      'detection_fpr1': detection_rate(
          adv_entropy, entropy_threshold(clean_entropy, strict_fpr)),
      'auroc': metrics.ood_detection(clean_entropy, adv_entropy)['auroc'],
      'entropy_mean': float(np.mean(adv_entropy)),
  }



def transfer(model, images: np.ndarray, labels: np.ndarray,
             cfg: AdversarialConfig) -> tuple[dict[str, float], dict]:
  """Figure 4: examples against one network, tested on T others.

  Returns:
    (metrics, {attack: {eps: per-example fraction of the T networks fooled,
    over the images the source classifies correctly}}).
  """
  t = cfg.transfer_networks
  if model.max_members is not None:
    t = min(t, model.max_members)
  source_params = model.sample(1, cfg.seed + 2)
  target_params = model.sample(t, cfg.seed + 3)
  attacker = EnsembleAttack(model, 1, entropy_weight=cfg.pgd_entropy_weight)
  attacker.set_members(source_params)
  eval_kw = dict(batch_size=cfg.batch_size)
  source_clean = member_logits(model, source_params, images, **eval_kw)[0]
  correct = source_clean.argmax(-1) == labels
  target_clean = member_logits(model, target_params, images, **eval_kw)
  out = {'adv/transfer_networks': float(t),
         'adv/transfer_source_clean_accuracy': float(correct.mean()),
         'adv/transfer_clean_error': float(
             (target_clean.argmax(-1) != labels)[:, correct].mean())}
  fractions: dict[str, dict[float, np.ndarray]] = {}
  for attack in cfg.attacks:
    fractions[attack] = {}
    for eps in cfg.epsilons:
      start = time.time()
      adv = attacker.attack(attack, images, labels, eps, **_attack_kwargs(cfg))
      source_fooled = member_logits(model, source_params, adv,
                                    **eval_kw)[0].argmax(-1) != labels
      fooled = member_logits(model, target_params, adv,
                             **eval_kw).argmax(-1) != labels[None]
      per_example = fooled.mean(axis=0)  # Fraction of the T networks.
      fractions[attack][eps] = per_example[correct]
      successful = correct & source_fooled
      out[strong_key(attack, eps, 'transfer_fooled')] = float(
          per_example[correct].mean())
      out[strong_key(attack, eps, 'transfer_fooled_successful')] = float(
          per_example[successful].mean()) if successful.any() else 0.0
      out[strong_key(attack, eps, 'transfer_fooled_all')] = float(
          (per_example[correct] == 1.0).mean())
      out[strong_key(attack, eps, 'transfer_source_fooled')] = float(
          source_fooled[correct].mean())
      logging.info('transfer %s eps=%g: source fooled %.3f, fraction of %d '
                   'networks fooled %.3f (%.1f s)', attack, eps,
                   out[strong_key(attack, eps, 'transfer_source_fooled')], t,
                   out[strong_key(attack, eps, 'transfer_fooled')],
                   time.time() - start)
  return out, fractions


def ensemble_attacks(model, images: np.ndarray, labels: np.ndarray,
                     num_members: int, cfg: AdversarialConfig
                     ) -> tuple[dict[str, float], dict, int]:
  """The strong protocol (Figure 5) for one size N: attack one ensemble.

  White-box: the attacked ensemble's fused logits are attacked (PGD with a
  random start); the examples are scored on it ('attacked') and on a freshly
  sampled ensemble of the same size ('fresh'). Detection is reported over
  all adversarial images and, to differ from the paper's protocol in one
  thing only, over the successful ones: images the attacked ensemble
  classifies correctly when clean and wrongly when attacked.

  Returns:
    (metrics, per-image entropies {'clean': fresh-ensemble entropies [B],
    (attack, eps): fresh-ensemble entropies [B], (attack, eps,
    'successful'): mask [B]}, traces of the attack's model_fn).
  """
  n = num_members
  attacked = model.sample(n, cfg.seed)
  fresh = model.sample(n, cfg.seed + 1)
  attacker = EnsembleAttack(model, n, entropy_weight=cfg.pgd_entropy_weight)
  attacker.set_members(attacked)
  eval_kw = dict(batch_size=cfg.batch_size)
  clean = {'attacked': member_logits(model, attacked, images, **eval_kw),
           'fresh': member_logits(model, fresh, images, **eval_kw)}
  clean_entropy = {k: entropies(v) for k, v in clean.items()}
  threshold = {k: entropy_threshold(v, cfg.fpr)
               for k, v in clean_entropy.items()}
  clean_correct = _probs(clean['attacked']).argmax(-1) == labels
  out = {
      f'adv/clean_accuracy_n{n}': metrics.accuracy(_probs(clean['attacked']),
                                                   labels),
      f'adv/clean_accuracy_fresh_n{n}': metrics.accuracy(
          _probs(clean['fresh']), labels),
      f'adv/clean_entropy_mean_n{n}': float(clean_entropy['fresh'].mean()),
      f'adv/entropy_threshold_n{n}': threshold['fresh'],
      f'adv/entropy_threshold_attacked_n{n}': threshold['attacked'],
      **{f'adv/clean_{name}_n{n}': value for name, value in
         metrics.function_diversity(clean['fresh']).items()},
  }
  per_image: dict[Any, np.ndarray] = {'clean': clean_entropy['fresh']}
  for attack in cfg.attacks:
    for eps in cfg.epsilons:
      start = time.time()
      adv = attacker.attack(attack, images, labels, eps, **_attack_kwargs(cfg))
      logits = {'attacked': member_logits(model, attacked, adv, **eval_kw),
                'fresh': member_logits(model, fresh, adv, **eval_kw)}
      entropy = {k: entropies(v) for k, v in logits.items()}
      wrong = _probs(logits['attacked']).argmax(-1) != labels
      successful = clean_correct & wrong
      for which, suffix in (('fresh', ''), ('attacked', '_attacked')):
        out[strong_key(attack, eps, f'accuracy_{which}_n{n}')] = (
            metrics.accuracy(_probs(logits[which]), labels))
        scores = detection_summary(clean_entropy[which], entropy[which],
                                   cfg.fpr, cfg.strict_fpr)
        for what, value in scores.items():
          out[strong_key(attack, eps, f'{what}{suffix}_n{n}')] = value
      scores = detection_summary(clean_entropy['fresh'],
                                 entropy['fresh'][successful], cfg.fpr,
                                 cfg.strict_fpr)
      for what, value in scores.items():
        out[strong_key(attack, eps, f'{what}_successful_n{n}')] = value
      out[strong_key(attack, eps, f'num_successful_n{n}')] = float(
          successful.sum())
      out[strong_key(attack, eps, f'accuracy_successful_n{n}')] = (
          metrics.accuracy(_probs(logits['fresh'][:, successful]),
                           labels[successful])
          if successful.any() else float('nan'))
      for name, value in metrics.function_diversity(logits['fresh']).items():
        out[strong_key(attack, eps, f'{name}_n{n}')] = value
      per_image[(attack, eps)] = entropy['fresh']
      per_image[(attack, eps, 'successful')] = successful
      logging.info(
          'strong N=%d %s eps=%g: accuracy attacked %.3f fresh %.3f; '
          'detection fresh %.3f attacked %.3f, successful only %.3f of %d '
          '(%.1f s, %d traces)', n, attack, eps,
          out[strong_key(attack, eps, f'accuracy_attacked_n{n}')],
          out[strong_key(attack, eps, f'accuracy_fresh_n{n}')],
          out[strong_key(attack, eps, f'detection_n{n}')],
          out[strong_key(attack, eps, f'detection_attacked_n{n}')],
          out[strong_key(attack, eps, f'detection_successful_n{n}')],
          int(successful.sum()), time.time() - start, attacker.trace_count)
  return out, per_image, attacker.trace_count

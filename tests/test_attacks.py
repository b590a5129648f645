"""Attacks on sampled ensembles: cleverhans FGSM/PGD, detection, the script."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import attacks
from hypergan_tf.model import members
from tests.conftest import REPO


def test_fused_logits_are_log_of_mean_softmax():
  logits = tf.constant([[[2.0, 0.0, -1.0]], [[0.0, 3.0, 0.5]]])  # [2, 1, 3]
  fused = attacks.fused_logits(logits)
  mean = tf.reduce_mean(tf.nn.softmax(logits), axis=0)
  np.testing.assert_allclose(np.exp(fused), mean, rtol=1e-5)
  # One member: same softmax as its own logits.
  np.testing.assert_allclose(tf.nn.softmax(attacks.fused_logits(logits[:1])),
                             tf.nn.softmax(logits[0]), rtol=1e-5)


def test_mean_logits_fusion_attacks_the_mean_of_member_logits(
    tiny_model, mnist_batch):
  x, _ = mnist_batch
  params = tiny_model.sample(3, 0)
  attacker = attacks.EnsembleAttack(tiny_model, 3, fuse='logits')
  attacker.set_members(params)
  np.testing.assert_allclose(
      attacker.model_fn(tf.constant(x)),
      tf.reduce_mean(tiny_model.logits(params, tf.constant(x)), axis=0),
      rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='Unknown fuse'):
    attacks.EnsembleAttack(tiny_model, 3, fuse='median')


@pytest.mark.parametrize('attack', attacks.ATTACKS)
def test_eps_zero_changes_no_input(tiny_model, mnist_batch, attack):
  x, y = mnist_batch
  attacker = attacks.EnsembleAttack(tiny_model, 3)
  attacker.set_members(tiny_model.sample(3, 0))
  adv = attacker.attack(attack, x, y, 0.0, batch_size=16, pgd_steps=2)
  np.testing.assert_array_equal(adv, x)


@pytest.mark.parametrize('attack', attacks.DEFAULT_ATTACKS)
def test_attack_raises_loss_and_stays_in_eps_ball(
    tiny_model, mnist_batch, attack):
  x, y = mnist_batch
  eps = 0.1
  attacker = attacks.EnsembleAttack(tiny_model, 3)
  attacker.set_members(tiny_model.sample(3, 0))
  adv = attacker.attack(attack, x, y, eps, batch_size=16, pgd_steps=3)
  assert adv.shape == x.shape and adv.dtype == np.float32
  assert adv.min() >= 0.0 and adv.max() <= 1.0
  change = np.abs(adv - x)
  assert change.max() <= eps + 1e-6
  assert change.max() >= eps - 1e-6  # It did move, by the full budget.
  # The tiny model is barely trained (loss near log 10), so the rise is
  # small, but it must hold for every image and beat random signs.
  clean_loss, adv_loss = attacker.loss(x, y), attacker.loss(adv, y)
  assert np.all(adv_loss > clean_loss)
  signs = np.sign(np.random.default_rng(0).uniform(-1, 1, x.shape))
  random = np.clip(x + eps * signs, 0, 1).astype(np.float32)
  assert (adv_loss - clean_loss).mean() > 2 * abs(
      (attacker.loss(random, y) - clean_loss).mean())


def test_adaptive_attack_is_wrong_and_sure(tiny_model, mnist_batch):
  """pgd_entropy: toward the likeliest wrong class, lowering the entropy."""
  x, y = mnist_batch
  kw = dict(batch_size=16, pgd_steps=5, pgd_rand_init=False)
  params = tiny_model.sample(3, 0)
  fused = lambda a, images: a.model_fn(tf.constant(images))
  entropy = lambda a, images: -tf.reduce_sum(
      tf.nn.softmax(fused(a, images)) * tf.nn.log_softmax(fused(a, images)),
      -1).numpy()
  targeted = attacks.EnsembleAttack(tiny_model, 3, entropy_weight=0.0)
  targeted.set_members(params)
  clean = fused(targeted, x).numpy()
  clean[np.arange(len(y)), y] = -np.inf
  target = clean.argmax(-1)
  adv = targeted.attack('pgd_entropy', x, y, 0.1, **kw)
  assert np.abs(adv - x).max() <= 0.1 + 1e-6
  assert np.all(targeted.loss(adv, target) < targeted.loss(x, target))
  # The tiny model is barely trained (entropy near log 10 everywhere): a
  # large weight makes the entropy term's pull visible.
  sure = attacks.EnsembleAttack(tiny_model, 3, entropy_weight=100.0)
  sure.set_members(params)
  adv = sure.attack('pgd_entropy', x, y, 0.1, **kw)
  plain = sure.attack('pgd', x, y, 0.1, **kw)
  assert np.all(entropy(sure, adv) < entropy(sure, x))
  assert entropy(sure, adv).mean() < entropy(sure, plain).mean()
  with pytest.raises(ValueError, match='entropy_weight must be >= 0'):
    attacks.EnsembleAttack(tiny_model, 3, entropy_weight=-1.0)


def test_no_retracing_across_ensembles(tiny_model, mnist_batch):
  x, y = mnist_batch
  attacker = attacks.EnsembleAttack(tiny_model, 3)
  results = []
  for seed in range(3):
    attacker.set_members(tiny_model.sample(3, seed))
    for eps in (0.05, 0.1):
      results.append(attacker.attack('fgsm', x, y, eps, batch_size=8))
    attacker.attack('pgd', x, y, 0.1, batch_size=8, pgd_steps=2)
    assert attacker.trace_count == 1, f'retraced at ensemble {seed}'
  # The traced graph reads the reassigned variables: ensemble 2 through the
  # reused model_fn equals ensemble 2 attacked by a fresh one.
  fresh = attacks.EnsembleAttack(tiny_model, 3)
  fresh.set_members(tiny_model.sample(3, 2))
  np.testing.assert_allclose(results[-1], fresh.attack('fgsm', x, y, 0.1,
                                                       batch_size=8))
  assert not np.array_equal(results[1], results[-1])  # Ensembles differ.


def test_set_members_rejects_another_ensemble_size(tiny_model):
  attacker = attacks.EnsembleAttack(tiny_model, 3)
  with pytest.raises(ValueError, match='ensembles of 3'):
    attacker.set_members(tiny_model.sample(2, 0))


def test_detection_threshold_on_hand_made_entropies():
  clean = np.arange(100) / 100.0  # 0.00 .. 0.99
  threshold = attacks.entropy_threshold(clean, fpr=0.05)
  assert 0.94 < threshold < 0.95
  assert attacks.detection_rate(clean, threshold) == pytest.approx(0.05)
  adversarial = np.array([0.95, 0.5, 1.0, 0.99, 2.0])
  assert attacks.detection_rate(adversarial, threshold) == pytest.approx(0.8)
  # A stricter FPR raises the threshold.
  assert attacks.entropy_threshold(clean, fpr=0.01) > threshold
  with pytest.raises(ValueError):
    attacks.entropy_threshold(clean, fpr=0.0)


def test_member_logits_in_chunks_match_one_pass(tiny_model, mnist_batch):
  x, _ = mnist_batch
  params = tiny_model.sample(5, 0)
  whole = np.asarray(tiny_model.logits(params, tf.constant(x)))
  chunked = attacks.member_logits(tiny_model, params, x, batch_size=6,
                                  member_chunk=2)
  np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)


def test_adversarial_script_writes_every_file(tiny_run):
  out = subprocess.run(
      [sys.executable, 'scripts/adversarial.py', f'--run_dir={tiny_run}',
       '--epsilons=0,0.2', '--ensemble_sizes=2,3', '--num_examples=25',
       '--paper_ensemble_sizes=2,4', '--scale_check_size=4',
       '--paper_steps=2', '--batch_size=10', '--pgd_steps=2',
       '--transfer_networks=6'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  adv_dir = tiny_run / 'adversarial'
  for name in ('metrics.json', 'report.md', 'detection.png', 'accuracy.png',
               'entropy_fgsm.png', 'entropy_pgd.png', 'transfer.png',
               'protocols.md', 'detection_sweep.png', 'entropies.npz'):
    assert (adv_dir / name).stat().st_size > 0, name
  results = json.loads((adv_dir / 'metrics.json').read_text())
  for n in (2, 3):
    assert 0.0 <= results[f'adv/clean_accuracy_n{n}'] <= 1.0
    assert results['diagnostics']['traces'][f'n{n}'] == 1
    for attack in ('fgsm', 'pgd'):
      for eps in (0, 0.2):
        for what in ('detection', 'detection_attacked', 'accuracy_attacked',
                     'accuracy_fresh', 'detection_fpr1'):
          value = results[f'adv/{attack}_eps{eps:g}_{what}_n{n}']
          assert 0.0 <= value <= 1.0
      # eps = 0: the images are the clean ones, nothing succeeds.
      assert (results[f'adv/{attack}_eps0_accuracy_attacked_n{n}'] ==
              results[f'adv/clean_accuracy_n{n}'])
      assert results[f'adv/{attack}_eps0_detection_n{n}'] <= 0.1
      assert results[f'adv/{attack}_eps0_num_successful_n{n}'] == 0
      assert (results[f'adv/{attack}_eps0.2_accuracy_attacked_n{n}'] <
              results[f'adv/clean_accuracy_n{n}'])
      assert (results[f'adv/{attack}_eps0.2_num_successful_n{n}'] <=
              round(25 * results[f'adv/clean_accuracy_n{n}']))
  for name in ('fgsm', 'bim'):
    assert results[f'adv_paper/{name}_eps0_num_kept'] == 0
    assert 0.0 <= results[f'adv_paper/{name}_eps0.2_detection_n4'] <= 1.0
    assert f'adv_paper/{name}_eps0.2_detection_authors_scale_n4' in results
  assert results['diagnostics']['traces']['paper_source'] == 1
  for attack in ('fgsm', 'pgd'):
    assert 0.0 <= results[f'adv/{attack}_eps0.2_transfer_fooled'] <= 1.0
  assert results['complete'] is True
  assert results['config']['num_examples_used'] == 25
  assert results['config']['ensemble_sizes_run'] == [2, 3]
  assert results['config']['paper_ensemble_sizes_run'] == [2, 4]
  assert '`adv/fgsm_eps0.2_detection_n3`' in (adv_dir / 'report.md').read_text()
  table = (adv_dir / 'protocols.md').read_text()
  assert ('| model | attack | ε | paper N=2 | paper N=4 | strong N=2 | '
          'strong N=3 |') in table
  assert '| HyperGAN | PGD / iterative | 0.2 |' in table
  entropies = np.load(adv_dir / 'entropies.npz')
  assert len(entropies['paper_n4_clean']) == 25
  assert len(entropies['paper_n4_bim_eps0.2']) == (
      results['adv_paper/bim_eps0.2_num_kept'])


def test_adversarial_script_rejects_bad_flags(tiny_run):
  out = subprocess.run(
      [sys.executable, 'scripts/adversarial.py', f'--run_dir={tiny_run}',
       '--protocol=paper,weak'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert out.returncode != 0
  assert '--protocol must be' in out.stderr

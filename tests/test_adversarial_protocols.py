"""The paper's adversarial protocol: early stopping, kept examples, tables."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.datasets import data
from hypergan_tf.evaluation import adversarial_protocols as protocols
from hypergan_tf.evaluation import attacks
from hypergan_tf.model import members


class LinearMembers:
  """Members whose logits are x @ W + b: attacks with known outcomes."""

  max_members = None

  def __init__(self, kernel: np.ndarray, bias: np.ndarray):
    self.kernel = tf.constant(kernel, tf.float32)  # [D, C]
    self.bias = tf.constant(bias, tf.float32)  # [C]

  def sample(self, num_members: int, seed: int):
    del seed  # Every member is the same network.
    return (tf.stack([self.kernel] * num_members),
            tf.stack([self.bias] * num_members))

  def logits(self, params, images):
    kernel, bias = params
    return tf.einsum('bd,ndc->nbc', images, kernel) + bias[:, None]


class FiniteMembers(LinearMembers):
  """A 'trained ensemble' of 4 distinct linear members."""

  max_members = 4

  def sample(self, num_members: int, seed: int):
    del seed
    scale = tf.range(1, num_members + 1, dtype=tf.float32)[:, None, None]
    return (self.kernel[None] * scale, tf.stack([self.bias] * num_members))


def _linear_attacker():
  # Logit margin of class 0 over 1: 2 * sum(x) - 1.2 on 4 pixels, so one
  # step of -s on every pixel lowers it by 8 s.
  kernel = np.stack([np.ones(4), -np.ones(4)], axis=1)
  model = LinearMembers(kernel, np.array([-0.6, 0.6]))
  attacker = attacks.EnsembleAttack(model, 1)
  attacker.set_members(model.sample(1, 0))
  return attacker


def test_early_stop_freezes_each_example_at_its_first_success():
  attacker = _linear_attacker()
  # Margins 0.4, 2.0, 3.6, and an image whose label is already wrong.
  images = np.repeat(np.array([[0.2], [0.4], [0.6], [0.6]], np.float32), 4, 1)
  labels = np.array([0, 0, 0, 1])
  result = protocols.early_stopped_fgsm(attacker, images, labels, eps=0.3,
                                        max_steps=10, step_size=0.1,
                                        batch_size=3)  # Two padded batches.
  # Step k lowers the margin by 0.8 k, at most 0.8 * 3 within eps = 0.3.
  np.testing.assert_array_equal(result.steps, [1, 3, -1, 0])
  np.testing.assert_array_equal(result.kept, [True, True, False, False])
  np.testing.assert_array_equal(result.clean_correct,
                                [True, True, True, False])
  adv = result.adversarial
  np.testing.assert_allclose(adv[0], 0.1, atol=1e-6)  # One step, not more.
  np.testing.assert_allclose(adv[1], 0.1, atol=1e-6)  # 0.4 - 3 steps.
  np.testing.assert_allclose(adv[2], 0.3, atol=1e-6)  # At the eps bound.
  np.testing.assert_array_equal(adv[3], images[3])  # Not attacked.
  # Without early stopping the first image would have gone on to 0.
  one_step = protocols.early_stopped_fgsm(attacker, images[:1], labels[:1],
                                          eps=0.3, max_steps=1,
                                          step_size=0.1, batch_size=3)
  np.testing.assert_array_equal(one_step.adversarial, adv[:1])
  assert attacker.trace_count == 1  # One batch shape, one trace.


def test_fgsm_is_one_step_and_eps_zero_keeps_nothing():
  attacker = _linear_attacker()
  images = np.repeat(np.array([[0.2], [0.4]], np.float32), 4, 1)
  labels = np.array([0, 0])
  fgsm = protocols.early_stopped_fgsm(attacker, images, labels, eps=0.3,
                                      max_steps=1)
  # Step 1 (the authors' stepsize) reaches the ball's corner: 0.2 -> 0.
  np.testing.assert_allclose(fgsm.adversarial, [[0.0] * 4, [0.1] * 4],
                             atol=1e-6)
  np.testing.assert_array_equal(fgsm.steps, [1, 1])
  nothing = protocols.early_stopped_fgsm(attacker, images, labels, eps=0.0)
  assert not nothing.kept.any()
  np.testing.assert_array_equal(nothing.adversarial, images)


def test_finite_ensemble_is_attacked_through_its_mean_logits():
  model = FiniteMembers(np.stack([np.ones(4), -np.ones(4)], 1),
                        np.array([-0.6, 0.6]))
  nets = protocols.paper_networks(model, (2, 10), seed=0)
  assert nets.fuse == 'logits' and nets.overlap
  assert nets.sizes == [2]  # 10 > K = 4 is dropped.
  assert tf.nest.flatten(nets.source)[0].shape[0] == 4


def test_authors_scale_maps_pixels_to_their_standardised_range():
  np.testing.assert_allclose(protocols.authors_scale(np.array([0.0, 1.0])),
                             [0.1307, 0.1307 + 0.3081], rtol=1e-6)


def test_protocols_table_has_the_results_md_shape():
  cfg = attacks.AdversarialConfig()
  results = {'adv_paper/bim_eps0.1_detection_n1000': 0.975,
             'adv/pgd_eps0.1_detection_n100': 0.02,
             'adv_paper/fgsm_eps0.01_detection_n10': float('nan')}
  table = protocols.protocols_table('HyperGAN', results, cfg).splitlines()
  assert table[0] == ('| model | attack | ε | paper N=10 | paper N=100 | '
                      'paper N=1000 | strong N=10 | strong N=100 |')
  assert len(table) == 2 + 2 * 5  # FGSM and PGD x 5 epsilons.
  assert '| HyperGAN | PGD / iterative | 0.1 | — | — | 97.5 | — | 2.0 |' in (
      table)
  assert table[2].startswith('| HyperGAN | FGSM | 0.01 | — |')


def test_adaptive_attack_has_strong_rows_only():
  """pgd_entropy has no paper-protocol version: its paper cells are empty."""
  cfg = attacks.AdversarialConfig(attacks=('pgd', 'pgd_entropy'),
                                  epsilons=(0.1,))
  results = {'adv/pgd_entropy_eps0.1_detection_n10': 0.95,
             'adv_paper/bim_eps0.1_detection_n1000': 0.5}
  table = protocols.protocols_table('HyperGAN', results, cfg)
  assert ('| HyperGAN | PGD, wrong and sure (adaptive) | 0.1 | — | — | — | '
          '95.0 | — |') in table
  assert 'BIM' in protocols.input_scale_note(
      {'adv_paper/bim_eps0.1_detection_authors_scale_n100': 1.0}, cfg)
  panels = protocols.detection_sweep_panels(results, cfg, (10,), (10,))
  assert 'strong: PGD, wrong and sure (adaptive)' in panels
  assert len([name for name in panels if name.startswith('paper')]) == 1


def test_fresh_networks_share_no_parameters_with_the_source(tiny_model):
  nets = protocols.paper_networks(tiny_model, (2, 5), seed=0)
  assert nets.fuse == 'softmax' and not nets.overlap and nets.sizes == [2, 5]
  for source, fresh in zip(tf.nest.flatten(nets.source),
                           tf.nest.flatten(nets.fresh)):
    assert source.shape[0] == 1 and fresh.shape[0] == 5
    source = np.asarray(source)[0]
    for member in np.asarray(fresh):
      assert not np.any(member == source), 'a fresh member reuses a weight'


def test_kept_examples_are_exactly_the_successful_ones(tiny_model, mnist_batch):
  x, y = mnist_batch
  attacker = attacks.EnsembleAttack(tiny_model, 1)
  attacker.set_members(tiny_model.sample(1, 4))
  result = protocols.early_stopped_fgsm(attacker, x, y, eps=0.3,
                                        max_steps=3, batch_size=16)
  source = lambda images: np.asarray(tiny_model.logits(
      tiny_model.sample(1, 4), tf.constant(images)))[0].argmax(-1)
  np.testing.assert_array_equal(result.clean_correct, source(x) == y)
  fooled = source(result.adversarial) != y
  np.testing.assert_array_equal(result.kept, result.clean_correct & fooled)
  assert result.kept.any()  # eps = 0.3 fools even a barely trained net.
  assert np.abs(result.adversarial - x).max() <= 0.3 + 1e-6
  assert attacker.trace_count == 1


def test_paper_protocol_eps_zero_and_one_trace_for_the_sweep(
    tiny_model, mnist_batch):
  x, y = mnist_batch
  cfg = attacks.AdversarialConfig(
      epsilons=(0.0, 0.3), paper_ensemble_sizes=(2, 3), scale_check_size=3,
      paper_steps=2, num_examples=len(y), batch_size=16)
  out, per_image, traces = protocols.paper_protocol(tiny_model, x, y, cfg)
  assert traces == 1  # Two attacks x two epsilons, one source network.
  for name in ('fgsm', 'bim'):
    assert out[f'adv_paper/{name}_eps0_num_kept'] == 0
    assert np.isnan(out[f'adv_paper/{name}_eps0_detection_n3'])
    assert np.isnan(out[f'adv_paper/{name}_eps0_auroc_n2'])
    kept = out[f'adv_paper/{name}_eps0.3_num_kept']
    assert kept > 0
    assert len(per_image[('fgsm' if name == 'fgsm' else 'pgd', 0.3, 3)]) == (
        kept)
    for what in ('detection_n2', 'detection_fpr1_n3', 'auroc_n3',
                 'accuracy_n3', 'detection_authors_scale_n3'):
      assert 0.0 <= out[f'adv_paper/{name}_eps0.3_{what}'] <= 1.0, what
    # Stricter false-positive rate: a higher threshold, fewer detections.
    assert (out[f'adv_paper/{name}_eps0.3_detection_fpr1_n3'] <=
            out[f'adv_paper/{name}_eps0.3_detection_n3'])
  # FGSM is the one-step case: never more kept than the iterative attack.
  assert (out['adv_paper/fgsm_eps0.3_num_kept'] <=
          out['adv_paper/bim_eps0.3_num_kept'])
  text = protocols.protocols_markdown(
      'tiny', out, dataclasses.replace(cfg, protocols=('paper',)), len(y))
  assert '| tiny | FGSM | 0 | — | — |' in text
  assert 'Input scale:' in text and 'N = 3' in text

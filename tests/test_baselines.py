"""Baselines: ensembles, MC dropout and variational networks as members."""

import json

import numpy as np
from absl import flags
import pytest
import tensorflow as tf

from hypergan_tf import baselines
from hypergan_tf import data
from hypergan_tf import evaluation
from hypergan_tf import export
from hypergan_tf import loop
from hypergan_tf import members
from hypergan_tf import targets
from tests.conftest import REPO
from tests.conftest import SHARED_DATA

# Small enough to train a few steps in seconds on CPU.
TINY = dict(num_members=3, batch_size=8, steps=4, log_every=2, eval_every=2,
            eval_members=3, final_eval_members=3, checkpoint_every=2,
            download=False)
SPEC = targets.get_target('mnist')


def _cfg(method, run_dir='', **overrides):
  return baselines.BaselineConfig(run_dir=run_dir, method=method,
                                  **{**TINY, **overrides})


@pytest.fixture(scope='module')
def images(tfds_dir):
  x, _ = next(iter(data.load('mnist', 'test[:5]', 5, training=False,
                             data_dir=tfds_dir, download=False)))
  return x


def _distinct(params):
  """Whether every pair of members differs in some parameter."""
  flat = np.concatenate([np.reshape(t, (t.shape[0], -1))
                         for pair in params for t in pair], axis=1)
  return all(not np.array_equal(flat[i], flat[j])
             for i in range(len(flat)) for j in range(i))


@pytest.mark.parametrize('kwargs, message', [
    (dict(method='bagging'), "Unknown --method 'bagging'"),
    (dict(dropout_rate=1.0), '--dropout_rate must be below 1'),
    (dict(prior_std=0.0), '--prior_std must be positive'),
    (dict(num_members=0), '--num_members must be >= 1'),
    (dict(dataset='toy_regression'), "Unknown --dataset 'toy_regression'"),
    (dict(target='cifar'), 'pick a matching --target'),
    (dict(steps=5, warmup_steps=5), 'must be smaller than --steps'),
    (dict(random_sign_init=0.0), '--random_sign_init must be in'),
    (dict(random_sign_init=1.5), '--random_sign_init must be in'),
])
def test_bad_values_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    baselines.BaselineConfig(**kwargs)


@pytest.fixture(scope='module')
def trained(tfds_dir, tmp_path_factory):
  """Trains each method once (lazily): method -> (run_dir, cfg, results)."""
  runs = {}

  def get(method):
    if method not in runs:
      run_dir = tmp_path_factory.mktemp(method)
      cfg = _cfg(method, str(run_dir), data_dir=tfds_dir)
      runs[method] = (run_dir, cfg, baselines.train(cfg))
    return runs[method]
  return get


@pytest.mark.parametrize('method', baselines.METHODS)
def test_trains_and_loads_as_members(method, trained, images):
  run_dir, cfg, results = trained(method)
  written = json.loads((run_dir / 'results.json').read_text())
  assert written['steps'] == 4 == results['steps']
  assert written['method'] == method
  assert 0.0 <= written['test/accuracy_n1'] <= 1.0
  assert written['wall_time_s'] > 0
  assert json.loads((run_dir / 'config.json').read_text())['method'] == method

  model = members.load(str(run_dir))  # Dispatches on config.json's method.
  assert isinstance(model, members.Loaded)
  assert model.step == 4 and model.num_classes == 10
  assert model.max_members == (
      3 if method in ('ensemble', 'batch_ensemble') else None)
  params = model.sample(3, seed=0)
  logits = model.logits(params, images).numpy()
  assert logits.shape == (3, 5, 10)
  assert np.isfinite(logits).all()
  assert _distinct(params)  # The members differ ...
  assert not np.allclose(logits[0], logits[1])  # ... and so do their outputs.
  for a, b in zip(tf.nest.flatten(params), tf.nest.flatten(
      model.sample(3, seed=0))):
    np.testing.assert_array_equal(a, b)  # Reproducible from the seed.

  if method == 'ensemble':  # Rerunning with more steps resumes.
    more = baselines.train(baselines.BaselineConfig(
        **{**cfg.to_dict(), 'steps': 6}))
    assert (more['start_step'], more['steps']) == (4, 6)
    assert more['wall_time_s'] >= results['wall_time_s']


def test_ensemble_samples_distinct_members_up_to_k():
  ensemble = baselines.Ensemble(SPEC, _cfg('ensemble', num_members=4))
  params = ensemble.sample(4, seed=0)
  assert _distinct(params)
  # A permutation of the K networks: every one exactly once.
  order = [int(np.flatnonzero([np.array_equal(k, v) for v in
                               ensemble.kernels[0].numpy()])[0])
           for k in params[0][0].numpy()]
  assert sorted(order) == [0, 1, 2, 3]
  assert ensemble.sample(2, seed=0)[0][0].shape[0] == 2
  with pytest.raises(ValueError, match='has 4 members; cannot sample 5'):
    ensemble.sample(5, seed=0)


def test_mc_dropout_folds_masks_into_kernel_inputs():
  rate = 0.5
  model = baselines.McDropout(SPEC, _cfg('mc_dropout', dropout_rate=rate))
  params = model.sample(6, seed=1)
  assert _distinct(params)
  base = [k.numpy() for k in model.kernels]
  # No dropout on the image; the bias is never masked.
  np.testing.assert_array_equal(params[0][0], np.stack([base[0]] * 6))
  np.testing.assert_array_equal(params[1][1], np.stack(
      [model.biases[1].numpy()] * 6))
  # Conv: whole input channels; dense: single input units (rows).
  for layer, axis in ((1, 2), (2, 0)):
    kernels = params[layer][0].numpy()
    for member in kernels:
      kept = np.moveaxis(member, axis, 0)
      reference = np.moveaxis(base[layer], axis, 0) / (1 - rate)
      dropped = np.all(kept == 0, axis=tuple(range(1, kept.ndim)))
      np.testing.assert_allclose(kept[~dropped], reference[~dropped],
                                 rtol=1e-6)
      assert 0.2 < dropped.mean() < 0.8
  other = model.sample(6, seed=2)
  assert not np.array_equal(params[2][0], other[2][0])


def test_variational_kl_and_samples():
  cfg = _cfg('variational', prior_std=0.5, posterior_init_std=0.5)
  model = baselines.Variational(SPEC, cfg)
  assert float(model.kl_divergence()) > 0  # Means start away from zero.
  for loc in model.locs:
    loc.assign(tf.zeros_like(loc))
  assert float(model.kl_divergence()) == pytest.approx(0.0, abs=1e-2)
  params = model.sample(4, seed=0)
  assert _distinct(params)
  kernel = params[2][0].numpy()
  assert kernel.std() == pytest.approx(0.5, rel=0.05)  # The posterior std.


@pytest.mark.parametrize('method', ['variational', 'batch_ensemble'])
def test_resume_continues_exactly(method, tfds_dir, tmp_path):
  cfg = _cfg(method, str(tmp_path), data_dir=tfds_dir)
  batch = next(iter(data.load('mnist', 'train', baselines.BaselineTrainer(
      cfg, 1).examples_per_step, training=True, data_dir=tfds_dir,
                              download=False)))
  first = baselines.BaselineTrainer(cfg, num_train_examples=60_000)
  for _ in range(2):
    first.train_step(*batch)
  loop.Checkpoints(first).save()
  second = baselines.BaselineTrainer(cfg, num_train_examples=60_000)
  assert loop.Checkpoints(second).restored()
  assert int(second.step.numpy()) == 2
  for a, b in zip(first.model.weights, second.model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # Same weights, optimizer state and sample stream: the same next step.
  assert first.train_step(*batch) == second.train_step(*batch)


@pytest.mark.parametrize('random_sign_init', [0.5, -0.5])
def test_batch_ensemble_members_differ_at_initialisation(random_sign_init):
  model = baselines.BatchEnsemble(SPEC, _cfg(
      'batch_ensemble', num_members=4, random_sign_init=random_sign_init))
  params = model.sample(4, seed=0)
  assert _distinct(params)
  r = model.fast_in[1].numpy()
  if random_sign_init > 0:  # Random signs.
    assert set(np.unique(r)) == {-1.0, 1.0}
  else:  # Around 1.
    assert r.mean() == pytest.approx(1.0, abs=0.1)
    assert r.std() == pytest.approx(0.5, rel=0.2)
  # Only the rank-1 factors differ: the shared kernel is one variable.
  assert model.kernels[0].shape == SPEC.param_shapes[0][0]
  with pytest.raises(ValueError, match='has 4 members; cannot sample 5'):
    model.sample(5, seed=0)


def test_batch_ensemble_member_is_the_rank_1_layer(images):
  """Folding r s^T into the kernel is BatchEnsemble's ((x * r) W) * s."""
  model = baselines.BatchEnsemble(SPEC, _cfg('batch_ensemble',
                                             num_members=2))
  kernel, _ = model.train_params(None, 2)[0]
  for k in range(2):
    r, s = model.fast_in[0][k], model.fast_out[0][k]
    expected = tf.nn.conv2d(images * r, model.kernels[0], 1, 'SAME') * s
    np.testing.assert_allclose(
        tf.nn.conv2d(images, kernel[k], 1, 'SAME'), expected, atol=1e-5)


def test_batch_ensemble_tiles_one_batch_and_scores_each_member(tfds_dir):
  cfg = _cfg('batch_ensemble', data_dir=tfds_dir)
  trainer = baselines.BaselineTrainer(cfg, 1)
  assert trainer.examples_per_step == cfg.batch_size  # Not K x batch_size.
  x, y = next(iter(data.load('mnist', 'train', cfg.batch_size,
                             training=True, data_dir=tfds_dir,
                             download=False)))
  params = trainer.model.train_params(None, cfg.num_members)
  per_member = [np.mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      y, targets.apply(SPEC, [(kern[k:k + 1], b[k:k + 1])
                              for kern, b in params], x)[0]))
                for k in range(cfg.num_members)]
  assert len(set(np.round(per_member, 6))) == cfg.num_members
  losses = trainer.train_step(x, y)
  assert losses['task_loss'] == pytest.approx(np.mean(per_member), rel=1e-5)


def test_fast_weights_are_not_decayed(tfds_dir):
  """Decay would pull fast weights (around 1) to 0; the kernels it takes."""
  trainer = baselines.BaselineTrainer(_cfg(
      'batch_ensemble', data_dir=tfds_dir, weight_decay=0.5), 1)
  before = [v.numpy() for v in trainer.model.weights]
  zero = [tf.zeros_like(v) for v in trainer.model.weights]
  trainer.optimizer.apply_gradients(zip(zero, trainer.model.weights))
  for v, old in zip(trainer.model.weights, before):
    changed = not np.array_equal(v.numpy(), old)
    assert changed == v.name.startswith('kernel'), v.name


def test_batch_ensemble_exports_its_members(trained, images, tmp_path):
  run_dir, _, _ = trained('batch_ensemble')
  model = members.load(str(run_dir))
  params = model.sample(3, seed=0)
  export.export(export.FixedMembers(model.spec, params), str(tmp_path))
  served = tf.saved_model.load(str(tmp_path))
  expected = tf.nn.softmax(model.logits(params, images)).numpy()  # [K, B, C]
  got = served.signatures['predict_seeded'](
      images=images, num_networks=tf.constant(3), seed=tf.constant(5))
  member_probs = np.transpose(got['member_probabilities'].numpy(), [1, 0, 2])
  # The K members, each once, in a seeded order; their mean is the output.
  order = [int(np.argmin([np.abs(m - e).max() for e in expected]))
           for m in member_probs]
  assert sorted(order) == [0, 1, 2]
  np.testing.assert_allclose(member_probs, expected[order], atol=1e-5)
  np.testing.assert_allclose(got['probabilities'], expected.mean(0),
                             atol=1e-5)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'num_networks must be in \[1, 3\]'):
    served.signatures['predict'](images=images, num_networks=tf.constant(4))


def test_foreign_checkpoint_fails_and_keeps_the_config(trained):
  run_dir, cfg, _ = trained('variational')
  config_before = (run_dir / 'config.json').read_text()
  with pytest.raises(RuntimeError, match='other flags'):
    baselines.train(baselines.BaselineConfig(
        **{**cfg.to_dict(), 'method': 'ensemble'}))
  assert (run_dir / 'config.json').read_text() == config_before


def test_non_finite_loss_stops_and_keeps_last_checkpoint(
    tfds_dir, tmp_path, monkeypatch):
  def broken_step(self, images, labels):
    del images, labels
    for v in self.model.weights:
      v.assign(tf.fill(v.shape, np.nan))
    self.step.assign_add(1)
    return {'loss': float('nan')}
  monkeypatch.setattr(baselines.BaselineTrainer, 'train_step', broken_step)
  with pytest.raises(loop.NonFiniteLossError, match='step 1: loss'):
    baselines.train(_cfg('mc_dropout', str(tmp_path), data_dir=tfds_dir,
                         checkpoint_every=1))
  latest = tf.train.latest_checkpoint(str(tmp_path / 'checkpoints'))
  assert latest.endswith('ckpt-0')


def test_flagfile_gives_config(tmp_path):
  flagfile = tmp_path / 'tiny.flags'
  flagfile.write_text('# A comment.\n--run_dir=r\n--method=variational\n'
                      '--num_members=2\n--prior_std=0.3\n--nodownload\n')
  fv = flags.FlagValues()
  baselines.define_flags(fv)
  fv(['train_baseline.py', f'--flagfile={flagfile}', '--steps=7'])
  cfg = baselines.from_flags(fv)
  assert cfg == baselines.BaselineConfig(
      run_dir='r', method='variational', num_members=2, prior_std=0.3,
      download=False, steps=7)
  assert baselines.BaselineConfig(**cfg.to_dict()) == cfg
  with pytest.raises(flags.IllegalFlagValueError):
    fv(['train_baseline.py', '--dropout_rate=2'])


@pytest.mark.parametrize(
    'flagfile', sorted((REPO / 'configs').glob('baseline_*.flags')),
    ids=lambda p: p.name)
def test_every_baseline_flagfile_parses(flagfile):
  fv = flags.FlagValues()
  baselines.define_flags(fv)
  fv(['train_baseline.py', f'--flagfile={flagfile}'])
  cfg = baselines.from_flags(fv)
  assert cfg.run_dir.startswith('runs/')
  assert cfg.final_eval_members <= cfg.num_members or (
      cfg.method not in ('ensemble', 'batch_ensemble'))


def test_evaluation_takes_a_baseline_run(trained, not_mnist_prepared):
  """What scripts/evaluate.py runs, in this process; its test covers the rest."""
  run_dir, _, _ = trained('mc_dropout')
  evaluation.evaluate_run(str(run_dir), num_networks=5,
                          ood_data_dir=not_mnist_prepared[0],
                          manual_dir=str(SHARED_DATA))
  results = json.loads((run_dir / 'eval' / 'metrics.json').read_text())
  for key in ('test/accuracy_n1', 'test/accuracy_n5', 'test/nll_n5',
              'ood/not_mnist_auroc_n5', 'diversity/layer_2_norm_std'):
    assert key in results, key
  assert results['num_networks'] == 5

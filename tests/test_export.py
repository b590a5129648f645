"""SavedModel export, loaded where hypergan_tf cannot be imported."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from hypergan_tf.model import members
from hypergan_tf.model import modes
from hypergan_tf.model import targets
from hypergan_tf.serving import export
from tests.conftest import REPO
from tests.conftest import train_modes_run

# Runs with `python -I` in an empty directory, hypergan_tf blocked outright.
_CLIENT = textwrap.dedent('''
    import json, sys
    sys.modules['hypergan_tf'] = None  # Any import of it now fails.
    try:
      import hypergan_tf
      raise SystemExit('hypergan_tf was importable')
    except ImportError:
      pass
    import numpy as np
    import tensorflow as tf

    export_dir, out = sys.argv[1], sys.argv[2]
    model = tf.saved_model.load(export_dir)
    images = tf.constant(np.load(out + '.images.npy'))
    params = model.signatures['sample_parameters'](num_networks=tf.constant(3))
    logits = model.signatures['predict_with_parameters'](
        images=images, **params)['logits']
    pred = model.signatures['predict'](images=images,
                                       num_networks=tf.constant(7))
    seeded = {name: model.signatures['predict_seeded'](
        images=images, num_networks=tf.constant(7), seed=tf.constant(seed))
              for name, seed in (('a', 3), ('b', 3), ('c', 4))}
    seeded_params = model.signatures['sample_parameters_seeded'](
        num_networks=tf.constant(7), seed=tf.constant(3))
    seeded_logits = model.signatures['predict_with_parameters'](
        images=images, **seeded_params)['logits']
    errors = {}
    bad_calls = {
        'zero_networks': lambda: model.signatures['predict'](
            images=images, num_networks=tf.constant(0)),
        'too_many_networks': lambda: model.signatures['predict'](
            images=images, num_networks=tf.constant(10**6)),
        'pixels_0_255': lambda: model.signatures['predict'](
            images=images * 255.0, num_networks=tf.constant(2)),
        'wrong_shape': lambda: model.signatures['predict'](
            images=tf.zeros([2, 32, 32, 3]), num_networks=tf.constant(2)),
        'wrong_dtype': lambda: model.signatures['predict'](
            images=tf.zeros([2, 28, 28, 1], tf.uint8),
            num_networks=tf.constant(2)),
        'seeded_zero_networks': lambda: model.signatures['predict_seeded'](
            images=images, num_networks=tf.constant(0), seed=tf.constant(1)),
        'seed_float': lambda: model.signatures['predict_seeded'](
            images=images, num_networks=tf.constant(2), seed=tf.constant(1.5)),
        'seed_vector': lambda: model.signatures['predict_seeded'](
            images=images, num_networks=tf.constant(2),
            seed=tf.constant([1, 2])),
        'seed_missing': lambda: model.signatures['predict_seeded'](
            images=images, num_networks=tf.constant(2)),
        'num_networks_float': lambda: model.signatures['predict'](
            images=images, num_networks=tf.constant(2.0)),
        'num_networks_vector': lambda: model.signatures['predict'](
            images=images, num_networks=tf.constant([2, 3])),
    }
    for name, call in bad_calls.items():
      try:
        call()
        errors[name] = None
      except Exception as e:
        errors[name] = str(e)[:2000]
    np.savez(out, logits=logits.numpy(), **{k: v.numpy() for k, v in
             params.items()}, **{'pred_' + k: v.numpy() for k, v in
             pred.items()}, **{f'seeded_{name}_{k}': v.numpy()
             for name, res in seeded.items() for k, v in res.items()},
             seeded_logits=seeded_logits.numpy())
    with open(out + '.errors.json', 'w') as f:
      json.dump(errors, f)
''')


@pytest.fixture(scope='module')
def exported(tiny_run):
  """The session's tiny run, exported by scripts/export.py."""
  run_dir = tiny_run
  export_dir = run_dir / 'export' / '1'
  out = subprocess.run(
      [sys.executable, 'scripts/export.py', f'--run_dir={run_dir}',
       f'--export_dir={export_dir}', '--max_networks=50'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  return run_dir, export_dir


def test_isolated_client_matches_in_process_pass(exported, tmp_path):
  run_dir, export_dir = exported
  images = np.random.default_rng(0).uniform(size=(6, 28, 28, 1)).astype(
      np.float32)
  out = tmp_path / 'client'
  np.save(str(out) + '.images.npy', images)
  script = tmp_path / 'client.py'
  script.write_text(_CLIENT)
  done = subprocess.run(
      [sys.executable, '-I', str(script), str(export_dir), str(out)],
      capture_output=True, text=True, cwd=tmp_path, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  got = np.load(str(out) + '.npz')

  # The exact networks the client received give the same logits in-process.
  spec = targets.get_target('mnist')
  params = [(tf.constant(got[f'layer_{i}_kernel']),
             tf.constant(got[f'layer_{i}_bias']))
            for i in range(len(spec.layers))]
  assert params[0][0].shape[0] == 3
  expected = targets.apply(spec, params, tf.constant(images))
  np.testing.assert_allclose(got['logits'], expected, rtol=1e-4, atol=1e-4)

  probs, entropy = got['pred_probabilities'], got['pred_entropy']
  assert probs.shape == (6, 10)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  assert got['pred_member_probabilities'].shape == (6, 7, 10)
  assert np.all(entropy >= -1e-6) and np.all(entropy <= math.log(10) + 1e-5)

  errors = json.loads((tmp_path / 'client.errors.json').read_text())
  assert all(errors.values()), errors  # Every bad call raised.
  assert 'num_networks must be in [1, 50]' in errors['zero_networks']
  assert 'num_networks must be in [1, 50]' in errors['too_many_networks']
  assert 'images must be float32 pixels in [0, 1]' in errors['pixels_0_255']
  assert 'num_networks must be in [1, 50]' in errors['seeded_zero_networks']
  assert ('Shape of tensor images [2,32,32,3] is not compatible'
          in errors['wrong_shape'])
  assert "missing a required argument: 'seed'" in errors['seed_missing']
  assert 'expected to be a int32 tensor' in errors['seed_float']
  assert 'expected to be a int32 tensor' in errors['num_networks_float']
  assert ('Shape of tensor seed [2] is not compatible with expected shape []'
          in errors['seed_vector'])
  assert ('Shape of tensor num_networks [2] is not compatible'
          in errors['num_networks_vector'])

  # One seed names one ensemble: in this process, across processes, and
  # sample_parameters_seeded returns exactly the networks predict_seeded used.
  for k in ('probabilities', 'entropy', 'member_probabilities'):
    np.testing.assert_array_equal(got[f'seeded_a_{k}'], got[f'seeded_b_{k}'])
  assert np.abs(got['seeded_a_member_probabilities'] -
                got['seeded_c_member_probabilities']).max() > 1e-3
  np.testing.assert_allclose(
      tf.nn.softmax(got['seeded_logits']).numpy().transpose(1, 0, 2),
      got['seeded_a_member_probabilities'], rtol=1e-4, atol=1e-5)
  module = export.ServingModule(members.load(str(run_dir)).hypernet,
                                max_networks=50)
  here = module.predict_seeded(tf.constant(images), tf.constant(7),
                               tf.constant(3))
  for k in ('probabilities', 'entropy', 'member_probabilities'):
    np.testing.assert_allclose(here[k], got[f'seeded_a_{k}'], rtol=1e-4,
                               atol=1e-5)


def test_predict_in_chunks_equals_one_pass(exported):
  run_dir, _ = exported
  trainer = members.load(str(run_dir))
  params = trainer.hypernet.sample(4)
  x = tf.random.uniform((37, 28, 28, 1), seed=5)
  whole = targets.apply(trainer.spec, params, x)
  chunked = targets.apply_in_chunks(trainer.spec, params, x, 10)
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)


def test_chunks_over_networks_equal_one_pass(exported):
  """7 networks in chunks of 3 (3 + 3 + 1), 5 images in chunks of 2."""
  run_dir, _ = exported
  hypernet = members.load(str(run_dir)).hypernet
  chunked = export.ServingModule(hypernet, 50, network_chunk_size=3,
                                 image_chunk_size=2)
  whole = export.ServingModule(hypernet, 50, network_chunk_size=7,
                               image_chunk_size=5)  # One chunk of each.
  x = tf.random.uniform((5, 28, 28, 1), seed=1)
  n, seed = tf.constant(7), tf.constant(11)
  params = whole.sample_parameters_seeded(n, seed)
  np.testing.assert_array_equal(
      chunked.sample_parameters_seeded(n, seed)['layer_1_kernel'],
      params['layer_1_kernel'])
  pairs = [(params[f'layer_{i}_kernel'], params[f'layer_{i}_bias'])
           for i in range(len(hypernet.spec.layers))]
  member_probs = tf.nn.softmax(targets.apply(hypernet.spec, pairs, x)).numpy()
  for module in (chunked, whole):
    out = module.predict_seeded(x, n, seed)
    np.testing.assert_allclose(out['member_probabilities'],
                               member_probs.transpose(1, 0, 2), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(out['probabilities'], member_probs.mean(0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        module.predict_with_parameters(x, *[
            params[name] for name in export._param_names(hypernet.spec)
        ])['logits'],
        targets.apply(hypernet.spec, pairs, x), rtol=1e-4, atol=1e-4)
  assert chunked.predict(x, n)['member_probabilities'].shape == (5, 7, 10)


def test_bad_chunk_sizes_are_refused(exported):
  run_dir, _ = exported
  hypernet = members.load(str(run_dir)).hypernet
  with pytest.raises(ValueError, match='network_chunk_size must be >= 1'):
    export.ServingModule(hypernet, network_chunk_size=0)


def test_existing_export_dir_is_refused(exported):
  run_dir, export_dir = exported
  trainer = members.load(str(run_dir))
  with pytest.raises(FileExistsError, match='--overwrite'):
    export.export(trainer.hypernet, str(export_dir))


@pytest.fixture(scope='module')
def modes_run(mnist_batch, tmp_path_factory):
  """(run directory, its trained first-layer bases) of a TINY MNIST run with
  two modes, trained two steps (on test images: only its shape matters)."""
  run_dir = tmp_path_factory.mktemp('modes') / 'run'
  trainer = train_modes_run(run_dir, mnist_batch)
  return run_dir, trainer.hypernet.mode_offsets.kernel_0.numpy()


def test_export_with_modes_matches_the_run_in_process(modes_run, tmp_path):
  """A seed's networks in the SavedModel are the run's own: the seed's noise
  stratified over the modes, each network its mode's trained base plus the
  generated part; predict_seeded scores exactly those networks."""
  run_dir, trained_base = modes_run
  model = members.load(str(run_dir))
  hn = model.hypernet
  export_dir = str(tmp_path / 'export')
  export.export(hn, export_dir, max_networks=10)
  served = tf.saved_model.load(export_dir)
  n, seed = 6, tf.constant(3)
  got = served.signatures['sample_parameters_seeded'](
      num_networks=tf.constant(n), seed=seed)
  # In process: the noise the seed names (export.py), spread over the modes.
  noise = hn.stratify(tf.random.stateless_normal([n, hn.config.noise_dim],
                                                 [3, 0]))
  np.testing.assert_array_equal(modes.mode_index(noise, 2), np.arange(n) % 2)
  params = hn.networks(noise)
  for i, (kernel, bias) in enumerate(params):
    np.testing.assert_allclose(got[f'layer_{i}_kernel'], kernel, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(got[f'layer_{i}_bias'], bias, rtol=1e-5,
                               atol=1e-6)
  generated = hn.generators[0](hn.codes(noise)[:, 0])[0].numpy()
  base = hn.mode_offsets.kernel_0.numpy()
  np.testing.assert_allclose(got['layer_0_kernel'],
                             generated + base[np.arange(n) % 2], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(base, trained_base)  # Restored, not new.
  images = np.random.default_rng(1).uniform(size=(5, 28, 28, 1)).astype(
      np.float32)
  pred = served.signatures['predict_seeded'](
      images=tf.constant(images), num_networks=tf.constant(n), seed=seed)
  member_probs = tf.nn.softmax(model.logits(params, images)).numpy()
  np.testing.assert_allclose(pred['member_probabilities'],
                             member_probs.transpose(1, 0, 2), rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(pred['probabilities'], member_probs.mean(0),
                             rtol=1e-4, atol=1e-5)


def test_missing_run_dir_gives_clear_error(tmp_path):
  out = subprocess.run(
      [sys.executable, 'scripts/export.py', f'--run_dir={tmp_path}'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert out.returncode != 0
  assert 'is not a run directory' in out.stderr
  assert 'Traceback' not in out.stderr

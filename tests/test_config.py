"""Configuration: bad flag values fail early with a message naming the fix."""

import dataclasses

from absl import flags
import numpy as np
import pytest

from hypergan_tf.datasets import data
from hypergan_tf.methods import baselines
from hypergan_tf.methods import config as base
from hypergan_tf.methods.baselines import config as baseline_config
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from tests.conftest import REPO


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_networks=0), '--num_networks must be >= 1'),
    (dict(batch_size=-5), '--batch_size must be >= 1'),
    (dict(learning_rate=0.0), '--learning_rate must be positive'),
    (dict(steps=10, warmup_steps=10), 'must be smaller than --steps'),
    (dict(beta=-1.0), '--beta must be >= 0'),
    (dict(min_lr_ratio=2.0), '--min_lr_ratio must be <= 1'),
    (dict(dataset='imagenet'), "Unknown --dataset 'imagenet'; choose"),
    (dict(target='resnet'), "Unknown --target 'resnet'; choose"),
    (dict(target='cifar'), 'takes inputs .* pick a matching --target'),
    (dict(forward_method='magic'), 'Unknown --forward_method'),
    (dict(code_dim=0), '--code_dim must be >= 1'),
    (dict(init_gain=0.0), 'init_gain must be positive'),
    (dict(activation='nope'), 'Unknown activation'),
    (dict(final_eval_networks=5), '--final_eval_networks must be >= 10'),
    (dict(validation_size=-1), '--validation_size must be >= 0'),
    (dict(augment=True), "'mnist' has no augmentation"),
    (dict(standardize='on'), 'no channel statistics'),
    (dict(max_adversarial_ratio=-1.0), '--max_adversarial_ratio must be >= 0'),
])
def test_bad_values_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    config.TrainConfig(**kwargs)


def test_defaults_are_valid_and_round_trip():
  cfg = config.TrainConfig(run_dir='r')
  assert config.TrainConfig(**cfg.to_dict()) == cfg
  assert cfg.hypernet.code_dim == cfg.code_dim


def _parse(*argv):
  fv = flags.FlagValues()
  config.define_flags(fv)
  fv(['train.py', *argv])
  return config.from_flags(fv)


def test_flags_cover_every_field_with_the_same_defaults():
  assert _parse('--run_dir=r') == config.TrainConfig(run_dir='r')


def test_flag_bounds_fail_at_parsing():
  with pytest.raises(flags.IllegalFlagValueError):
    _parse('--run_dir=r', '--num_networks=0')
  with pytest.raises(flags.IllegalFlagValueError):
    _parse('--run_dir=r', '--dataset=imagenet')


# The HyperGAN's flagfiles; baseline_*.flags are scripts/train_baseline.py's.
FLAGFILES = sorted(p for p in (REPO / 'configs').glob('*.flags')
                   if not p.name.startswith('baseline_'))
# Fields the training step does not depend on: the schedule, the run
# directory, the training data's pipeline (the step below trains on a batch of
# the test split) and the network count (2 below).
NOT_IN_THE_STEP = ('run_dir', 'steps', 'warmup_steps', 'num_networks',
                   'eval_every', 'checkpoint_every', 'log_every', 'dataset',
                   'augment', 'validation_size', 'eval_networks',
                   'final_eval_networks')


def _same_step(flagfiles):
  """Flagfiles grouped by the training step they build: one trains for all."""
  groups = {}
  for flagfile in flagfiles:
    cfg = _parse(f'--flagfile={flagfile}')
    spec = data.get_spec(cfg.dataset)  # A fixed subset has the same test set.
    key = (repr(dataclasses.replace(spec, train_size=None, label='')),
           repr({k: v for k, v in cfg.to_dict().items()
                 if k not in NOT_IN_THE_STEP}))
    groups.setdefault(key, []).append(flagfile)
  return list(groups.values())


@pytest.mark.parametrize('flagfile', FLAGFILES, ids=lambda p: p.name)
def test_every_flagfile_parses(flagfile):
  cfg = _parse(f'--flagfile={flagfile}')
  assert cfg.run_dir.startswith('runs/')
  assert cfg.steps > cfg.warmup_steps


@pytest.mark.parametrize('flagfiles', _same_step(FLAGFILES),
                         ids=lambda g: '+'.join(p.stem for p in g))
def test_every_flagfile_trains(flagfiles, tfds_dir):
  cfg = _parse(f'--flagfile={flagfiles[0]}')
  # Two networks instead of dozens: the dataset, target and batch are real.
  # The batch comes from the head of the test split: decoding all of a
  # training split (50,000 CIFAR images) cost 20 s a flagfile.
  trainer = training.Trainer(dataclasses.replace(cfg, run_dir='',
                                                 num_networks=2))
  size = trainer.examples_per_step  # N x B with per-network batches.
  head = f'test[:{4 * size}]'  # Enough for one batch of 5 classes.
  batch = next(iter(data.load(cfg.dataset, head, size, training=False,
                              data_dir=tfds_dir, download=False)))
  assert batch[0].shape[0] == size
  for _ in range(2):
    losses = trainer.train_step(*batch)
  assert int(trainer.step.numpy()) == 2
  assert all(np.isfinite(value) for value in losses.values())


def test_no_field_is_declared_twice():
  shared = {f.name for f in dataclasses.fields(base.RunConfig)}
  seen = set()
  for cls in (config.TrainConfig, baseline_config.BaselineConfig,
              *baseline_config.OPTIONS):
    own = {name for name, kind in vars(cls).get('__annotations__', {}).items()
           if 'ClassVar' not in str(kind)}
    assert not own & shared, cls
    if cls is not config.TrainConfig:
      assert not own & seen, cls
      seen |= own


def test_old_config_json_loads_without_removed_flags():
  old = {**config.TrainConfig(steps=300).to_dict(), 'weight_noise': 0.0}
  assert config.TrainConfig.from_dict(old) == config.TrainConfig(steps=300)
  with pytest.raises(ValueError, match='weight_noise=0.1.*4409bc9'):
    config.TrainConfig.from_dict({**old, 'weight_noise': 0.1})


def test_the_method_default_warmup_and_the_dataset_default_target():
  assert config.TrainConfig().warmup_steps == 200
  assert baselines.BaselineConfig().warmup_steps == 0
  assert config.TrainConfig(dataset='cifar5', steps=300).target == 'cifar5'

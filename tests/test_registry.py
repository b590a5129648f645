"""hypergan_tf/datasets/registry.py: every dataset's facts, consistent."""

import pytest

from hypergan_tf.datasets import registry
from hypergan_tf.methods import config
from hypergan_tf.methods.hypergan import config as hypergan_config


@pytest.mark.parametrize('name', registry.TRAINABLE)
def test_a_trainable_dataset_has_a_default_target_that_fits_it(name):
  spec = registry.DATASETS[name]
  assert spec.label and spec.default_target
  config.check_target_fits_dataset(spec.default_target, name)
  assert hypergan_config.TrainConfig(
      dataset=name, steps=300).target == spec.default_target


@pytest.mark.parametrize('name, spec', registry.DATASETS.items())
def test_ood_sets_are_out_of_distribution_datasets_of_the_same_shape(name,
                                                                      spec):
  for ood in filter(None, [spec.ood_set, (spec.validation_ood or [None])[0]]):
    assert registry.DATASETS[ood].ood
    assert registry.DATASETS[ood].input_shape == spec.input_shape
    assert ood != name
  assert spec.shift in (None, 'rotation', 'corruption')


def test_labels_name_tables_and_fall_back_to_the_name():
  assert registry.label('not_mnist') == 'notMNIST'
  assert registry.label('cifar5_ood') == 'CIFAR-10 classes 5-9 (CIFAR-5 OOD)'
  assert registry.label('svhn') == 'svhn'

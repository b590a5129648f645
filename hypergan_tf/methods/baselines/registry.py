"""The baseline methods: one line per method, name -> its model class.

A new baseline is one new module beside these (a `base.BaselineModel`
subclass, with its `Options` if it has flags of its own) and one line here.
"""

from hypergan_tf.methods.baselines import base
from hypergan_tf.methods.baselines import batch_ensemble
from hypergan_tf.methods.baselines import ensemble
from hypergan_tf.methods.baselines import mc_dropout
from hypergan_tf.methods.baselines import variational

METHODS: dict[str, type[base.BaselineModel]] = {
    'ensemble': ensemble.Ensemble,
    'mc_dropout': mc_dropout.McDropout,
    'variational': variational.Variational,
    'batch_ensemble': batch_ensemble.BatchEnsemble,
}

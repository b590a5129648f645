"""Baselines under the HyperGAN's protocol, one module per method.

`ensemble`, `mc_dropout`, `variational` and `batch_ensemble` each hold one
`base.BaselineModel`; `registry.METHODS` lists them; `config.BaselineConfig`
and `trainer.BaselineTrainer` serve them all. Importing this package
registers every method's loader with `members`.
"""

from hypergan_tf.methods.baselines.batch_ensemble import BatchEnsemble
from hypergan_tf.methods.baselines.config import BaselineConfig
from hypergan_tf.methods.baselines.config import define_flags
from hypergan_tf.methods.baselines.config import from_flags
from hypergan_tf.methods.baselines.config import METHODS
from hypergan_tf.methods.baselines.ensemble import Ensemble
from hypergan_tf.methods.baselines.mc_dropout import McDropout
from hypergan_tf.methods.baselines.trainer import BaselineTrainer
from hypergan_tf.methods.baselines.trainer import train
from hypergan_tf.methods.baselines.variational import Variational

__all__ = ['BaselineConfig', 'BaselineTrainer', 'BatchEnsemble', 'Ensemble',
           'McDropout', 'METHODS', 'Variational', 'define_flags',
           'from_flags', 'train']

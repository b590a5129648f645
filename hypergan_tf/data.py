"""The public name of the data pipelines: `hypergan_tf.data.load(...)`.

The code lives in `hypergan_tf/datasets/data.py`; this module re-exports it
so user code and notebooks written against `hypergan_tf.data` keep working.
"""

from hypergan_tf.datasets.data import *  # pylint: disable=wildcard-import,unused-wildcard-import
from hypergan_tf.datasets.data import DatasetNotFoundError, DatasetSpec, load

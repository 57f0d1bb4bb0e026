"""darnax_bridge: PyTorch Lightning around the JAX core of darnax.

DLPack tensor exchange, the :class:`DarnaxModule` LightningModule, DataModules, backprop
baselines and comparison reports. The ``darnax`` command lives in :mod:`darnax_bridge.cli`.
"""

from ._baselines import BackpropMLP as BackpropMLP
from ._baselines import SignSTE as SignSTE
from ._baselines import count_parameters as count_parameters
from ._baselines import matched_hidden_width as matched_hidden_width
from ._baselines import mlp_parameter_count as mlp_parameter_count
from ._baselines import sign_ste as sign_ste
from ._dlpack import to_jax as to_jax
from ._dlpack import to_torch as to_torch
from ._module import DarnaxModule as DarnaxModule
from ._report import format_comparison_table as format_comparison_table
from ._report import plot_learning_curves as plot_learning_curves
from ._report import read_metrics_csv as read_metrics_csv
from ._summary import DarnaxModelSummary as DarnaxModelSummary
from ._summary import trainable_parameter_count as trainable_parameter_count
from .data import ArrayDataModule as ArrayDataModule
from .data import BaseDataModule as BaseDataModule
from .data import CIFAR10DataModule as CIFAR10DataModule
from .data import DatasetDataModule as DatasetDataModule
from .data import DigitsDataModule as DigitsDataModule
from .data import FashionMNISTDataModule as FashionMNISTDataModule
from .data import MNISTDataModule as MNISTDataModule

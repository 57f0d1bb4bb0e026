"""Datasets and LightningDataModules that produce darnax batches.

Every DataModule yields ``(x, y)`` with ``x`` float32 ``(B, *feature_shape)`` and ``y`` int64
class indices ``(B,)``, or float32 ``(B, num_classes)`` for the label encodings ``"onehot"``,
``"pm1"`` and ``"c-rescale"``.
"""

from ._array_module import ArrayDataModule as ArrayDataModule
from ._base import NORMALIZE_MODES as NORMALIZE_MODES
from ._base import BaseDataModule as BaseDataModule
from ._datamodules import CIFAR10DataModule as CIFAR10DataModule
from ._datamodules import DigitsDataModule as DigitsDataModule
from ._datamodules import FashionMNISTDataModule as FashionMNISTDataModule
from ._datamodules import MNISTDataModule as MNISTDataModule
from ._dataset_module import DatasetDataModule as DatasetDataModule
from ._dataset_module import dataset_labels as dataset_labels
from ._dataset_module import to_feature_tensor as to_feature_tensor
from ._files import FashionMNISTFiles as FashionMNISTFiles
from ._files import MNISTFiles as MNISTFiles
from ._files import load_cifar10_arrays as load_cifar10_arrays
from ._files import load_digits_arrays as load_digits_arrays
from ._files import load_embedded_mnist as load_embedded_mnist
from ._files import load_fashion_mnist_arrays as load_fashion_mnist_arrays
from ._files import load_mnist_arrays as load_mnist_arrays
from ._idx import IDX_TYPE_CODES as IDX_TYPE_CODES
from ._idx import read_idx as read_idx
from ._idx import write_idx as write_idx
from ._preprocess import LABEL_ENCODINGS as LABEL_ENCODINGS
from ._preprocess import encode_labels as encode_labels
from ._preprocess import project_sign as project_sign
from ._preprocess import random_projection_matrix as random_projection_matrix
from ._sampler import EpochSampler as EpochSampler
from ._sampler import epoch_order as epoch_order

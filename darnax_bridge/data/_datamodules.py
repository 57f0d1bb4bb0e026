"""DataModules for MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's digits.

Each accepts the keyword options documented in `BaseDataModule` (batch_size, normalize,
flatten, label_encoding, projection_dim, samples_per_class, val_fraction, seed, num_workers,
shuffle, drop_last, multiprocessing_context).
"""

import logging
import os
from pathlib import Path

import numpy as np

from ._array_module import ArrayDataModule
from ._files import (
    FashionMNISTFiles,
    MNISTFiles,
    check_embedded_mnist,
    cifar10_files,
    load_cifar10_arrays,
    load_digits_arrays,
    load_embedded_mnist,
)
from ._preprocess import TEST_SPLIT_STREAM, stratified_holdout

logger = logging.getLogger(__name__)

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
]


class MNISTDataModule(ArrayDataModule):
    """MNIST handwritten digits: 10 classes of 1x28x28 images.

    Parameters
    ----------
    root
        Directory with the four MNIST IDX files, raw or ``.gz``, directly inside it, in
        ``root/raw`` or in ``root/MNIST/raw``. None uses the subset embedded in the package
        (600 training and 100 test images per class).
    **options
        Keyword options of `BaseDataModule`.
    """

    IMAGE_SHAPE = (1, 28, 28)
    #: File layout; subclasses for datasets stored like MNIST replace it.
    files: type[MNISTFiles] = MNISTFiles
    #: Whether ``root=None`` selects the embedded subset.
    has_embedded_subset = True

    def __init__(self, root: str | os.PathLike | None = None, **options) -> None:
        super().__init__(**options)
        if root is None and not self.has_embedded_subset:
            raise ValueError(
                f"{type(self).__name__} needs root=, the directory containing the "
                f"{self.files.dataset_name} IDX files; no copy of this dataset ships with darnax."
            )
        self.root = None if root is None else Path(root)

    def check_files(self) -> None:
        """Raise FileNotFoundError if an IDX file, or the embedded subset, is missing."""
        if self.root is None:
            check_embedded_mnist()
            return
        for split in self.files.split_files:
            self.files.find(self.root, split)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return uint8 images ``(N, 28, 28)`` and int64 labels of `split`."""
        if self.root is None:
            return load_embedded_mnist(split)
        return self.files.load(self.root, split)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: MNIST's format and file names; ``root`` is required.

    The files are searched in ``root``, ``root/raw`` and ``root/FashionMNIST/raw``.
    """

    files = FashionMNISTFiles
    has_embedded_subset = False


class CIFAR10DataModule(ArrayDataModule):
    """CIFAR-10: 10 classes of 3x32x32 colour images, from the python-pickle batch files.

    Parameters
    ----------
    root
        Directory containing ``cifar-10-batches-py`` (with ``data_batch_1`` ... ``data_batch_5``
        and ``test_batch``), or that directory itself.
    **options
        Keyword options of `BaseDataModule`. ``normalize="standard"`` uses per-channel
        (R, G, B) statistics.
    """

    IMAGE_SHAPE = (3, 32, 32)

    def __init__(self, root: str | os.PathLike, **options) -> None:
        super().__init__(**options)
        if root is None:
            raise ValueError(
                "CIFAR10DataModule needs root=, the directory containing cifar-10-batches-py; "
                "no copy of CIFAR-10 ships with darnax."
            )
        self.root = Path(root)

    def check_files(self) -> None:
        """Raise FileNotFoundError naming the first missing batch file."""
        for split in ("train", "test"):
            cifar10_files(self.root, split)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return uint8 images ``(N, 3, 32, 32)`` and int64 labels of `split`."""
        return load_cifar10_arrays(self.root, split)


class DigitsDataModule(ArrayDataModule):
    """scikit-learn's handwritten digits: 1797 images of 1x8x8 with pixel values 0..16.

    The dataset has no official test split, so a stratified `test_fraction` of it is held out
    with a fixed random generator that does not depend on ``seed``: every run tests on the
    same images. ``normalize="unit"`` divides by 16.

    Parameters
    ----------
    test_fraction
        Fraction in (0, 1) of each class held out as the test split.
    **options
        Keyword options of `BaseDataModule`; ``val_fraction`` and ``samples_per_class``
        apply to the remaining training part.
    """

    IMAGE_SHAPE = (1, 8, 8)
    PIXEL_MAX = 16.0
    #: Seed of the fixed train/test split.
    TEST_SPLIT_SEED = 0

    def __init__(self, test_fraction: float = 0.2, **options) -> None:
        super().__init__(**options)
        fraction = self._check_fraction("test_fraction", test_fraction)
        if fraction == 0.0:
            raise ValueError("test_fraction must be in (0, 1), got 0.0; the test split would be empty.")
        self.test_fraction = fraction
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    def check_files(self) -> None:
        """Do nothing: the digits ship inside scikit-learn."""

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return uint8 images ``(N, 8, 8)`` and int64 labels of `split` of the fixed split."""
        if self._arrays is None:
            images, labels = load_digits_arrays()
            train_index, test_index = stratified_holdout(
                labels, self.test_fraction, self.TEST_SPLIT_SEED, stream=TEST_SPLIT_STREAM
            )
            self._arrays = {
                "train": (images[train_index], labels[train_index]),
                "test": (images[test_index], labels[test_index]),
            }
        return self._arrays[split]

"""DataModule over image datasets that fit in memory as uint8 arrays."""

import logging
import math
import time

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ._base import BaseDataModule
from ._preprocess import (
    encode_labels,
    project_sign,
    random_projection_matrix,
    stratified_holdout,
    subsample_per_class,
)

logger = logging.getLogger(__name__)

__all__ = ["ArrayDataModule"]

_STATISTICS_CHUNK = 4096


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact per-channel mean and population standard deviation of uint8 images.

    Parameters
    ----------
    images
        uint8 array ``(N, C, H, W)``.

    Returns
    -------
    tuple of numpy.ndarray
        float64 mean ``(C,)`` and standard deviation ``(C,)`` in pixel units.
    """
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        # A histogram of the 256 byte values gives exact moments without a float copy of the
        # images. Chunks bound the int64 copy that bincount makes of its input.
        counts = np.zeros(256, dtype=np.float64)
        for start in range(0, len(images), _STATISTICS_CHUNK):
            chunk = images[start : start + _STATISTICS_CHUNK, channel]
            counts += np.bincount(chunk.ravel(), minlength=256)
        mean = counts @ values / counts.sum()
        means.append(mean)
        stds.append(math.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
    return np.asarray(means), np.asarray(stds)


class ArrayDataModule(BaseDataModule):
    """DataModule whose splits are loaded as whole uint8 arrays and kept as tensors in memory.

    Subclasses set the class constants and implement `load_split` and `check_files`. The
    first call of `setup` loads the training and test splits, applies the options (see
    `BaseDataModule`) and stores every split as a ``TensorDataset``. Later calls do nothing.
    `predict_dataloader` iterates the test split.

    After `setup`, ``train_indices`` and ``val_indices`` contain the positions in the full
    training split of the samples used for training and validation (``val_indices`` is None
    without validation), and with ``normalize="standard"`` ``channel_mean`` and
    ``channel_std`` contain the per-channel statistics in pixel units.
    """

    #: Number of classes.
    NUM_CLASSES: int = 10
    #: Shape of one image, channels first.
    IMAGE_SHAPE: tuple[int, ...] = (1, 28, 28)
    #: Pixel value mapped to 1.0 by ``normalize="unit"``.
    PIXEL_MAX: float = 255.0

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.train_indices: np.ndarray | None = None
        self.val_indices: np.ndarray | None = None
        self.channel_mean: np.ndarray | None = None
        self.channel_std: np.ndarray | None = None

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return uint8 images with ``prod(IMAGE_SHAPE)`` values each and int64 labels of `split`."""
        raise NotImplementedError

    def check_files(self) -> None:
        """Raise FileNotFoundError if the files of any split are missing."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Check that the dataset files exist; nothing is downloaded."""
        self.check_files()

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return self.NUM_CLASSES

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample ``x`` in a batch: ``IMAGE_SHAPE``, flattened or projected."""
        return self._output_shape(self.IMAGE_SHAPE)

    def setup(self, stage: str | None = None) -> None:
        """Load every split once and convert it to tensors, whatever the `stage`.

        The training split is always loaded because the projection and the ``"standard"``
        statistics come from it.
        """
        if self._train is not None:
            return
        start = time.perf_counter()
        train_images, train_labels = self._load_checked("train")
        test_images, test_labels = self._load_checked("test")

        train_index, val_index = self._split_train(train_labels)
        self.train_indices = train_index
        self.val_indices = val_index

        train_part = train_images[train_index]
        if self.normalize == "standard":
            mean, std = channel_statistics(train_part)
            if np.any(std == 0):
                raise ValueError(
                    f"normalize='standard' cannot divide by a zero standard deviation (per-channel "
                    f"std {std.tolist()} of the training samples); use normalize='unit'."
                )
            self.channel_mean, self.channel_std = mean, std
        if self.projection_dim is not None:
            self.projection_matrix = random_projection_matrix(
                math.prod(self.IMAGE_SHAPE), self.projection_dim, self.seed
            )

        self._train = self._tensor_dataset(train_part, train_labels[train_index])
        if val_index is not None:
            self._val = self._tensor_dataset(train_images[val_index], train_labels[val_index])
        self._test = self._tensor_dataset(test_images, test_labels)
        self._predict = self._test
        logger.info(
            "%s.setup: %d train, %d validation, %d test samples of shape %s in %.2f s.",
            type(self).__name__,
            len(self._train),
            0 if self._val is None else len(self._val),
            len(self._test),
            self.feature_shape,
            time.perf_counter() - start,
        )

    def _load_checked(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.load_split(split)
        expected = math.prod(self.IMAGE_SHAPE)
        valid_shape = images.ndim >= 2 and math.prod(images.shape[1:]) == expected
        if images.dtype != np.uint8 or not valid_shape or len(images) != len(labels):
            raise ValueError(
                f"{type(self).__name__}.load_split({split!r}) returned images of dtype "
                f"{images.dtype} and shape {images.shape} with {len(labels)} labels; expected "
                f"uint8 images of {expected} values each (IMAGE_SHAPE {self.IMAGE_SHAPE}), one "
                "label per image."
            )
        return images.reshape(len(images), *self.IMAGE_SHAPE), labels

    def _split_train(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Return training and validation indices into the full training split."""
        train_index, val_index = np.arange(len(labels)), None
        if self.val_fraction > 0:
            train_index, val_index = stratified_holdout(labels, self.val_fraction, self.seed)
            if len(val_index) == 0:
                raise ValueError(
                    f"val_fraction={self.val_fraction} rounds to zero validation samples in every "
                    "class; raise val_fraction or set it to 0.0 for no validation split."
                )
            if len(train_index) == 0:
                raise ValueError(f"val_fraction={self.val_fraction} leaves no training samples; lower it.")
        if self.samples_per_class is not None:
            chosen = subsample_per_class(
                labels[train_index], self.samples_per_class, self.NUM_CLASSES, self.seed
            )
            train_index = train_index[chosen]
        return train_index, val_index

    def _tensor_dataset(self, images: np.ndarray, labels: np.ndarray) -> TensorDataset:
        features = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32)
        if self.normalize == "unit":
            features /= self.PIXEL_MAX
        elif self.normalize == "standard":
            shape = (1, -1) + (1,) * (features.ndim - 2)
            mean = torch.as_tensor(self.channel_mean, dtype=torch.float32).reshape(shape)
            std = torch.as_tensor(self.channel_std, dtype=torch.float32).reshape(shape)
            features.sub_(mean).div_(std)
        if self.flatten:
            features = features.reshape(len(features), -1)
        if self.projection_matrix is not None:
            features = project_sign(features, self.projection_matrix)
        targets = encode_labels(torch.from_numpy(labels), self.NUM_CLASSES, self.label_encoding)
        return TensorDataset(features, targets)

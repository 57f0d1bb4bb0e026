"""DataModule over any map-style torch Dataset, converting its items to the darnax batch format."""

import logging
import math
import numbers

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ._base import BaseDataModule, check_int
from ._preprocess import (
    encode_labels,
    project_sign,
    random_projection_matrix,
    stratified_holdout,
    subsample_per_class,
)

try:
    from PIL import Image
except ImportError:  # Pillow is optional; without it no item can be a PIL image.
    Image = None

logger = logging.getLogger(__name__)

__all__ = ["DatasetDataModule", "dataset_labels", "to_feature_tensor"]


def to_feature_tensor(x: object, normalize: str, where: str = "item") -> torch.Tensor:
    """Convert one sample to a float32 tensor.

    A PIL image becomes a channels-first array ``(C, H, W)`` as torchvision's ``ToTensor``
    makes it, while NumPy arrays and tensors keep their shape. With ``normalize="unit"`` uint8
    values are divided by 255, floating and bool values are kept, and other integer types
    raise TypeError because their range is unknown. With ``"none"`` any numeric type is cast.
    """
    if Image is not None and isinstance(x, Image.Image):
        array = np.array(x)
        x = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if isinstance(x, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        tensor = x.detach()
    else:
        raise TypeError(
            f"{where}: the sample is a {type(x).__name__}; expected a PIL image, a NumPy array "
            "or a torch tensor. Add a transform such as torchvision's ToTensor() to the dataset."
        )
    if tensor.dtype == torch.uint8 and normalize == "unit":
        return tensor.to(torch.float32) / 255.0
    if tensor.is_floating_point() or tensor.dtype == torch.bool or normalize == "none":
        return tensor.to(torch.float32)
    raise TypeError(
        f"{where}: the sample has dtype {tensor.dtype}, which normalize='unit' cannot scale "
        "(only uint8 is divided by 255); convert it with a transform or pass normalize='none'."
    )


def to_label_index(y: object, where: str = "item") -> int:
    """Return a class label given as int, NumPy integer or 0-d integer array or tensor."""
    if isinstance(y, (torch.Tensor, np.ndarray)) and y.ndim == 0:
        y = y.item()
    if isinstance(y, bool) or not isinstance(y, numbers.Integral):
        raise TypeError(
            f"{where}: the label {y!r} of type {type(y).__name__} is not a class index; expected "
            "an int (or a 0-d integer tensor or array)."
        )
    return int(y)


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Return the int64 class label of every item of a map-style `dataset`.

    Reads a ``targets`` attribute where one exists and no ``target_transform`` is set (as in
    torchvision's datasets), follows ``Subset`` to its parent, and otherwise loads every item.
    """
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    targets = getattr(dataset, "targets", None)
    if targets is not None and getattr(dataset, "target_transform", None) is None:
        return np.asarray(targets).astype(np.int64).reshape(-1)
    logger.info("Reading all %d items of %s to collect their labels.", len(dataset), type(dataset).__name__)
    return np.array(
        [to_label_index(dataset[i][1], f"item {i}") for i in range(len(dataset))], dtype=np.int64
    )


def _declared_class_count(dataset: Dataset) -> int | None:
    """Return ``len(dataset.classes)`` (following Subset), or None without a ``classes`` attribute."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return None if classes is None else len(classes)


class _BatchContractDataset(Dataset):
    """Wrap a dataset so that each item is ``(float32 features, encoded label)``."""

    def __init__(self, dataset, split, normalize, flatten, encoding, num_classes, projection):
        self.dataset = dataset
        self.split = split
        self.normalize = normalize
        self.flatten = flatten
        self.encoding = encoding
        self.num_classes = num_classes
        self.projection = projection

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"{self.split} dataset item {index}"
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"{where} is a {type(item).__name__}; expected a pair (sample, label).")
        features = to_feature_tensor(item[0], self.normalize, where)
        label = to_label_index(item[1], where)
        upper = self.num_classes if self.num_classes is not None else math.inf
        if not 0 <= label < upper:
            raise ValueError(
                f"{where} has label {label}, outside [0, {self.num_classes}); pass the correct "
                "num_classes= to DatasetDataModule."
            )
        if self.flatten:
            features = features.reshape(-1)
        if self.projection is not None:
            features = project_sign(features[None], self.projection)[0]
        target = encode_labels(torch.tensor([label]), self.num_classes or 0, self.encoding)[0]
        return features, target


class DatasetDataModule(BaseDataModule):
    """DataModule over user-supplied map-style datasets whose items are ``(sample, label)``.

    Samples may be PIL images, NumPy arrays or tensors; labels are integer class indices.
    Items are converted one by one when loaded (see `to_feature_tensor`), so random
    transforms of the datasets stay random.

    Parameters
    ----------
    train
        Training dataset.
    val, test, predict
        Optional datasets of the other splits. ``val`` cannot be combined with
        ``val_fraction > 0``.
    num_classes
        Number of classes. None takes ``len(train.classes)`` when the dataset has ``classes``,
        and otherwise ``max(label) + 1`` over the training labels (which loads them).
    **options
        Keyword options of `BaseDataModule`. ``normalize`` accepts ``"unit"`` and ``"none"``;
        for standardisation add ``torchvision.transforms.Normalize`` to the datasets.
        ``val_fraction`` and ``samples_per_class`` need the training labels (see
        `dataset_labels`).
    """

    normalize_modes = ("unit", "none")

    def __init__(
        self,
        train: Dataset,
        val: Dataset | None = None,
        test: Dataset | None = None,
        predict: Dataset | None = None,
        *,
        num_classes: int | None = None,
        **options,
    ) -> None:
        if options.get("normalize") == "standard":
            raise ValueError(
                "DatasetDataModule does not support normalize='standard'; add "
                "torchvision.transforms.Normalize(mean, std) to the datasets and use "
                "normalize='unit' or 'none'."
            )
        super().__init__(**options)
        for name, dataset in (("train", train), ("val", val), ("test", test), ("predict", predict)):
            if dataset is not None and not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
                raise TypeError(
                    f"{name} must be a map-style dataset with __getitem__ and __len__, got "
                    f"{type(dataset).__name__}."
                )
        if train is None:
            raise TypeError("train must be a dataset, got None.")
        if val is not None and self.val_fraction > 0:
            raise ValueError(
                f"val= and val_fraction={self.val_fraction} both define a validation split; "
                "pass only one of them."
            )
        if num_classes is not None:
            check_int("num_classes", num_classes, 1, " Use None to infer it from the training set.")
        self.datasets = {"train": train, "val": val, "test": test, "predict": predict}
        self._num_classes = num_classes
        self._sample_shape: tuple[int, ...] | None = None
        self._train_labels: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``: given, declared by the dataset or inferred from its labels."""
        return self._resolve_num_classes()

    def _resolve_num_classes(self) -> int:
        if self._num_classes is None:
            self._num_classes = _declared_class_count(self.datasets["train"])
        if self._num_classes is None:
            labels = self._labels()
            if len(labels) == 0:
                raise ValueError("train dataset is empty; it must contain at least one item.")
            self._num_classes = int(labels.max()) + 1
            logger.info("Inferred num_classes=%d from the training labels.", self._num_classes)
        return self._num_classes

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample ``x`` in a batch, read from the first training item."""
        return self._output_shape(self._first_sample_shape())

    def _first_sample_shape(self) -> tuple[int, ...]:
        if self._sample_shape is None:
            train = self.datasets["train"]
            if len(train) == 0:
                raise ValueError("train dataset is empty; it must contain at least one item.")
            sample = to_feature_tensor(train[0][0], self.normalize, "train dataset item 0")
            self._sample_shape = tuple(sample.shape)
        return self._sample_shape

    def _labels(self) -> np.ndarray:
        if self._train_labels is None:
            self._train_labels = dataset_labels(self.datasets["train"])
        return self._train_labels

    def setup(self, stage: str | None = None) -> None:
        """Apply the hold-out, subsampling and projection options and wrap every dataset, once."""
        if self._train is not None:
            return
        train, val = self.datasets["train"], self.datasets["val"]
        needs_labels = self.val_fraction > 0 or self.samples_per_class is not None
        if needs_labels or self.label_encoding != "index":
            self._resolve_num_classes()

        if needs_labels:
            labels = self._labels()
            train_index = np.arange(len(labels))
            if self.val_fraction > 0:
                train_index, val_index = stratified_holdout(labels, self.val_fraction, self.seed)
                if len(val_index) == 0 or len(train_index) == 0:
                    raise ValueError(
                        f"val_fraction={self.val_fraction} leaves {len(train_index)} training and "
                        f"{len(val_index)} validation items; both must be non-empty."
                    )
                val = Subset(train, val_index.tolist())
            if self.samples_per_class is not None:
                chosen = subsample_per_class(
                    labels[train_index], self.samples_per_class, self.num_classes, self.seed
                )
                train_index = train_index[chosen]
            train = Subset(train, train_index.tolist())

        if self.projection_dim is not None:
            input_dim = math.prod(self._first_sample_shape())
            self.projection_matrix = random_projection_matrix(input_dim, self.projection_dim, self.seed)

        self._train = self._wrap(train, "train")
        self._val = self._wrap(val, "val")
        self._test = self._wrap(self.datasets["test"], "test")
        self._predict = self._wrap(self.datasets["predict"], "predict")

    def _wrap(self, dataset: Dataset | None, split: str) -> Dataset | None:
        if dataset is None:
            return None
        return _BatchContractDataset(
            dataset,
            split,
            self.normalize,
            self.flatten,
            self.label_encoding,
            self._num_classes,
            self.projection_matrix,
        )

    def _require_dataset(self, split: str) -> None:
        if self._train is not None and self.datasets[split] is None:
            raise ValueError(
                f"DatasetDataModule was created without {split}=; pass a {split} dataset to "
                f"use {split}_dataloader()."
            )

    def test_dataloader(self) -> DataLoader:
        """Return the loader of the ``test`` dataset."""
        self._require_dataset("test")
        return super().test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """Return the loader of the ``predict`` dataset."""
        self._require_dataset("predict")
        return super().predict_dataloader()

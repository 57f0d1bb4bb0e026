"""Load image classification datasets from their distribution files into NumPy arrays.

Every loader returns ``(images, labels)`` with uint8 images and int64 labels. Nothing is
downloaded: the files must already be on disk, except for the embedded MNIST subset and
scikit-learn's digits, which ship inside installed packages.
"""

import logging
import os
import pickle
from importlib import resources
from pathlib import Path

import numpy as np

from ._idx import read_idx

logger = logging.getLogger(__name__)

__all__ = [
    "CIFAR10_DIRNAME",
    "EMBEDDED_MNIST_FILE",
    "SPLITS",
    "check_embedded_mnist",
    "cifar10_files",
    "embedded_mnist_resource",
    "FashionMNISTFiles",
    "MNISTFiles",
    "load_cifar10_arrays",
    "load_digits_arrays",
    "load_embedded_mnist",
    "load_fashion_mnist_arrays",
    "load_mnist_arrays",
]

#: Dataset splits accepted by the loaders.
SPLITS = ("train", "test")

#: Name of the embedded MNIST subset inside the package directory ``data/embedded``.
EMBEDDED_MNIST_FILE = "mnist_subset.npz"

#: Directory name of the CIFAR-10 "python version" archive once extracted.
CIFAR10_DIRNAME = "cifar-10-batches-py"
_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_FILES = ("test_batch",)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    """Return labels as int64 after checking that each lies in [0, num_classes)."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{source} contains labels in [{labels.min()}, {labels.max()}], outside the valid "
            f"class range [0, {num_classes - 1}]; the file does not belong to this dataset."
        )
    return labels


class MNISTFiles:
    """File layout of MNIST; subclasses describe datasets stored the same way.

    The four IDX files are searched, raw or with a ``.gz`` suffix, in ``root``, ``root/raw``
    and ``root/<dataset_name>/raw`` (the torchvision layout), in that order.
    """

    dataset_name = "MNIST"
    #: How to fix a missing file, ending the FileNotFoundError message.
    missing_file_fix = (
        "pass root= pointing to the directory containing them, or root=None to use the MNIST "
        "subset embedded in darnax_bridge"
    )
    num_classes = 10
    image_shape = (28, 28)
    split_files = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }

    @classmethod
    def search_dirs(cls, root: str | os.PathLike) -> list[Path]:
        """Return the directories searched for the files, in search order."""
        root = Path(root)
        return [root, root / "raw", root / cls.dataset_name / "raw"]

    @classmethod
    def find(cls, root: str | os.PathLike, split: str) -> tuple[Path, Path]:
        """Return the paths of the image and label files of `split`.

        Raises
        ------
        FileNotFoundError
            If a file is in none of the search directories; the message lists the
            directories searched and the file names expected.
        """
        _check_split(split)
        return tuple(cls._find_file(root, name) for name in cls.split_files[split])

    @classmethod
    def _find_file(cls, root: str | os.PathLike, name: str) -> Path:
        for directory in cls.search_dirs(root):
            for candidate in (directory / name, directory / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        searched = ", ".join(str(d) for d in cls.search_dirs(root))
        expected = ", ".join(n for names in cls.split_files.values() for n in names)
        raise FileNotFoundError(
            f"{cls.dataset_name} file {name!r} (or {name}.gz) was not found under root "
            f"{str(root)!r}; searched {searched}. Expected the IDX files {expected}, raw or "
            f"gzip-compressed. To fix it, {cls.missing_file_fix}."
        )

    @classmethod
    def load(cls, root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Load `split` as uint8 images ``(N, 28, 28)`` and int64 labels ``(N,)``.

        Raises
        ------
        FileNotFoundError
            If a file is missing.
        ValueError
            If a file is corrupt or the image and label files disagree.
        """
        image_path, label_path = cls.find(root, split)
        images = read_idx(image_path)
        labels = read_idx(label_path)
        if images.dtype != np.uint8 or images.shape[1:] != cls.image_shape:
            raise ValueError(
                f"{cls.dataset_name} image file {str(image_path)!r} contains {images.dtype} data of "
                f"shape {images.shape}; expected uint8 of shape (N, {cls.image_shape[0]}, "
                f"{cls.image_shape[1]})."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{cls.dataset_name} label file {str(label_path)!r} has shape {labels.shape}, "
                f"but the image file {str(image_path)!r} contains {len(images)} images; expected "
                f"labels of shape ({len(images)},)."
            )
        labels = _check_labels(labels, cls.num_classes, f"label file {str(label_path)!r}")
        logger.debug("Loaded %d %s %s images from %s.", len(images), cls.dataset_name, split, image_path)
        return images, labels


class FashionMNISTFiles(MNISTFiles):
    """File layout of Fashion-MNIST: MNIST's file names, searched also in ``root/FashionMNIST/raw``."""

    dataset_name = "FashionMNIST"
    missing_file_fix = "pass root= pointing to the directory containing them"


def load_mnist_arrays(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split from IDX files under `root`; see `MNISTFiles.load`."""
    return MNISTFiles.load(root, split)


def load_fashion_mnist_arrays(
    root: str | os.PathLike, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split from IDX files under `root`; see `MNISTFiles.load`."""
    return FashionMNISTFiles.load(root, split)


def embedded_mnist_resource():
    """Return the package resource of the embedded MNIST subset."""
    return resources.files(__package__).joinpath("embedded", EMBEDDED_MNIST_FILE)


def check_embedded_mnist() -> None:
    """Raise FileNotFoundError if the embedded MNIST subset is missing from the package."""
    if not embedded_mnist_resource().is_file():
        raise FileNotFoundError(
            f"the embedded MNIST subset {EMBEDDED_MNIST_FILE!r} is missing from the installed "
            "darnax_bridge package; reinstall the package, rebuild the file with "
            "tools/make_embedded_mnist.py, or pass root= pointing to the MNIST IDX files."
        )


def load_embedded_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a split of the MNIST subset shipped with darnax_bridge.

    The subset contains 600 training images per class (6,000) and 100 test images per class
    (1,000), drawn from the full MNIST files. ``data/embedded/LICENSE.md`` documents the
    selection.

    Returns
    -------
    tuple of numpy.ndarray
        uint8 images ``(N, 28, 28)`` and int64 labels ``(N,)``.
    """
    _check_split(split)
    check_embedded_mnist()
    with embedded_mnist_resource().open("rb") as handle, np.load(handle) as archive:
        images = archive[f"{split}_images"]
        labels = archive[f"{split}_labels"]
    return images, _check_labels(labels, MNISTFiles.num_classes, "the embedded MNIST subset")


def _cifar10_dir(root: str | os.PathLike) -> Path:
    """Return the directory holding the CIFAR-10 batch files: `root` itself or its subdirectory."""
    root = Path(root)
    nested = root / CIFAR10_DIRNAME
    return nested if nested.is_dir() else root


def cifar10_files(root: str | os.PathLike, split: str) -> list[Path]:
    """Return the CIFAR-10 batch files of `split`, raising FileNotFoundError if one is missing."""
    _check_split(split)
    directory = _cifar10_dir(root)
    names = _CIFAR10_TRAIN_FILES if split == "train" else _CIFAR10_TEST_FILES
    paths = [directory / name for name in names]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"CIFAR-10 file {str(path)!r} was not found under root {str(root)!r}. Expected "
                f"the python version layout {CIFAR10_DIRNAME}/data_batch_1 ... data_batch_5 and "
                f"{CIFAR10_DIRNAME}/test_batch, either inside root or with root being that "
                "directory. To fix it, extract cifar-10-python.tar.gz and pass root= pointing "
                "to the extracted directory."
            )
    return paths


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # NOTE: pickle can run arbitrary code while loading; open only trusted CIFAR-10 files.
    with open(path, "rb") as handle:
        try:
            batch = pickle.load(handle, encoding="bytes")
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(
                f"CIFAR-10 file {str(path)!r} is not a readable pickle ({error}); extract the "
                "archive again."
            ) from error
    if not isinstance(batch, dict):
        raise ValueError(f"CIFAR-10 file {str(path)!r} contains a {type(batch).__name__}, expected a dict.")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(
            f"CIFAR-10 file {str(path)!r} lacks the keys b'data' and b'labels' "
            f"(found {sorted(batch)}); it is not a CIFAR-10 python batch."
        )
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"CIFAR-10 file {str(path)!r} has data of dtype {data.dtype} and shape {data.shape}; "
            "expected uint8 of shape (N, 3072)."
        )
    if labels.shape != (len(data),):
        raise ValueError(
            f"CIFAR-10 file {str(path)!r} has {labels.size} labels for {len(data)} images; "
            "expected one label per image."
        )
    return data, _check_labels(labels, 10, f"CIFAR-10 file {str(path)!r}")


def load_cifar10_arrays(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a CIFAR-10 split from the python-pickle batch files.

    Parameters
    ----------
    root
        Directory containing ``cifar-10-batches-py``, or that directory itself.
    split
        ``"train"`` (the five ``data_batch_*`` files, in order) or ``"test"`` (``test_batch``).

    Returns
    -------
    tuple of numpy.ndarray
        uint8 images ``(N, 3, 32, 32)`` in channel order R, G, B and int64 labels ``(N,)``.
    """
    batches = [_read_cifar10_batch(path) for path in cifar10_files(root, split)]
    data = np.concatenate([data for data, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    # Each row stores the 1024 red, then green, then blue pixels of a 32x32 image, row-major.
    return data.reshape(-1, 3, 32, 32), labels


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's 8x8 digits: uint8 images ``(1797, 8, 8)`` in 0..16, int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images)
    if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 16:
        raise ValueError("scikit-learn's digits are expected to be integers in 0..16.")
    return images.astype(np.uint8), _check_labels(digits.target, 10, "scikit-learn's digits")

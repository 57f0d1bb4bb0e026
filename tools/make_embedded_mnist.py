"""Build darnax_bridge/data/embedded/mnist_subset.npz, the MNIST subset shipped with darnax.

The subset takes 600 training images of each digit from the MNIST training files and 100 test
images of each digit from the test files. numpy.random.default_rng with a fixed seed chooses them
without replacement, and they keep their original file order. The npz stores, for each split,
the uint8 images (N, 28, 28), the uint8 labels (N,) and the int64 positions of the images in the
full files (``train_index``, ``test_index``), compressed with numpy.savez_compressed.

Usage::

    python tools/make_embedded_mnist.py --source DIR [--output FILE] [--check]

``--check`` rebuilds the arrays and compares them with an existing output file instead of
writing it.
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from darnax_bridge.data import load_mnist_arrays

logger = logging.getLogger("make_embedded_mnist")

SEED = 20250905
TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100
MAX_BYTES = 3_000_000
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "darnax_bridge" / "data" / "embedded" / "mnist_subset.npz"


def select_per_class(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Return sorted positions of `per_class` random samples of each of the 10 digits."""
    chosen = [
        rng.choice(np.flatnonzero(labels == digit), size=per_class, replace=False) for digit in range(10)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def build_subset(source: Path) -> dict[str, np.ndarray]:
    """Return the arrays of the subset drawn from the MNIST IDX files in `source`."""
    rng = np.random.default_rng(SEED)
    arrays = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        images, labels = load_mnist_arrays(source, split)
        index = select_per_class(labels, per_class, rng)
        arrays[f"{split}_images"] = images[index]
        arrays[f"{split}_labels"] = labels[index].astype(np.uint8)
        arrays[f"{split}_index"] = index
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="directory with the four MNIST IDX files (raw or .gz)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="npz file to write (default: the package copy)"
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the existing output instead of writing it"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    arrays = build_subset(args.source)
    if args.check:
        with np.load(args.output) as existing:
            mismatched = [name for name, array in arrays.items() if not np.array_equal(existing[name], array)]
        if mismatched:
            logger.error("%s differs from a rebuild in %s.", args.output, ", ".join(mismatched))
            return 1
        logger.info("%s matches a rebuild from %s.", args.output, args.source)
        return 0

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    size = args.output.stat().st_size
    logger.info("Wrote %s: %d bytes (%.2f MiB).", args.output, size, size / 2**20)
    if size > MAX_BYTES:
        logger.error("%s is larger than the %d-byte limit for package data.", args.output, MAX_BYTES)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

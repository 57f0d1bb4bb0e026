"""Train the paper's MNIST model with the plain JAX loop of darnax_core (no torch involved).

Usage::

    python examples/mnist_paper.py --data ../shared/datasets/mnist --epochs 3

``--data`` is a folder with the four MNIST IDX files (gzip or raw). The defaults are the
hyperparameters of the reference library's tutorial 09 (784 -> 2000 -> 10, batch 16, 1 warmup,
5 clamped and 5 free sweeps, SGD with multiplicative decay) with data seed 0 and model seed 44.
"""

import argparse
import gzip
import json
import logging
import time
from pathlib import Path

import jax
import numpy as np

import darnax_core as dc

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def read_mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one MNIST split as ``(x float32 (n, 784) in [0, 1], y int32 (n,))``."""
    arrays = []
    for kind in ("images", "labels"):
        name = FILES[(split, kind)]
        path = next((p for p in (root / name, root / f"{name}.gz") if p.exists()), None)
        if path is None:
            raise FileNotFoundError(f"{name}(.gz) not found in {root}; pass --data with the MNIST IDX files.")
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
        ndim = raw[3]
        shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        arrays.append(np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape))
    images, labels = arrays
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/mnist"), help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--hidden", type=int, default=2000, help="hidden units (default 2000)")
    parser.add_argument("--strength-back", type=float, default=1.3, help="scale of the label feedback W_back (default 1.3)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size (default 16)")
    parser.add_argument("--model-seed", type=int, default=44, help="seed of the model's initialisation")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the batch order")
    parser.add_argument("--json", type=Path, help="also write the per-epoch history to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    try:
        train = read_mnist(args.data, "train")
        test = read_mnist(args.data, "test")
    except FileNotFoundError as error:
        parser.error(str(error))
    config = dc.TUTORIAL_09.replace(hidden=args.hidden, batch_size=args.batch_size, strength_back=args.strength_back)
    net = dc.paper_model(jax.random.PRNGKey(args.model_seed), config)
    optimizer = dc.paper_model_optimizer(net, config)
    protocol = dc.paper_protocol(config)

    def report(epoch: int, record: dict) -> None:
        print(
            f"epoch {record['epoch']}: train acc {record['train_accuracy']:.4f}  "
            f"test acc {record['test_accuracy']:.4f}  test unsat {record['test_unsat']:.4f}  "
            f"{record['seconds']:.1f} s ({len(train[0]) / record['seconds']:.0f} images/s)",
            flush=True,
        )

    start = time.perf_counter()
    result = dc.fit(
        net,
        optimizer,
        protocol,
        train,
        key=jax.random.PRNGKey(args.data_seed),
        epochs=args.epochs,
        batch_size=config.batch_size,
        test=test,
        on_epoch_end=report,
        progress=not args.no_progress,
    )
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result.history, indent=2))


if __name__ == "__main__":
    main()

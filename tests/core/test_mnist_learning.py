"""End-to-end learning on real data: scikit-learn digits (fast) and the full MNIST (slow)."""

import gzip
from pathlib import Path

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import darnax_core as dc

MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"


def test_digits_learns():
    # 8x8 digits (1797 images, 64 pixels in [0, 1]); 1347 train and 450 test images.
    # Measured on seeds 0-5: 0.81-0.89 test accuracy after epoch 1, 0.91-0.94 after epoch 3.
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y.astype(np.int32), test_size=0.25, random_state=0, stratify=y)
    cfg = dc.TUTORIAL_09.replace(input_dim=64, hidden=400, density_j=0.05, density_in=0.5)
    net = dc.paper_model(jax.random.PRNGKey(0), cfg)
    protocol = dc.paper_protocol(cfg)
    untrained = dc.evaluate(net, protocol, (x_test, y_test), key=jax.random.PRNGKey(1))
    result = dc.fit(
        net,
        dc.paper_model_optimizer(net, cfg),
        protocol,
        (x_train, y_train),
        key=jax.random.PRNGKey(100),
        epochs=3,
        batch_size=16,
        test=(x_test, y_test),
        progress=False,
    )
    assert len(result.history) == 3
    assert untrained["accuracy"] < 0.5
    assert result.history[-1]["test_accuracy"] >= 0.85
    assert result.history[-1]["train_accuracy"] > result.history[0]["train_accuracy"]


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip IDX file of unsigned bytes (magic 0x00 0x00 0x08 ndim, big-endian int32 sizes)."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    assert data[:3] == b"\x00\x00\x08", f"{path} is not an IDX file of unsigned bytes"
    ndim = data[3]
    shape = tuple(int(v) for v in np.frombuffer(data, ">i4", count=ndim, offset=4))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="module")
def mnist():
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full MNIST not found in {MNIST_DIR}")
    arrays = []
    for split in ("train", "t10k"):
        images = read_idx(MNIST_DIR / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(MNIST_DIR / f"{split}-labels-idx1-ubyte.gz")
        arrays.append((images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int32)))
    return arrays


def test_mnist_paths():
    assert MNIST_DIR.parts[-3:] == ("shared", "datasets", "mnist")


@pytest.mark.slow
def test_mnist_one_epoch(mnist):
    # The paper's MNIST model (784 -> 2000 -> 10, tutorial 09 hyperparameters), batch 16, one epoch.
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 784)
    assert x_test.shape == (10000, 784)
    cfg = dc.TUTORIAL_09
    net = dc.paper_model(jax.random.PRNGKey(44), cfg)
    result = dc.fit(
        net,
        dc.paper_model_optimizer(net, cfg),
        dc.paper_protocol(cfg),
        (x_train, y_train),
        key=jax.random.PRNGKey(0),
        epochs=1,
        batch_size=cfg.batch_size,
        test=(x_test, y_test),
        progress=False,
    )
    assert result.history[0]["test_accuracy"] >= 0.923

"""torchvision.datasets.MNIST read from local files and wrapped in DatasetDataModule.

CI installs torchvision, so this test imports it directly and is never skipped. It reads the
full MNIST files when they are present and otherwise writes the embedded subset as IDX files.
"""

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset
from torchvision import datasets, transforms

from darnax_bridge.data import DatasetDataModule, load_embedded_mnist, read_idx, write_idx

MNIST_DIR = Path(os.environ.get("DARNAX_MNIST_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"))
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _make_raw_dir(root: Path) -> Path:
    """Place the four uncompressed IDX files in root/MNIST/raw, where torchvision expects them."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    if all((MNIST_DIR / f"{name}.gz").is_file() for name in FILES):
        for name in FILES:
            with gzip.open(MNIST_DIR / f"{name}.gz", "rb") as source, open(raw / name, "wb") as target:
                shutil.copyfileobj(source, target)
        return raw
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_embedded_mnist(split)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return raw


def test_torchvision_mnist_batches(tmp_path):
    raw = _make_raw_dir(tmp_path)
    train = datasets.MNIST(tmp_path, train=True, download=False, transform=transforms.ToTensor())
    test = datasets.MNIST(tmp_path, train=False, download=False, transform=transforms.ToTensor())
    module = DatasetDataModule(
        Subset(train, range(256)), test=Subset(test, range(64)), batch_size=32, flatten=False, shuffle=False
    )
    assert module.num_classes == 10
    assert module.feature_shape == (1, 28, 28)
    assert module.input_dim == 784
    module.setup("fit")

    x, y = next(iter(module.train_dataloader()))
    assert x.dtype == torch.float32
    assert x.shape == (32, 1, 28, 28)
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0
    assert y.dtype == torch.int64
    assert y.shape == (32,)

    images = read_idx(raw / "train-images-idx3-ubyte")
    labels = read_idx(raw / "train-labels-idx1-ubyte")
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images[:32]).float() / 255)
    assert y.tolist() == labels[:32].tolist()
    assert len(module.train_dataloader()) == 8

    x_test, y_test = next(iter(module.test_dataloader()))
    assert x_test.shape == (32, 1, 28, 28)
    assert y_test.tolist() == read_idx(raw / "t10k-labels-idx1-ubyte")[:32].tolist()


def test_torchvision_mnist_pil_and_pm1(tmp_path):
    _make_raw_dir(tmp_path)
    # Without a transform, torchvision returns PIL images, which the module converts itself.
    train = datasets.MNIST(tmp_path, train=True, download=False)
    module = DatasetDataModule(Subset(train, range(256)), label_encoding="pm1", samples_per_class=3, batch_size=30)
    module.setup("fit")
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (30, 784)
    assert x.dtype == torch.float32
    assert y.shape == (30, 10)
    assert sorted(y.sum(dim=1).tolist()) == [-8.0] * 30
    assert torch.bincount(y.argmax(dim=1), minlength=10).tolist() == [3] * 10
    expected = torch.from_numpy(np.array(train[int(module._train.dataset.indices[0])][0])).float() / 255
    first = next(iter(torch.utils.data.DataLoader(module._train, batch_size=1)))[0][0]
    torch.testing.assert_close(first, expected.reshape(-1))


def test_torchvision_mnist_trains_darnax(tmp_path):
    import lightning as L

    from darnax_bridge import DarnaxModule

    _make_raw_dir(tmp_path)
    train = datasets.MNIST(tmp_path, train=True, download=False, transform=transforms.ToTensor())
    test = datasets.MNIST(tmp_path, train=False, download=False, transform=transforms.ToTensor())
    module = DatasetDataModule(Subset(train, range(2000)), test=Subset(test, range(500)), batch_size=16, seed=0)
    model = DarnaxModule(hidden=300, model_seed=44, seed=0)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, module)
    assert trainer.global_step == 2 * 125
    accuracy = trainer.test(model, module, verbose=False)[0]["test_acc"]
    # 2,000 real training images, two epochs of a 300-unit model: 69% measured, chance is 10%.
    assert accuracy > 0.6

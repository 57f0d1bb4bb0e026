"""DataModules: the embedded MNIST subset, dataset loaders, every option and its errors."""

import math
import multiprocessing
import os
import pickle
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from darnax_bridge.data import (
    CIFAR10DataModule,
    DatasetDataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    encode_labels,
    load_cifar10_arrays,
    load_digits_arrays,
    load_embedded_mnist,
    load_fashion_mnist_arrays,
    load_mnist_arrays,
    project_sign,
    random_projection_matrix,
    write_idx,
)
from darnax_bridge.data._files import embedded_mnist_resource
from darnax_bridge.data._sampler import EpochSampler, epoch_order

MNIST_DIR = Path(os.environ.get("DARNAX_MNIST_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"))
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"full MNIST not found in {MNIST_DIR}; set DARNAX_MNIST_DIR",
)


def _setup(module):
    module.setup("fit")
    return module


def _all_batches(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


# Embedded subset -------------------------------------------------------------------------


def test_embedded_file_size():
    path = Path(str(embedded_mnist_resource()))
    assert path.is_file()
    assert path.stat().st_size <= 3_000_000
    assert (path.parent / "LICENSE.md").is_file()


@pytest.mark.parametrize(("split", "per_class"), [("train", 600), ("test", 100)])
def test_embedded_class_counts(split, per_class):
    images, labels = load_embedded_mnist(split)
    assert images.shape == (10 * per_class, 28, 28)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10


@needs_mnist
@pytest.mark.parametrize("split", ["train", "test"])
def test_embedded_matches_full_mnist(split):
    full_images, full_labels = load_mnist_arrays(MNIST_DIR, split)
    with embedded_mnist_resource().open("rb") as handle, np.load(handle) as archive:
        index = archive[f"{split}_index"]
        images = archive[f"{split}_images"]
        labels = archive[f"{split}_labels"]
    assert len(np.unique(index)) == len(index)
    assert images.tobytes() == full_images[index].tobytes()
    np.testing.assert_array_equal(labels, full_labels[index])


# Dataset files ---------------------------------------------------------------------------


def _write_fashion(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    directory.mkdir(parents=True)
    arrays = {}
    for split, prefix, count in (("train", "train", 50), ("test", "t10k", 20)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[split] = (images, labels)
    return arrays


def _write_cifar(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    directory.mkdir(parents=True)
    arrays = {"train": ([], []), "test": ([], [])}
    names = [(f"data_batch_{i}", "train", 10) for i in range(1, 6)] + [("test_batch", "test", 20)]
    for name, split, count in names:
        data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=count)]
        with open(directory / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, handle)
        arrays[split][0].append(data)
        arrays[split][1].extend(labels)
    return {split: (np.concatenate(d), np.asarray(l)) for split, (d, l) in arrays.items()}


def test_fashion_loader_values(tmp_path):
    written = _write_fashion(tmp_path / "FashionMNIST" / "raw")
    for split, count in (("train", 50), ("test", 20)):
        images, labels = load_fashion_mnist_arrays(tmp_path, split)
        assert images.shape == (count, 28, 28)
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])


def test_fashion_datamodule_batches(tmp_path):
    written = _write_fashion(tmp_path / "FashionMNIST" / "raw")
    module = _setup(FashionMNISTDataModule(root=tmp_path, batch_size=20, shuffle=False, flatten=False))
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (20, 1, 28, 28)
    torch.testing.assert_close(x[3, 0], torch.from_numpy(written["train"][0][3]).float() / 255)
    assert y.tolist() == [i % 10 for i in range(20)]


def test_fashion_missing_root():
    with pytest.raises(ValueError, match="FashionMNISTDataModule needs root="):
        FashionMNISTDataModule()


def test_fashion_missing_file(tmp_path):
    module = FashionMNISTDataModule(root=tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "FashionMNIST" / "raw"))) as error:
        module.prepare_data()
    assert "embedded" not in str(error.value)


@pytest.mark.parametrize("nested", [True, False], ids=["root", "batches-dir"])
def test_cifar_loader_values(tmp_path, nested):
    directory = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    written = _write_cifar(directory) if nested else _write_cifar(tmp_path / "x")
    root = tmp_path if nested else tmp_path / "x"
    images, labels = load_cifar10_arrays(root, "train")
    assert images.shape == (50, 3, 32, 32)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, written["train"][1])
    # Row layout: 1024 red values, then 1024 green, then 1024 blue, each 32x32 row-major.
    raw = written["train"][0]
    assert images[12, 1, 2, 5] == raw[12, 1024 + 2 * 32 + 5]
    assert images[49, 2, 31, 31] == raw[49, 3071]
    test_images, test_labels = load_cifar10_arrays(root, "test")
    assert test_images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(test_labels, written["test"][1])


def test_cifar_missing_batch(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    module = CIFAR10DataModule(root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data_batch_4.*data_batch_1 \.\.\. data_batch_5.*test_batch"):
        module.prepare_data()


def test_cifar_bad_batch_content(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match=r"test_batch.*shape \(2, 100\); expected uint8 of shape \(N, 3072\)"):
        load_cifar10_arrays(tmp_path, "test")
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch.*not a readable pickle"):
        load_cifar10_arrays(tmp_path, "test")


def test_cifar_standard_per_channel(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    module = _setup(CIFAR10DataModule(root=tmp_path, normalize="standard", flatten=False))
    x, _ = module._train.tensors
    assert x.shape == (50, 3, 32, 32)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    assert module.channel_mean.shape == (3,)


def test_cifar_missing_root():
    with pytest.raises(ValueError, match="CIFAR10DataModule needs root="):
        CIFAR10DataModule(root=None)


def test_digits_arrays():
    images, labels = load_digits_arrays()
    assert images.shape == (1797, 8, 8)
    assert images.max() == 16
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_datamodule():
    module = _setup(DigitsDataModule(shuffle=False))
    assert module.num_classes == 10
    assert module.input_dim == 64
    train_x, train_y = module._train.tensors
    test_x, test_y = module._test.tensors
    assert len(train_x) + len(test_x) == 1797
    assert np.bincount(test_y.numpy()).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    assert train_x.shape[1] == 64
    assert train_x.max() == 1.0
    # normalize="unit" divides by 16, so every value is a multiple of 1/16.
    torch.testing.assert_close(train_x * 16, torch.round(train_x * 16))


def test_digits_split_ignores_seed():
    first = _setup(DigitsDataModule(seed=1))
    second = _setup(DigitsDataModule(seed=2))
    torch.testing.assert_close(first._test.tensors[0], second._test.tensors[0])


def test_digits_bad_test_fraction():
    with pytest.raises(ValueError, match="test_fraction must be in \\(0, 1\\), got 0.0"):
        DigitsDataModule(test_fraction=0.0)
    with pytest.raises(ValueError, match=r"test_fraction must be a float in \[0, 1\), got 1.5"):
        DigitsDataModule(test_fraction=1.5)


def test_embedded_missing_message(tmp_path, monkeypatch):
    monkeypatch.setattr("darnax_bridge.data._files.embedded_mnist_resource", lambda: tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="embedded MNIST subset 'mnist_subset.npz' is missing"):
        MNISTDataModule().prepare_data()
    with pytest.raises(FileNotFoundError, match="tools/make_embedded_mnist.py, or pass root="):
        load_embedded_mnist("test")


def test_mnist_root_missing_files(tmp_path):
    module = MNISTDataModule(root=tmp_path)
    with pytest.raises(FileNotFoundError, match="root=None to use the MNIST subset embedded"):
        module.prepare_data()


@needs_mnist
def test_mnist_full_setup():
    module = _setup(MNISTDataModule(root=MNIST_DIR, normalize="standard"))
    assert len(module._train) == 60000
    assert len(module._test) == 10000
    assert module.channel_mean[0] / 255 == pytest.approx(0.1307, abs=1e-4)
    assert module.channel_std[0] / 255 == pytest.approx(0.3081, abs=1e-4)


# Batch contract and shapes ---------------------------------------------------------------


def test_mnist_default_batch():
    module = MNISTDataModule()
    assert module.num_classes == 10
    assert module.input_dim == 784
    assert module.feature_shape == (784,)
    module.prepare_data()
    _setup(module)
    x, y = next(iter(module.train_dataloader()))
    assert x.dtype == torch.float32
    assert x.shape == (16, 784)
    assert y.dtype == torch.int64
    assert y.shape == (16,)
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0


@pytest.mark.parametrize(
    ("options", "shape"),
    [({}, (784,)), ({"flatten": False}, (1, 28, 28)), ({"projection_dim": 100}, (100,))],
)
def test_feature_shape_before_and_after_setup(options, shape):
    module = MNISTDataModule(**options)
    assert module.feature_shape == shape
    assert module.input_dim == math.prod(shape)
    _setup(module)
    assert tuple(module._test.tensors[0].shape[1:]) == shape


def test_loaders_need_setup():
    module = MNISTDataModule()
    with pytest.raises(RuntimeError, match=r"call setup\(\) before train_dataloader"):
        module.train_dataloader()
    with pytest.raises(RuntimeError, match=r"call setup\(\) before val_dataloader"):
        module.val_dataloader()


def test_setup_runs_once():
    module = _setup(MNISTDataModule())
    train = module._train
    module.setup("test")
    assert module._train is train


# Label encodings -------------------------------------------------------------------------


def test_encode_labels_values():
    labels = torch.tensor([0, 3])
    assert encode_labels(labels, 10, "index").tolist() == [0, 3]
    onehot = encode_labels(labels, 10, "onehot")
    assert onehot.dtype == torch.float32
    assert onehot[1].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    pm1 = encode_labels(labels, 10, "pm1")
    assert pm1[0].tolist() == [1, -1, -1, -1, -1, -1, -1, -1, -1, -1]
    rescaled = encode_labels(labels, 10, "c-rescale")
    assert rescaled[1, 3].item() == pytest.approx(1.0811, abs=1e-4)
    assert rescaled[1, 0].item() == -0.5
    assert sorted(set(rescaled.flatten().tolist())) == [-0.5, pytest.approx(math.sqrt(10) / 2 - 0.5)]


def test_encode_labels_bad_name():
    with pytest.raises(ValueError, match="label_encoding must be one of .*got 'binary'"):
        encode_labels(torch.tensor([0]), 10, "binary")


@pytest.mark.parametrize("encoding", ["onehot", "pm1", "c-rescale"])
def test_datamodule_label_encoding(encoding):
    index = _setup(MNISTDataModule(shuffle=False))
    encoded = _setup(MNISTDataModule(shuffle=False, label_encoding=encoding))
    _, y_index = next(iter(index.test_dataloader()))
    _, y = next(iter(encoded.test_dataloader()))
    assert y.dtype == torch.float32
    assert y.shape == (16, 10)
    assert torch.equal(y.argmax(dim=1), y_index)
    torch.testing.assert_close(y, encode_labels(y_index, 10, encoding))


# Normalisation ---------------------------------------------------------------------------


def test_normalize_modes_values():
    raw_images, _ = load_embedded_mnist("test")
    raw = torch.from_numpy(raw_images[:16].reshape(16, -1)).float()
    unit = _setup(MNISTDataModule(shuffle=False))
    none = _setup(MNISTDataModule(shuffle=False, normalize="none"))
    standard = _setup(MNISTDataModule(shuffle=False, normalize="standard"))

    assert torch.equal(next(iter(unit.test_dataloader()))[0], raw / 255)
    assert torch.equal(next(iter(none.test_dataloader()))[0], raw)

    train_images, _ = load_embedded_mnist("train")
    mean = train_images.astype(np.float64).mean()
    std = train_images.astype(np.float64).std()
    assert standard.channel_mean.tolist() == [pytest.approx(mean, rel=1e-12)]
    assert standard.channel_std.tolist() == [pytest.approx(std, rel=1e-12)]
    expected = (raw - np.float32(mean)) / np.float32(std)
    torch.testing.assert_close(next(iter(standard.test_dataloader()))[0], expected)
    train_x = standard._train.tensors[0]
    assert train_x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train_x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_standard_uses_training_part_only():
    module = _setup(MNISTDataModule(normalize="standard", samples_per_class=5))
    subset = load_embedded_mnist("train")[0][module.train_indices]
    assert module.channel_mean[0] == pytest.approx(subset.astype(np.float64).mean(), rel=1e-12)


# Projection ------------------------------------------------------------------------------


def test_project_sign_hand_computed():
    features = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    matrix = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert project_sign(features, matrix).tolist() == [[1, -1], [-1, -1], [-1, -1]]


def test_projection_matrix_statistics():
    matrix = random_projection_matrix(784, 100, seed=0)
    assert matrix.shape == (100, 784)
    assert matrix.dtype == torch.float32
    assert matrix.std().item() == pytest.approx(1 / 28, rel=0.02)
    assert abs(matrix.mean().item()) < 3 / (28 * math.sqrt(78400))


def test_projection_shared_across_splits():
    module = _setup(MNISTDataModule(projection_dim=100, val_fraction=0.1, shuffle=False))
    matrix = module.projection_matrix.numpy()
    train_raw, _ = load_embedded_mnist("train")
    test_raw, _ = load_embedded_mnist("test")
    flat = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255
    for dataset, images in (
        (module._train, train_raw[module.train_indices]),
        (module._val, train_raw[module.val_indices]),
        (module._test, test_raw),
    ):
        x = dataset.tensors[0].numpy()
        assert set(np.unique(x).tolist()) == {-1.0, 1.0}
        np.testing.assert_array_equal(x, np.where(flat(images) @ matrix.T > 0, 1.0, -1.0))


def test_projection_seeded():
    first = _setup(MNISTDataModule(projection_dim=100, seed=3))
    again = _setup(MNISTDataModule(projection_dim=100, seed=3))
    other = _setup(MNISTDataModule(projection_dim=100, seed=4))
    assert torch.equal(first.projection_matrix, again.projection_matrix)
    assert torch.equal(first._test.tensors[0], again._test.tensors[0])
    assert not torch.equal(first.projection_matrix, other.projection_matrix)


# Subsampling and validation --------------------------------------------------------------


def test_samples_per_class_counts():
    module = _setup(MNISTDataModule(samples_per_class=7, seed=5))
    _, labels = module._train.tensors
    assert np.bincount(labels.numpy(), minlength=10).tolist() == [7] * 10
    _, all_labels = load_embedded_mnist("train")
    np.testing.assert_array_equal(labels.numpy(), all_labels[module.train_indices])
    again = _setup(MNISTDataModule(samples_per_class=7, seed=5))
    other = _setup(MNISTDataModule(samples_per_class=7, seed=6))
    np.testing.assert_array_equal(module.train_indices, again.train_indices)
    assert not np.array_equal(module.train_indices, other.train_indices)
    assert len(module._test) == 1000


def test_samples_per_class_too_many():
    module = MNISTDataModule(samples_per_class=550, val_fraction=0.1)
    with pytest.raises(ValueError, match="samples_per_class=550 exceeds the 540 training samples of class 0"):
        module.setup()


def test_val_fraction_split():
    module = _setup(MNISTDataModule(val_fraction=0.1, seed=2))
    train_index, val_index = module.train_indices, module.val_indices
    assert len(val_index) == 600
    assert len(train_index) == 5400
    assert len(np.intersect1d(train_index, val_index)) == 0
    assert len(np.union1d(train_index, val_index)) == 6000
    _, val_labels = _all_batches(module.val_dataloader())
    assert np.bincount(val_labels.numpy(), minlength=10).tolist() == [60] * 10
    again = _setup(MNISTDataModule(val_fraction=0.1, seed=2))
    np.testing.assert_array_equal(val_index, again.val_indices)


def test_val_fraction_with_subsampling():
    module = _setup(MNISTDataModule(val_fraction=0.25, samples_per_class=100))
    assert len(module._val) == 1500
    assert len(module._train) == 1000
    assert len(np.intersect1d(module.train_indices, module.val_indices)) == 0


def test_val_fraction_zero_returns_empty_list():
    module = _setup(MNISTDataModule())
    assert module.val_dataloader() == []
    assert module.val_indices is None


def test_val_fraction_too_small():
    with pytest.raises(ValueError, match="val_fraction=0.0001 rounds to zero validation samples"):
        MNISTDataModule(val_fraction=0.0001).setup()


# Loaders and shuffling -------------------------------------------------------------------


def _first_labels(module, count=64):
    return next(iter(DataLoader(module._train, batch_size=count)))[1]


def test_shuffle_reproducible():
    orders = []
    for seed in (0, 0, 1):
        module = _setup(MNISTDataModule(seed=seed, batch_size=64))
        loader = module.train_dataloader()
        orders.append([next(iter(loader))[1].tolist(), next(iter(loader))[1].tolist()])
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]
    assert orders[0][0] != orders[0][1]


def test_shuffle_false_keeps_order():
    module = _setup(MNISTDataModule(shuffle=False, batch_size=64))
    assert torch.equal(next(iter(module.train_dataloader()))[1], _first_labels(module))


def test_state_dict_resumes_order():
    module = _setup(MNISTDataModule(batch_size=64))
    loader = module.train_dataloader()
    next(iter(loader))
    state = module.state_dict()
    expected = next(iter(loader))[1]
    resumed = _setup(MNISTDataModule(batch_size=64))
    resumed.load_state_dict(state)
    assert torch.equal(next(iter(resumed.train_dataloader()))[1], expected)
    with pytest.raises(KeyError, match="lacks 'seed', 'shuffle', 'batch_size', 'train_size', 'epoch', 'batches_done'"):
        resumed.load_state_dict({})


def _digits(**options):
    """100 digits images in batches of 16: 7 batches per epoch, the last one of 4 images."""
    return _setup(DigitsDataModule(batch_size=16, samples_per_class=10, **options))


def _epoch_indices(module, epoch):
    sampler = module.train_dataloader().sampler
    sampler.set_epoch(epoch)
    return list(sampler)


def _train_labels(module):
    return module._train.tensors[1]


def test_epoch_order_seeded():
    first, second, other_seed = _digits(seed=3), _digits(seed=3), _digits(seed=4)
    for epoch in (0, 1, 5):
        assert _epoch_indices(first, epoch) == _epoch_indices(second, epoch)
    assert sorted(_epoch_indices(first, 0)) == list(range(100))
    assert _epoch_indices(first, 0) != _epoch_indices(first, 1)
    assert _epoch_indices(first, 0) != _epoch_indices(other_seed, 0)


def test_epoch_order_drives_loader():
    module = _digits(seed=3)
    loader = module.train_dataloader()
    # Without set_epoch, each pass over the loader takes the order of the next epoch.
    for epoch in (0, 1):
        expected = _train_labels(module)[epoch_order(100, 3, epoch, shuffle=True)]
        assert torch.equal(torch.cat([y for _, y in loader]), expected)


def test_state_dict_values():
    module = _digits(seed=2)
    assert module.state_dict() == {
        "seed": 2,
        "shuffle": True,
        "batch_size": 16,
        "train_size": 100,
        "epoch": 0,
        "batches_done": 0,
    }
    list(module.train_dataloader())
    assert module.state_dict()["epoch"] == 1


def test_resume_inside_epoch():
    state = _digits(seed=2).state_dict()
    state.update(epoch=2, batches_done=3)
    module = _digits(seed=2)
    module.load_state_dict(state)
    loader = module.train_dataloader()
    assert len(loader) == 7  # the whole epoch, as Lightning counts it
    batches = list(loader)
    assert len(batches) == 4
    expected = _train_labels(module)[epoch_order(100, 2, 2, shuffle=True)[48:]]
    assert torch.equal(torch.cat([y for _, y in batches]), expected)
    # The next pass is epoch 3, from its start.
    assert list(loader.sampler) == epoch_order(100, 2, 3, shuffle=True).tolist()


def test_resume_unshuffled():
    module = _digits(shuffle=False)
    module.load_state_dict({**module.state_dict(), "epoch": 1, "batches_done": 2})
    first_x, first_y = next(iter(module.train_dataloader()))
    assert torch.equal(first_x, module._train.tensors[0][32:48])
    assert torch.equal(first_y, _train_labels(module)[32:48])


@pytest.mark.parametrize(
    ("key", "value", "error", "match"),
    [
        ("epoch", -1, ValueError, r"state_dict\['epoch'\] must be an int >= 0, got -1"),
        ("batches_done", "3", TypeError, r"state_dict\['batches_done'\] must be an int >= 0, got '3' of type str"),
    ],
)
def test_load_state_dict_bad_value(key, value, error, match):
    module = _digits()
    with pytest.raises(error, match=match):
        module.load_state_dict({**module.state_dict(), key: value})


def test_resume_other_options_rejected():
    state = {**_digits(seed=0).state_dict(), "epoch": 1, "batches_done": 3}
    other_seed = _digits(seed=1)
    other_seed.load_state_dict(state)
    with pytest.raises(ValueError, match="resumes after batch 3 of epoch 1, but the checkpoint was written with seed=0 and this DataModule has seed=1"):
        other_seed.train_dataloader()
    other_batch = _setup(DigitsDataModule(batch_size=32, samples_per_class=10))
    other_batch.load_state_dict(state)
    with pytest.raises(ValueError, match="written with batch_size=16 and this DataModule has batch_size=32"):
        other_batch.train_dataloader()
    other_size = _setup(DigitsDataModule(batch_size=16, samples_per_class=20))
    other_size.load_state_dict(state)
    with pytest.raises(ValueError, match="written with train_size=100 and this DataModule has train_size=200"):
        other_size.train_dataloader()


def test_resume_other_seed_at_epoch_start_warns(caplog):
    module = _digits(seed=1)
    module.load_state_dict({**_digits(seed=0).state_dict(), "epoch": 1})
    assert list(module.train_dataloader().sampler) == epoch_order(100, 1, 1, shuffle=True).tolist()
    assert "resumes with seed=1 instead of seed=0" in caplog.text


def test_epoch_sampler_bad_start():
    with pytest.raises(ValueError, match=r"start must be in \[0, size=10\], got 11"):
        EpochSampler(10, seed=0, shuffle=True, start=11)


def test_drop_last_train_only():
    complete = _setup(MNISTDataModule(batch_size=64))
    dropped = _setup(MNISTDataModule(batch_size=64, drop_last=True))
    assert len(complete.train_dataloader()) == 94
    assert len(dropped.train_dataloader()) == 93
    assert len(dropped.test_dataloader()) == 16
    assert len(dropped.predict_dataloader()) == 16


def test_workers_default_to_spawn():
    module = _setup(MNISTDataModule(num_workers=2))
    loader = module.train_dataloader()
    assert loader.num_workers == 2
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    assert loader.persistent_workers
    custom = _setup(MNISTDataModule(num_workers=1, multiprocessing_context="forkserver"))
    assert custom.test_dataloader().multiprocessing_context.get_start_method() == "forkserver"
    assert _setup(MNISTDataModule()).train_dataloader().num_workers == 0


def test_spawn_worker_after_jax():
    import jax.numpy as jnp

    assert float(jnp.sum(jnp.arange(4.0))) == 6.0
    module = _setup(MNISTDataModule(num_workers=1, batch_size=500, samples_per_class=50))
    x, y = _all_batches(module.train_dataloader())
    assert x.shape == (500, 784)
    assert np.bincount(y.numpy(), minlength=10).tolist() == [50] * 10


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int >= 1, got 2.0 of type float"),
        ({"normalize": "zscore"}, ValueError, r"normalize must be one of \('unit', 'standard', 'none'\), got 'zscore'"),
        ({"flatten": 1}, TypeError, "flatten must be True or False, got 1"),
        ({"label_encoding": "pm"}, ValueError, "label_encoding must be one of .*got 'pm'"),
        ({"projection_dim": 0}, ValueError, "projection_dim must be an int >= 1, got 0"),
        ({"projection_dim": 10, "flatten": False}, ValueError, "projection_dim=10 requires flatten=True"),
        ({"samples_per_class": 0}, ValueError, "samples_per_class must be an int >= 1, got 0"),
        ({"val_fraction": 1.0}, ValueError, r"val_fraction must be a float in \[0, 1\), got 1.0"),
        ({"val_fraction": "0.1"}, TypeError, "val_fraction must be a float in .*got '0.1' of type str"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
        ({"seed": True}, TypeError, "seed must be an int >= 0, got True of type bool"),
        ({"num_workers": -1}, ValueError, "num_workers must be an int >= 0, got -1"),
        ({"shuffle": "yes"}, TypeError, "shuffle must be True or False, got 'yes'"),
        ({"drop_last": None}, TypeError, "drop_last must be True or False, got None"),
        ({"multiprocessing_context": "thread"}, ValueError, "multiprocessing_context must be None, one of"),
    ],
)
def test_bad_option(options, error, match):
    with pytest.raises(error, match=match):
        MNISTDataModule(**options)


def test_fork_context_warns(caplog):
    module = MNISTDataModule(num_workers=1, multiprocessing_context="fork")
    assert module.multiprocessing_context == "fork"
    assert "'fork' can deadlock DataLoader workers" in caplog.text


def test_context_object_accepted():
    context = multiprocessing.get_context("spawn")
    module = MNISTDataModule(num_workers=1, multiprocessing_context=context)
    assert module.multiprocessing_context is context


# DatasetDataModule -----------------------------------------------------------------------


class _PairDataset(Dataset):
    """Items are (uint8 array (2, 3), label) with labels 0, 1, 2, 0, 1, 2, ..."""

    def __init__(self, count, label_type=int):
        self.count = count
        self.label_type = label_type

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        image = np.full((2, 3), index * 10 % 256, dtype=np.uint8)
        return image, self.label_type(index % 3)


def test_dataset_module_conversion():
    module = _setup(DatasetDataModule(_PairDataset(12), shuffle=False, batch_size=4))
    x, y = next(iter(module.train_dataloader()))
    assert x.dtype == torch.float32
    assert x.shape == (4, 6)
    torch.testing.assert_close(x[3], torch.full((6,), 30 / 255))
    assert y.dtype == torch.int64
    assert y.tolist() == [0, 1, 2, 0]
    assert module.feature_shape == (6,)
    assert module.num_classes == 3


def test_dataset_module_label_types():
    for label_type in (np.int64, torch.tensor, lambda v: np.array(v, dtype=np.uint8)):
        module = _setup(DatasetDataModule(_PairDataset(3, label_type), shuffle=False, label_encoding="pm1"))
        _, y = next(iter(module.train_dataloader()))
        assert y.tolist() == [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]]


def test_dataset_module_bad_items():
    float_labels = _setup(DatasetDataModule(_PairDataset(3, float), shuffle=False))
    with pytest.raises(TypeError, match="train dataset item 0: the label 0.0 of type float is not a class index"):
        next(iter(float_labels.train_dataloader()))
    lists = _setup(DatasetDataModule([([1.0, 2.0], 0)]))
    with pytest.raises(TypeError, match="the sample is a list; expected a PIL image"):
        next(iter(lists.train_dataloader()))
    wide = _setup(DatasetDataModule(TensorDataset(torch.zeros(2, 3, dtype=torch.int32), torch.tensor([0, 1]))))
    with pytest.raises(TypeError, match="dtype torch.int32, which normalize='unit' cannot scale"):
        next(iter(wide.train_dataloader()))
    out_of_range = _setup(DatasetDataModule(_PairDataset(6), num_classes=2, shuffle=False))
    with pytest.raises(ValueError, match=r"item 2 has label 2, outside \[0, 2\)"):
        next(iter(out_of_range.train_dataloader()))


def test_dataset_module_options():
    module = _setup(DatasetDataModule(_PairDataset(30), val_fraction=0.2, samples_per_class=4, projection_dim=5))
    assert len(module._val) == 6
    assert len(module._train) == 12
    assert module.feature_shape == (5,)
    x, y = _all_batches(module.train_dataloader())
    assert set(x.unique().tolist()) <= {-1.0, 1.0}
    assert np.bincount(y.numpy()).tolist() == [4, 4, 4]
    assert module.projection_matrix.shape == (5, 6)


def test_dataset_module_subset_targets(caplog):
    class WithTargets(_PairDataset):
        targets = [i % 3 for i in range(30)]
        classes = ["a", "b", "c", "d"]

    module = DatasetDataModule(Subset(WithTargets(30), list(range(0, 30, 2))), samples_per_class=5)
    assert module.num_classes == 4
    _setup(module)
    _, y = _all_batches(module.train_dataloader())
    assert np.bincount(y.numpy()).tolist() == [5, 5, 5]
    assert "classes [3] have no training samples" in caplog.text


def test_dataset_module_normalize_none():
    module = _setup(DatasetDataModule(_PairDataset(4), normalize="none", shuffle=False))
    x, _ = next(iter(module.train_dataloader()))
    assert x[:, 0].tolist() == [0, 10, 20, 30]


def test_dataset_module_errors():
    with pytest.raises(ValueError, match="does not support normalize='standard'.*transforms.Normalize"):
        DatasetDataModule(_PairDataset(3), normalize="standard")
    with pytest.raises(ValueError, match="val= and val_fraction=0.5 both define"):
        DatasetDataModule(_PairDataset(3), val=_PairDataset(3), val_fraction=0.5)
    with pytest.raises(TypeError, match="test must be a map-style dataset"):
        DatasetDataModule(_PairDataset(3), test=5)
    with pytest.raises(TypeError, match="train must be a dataset, got None"):
        DatasetDataModule(None)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        DatasetDataModule(_PairDataset(3), num_classes=0)
    module = _setup(DatasetDataModule(_PairDataset(3)))
    with pytest.raises(ValueError, match="created without test=; pass a test dataset"):
        module.test_dataloader()
    assert module.val_dataloader() == []


def test_dataset_module_splits():
    module = _setup(DatasetDataModule(_PairDataset(6), val=_PairDataset(4), test=_PairDataset(5), predict=_PairDataset(2)))
    assert len(module.val_dataloader().dataset) == 4
    assert len(module.test_dataloader().dataset) == 5
    assert len(module.predict_dataloader().dataset) == 2


# Lightning -------------------------------------------------------------------------------


class _CountingModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(784, 10)
        self.val_batches = 0

    def training_step(self, batch, batch_index):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_index):
        self.val_batches += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("val_fraction", "val_batches"), [(0.0, 0), (0.1, 38)])
def test_trainer_fit_validation(tmp_path, val_fraction, val_batches):
    module = _CountingModule()
    data = MNISTDataModule(samples_per_class=10, val_fraction=val_fraction, batch_size=16)
    trainer = L.Trainer(
        max_epochs=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 7
    assert module.val_batches == val_batches

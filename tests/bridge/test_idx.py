"""IDX reading and writing, and loading the real MNIST files."""

import gzip
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from darnax_bridge.data import IDX_TYPE_CODES, load_mnist_arrays, read_idx, write_idx

MNIST_DIR = Path(os.environ.get("DARNAX_MNIST_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"))
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"full MNIST not found in {MNIST_DIR}; set DARNAX_MNIST_DIR",
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _extreme_values(dtype: np.dtype) -> np.ndarray:
    """Return a (2, 3, 4) array of `dtype` that contains the type's extreme values."""
    if dtype.kind == "f":
        info = np.finfo(dtype)
        special = [info.min, info.max, info.tiny, -0.0, 1.5, -2.25]
    else:
        info = np.iinfo(dtype)
        special = [info.min, info.max, 0, 1, -1 if info.min < 0 else 2, 100]
    values = np.resize(np.asarray(special, dtype=dtype), 24)
    return values.reshape(2, 3, 4)


def _match_path(path: Path) -> str:
    return re.escape(str(path))


def test_write_idx_header_uint8(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.arange(6, dtype=np.uint8).reshape(2, 3))
    expected = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])
    assert path.read_bytes() == expected


def test_read_idx_handmade_int16(tmp_path):
    path = tmp_path / "b.idx"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    array = read_idx(path)
    assert array.dtype == np.int16
    assert array.tolist() == [258, -2]


def test_read_idx_handmade_float32(tmp_path):
    path = tmp_path / "c.idx"
    # 0x3FC00000 is 1.5 and 0xC0100000 is -2.25 in IEEE 754 single precision.
    path.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3F, 0xC0, 0, 0, 0xC0, 0x10, 0, 0]))
    assert read_idx(path).tolist() == [1.5, -2.25]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("code", sorted(IDX_TYPE_CODES), ids=lambda code: f"0x{code:02X}")
def test_idx_round_trip(tmp_path, code, compress):
    dtype = IDX_TYPE_CODES[code].newbyteorder("=")
    array = _extreme_values(dtype)
    path = write_idx(tmp_path / "x.idx", array, compress=compress)

    content = path.read_bytes()
    assert content.startswith(b"\x1f\x8b") == compress
    header = gzip.decompress(content)[:4] if compress else content[:4]
    assert header == bytes([0, 0, code, 3])

    result = read_idx(path)
    assert result.dtype == dtype
    assert result.dtype.isnative
    assert result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, array)
    assert result.flags.writeable


def test_write_idx_compress_from_suffix(tmp_path):
    array = np.arange(5, dtype=np.int32)
    assert write_idx(tmp_path / "a.gz", array).read_bytes()[:2] == b"\x1f\x8b"
    assert write_idx(tmp_path / "a.idx", array).read_bytes()[:4] == bytes([0, 0, 0x0C, 1])


def test_write_idx_big_endian_input(tmp_path):
    array = np.array([1, -2, 70000], dtype=">i4")
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", array)), [1, -2, 70000])


def test_write_idx_empty_axis(tmp_path):
    result = read_idx(write_idx(tmp_path / "e", np.zeros((0, 4), dtype=np.uint8)))
    assert result.shape == (0, 4)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (bytes([1, 0, 0x08, 1, 0, 0, 0, 1, 7]), "invalid magic number 01 00 08 01"),
        (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]), "invalid magic number 00 00 0a 01"),
        (bytes([0, 0, 0x08, 0]), "NDIM >= 1"),
        (bytes([0, 0, 0x08]), "truncated: it has 3 bytes"),
        (bytes([0, 0, 0x08, 2, 0, 0, 0, 1]), "truncated: the header declares 2 dimensions"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2]), r"truncated: shape \(3,\) of uint8 needs 3 data bytes but only 2"),
        (bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 1, 2, 3]), r"truncated: shape \(1,\) of int32 needs 4"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "size mismatch.*needs 1 data bytes but 2 follow"),
    ],
    ids=["magic", "type-code", "ndim-zero", "short-header", "short-dims", "short-data", "short-int32", "trailing"],
)
def test_read_idx_corrupt(tmp_path, content, match):
    for name, data in (("raw.idx", content), ("zipped.gz", gzip.compress(content))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=_match_path(path)):
            read_idx(path)
        with pytest.raises(ValueError, match=match):
            read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    full = gzip.compress(bytes([0, 0, 0x08, 1, 0, 0, 0, 200]) + bytes(range(200)))
    path = tmp_path / "cut.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=_match_path(path) + ".*could not be decompressed"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.idx")


def test_write_idx_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dtype int64 has no IDX type code"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"between 1 and 255 dimensions.*got shape \(\)"):
        write_idx(tmp_path / "a", np.uint8(3))
    with pytest.raises(TypeError, match="compress must be True, False or None, got 'yes'"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.uint8), compress="yes")


@needs_mnist
def test_mnist_train_real_values():
    images, labels = load_mnist_arrays(MNIST_DIR, "train")
    assert images.shape == (60000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert images.mean() == pytest.approx(33.318, abs=1e-3)
    assert images.min() == 0
    assert images.max() == 255


@needs_mnist
def test_mnist_test_real_values():
    images, labels = load_mnist_arrays(MNIST_DIR, "test")
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert images.mean() == pytest.approx(33.791, abs=1e-3)


@needs_mnist
def test_mnist_rewrite_matches_published_sha256(tmp_path):
    images = read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"


def _write_small_mnist(directory: Path, compress: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, count in (("train", 30), ("t10k", 12)):
        images = (np.arange(count * 784) % 256).astype(np.uint8).reshape(count, 28, 28)
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(count) % 10).astype(np.uint8))


@pytest.mark.parametrize("subdir", ["", "raw", "MNIST/raw"])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_mnist_search_layouts(tmp_path, subdir, compress):
    _write_small_mnist(tmp_path / subdir, compress)
    images, labels = load_mnist_arrays(tmp_path, "test")
    assert images.shape == (12, 28, 28)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert images[1, 0, :3].tolist() == [784 % 256, 785 % 256, 786 % 256]


def test_mnist_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_mnist_arrays(tmp_path, "train")
    message = str(error.value)
    assert str(tmp_path) in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "t10k-labels-idx1-ubyte" in message
    assert "pass root=" in message
    assert "root=None to use the MNIST subset embedded" in message


def test_mnist_label_count_mismatch(tmp_path):
    _write_small_mnist(tmp_path, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.*has shape \(5,\).*contains 12 images"):
        load_mnist_arrays(tmp_path, "test")


def test_mnist_label_out_of_range(tmp_path):
    _write_small_mnist(tmp_path, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(12, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels in \[10, 10\], outside the valid class range \[0, 9\]"):
        load_mnist_arrays(tmp_path, "test")


def test_mnist_wrong_image_shape(tmp_path):
    _write_small_mnist(tmp_path, compress=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((12, 27, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(12, 27, 28\); expected uint8 of shape \(N, 28, 28\)"):
        load_mnist_arrays(tmp_path, "test")


def test_mnist_bad_split(tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'valid'"):
        load_mnist_arrays(tmp_path, "valid")

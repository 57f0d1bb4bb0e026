"""Read and write IDX files, the binary format of the MNIST and Fashion-MNIST databases.

An IDX file starts with two zero bytes, a type code byte and a byte giving the number of
dimensions. One big-endian 32-bit size per dimension follows, then the data in row-major
order, big-endian. Files may be gzip-compressed; the reader detects gzip by its magic bytes.
"""

import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["IDX_TYPE_CODES", "read_idx", "write_idx"]

#: IDX type code for each supported element type; IDX stores multi-byte values big-endian.
IDX_TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_BYTES = 4
_SIZE_BYTES = 4


def _read_bytes(path: Path) -> bytes:
    """Return the file's content, decompressed when it starts with the gzip magic bytes."""
    with open(path, "rb") as handle:
        content = handle.read()
    if not content.startswith(_GZIP_MAGIC):
        return content
    try:
        return gzip.decompress(content)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(
            f"IDX file {str(path)!r} starts with the gzip magic bytes but could not be "
            f"decompressed ({error}); the file is truncated or corrupt, so download or copy it again."
        ) from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, into a NumPy array.

    Parameters
    ----------
    path
        File to read. Compression is detected from the content, not the file name.

    Returns
    -------
    numpy.ndarray
        Array with the shape stored in the header and the native-byte-order version of the
        stored element type (uint8, int8, int16, int32, float32 or float64).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the magic number or type code is invalid, or the data size does not match the
        header (truncated file or trailing bytes). The message names the file.
    """
    path = Path(path)
    content = _read_bytes(path)

    if len(content) < _HEADER_BYTES:
        raise ValueError(
            f"IDX file {str(path)!r} is truncated: it has {len(content)} bytes, fewer than the "
            f"{_HEADER_BYTES}-byte magic number."
        )
    zero0, zero1, type_code, ndim = content[:_HEADER_BYTES]
    if zero0 != 0 or zero1 != 0 or type_code not in IDX_TYPE_CODES or ndim == 0:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPE_CODES)
        raise ValueError(
            f"IDX file {str(path)!r} has an invalid magic number {content[:_HEADER_BYTES].hex(' ')}: "
            f"expected 00 00 TYPE NDIM with TYPE one of {known} and NDIM >= 1. "
            "Check that the path points to an IDX file (such as train-images-idx3-ubyte)."
        )

    data_offset = _HEADER_BYTES + _SIZE_BYTES * ndim
    if len(content) < data_offset:
        raise ValueError(
            f"IDX file {str(path)!r} is truncated: the header declares {ndim} dimensions, which "
            f"need {data_offset} header bytes, but the file has {len(content)} bytes."
        )
    shape = tuple(
        int(size) for size in np.frombuffer(content, dtype=">u4", count=ndim, offset=_HEADER_BYTES)
    )

    dtype = IDX_TYPE_CODES[type_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual_bytes = len(content) - data_offset
    if actual_bytes < expected_bytes:
        raise ValueError(
            f"IDX file {str(path)!r} is truncated: shape {shape} of {dtype.name} needs "
            f"{expected_bytes} data bytes but only {actual_bytes} follow the header."
        )
    if actual_bytes > expected_bytes:
        raise ValueError(
            f"IDX file {str(path)!r} has a size mismatch: shape {shape} of {dtype.name} needs "
            f"{expected_bytes} data bytes but {actual_bytes} follow the header."
        )

    data = np.frombuffer(content, dtype=dtype, offset=data_offset).reshape(shape)
    # astype copies, so the result is writable and in native byte order.
    return data.astype(dtype.newbyteorder("="))


def write_idx(
    path: str | os.PathLike, array: np.ndarray, compress: bool | None = None
) -> Path:
    """Write an array to an IDX file.

    Parameters
    ----------
    path
        Destination file; parent directories must exist.
    array
        Array of at least one dimension with dtype uint8, int8, int16, int32, float32 or
        float64.
    compress
        Whether to gzip the file. None compresses exactly when the name ends in ``.gz``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code or `compress` is not a bool or None.
    ValueError
        If the array is 0-dimensional, has more than 255 dimensions, or a size above 2**32 - 1.
    """
    path = Path(path)
    array = np.asarray(array)
    if compress is None:
        compress = path.suffix == ".gz"
    if not isinstance(compress, bool):
        raise TypeError(f"compress must be True, False or None, got {compress!r}.")

    type_code = _type_code_for(array.dtype)
    if not 1 <= array.ndim <= 255:
        raise ValueError(
            f"array must have between 1 and 255 dimensions to be stored as IDX, got shape "
            f"{array.shape}; reshape it (for example array.reshape(1)) first."
        )
    if max(array.shape) > 0xFFFFFFFF:
        raise ValueError(f"array shape {array.shape} has a size above the IDX limit of 2**32 - 1.")

    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=IDX_TYPE_CODES[type_code]).tobytes()
    content = header + payload
    if compress:
        # mtime=0 makes the compressed bytes depend only on the array.
        content = gzip.compress(content, mtime=0)
    path.write_bytes(content)
    logger.debug("Wrote IDX file %s with shape %s and dtype %s.", path, array.shape, array.dtype)
    return path


def _type_code_for(dtype: np.dtype) -> int:
    """Return the IDX type code of a NumPy dtype, ignoring byte order."""
    for code, idx_dtype in IDX_TYPE_CODES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    supported = ", ".join(sorted({d.newbyteorder("=").name for d in IDX_TYPE_CODES.values()}))
    raise TypeError(
        f"array dtype {dtype} has no IDX type code; supported dtypes are {supported}. "
        "Cast the array with astype() first."
    )

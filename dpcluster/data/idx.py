"""The IDX format of MNIST and Fashion-MNIST (LeCun's ``train-images-idx3-ubyte`` and friends), gzipped or not,
read with numpy and checked, so every mistake is one line naming the file (torchvision's own reader does not
read .gz files itself and fails on a bad one with a bare assertion).

A file is a magic number, ``0x00 0x00 <type> <dims>``, then ``dims`` big-endian 32-bit sizes, then the values,
big-endian, row-major: exactly ``prod(sizes)`` of them.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from dpcluster.errors import UserError

# The type byte of the magic number: the values' type (big-endian where wider than a byte).
TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
         0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
# Magic numbers of MNIST's files: unsigned bytes in 3 dimensions (images) and in 1 (labels).
IMAGES = 0x00000803
LABELS = 0x00000801


def read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped where its name ends in ``.gz``; a broken or cut-short gzip is one line."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise UserError(f"{path}: not a complete gzip file ({error})") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror or error}") from None


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """The array an IDX file holds, in native byte order. With ``magic``, a file whose magic number differs is
    refused (MNIST's images are ``IMAGES``, its labels ``LABELS``). Every mistake is a one-line UserError naming
    the file: a wrong magic number, an unknown type, a file cut short or with bytes past its end."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: not an IDX file (only {len(data)} bytes; expected a 4-byte magic number)")
    found = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] not in TYPES:
        expected = f"0x{magic:08x}" if magic is not None else "two zero bytes, a type byte and a dimension count"
        raise UserError(f"{path}: not an IDX file (magic number 0x{found:08x}; expected {expected})")
    if magic is not None and found != magic:
        raise UserError(f"{path}: wrong IDX magic number 0x{found:08x}, expected 0x{magic:08x} "
                        f"({_describe(magic)}); is it the right file?")
    dtype, ndim = TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: IDX file cut short in its header ({len(data)} bytes, the header alone is {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "cut short" if len(data) < expected else "longer than its header says"
        raise UserError(f"{path}: IDX file {what}: {len(data)} bytes, expected {expected} for "
                        f"{'x'.join(map(str, shape))} values of {dtype.name}")
    # A writable copy (torch.from_numpy warns about read-only arrays), in native byte order.
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _describe(magic: int) -> str:
    dims = magic & 0xFF
    return {IMAGES: "images: unsigned bytes in 3 dimensions", LABELS: "labels: unsigned bytes in 1 dimension"}.get(
        magic, f"{dims} dimensions")

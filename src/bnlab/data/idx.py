"""IDX files, the format of MNIST and Fashion-MNIST: a magic number, big-endian dimensions, data.

    magic    0x00 0x00 <dtype code> <number of dimensions>
    dims     one big-endian uint32 per dimension
    data     prod(dims) values of the dtype, big-endian

``read_idx`` reads a gzipped or raw file and checks every part of that layout; anything wrong
raises :class:`DatasetError` with one line that names the file and the fix.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from bnlab.errors import UserError


class DatasetError(UserError):
    """A data file is missing, corrupt or inconsistent; the message names the file and the fix."""


FIX_FILE = "replace it with an intact copy, or delete it so that bnlab looks elsewhere"

_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def bad_file(path, problem: str) -> DatasetError:
    """The error for a bad file: one line naming it, what is wrong, and the fix."""
    return DatasetError(f"{path}: {one_line(problem)}; fix: {FIX_FILE}.")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or raw; gzip is recognised by its magic bytes or ``.gz``).

    Returns a native-endian array of the stored dtype and shape. Any problem (unreadable file,
    corrupt gzip, wrong magic number, truncated header or payload, trailing bytes) raises
    :class:`DatasetError` naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise bad_file(path, f"cannot read the file ({e.strerror or e})") from e
    if data[:2] == b"\x1f\x8b" or path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except EOFError as e:
            raise bad_file(path, "the gzip data is truncated (the file was cut short)") from e
        except (gzip.BadGzipFile, zlib.error, OSError) as e:
            raise bad_file(path, f"not a valid gzip file ({e})") from e
    if len(data) < 4:
        raise bad_file(path, f"too short for an IDX header ({len(data)} bytes, need at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise bad_file(path, f"wrong magic number 0x{data[:4].hex()}: an IDX file starts with two "
                         "zero bytes")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise bad_file(path, f"unknown IDX data type code 0x{code:02X} in the magic number "
                         f"(known: {known})")
    dtype = _IDX_DTYPES[code]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad_file(path, f"truncated header: {ndim} dimensions need {header} bytes, "
                         f"found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(dims)
    expected, found = count * dtype.itemsize, len(data) - header
    if found < expected:
        raise bad_file(path, f"truncated: dimensions {dims} need {expected} bytes of data, "
                         f"found {found}")
    if found > expected:
        raise bad_file(path, f"{found - expected} unexpected trailing bytes after the {expected} "
                         f"bytes of data for dimensions {dims}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy

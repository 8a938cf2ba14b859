"""Reader for the IDX file format (MNIST, Fashion-MNIST), gzip-compressed or not.

The format (LeCun et al., "THE MNIST DATABASE of handwritten digits", the "FILE FORMATS" section):
a 4-byte magic number, then one big-endian uint32 per dimension, then the values in C order::

  magic = 0x00 0x00 <type> <ndim>
  type:   0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
  dims:   ndim x uint32, big-endian
  data:   prod(dims) values of <type>, big-endian

So an MNIST image file starts with ``0x00000803`` (uint8, 3 dimensions: N x 28 x 28) and a label
file with ``0x00000801`` (uint8, N). A file whose first two bytes are gzip's magic (``1f 8b``) is
decompressed first, whatever its name.

Every malformed file raises :class:`ssljax.errors.DataError` with one line naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from ssljax.errors import DataError

# The IDX type byte -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 0x00000803  # uint8, [N, H, W]
LABELS_MAGIC = 0x00000801  # uint8, [N]
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
  """The file's bytes, gunzipped when it starts with gzip's magic."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"IDX file {path!r} cannot be read ({e.strerror}); check that it exists "
                    "and is readable") from None
  if raw[:2] != _GZIP_MAGIC:
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"IDX file {path!r} is a broken gzip file ({reason}); download or "
                    "install it again") from None


def parse_idx(data: bytes, *, name: str = "<bytes>", magic: int | None = None) -> np.ndarray:
  """Parses the bytes of one (uncompressed) IDX file.

  Args:
    data: the file's bytes.
    name: what error messages call the file (its path).
    magic: the magic number the file must have (e.g. :data:`IMAGES_MAGIC`); None accepts any
      valid one.

  Returns:
    The values in native byte order, shape = the header's dimensions.

  Raises:
    DataError: the magic number is not an IDX one (or not ``magic``), or the header's
      dimensions do not match the number of bytes that follow it.
  """
  if len(data) < 4:
    raise DataError(f"IDX file {name!r} has {len(data)} bytes, fewer than the 4-byte magic "
                    "number; it is not an IDX file")
  found = int.from_bytes(data[:4], "big")
  type_code, ndim = data[2], data[3]
  if data[:2] != b"\x00\x00" or type_code not in IDX_DTYPES or ndim == 0:
    raise DataError(f"IDX file {name!r}: magic number 0x{found:08x} is not an IDX header "
                    "(0x000008<ndim> for uint8 data); the file is not IDX or is damaged")
  if magic is not None and found != magic:
    raise DataError(f"IDX file {name!r}: magic number 0x{found:08x}, expected 0x{magic:08x}; "
                    "the file holds other data than expected (images and labels swapped?)")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise DataError(f"IDX file {name!r}: {len(data)} bytes cannot hold the header of {ndim} "
                    "dimensions; the file is truncated")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  dtype = IDX_DTYPES[type_code]
  expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
  if len(data) != expected:
    raise DataError(f"IDX file {name!r}: header says dims {list(dims)} ({expected} bytes) but "
                    f"the file has {len(data)} bytes; the file is truncated or damaged")
  values = np.frombuffer(data, dtype, offset=header).reshape(dims)
  return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
  """Reads one IDX file (gzip-compressed or not); see :func:`parse_idx`."""
  path = os.fspath(path)
  return parse_idx(_read_bytes(path), name=path, magic=magic)

"""Reading an ``.npz`` archive that may have been crafted: every size is checked before
anything is allocated, and nothing but plain numeric arrays comes out.

An ``.npz`` (what ``np.savez`` writes) is a zip archive with one ``.npy`` member per array:

    <key>.npy = b"\\x93NUMPY" + version (1.0: 2-byte, 2.0: 4-byte little-endian header length)
                + header  "{'descr': '<f4', 'fortran_order': False, 'shape': (7, 8), }" padded, "\\n"
                + the array's bytes, C order, nothing after them

``NpzArchive(raw)`` reads the zip directory and every member's header, and
refuses (``ArchiveError``) the archive unless, member by member,

  - its name is unique in the archive and ends in ``.npy``;
  - it is stored, not compressed and not encrypted (``np.savez`` stores; so a
    zip bomb has nothing to inflate), and the members' sizes in the zip
    directory add up to no more than the archive itself;
  - its header is the dict ``np.save`` writes, at most 4096 bytes, parsed here
    by a regular expression (no ``eval``, no ``np.load``, nothing unpickled);
  - its dtype is bool, int8..int64, uint8..uint64 or float16/32/64,
    little-endian: objects, strings, structured records, complex numbers and
    datetimes are refused, as is Fortran order;
  - its shape times the itemsize is exactly the data size the zip directory
    gives for it, so a header claiming shape (10**9, 10**9) in a 2 KB member is
    refused from the header alone.

Only then does ``read(key)`` allocate: exactly the bytes the header promised,
read through ``zipfile`` (which checks each member's CRC).
"""

from __future__ import annotations

import io
import math
import re
import struct
import sys
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

__all__ = ["ArchiveError", "ArrayHeader", "NpzArchive"]

_NPY_MAGIC = b"\x93NUMPY"
_MAX_HEADER_BYTES = 4096
_MAX_NDIM = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32    # NumPy's limit
_PLAIN_DTYPES = ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")
# exactly what np.save writes (sorted keys, Python reprs), whitespace aside
_HEADER = re.compile(r"\{\s*'descr'\s*:\s*'(?P<descr>[^']{1,16})'\s*,"
                     r"\s*'fortran_order'\s*:\s*(?P<fortran>True|False)\s*,"
                     r"\s*'shape'\s*:\s*\((?P<shape>\s*(?:\d{1,20}\s*,\s*)*(?:\d{1,20}\s*)?)\)\s*,?"
                     r"\s*\}\s*")
# what reading an archive can raise from inside zipfile and zlib, for bytes that are not a good zip
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, struct.error,
               NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError, zlib.error)


class ArchiveError(ValueError):
    """The bytes are not an archive of plain numeric arrays; the message says what was
    found and what was expected (the caller adds which file)."""


@dataclass(frozen=True)
class ArrayHeader:
    """One member's array as its header describes it; ``offset``: where its data starts."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _parse_header(key: str, prefix: bytes, member_bytes: int) -> ArrayHeader:
    """The header at the start of a member (``prefix``: its first bytes), checked against
    ``member_bytes``, the member's size in the zip directory."""
    if prefix[:6] != _NPY_MAGIC:
        raise ArchiveError(f"member {key!r} is not a .npy array (first bytes {prefix[:6]!r})")
    version = tuple(prefix[6:8])
    if version == (1, 0):
        size_bytes, fmt = 2, "<H"
    elif version == (2, 0):
        size_bytes, fmt = 4, "<I"
    else:
        raise ArchiveError(f"member {key!r}: .npy format version {version}; readable are 1.0 and 2.0")
    start = 8 + size_bytes
    if len(prefix) < start:
        raise ArchiveError(f"member {key!r}: cut short inside its header")
    (length,) = struct.unpack(fmt, prefix[8:start])
    if length > _MAX_HEADER_BYTES:
        raise ArchiveError(f"member {key!r}: header of {length} bytes; at most {_MAX_HEADER_BYTES} "
                           "are allowed")
    if start + length > min(len(prefix), member_bytes):
        raise ArchiveError(f"member {key!r}: its header says {length} bytes, more than the member holds")
    try:
        text = prefix[start:start + length].decode("ascii")
    except UnicodeDecodeError:
        raise ArchiveError(f"member {key!r}: header is not ASCII text") from None
    m = _HEADER.fullmatch(text)
    if m is None:
        raise ArchiveError(f"member {key!r}: header {text.strip()[:120]!r} is not a plain array "
                           "header {'descr': ..., 'fortran_order': ..., 'shape': (...)}")
    descr, fortran = m["descr"], m["fortran"] == "True"
    if "O" in descr:
        raise ArchiveError(f"member {key!r} holds an object (pickled) array; refused without reading it "
                           "(unpickling could run code; checkpoints hold numeric arrays only)")
    dtype_code = descr[1:]
    if dtype_code not in _PLAIN_DTYPES or descr[0] != ("|" if dtype_code[1] == "1" else "<"):
        raise ArchiveError(f"member {key!r}: dtype {descr!r}; only little-endian bool, int, uint "
                           "and float arrays are allowed (no objects, strings, records or complex)")
    if fortran:
        raise ArchiveError(f"member {key!r}: stored in Fortran order; checkpoints hold C-order arrays")
    shape = tuple(int(d) for d in m["shape"].replace(",", " ").split())
    header = ArrayHeader(np.dtype(descr), shape, start + length)
    data_bytes = member_bytes - header.offset
    if header.nbytes != data_bytes:
        raise ArchiveError(f"member {key!r}: header claims shape {shape} of {descr} "
                           f"({header.nbytes} bytes), but the member holds {data_bytes} bytes of data")
    # an empty array (a 0 in its shape) may claim any other sizes; NumPy holds none over
    # sys.maxsize bytes or of more than _MAX_NDIM dimensions (reshape would raise a ValueError)
    if len(shape) > _MAX_NDIM or math.prod(d for d in shape if d) * header.dtype.itemsize > sys.maxsize:
        raise ArchiveError(f"member {key!r}: header claims shape {shape}, more than a NumPy array can "
                           "have")
    return header


class NpzArchive:
    """An ``.npz`` held in memory (``raw``), its members' headers read and checked.

    ``headers``: array key (member name without ``.npy``) -> ``ArrayHeader``;
    ``read(key)``: the array, a new writable host array."""

    def __init__(self, raw: bytes):
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(raw))
            infos = self._zip.infolist()
        except _ZIP_ERRORS as e:
            raise ArchiveError(f"not a readable npz (zip) archive ({type(e).__name__}: {e})") from None
        twice = sorted(name for name, n in Counter(i.filename for i in infos).items() if n > 1)
        if twice:
            raise ArchiveError(f"members {twice[:5]} appear more than once; names must be unique")
        declared = sum(i.file_size for i in infos)
        if declared > len(raw):
            raise ArchiveError(f"the zip directory claims {declared} bytes of members in an archive "
                               f"of {len(raw)} bytes")
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or len(name) == 4:
                raise ArchiveError(f"member {name!r} is not a .npy array (name must be <key>.npy)")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"member {name!r} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise ArchiveError(f"member {name!r} is compressed (method {info.compress_type}); "
                                   "checkpoints store arrays uncompressed, as np.savez does")
            self._infos[name[:-4]] = info
        self.headers: dict[str, ArrayHeader] = {}
        for key, info in self._infos.items():
            try:
                with self._zip.open(info) as f:
                    prefix = f.read(min(info.file_size, 12 + _MAX_HEADER_BYTES))
            except _ZIP_ERRORS as e:
                raise ArchiveError(f"member {key!r} is unreadable ({type(e).__name__}: {e})") from None
            self.headers[key] = _parse_header(key, prefix, info.file_size)

    def read(self, key: str) -> np.ndarray:
        header, info = self.headers[key], self._infos[key]
        data = bytearray(header.nbytes)
        try:
            with self._zip.open(info) as f:
                f.read(header.offset)
                got = f.readinto(data)
                rest = f.read(1)               # at the end: zipfile checks the CRC here
        except _ZIP_ERRORS as e:
            raise ArchiveError(f"member {key!r} is unreadable ({type(e).__name__}: {e})") from None
        if got != header.nbytes or rest:
            raise ArchiveError(f"member {key!r}: {got} bytes of data where its header promised "
                               f"{header.nbytes}")
        return np.frombuffer(data, dtype=header.dtype).reshape(header.shape)

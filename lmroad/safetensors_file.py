"""The safetensors format, written and read here, with every size checked before
anything is allocated.

A ``.safetensors`` file (Hugging Face's format for weights; no code inside it,
unlike a pickled PyTorch ``.bin``) is three parts::

    8 bytes     N, the header's length: an unsigned little-endian 64-bit int
    N bytes     the header: UTF-8 JSON, padded with spaces
                {"__metadata__": {"format": "pt", ...},          optional, strings to strings
                 "wte.weight": {"dtype": "F32", "shape": [50257, 768],
                                "data_offsets": [0, 154389504]},
                 ...}
    the rest    the arrays' bytes, little-endian, C order, one after another;
                ``data_offsets`` [begin, end) count from the end of the header

``to_bytes(arrays, metadata)`` writes one; ``SafetensorsFile(raw)`` reads one
that may have been crafted. It refuses (``SafetensorsError``) the file unless

  - the header length leaves room for the data and is at most 100 MB (the
    limit of the reference implementation), and the header is a JSON object
    with no key twice, starting with ``{``;
  - ``__metadata__``, if present, maps strings to strings;
  - every entry has exactly ``dtype``, ``shape`` and ``data_offsets``; the
    dtype is a plain number or bool type (BOOL, U8..U64, I8..I64, F16, BF16,
    F32, F64); the shape is a list of at most 64 ints >= 0 (NumPy's limit);
    and shape times itemsize is exactly ``end - begin``, so a header claiming
    shape (10**9, 10**9) for eight bytes is refused from the header alone (and
    an empty array's other sizes must fit NumPy too: (0, 10**30) is refused);
  - the entries, in offset order, tile the data with no gap and no overlap,
    from 0 to the end of the file.

Only then does ``read(name)`` allocate: a copy of exactly the bytes the header
gave it. bfloat16 (``BF16``, which NumPy has no dtype for) comes back as
float32, exactly: a bfloat16 is the top half of a float32.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Mapping

import numpy as np

__all__ = ["SafetensorsError", "SafetensorsFile", "to_bytes", "DTYPES"]

#: safetensors dtype name -> NumPy dtype (little-endian); BF16 is read as float32
DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
          "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
_ITEMSIZE = {**{k: np.dtype(v).itemsize for k, v in DTYPES.items()}, "BF16": 2}
_MAX_HEADER_BYTES = 100_000_000
_MAX_NDIM = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32    # NumPy's limit
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class SafetensorsError(ValueError):
    """The bytes are not a safetensors file of plain numeric arrays; the message says what
    was found and what was expected (the caller adds which file)."""


# --------------------------------------------------------------------------- writing

def to_bytes(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors file holding ``arrays`` (name -> host array), in the given order,
    and ``metadata`` (strings to strings) in its header."""
    header: dict = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
        if bad:
            raise TypeError(f"safetensors: metadata maps strings to strings; {bad[:3]} do not")
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name, a in arrays.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"safetensors: {name!r} cannot name an array")
        a = np.asarray(a, order="C")          # not ascontiguousarray: it makes a 0-d array 1-d
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)        # a no-op on little-endian hosts
        if a.dtype not in _NAMES:
            raise TypeError(f"safetensors: {name} has dtype {a.dtype}; storable are bool, int8..int64, "
                            "uint8..uint64 and float16/32/64")
        raw = a.tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)          # the data then starts 8-byte aligned, as HF's writer does
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


# --------------------------------------------------------------------------- reading

def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise SafetensorsError(f"the header has the key {k!r:.80} twice")
        out[k] = v
    return out


def _is_size(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class SafetensorsFile:
    """A safetensors file held in memory (``raw``), its header read and checked.

    ``headers``: name -> (safetensors dtype name, shape), in file order;
    ``metadata``: the header's ``__metadata__`` (empty if absent);
    ``read(name)``: the array, a new writable host array (BF16 as float32)."""

    def __init__(self, raw: bytes):
        self._raw = memoryview(raw)
        if len(raw) < 8:
            raise SafetensorsError(f"{len(raw)} bytes: too short for a safetensors file (8-byte header "
                                   "length, then the header)")
        (n,) = struct.unpack("<Q", raw[:8])
        if n > min(_MAX_HEADER_BYTES, len(raw) - 8):
            raise SafetensorsError(f"the header length says {n} bytes; the file holds {len(raw) - 8} "
                                   f"after it and at most {_MAX_HEADER_BYTES} are allowed")
        text = bytes(raw[8:8 + n])
        if not text.startswith(b"{"):
            raise SafetensorsError(f"the header does not start with '{{' (first bytes {text[:8]!r}); "
                                   "not a safetensors file")
        try:
            header = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            if isinstance(e, SafetensorsError):
                raise
            raise SafetensorsError(f"the header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafetensorsError("the header is not a JSON object")
        metadata = header.pop("__metadata__", {})
        if not (isinstance(metadata, dict)
                and all(isinstance(v, str) for v in metadata.values())):
            raise SafetensorsError("'__metadata__' must map strings to strings")
        self.metadata: dict[str, str] = metadata
        self._start = 8 + n
        data_bytes = len(raw) - self._start
        self.headers: dict[str, tuple[str, tuple[int, ...]]] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        for name, entry in header.items():
            if not (isinstance(entry, dict) and set(entry) == _ENTRY_KEYS):
                raise SafetensorsError(f"entry {name!r:.80}: must be an object with exactly "
                                       f"{sorted(_ENTRY_KEYS)}, got {entry!r:.80}")
            dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
            if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
                raise SafetensorsError(f"entry {name!r:.80}: dtype {dtype!r:.20}; readable are "
                                       f"{sorted(_ITEMSIZE)}")
            if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM and all(map(_is_size, shape))):
                raise SafetensorsError(f"entry {name!r:.80}: shape must be a list of at most {_MAX_NDIM} "
                                       f"ints >= 0, got {shape!r:.80}")
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_size, offsets))
                    and offsets[0] <= offsets[1] <= data_bytes):
                raise SafetensorsError(f"entry {name!r:.80}: data_offsets must be [begin, end] with "
                                       f"0 <= begin <= end <= {data_bytes}, got {offsets!r:.80}")
            nbytes = math.prod(shape) * _ITEMSIZE[dtype]
            if nbytes != offsets[1] - offsets[0]:
                raise SafetensorsError(f"entry {name!r:.80}: shape {tuple(shape)} of {dtype} is {nbytes} "
                                       f"bytes, but its data_offsets span {offsets[1] - offsets[0]}")
            # an empty array (a 0 in its shape) may claim any other sizes; NumPy holds none over
            # sys.maxsize bytes, empty or not (reshape would raise a ValueError in read)
            if math.prod(d for d in shape if d) * (4 if dtype == "BF16" else _ITEMSIZE[dtype]) > sys.maxsize:
                raise SafetensorsError(f"entry {name!r:.80}: shape {tuple(shape)} is empty but larger than "
                                       "any array can be")
            self.headers[name] = (dtype, tuple(shape))
            self._offsets[name] = (offsets[0], offsets[1])
        end = 0
        for name, (begin, stop) in sorted(self._offsets.items(), key=lambda kv: kv[1]):
            if begin != end:
                raise SafetensorsError(f"entry {name!r:.80} starts at byte {begin} of the data, but the "
                                       f"entries before it end at {end}: arrays must tile the data "
                                       "with no gap and no overlap")
            end = stop
        if end != data_bytes:
            raise SafetensorsError(f"the arrays end at byte {end} of the data, but the file holds "
                                   f"{data_bytes}: bytes that no array owns")

    def shape(self, name: str) -> tuple[int, ...]:
        return self.headers[name][1]

    def dtype(self, name: str) -> np.dtype:
        """The NumPy dtype ``read`` returns (float32 for BF16)."""
        kind = self.headers[name][0]
        return np.dtype(np.float32) if kind == "BF16" else np.dtype(DTYPES[kind])

    def read(self, name: str) -> np.ndarray:
        kind, shape = self.headers[name]
        begin, end = self._offsets[name]
        data = self._raw[self._start + begin:self._start + end]
        if kind == "BF16":                   # bfloat16 -> float32: the same bits, shifted up 16
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(shape)
        out = np.frombuffer(data, dtype=DTYPES[kind]).reshape(shape).copy()
        return out.astype(out.dtype.newbyteorder("="), copy=False)

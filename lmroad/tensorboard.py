"""TensorBoard event files, written by hand: no tensorboard, TensorFlow, PyTorch or protobuf.

    from lmroad.tensorboard import SummaryWriter
    with SummaryWriter("out/lstm/tensorboard") as writer:
        writer.add_scalar("train/loss", 2.31, global_step=10)
    # then: tensorboard --logdir out/lstm/tensorboard

The names are PyTorch's (``torch.utils.tensorboard.SummaryWriter``); only
scalars are written, which is all a training log needs.

The format, from the outside in
-------------------------------

An *event file* is a folder's ``events.out.tfevents.<time>.<hostname>.<pid>.<n>``
(TensorBoard reads every file whose name holds ``tfevents``, in name order,
so the time comes first). It is a sequence of **TFRecords**, TensorFlow's
framing of a stream of byte strings; each record is::

    uint64  length                     little-endian, the number of data bytes
    uint32  masked_crc32c(length)      the checksum of those 8 bytes
    byte    data[length]               one serialized Event message
    uint32  masked_crc32c(data)

The checksum is CRC-32C (Castagnoli's polynomial 0x1EDC6F41, bit-reversed
0x82F63B78; the checksum of iSCSI and ext4), computed a byte at a time from
a table of 256 entries (``_CRC_TABLE``). It is *masked*, rotated right by 15
bits plus a constant, because a CRC of data that itself holds CRCs is
weak: ``((crc >> 15) | (crc << 17)) + 0xA282EAD8``, modulo 2**32. A reader
that finds a checksum wrong stops there: the file is damaged (or, at its end,
still being written).

Each record's data is an ``Event``, a protocol buffer (``tensorboard/compat/
proto/event.proto``). A protobuf message is a sequence of fields, each a *key*
``(field_number << 3) | wire_type`` then its value: wire type 0 an integer
as a *varint* (7 bits a byte, least significant first, the high bit set on
every byte but the last), 1 a little-endian 8-byte double, 5 a 4-byte float,
2 a length (a varint) then that many bytes: a string, or a message nested in
this one. The fields this file writes::

    message Event   { double wall_time = 1;  int64 step = 2;
                      string file_version = 3;  Summary summary = 5; }
    message Summary { repeated Value value = 1; }
    message Value   { string tag = 1;  float simple_value = 2; }

The first event of a file holds only ``file_version = "brain.Event:2"`` (and
its wall time): it says which version of the format follows. Every scalar
is then one event: its wall time (seconds since 1970), its step, and a
summary of one value, ``tag`` (``"train/loss"``: TensorBoard groups the charts
by the part before the slash) and ``simple_value``, a float32. So
``add_scalar("loss", 2.5, 3, walltime=0.0)`` writes the Event bytes::

    09 00 00 00 00 00 00 00 00      field 1, double: wall_time 0.0
    10 03                           field 2, varint: step 3
    2a 0d                           field 5, 13 bytes: the Summary
       0a 0b                        field 1, 11 bytes: a Value
          0a 04 6c 6f 73 73         field 1, 4 bytes: tag "loss"
          15 00 00 20 40            field 2, float: 2.5

Writing
-------

Events are kept in memory until ``flush()`` (or ``close()``, or the first
``add_scalar`` more than ``flush_secs`` after the last flush, as PyTorch's
writer does). The file is opened for each flush and closed after it, as
``metrics.jsonl`` is for each record: a run that stops for any reason leaves
every flushed event on disk and no file open. The first flush creates the
file whole (written under a temporary name, then renamed), so a reader never
sees a file without its version event, and a folder rewritten by
``lmroad.train_log.open_tensorboard`` never a half-written history.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import socket
import struct
import tempfile
import time
from pathlib import Path

__all__ = ["SummaryWriter", "crc32c", "masked_crc32c", "tfrecord", "scalar_event", "file_version_event",
           "FILE_VERSION", "EVENT_FILE_MARK"]

FILE_VERSION = "brain.Event:2"
EVENT_FILE_MARK = "tfevents"        # TensorBoard reads the files whose name holds this


# --------------------------------------------------------------------------- CRC-32C

def _crc_table(poly: int = 0x82F63B78) -> tuple[int, ...]:
    """The CRC of each byte value alone, for the reflected (least significant bit first)
    polynomial ``poly``: eight shift-and-subtract steps of the long division per byte."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) checksum of ``data``: ``crc32c(b"123456789") == 0xE3069283``.
    Starts from all ones and inverts the result, as CRC-32 does; one table look-up per byte."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C rotated right by 15 bits, plus 0xA282EAD8 (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: the length, its masked CRC, the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


# --------------------------------------------------------------------------- protobuf, by hand

def _varint(n: int) -> bytes:
    """A protobuf varint; a negative int64 as its 64-bit two's complement (ten bytes)."""
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    """Field ``field`` of wire type 2: a string's bytes or a nested message."""
    return _key(field, 2) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    """``value`` as a little-endian float32, rounded; beyond float32's range, an infinity."""
    try:
        return struct.pack("<f", value)
    except OverflowError:                    # |value| > 3.4e38: what float32 rounds it to
        return struct.pack("<f", math.copysign(math.inf, value))


def _event(wall_time: float, step: int, body: bytes) -> bytes:
    """An Event: wall_time (field 1, double), step (field 2, int64), then ``body``."""
    return _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(step) + body


def file_version_event(wall_time: float) -> bytes:
    """The Event that opens a file: ``file_version = "brain.Event:2"`` (field 3), step 0."""
    return _event(wall_time, 0, _length_delimited(3, FILE_VERSION.encode()))


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """An Event whose summary (field 5) holds one Value: ``tag`` (field 1) and
    ``simple_value`` (field 2, float32)."""
    value_msg = _length_delimited(1, tag.encode("utf-8")) + _key(2, 5) + _float32(value)
    summary = _length_delimited(1, value_msg)
    return _event(wall_time, step, _length_delimited(5, summary))


# --------------------------------------------------------------------------- the writer

_file_numbers = itertools.count()        # the last part of a file name: unique in this process


class SummaryWriter:
    """Scalars to a new event file in ``log_dir`` (created if missing), PyTorch's way:
    ``add_scalar(tag, value, global_step)``, ``flush()``, ``close()``, and ``with``.

    ``path`` is the file; it appears at the first flush. ``filename_suffix`` is
    appended to its name, as in PyTorch."""

    def __init__(self, log_dir: str | os.PathLike, flush_secs: float = 120, filename_suffix: str = ""):
        if not isinstance(flush_secs, (int, float)) or isinstance(flush_secs, bool) or not flush_secs > 0:
            raise ValueError(f"SummaryWriter: flush_secs must be a number > 0, got {flush_secs!r}")
        self.log_dir = Path(log_dir)
        self.flush_secs = flush_secs
        now = time.time()
        name = (f"events.out.{EVENT_FILE_MARK}.{int(now):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{next(_file_numbers)}{filename_suffix}")
        self.path = self.log_dir / name
        self._pending = [tfrecord(file_version_event(now))]
        self._last_flush = time.monotonic()
        self._created = False
        self.closed = False

    def add_scalar(self, tag: str, scalar_value, global_step: int | None = None,
                   walltime: float | None = None) -> None:
        """Record ``scalar_value`` (a number, stored as float32) under ``tag`` at step
        ``global_step`` (None: 0) and time ``walltime`` (None: now, in seconds since 1970)."""
        if self.closed:
            raise ValueError(f"SummaryWriter({self.log_dir}): add_scalar after close()")
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"add_scalar: the tag must be a non-empty string, got {tag!r}")
        try:
            value = float(scalar_value)
        except (TypeError, ValueError):
            raise TypeError(f"add_scalar({tag!r}): the value must be a number, got "
                            f"{type(scalar_value).__name__} {scalar_value!r}") from None
        step = 0 if global_step is None else global_step
        if isinstance(step, bool) or not hasattr(step, "__index__"):
            raise TypeError(f"add_scalar({tag!r}): global_step must be an integer, got {global_step!r}")
        step = operator.index(step)                   # an int, or a NumPy integer
        if not -2**63 <= step < 2**63:
            raise ValueError(f"add_scalar({tag!r}): global_step {step} does not fit an int64")
        wall_time = time.time() if walltime is None else float(walltime)
        self._pending.append(tfrecord(scalar_event(tag, value, step, wall_time)))
        if time.monotonic() - self._last_flush > self.flush_secs:
            self.flush()

    def flush(self) -> None:
        """Write the events kept so far to ``path``: the first time as a whole new file
        (a temporary name, renamed), then appended."""
        self._last_flush = time.monotonic()
        if not self._pending or self.closed:
            return
        data = b"".join(self._pending)
        if self._created:
            with open(self.path, "ab") as f:
                f.write(data)
        else:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            # a name without "tfevents": TensorBoard does not read it while it is written
            fd, tmp = tempfile.mkstemp(dir=self.log_dir, prefix=".events-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._created = True
        self._pending = []

    def close(self) -> None:
        """Flush; later ``add_scalar`` calls are an error, later ``close`` calls do nothing."""
        if not self.closed:
            self.flush()
            self.closed = True

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SummaryWriter({str(self.log_dir)!r})"

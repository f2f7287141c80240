"""Fuzzing the checkpoint loader: a real checkpoint, damaged at random, either loads exactly
as it was saved or is refused with a ``CheckpointError`` naming one of its files, quickly
and within a small memory budget.

The checkpoint is a small Transformer's, saved by ``save_checkpoint`` with everything a
training run stores (AdamW moments, tokenizer, carried state, RNG state, metrics). The damage:

    bytes   flips, truncations and insertions in either file; a damaged npz either as it is
            (its SHA-256 no longer matches) or vouched for (the JSON's size and hash updated,
            so only the archive's own checks stand in the way)
    json    a field replaced by a random JSON value (wrong types, huge ints, NaN, nesting),
            removed, or its key written twice
    npz     a member's header shape, dtype or order edited, a member duplicated, renamed,
            removed or compressed; every such archive vouched for

"Exactly as it was saved": the model that ``load_model`` builds holds bitwise the original
weights, and the checkpoint holds the original arrays (the same bytes). Each case runs
under ``bounded``: at most ``SECONDS``, and a peak of traced allocation below ``MEMORY``
(a small multiple of the files' size); on Linux the address space is capped as well, so a
loader that asks for gigabytes fails at once instead of swapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import signal
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from lmroad.checkpoint import CHECKPOINT_FILE, CheckpointError, load_model, save_checkpoint
from lmroad.data import CharTokenizer
from lmroad.models import TransformerLM
from minigrad import optim

try:
    import resource  # POSIX only: elsewhere the address space is not capped
except ImportError:
    resource = None

SECONDS = 3.0                    # per case; a clean load takes a few tens of milliseconds


# =========================================================================== the checkpoint

@pytest.fixture(scope="module")
def original(tmp_path_factory) -> dict:
    """The saved files (name -> bytes) and what loading them gives."""
    mg.manual_seed(0)
    model = TransformerLM(vocab_size=7, n_layer=1, n_head=2, n_embd=8, block_size=8)
    opt = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=1e-2)
    x = mg.tensor(np.arange(16).reshape(2, 8) % 7)
    model(x, x)[1].backward()
    opt.step()
    rng = np.random.default_rng(3)
    directory = tmp_path_factory.mktemp("original")
    save_checkpoint(directory, model, step=5, tokenizer=CharTokenizer.from_text("abcdefg"), optimizer=opt,
                    data_state={"batcher": {"position": 3},
                                "carried_state": (np.ones((1, 2, 4), np.float32),)},
                    rng_state={"data": rng.bit_generator.state}, train_config={"lr": 0.01},
                    metrics={"best": {"val_loss": 1.5, "step": 5}}, extra={3: (1, "x"), "ids": np.arange(5)})
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    weights, arrays = load(directory)
    size = sum(map(len, files.values()))
    return {"files": files, "weights": weights, "arrays": arrays, "size": size,
            "memory": _memory_budget(size)}


def _memory_budget(size: int) -> int:
    """Bytes a load may allocate at its peak: 8 times the files, plus 1 MiB for building the
    model and the Python objects of the JSON (a clean load of the checkpoint here peaks at
    about 4 times its files)."""
    return 8 * size + (1 << 20)


def load(directory: Path) -> tuple[dict[str, np.ndarray], list[bytes]]:
    """(the built model's weights, every array of the checkpoint as bytes, sorted)."""
    model, ckpt = load_model(directory)
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    parts = [ckpt.weights, ckpt.tokenizer, ckpt.optimizer, ckpt.data_state, ckpt.rng_state,
             ckpt.train_config, ckpt.metrics, ckpt.extra]
    return weights, sorted(a.tobytes() for a in _arrays_in(parts))


def _arrays_in(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays_in(v)


class TookTooLong(Exception):
    pass


def _address_space() -> int | None:
    """This process's virtual memory size in bytes (Linux), or None."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmSize:\s+(\d+) kB", text)
    return int(m[1]) * 1024 if m else None


@contextlib.contextmanager
def bounded(memory: int):
    """The block finishes within SECONDS, its traced allocation peaks below ``memory`` bytes,
    and (Linux) the address space may grow by at most 1 GiB meanwhile."""
    def alarm(signum, frame):
        raise TookTooLong(f"the load took more than {SECONDS} s")

    timed = hasattr(signal, "setitimer")
    if timed:
        old_handler = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, SECONDS)
    vm = _address_space() if resource is not None else None
    if vm is not None:
        old_limit = resource.getrlimit(resource.RLIMIT_AS)
        hard = old_limit[1]
        cap = vm + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard),
                                                hard))
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if vm is not None:
            resource.setrlimit(resource.RLIMIT_AS, old_limit)
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
    assert peak < memory, f"the load allocated {peak / 2**20:.1f} MiB at its peak"


def outcome(files: dict[str, bytes], original: dict):
    """Write ``files`` as a checkpoint and load it: None when refused, else what ``load`` gives."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, data in files.items():
            (directory / name).write_bytes(data)
        with bounded(max(original["memory"], _memory_budget(sum(map(len, files.values()))))):
            try:
                return load(directory)
            except CheckpointError as e:
                assert str(directory) in str(e), f"the error names no file of the checkpoint: {e}"
                return None


def assert_refused_or_identical(result, original: dict) -> None:
    if result is None:
        return
    weights, arrays = result
    assert weights.keys() == original["weights"].keys()
    for name, a in weights.items():
        b = original["weights"][name]
        assert (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes()), name
    assert arrays == original["arrays"], "an array of the checkpoint changed"


def names(files: dict[str, bytes]) -> tuple[str, str]:
    return CHECKPOINT_FILE, next(n for n in files if n.endswith(".npz"))


def vouch(files: dict[str, bytes], npz: bytes) -> dict[str, bytes]:
    """``files`` with the npz replaced by ``npz`` and the JSON's size and hash updated for it."""
    js, npz_name = names(files)
    meta = json.loads(files[js])
    meta.update(weights_bytes=len(npz), weights_sha256=hashlib.sha256(npz).hexdigest())
    return {**files, npz_name: npz, js: json.dumps(meta).encode()}


def test_the_undamaged_checkpoint_loads_as_saved(original):
    assert outcome(original["files"], original) is not None


# =========================================================================== damaged bytes

def _damage(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, at, arg in ops:
        at = at % (len(b) + 1)
        if op == "flip" and at < len(b):
            b[at] ^= arg or 1
        elif op == "truncate":
            del b[at:]
        elif op == "insert":
            b[at:at] = bytes([arg]) * (1 + arg % 7)
    return bytes(b)


byte_ops = st.lists(st.tuples(st.sampled_from(["flip", "flip", "truncate", "insert"]),
                              st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=3)


@given(target=st.sampled_from(["json", "npz", "npz vouched"]), ops=byte_ops)
def test_damaged_bytes_are_refused_or_harmless(original, target, ops):
    files = original["files"]
    js, npz = names(files)
    if target == "json":
        damaged = {**files, js: _damage(files[js], ops)}
    elif target == "npz":
        damaged = {**files, npz: _damage(files[npz], ops)}
    else:
        damaged = vouch(files, _damage(files[npz], ops))
    result = outcome(damaged, original)
    if target == "npz" and damaged[npz] != files[npz]:
        assert result is None, "a changed npz whose hash no longer matches was loaded"
    assert_refused_or_identical(result, original)


def _zip_header_offsets(npz: bytes) -> list[int]:
    """Every byte of the first member's local header and .npy header, of its central
    directory entry, and of the end-of-directory record: where a flip is most interesting."""
    first_name_len = struct.unpack("<H", npz[26:28])[0]
    local = range(0, 30 + first_name_len + 64)
    central = npz.find(b"PK\x01\x02")
    end = npz.rfind(b"PK\x05\x06")
    return [*local, *range(central, central + 46 + first_name_len), *range(end, len(npz))]


def test_every_header_byte_flipped_is_refused_or_harmless(original):
    files = original["files"]
    npz = files[names(files)[1]]
    for at in _zip_header_offsets(npz)[::3]:
        damaged = bytearray(npz)
        damaged[at] ^= 0xFF
        assert_refused_or_identical(outcome(vouch(files, bytes(damaged)), original), original)


# =========================================================================== edited JSON fields

json_values = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, -1, 1, 7, 8, 2**31, 2**63, 10**30, -(10**30)])
    | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["transformer", "lstm", "ngram", "model/wte.weight", "weights-00000005-00000000.npz"])
    | st.just({"__array__": "model/wte.weight"}) | st.just({"__tuple__": 5}),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def _paths(obj, path=()):
    """The path to every value in ``obj`` (the whole excluded)."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield (*path, k)
        yield from _paths(v, (*path, k))


@given(data=st.data())
def test_edited_json_fields_are_refused_or_harmless(original, data):
    files = original["files"]
    js = names(files)[0]
    meta = json.loads(files[js])
    paths = sorted(_paths(meta), key=repr)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(paths), label="path")
        *parent_path, key = path
        parent = meta
        for k in parent_path:
            parent = parent[k]
        how = data.draw(st.sampled_from(["replace", "replace", "remove", "twice"]), label="how")
        if how == "replace":
            parent[key] = data.draw(json_values, label="value")
        elif how == "remove":
            del parent[key]
        elif isinstance(parent, dict):                  # "twice": the key again, a new value after it
            value = data.draw(json_values, label="second value")
            text = json.dumps(meta)
            marker = json.dumps({key: parent[key]})[1:-1]
            assert marker in text
            text = text.replace(marker, f"{marker}, {json.dumps({key: value})[1:-1]}", 1)
            result = outcome({**files, js: text.encode()}, original)
            assert result is None, f"the key {key!r} twice in one object was accepted"
            return
        paths = sorted(_paths(meta), key=repr)
        if not paths:
            break
    assert_refused_or_identical(outcome({**files, js: json.dumps(meta).encode()}, original), original)


# =========================================================================== edited npz structure

def _members(npz: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(npz)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _zip(members: list[tuple[str, bytes]], method=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", method) as z:
        warnings.simplefilter("ignore")                   # a duplicate name
        for name, data in members:
            z.writestr(name, data)
    return buffer.getvalue()


def _npy(descr, fortran, shape, data: bytes) -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def _parts(member: bytes) -> tuple[str, bool, tuple, bytes]:
    a = np.load(io.BytesIO(member))
    return a.dtype.str, False, a.shape, member[len(member) - a.nbytes:]


descrs = st.sampled_from(["<f4", "<f8", "<f2", "<i4", "<u4", "<i8", "|b1", "|u1", ">f4", "=f4", "<c8",
                          "|O", "<U1", "<M8[s]", "|V4", "f4", "<f4 ", [("a", "<f4")], [("a", "|O")]])
dims = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 24, 32, 10**9, 2**62, 10**30])


@given(data=st.data())
def test_edited_npz_structure_is_refused_or_harmless(original, data):
    files = original["files"]
    members = _members(files[names(files)[1]])
    parts = {name: _parts(member) for name, member in members}   # as saved: (descr, fortran, shape, data)
    method = zipfile.ZIP_STORED
    for _ in range(data.draw(st.integers(1, 2), label="edits")):
        if not members:
            break
        i = data.draw(st.integers(0, len(members) - 1), label="member")
        name, member = members[i]
        descr, fortran, shape, raw = parts.get(name, ("<f4", False, (), member))
        how = data.draw(st.sampled_from(["shape", "dtype", "order", "duplicate", "rename", "remove",
                                         "compress"]), label="how")
        if how == "shape":
            shape = data.draw(st.one_of(st.lists(dims, max_size=3),
                                        st.permutations(list(shape)),
                                        st.just([math.prod(shape)])), label="shape")
            members[i] = (name, _npy(descr, fortran, shape, raw))
        elif how == "dtype":
            members[i] = (name, _npy(data.draw(descrs, label="descr"), fortran, shape, raw))
        elif how == "order":
            members[i] = (name, _npy(descr, not fortran, shape, raw))
        elif how == "duplicate":
            members.append((name, data.draw(st.sampled_from([member, member[:-1] + b"\x01"]))))
        elif how == "rename":
            new = data.draw(st.sampled_from([n for n, _ in members]) | st.text(min_size=1, max_size=12)
                            | st.just(name[:-4]) | st.just(name + ".npy"), label="new name")
            members[i] = (new, member)
        elif how == "remove":
            del members[i]
        else:
            method = zipfile.ZIP_DEFLATED
    try:
        npz = _zip(members, method)
    except (ValueError, UnicodeEncodeError):              # a name zipfile itself cannot write
        return
    assert_refused_or_identical(outcome(vouch(files, npz), original), original)

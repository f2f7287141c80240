"""Fuzzing the checkpoint loader: a real checkpoint, damaged at random, either loads exactly
as it was saved or is refused with a ``CheckpointError`` naming one of its files, quickly
and within a small memory budget.

The checkpoint is a small Transformer's, saved by ``save_checkpoint`` with everything a
training run stores (AdamW moments, tokenizer, carried state, RNG state, metrics): format
version 2, ``checkpoint.json``, ``model.safetensors`` and a ``state-*.safetensors``. The damage:

    bytes   flips, truncations and insertions in any of the three files; a damaged
            safetensors file either as it is (its SHA-256 no longer matches: it must be
            refused) or, with the damage inside its length and header, vouched for (the
            JSON's size and hash updated, so only the reader's own checks stand in the way).
            A safetensors file has no checksum of its own: damage to the data bytes of a
            vouched-for file is undetectable by design, and the JSON's SHA-256 guards them
    json    a field replaced by a random JSON value (wrong types, huge ints, NaN, nesting),
            removed, or its key written twice
    header  a safetensors header's entries edited (dtype, shape, data_offsets, their keys),
            removed, renamed, added or written twice, its metadata replaced, its length or
            padding changed, bytes added to or cut from the data; every such file vouched
    npz     (version 1, which still loads) a member's header shape, dtype or order edited, a
            member duplicated, renamed, removed or compressed, on the version-1 checkpoint
            made from the same one (``checkpoint_files.to_version_1``); every archive vouched

"Exactly as it was saved": the model that ``load_model`` builds holds bitwise the original
weights, and the checkpoint holds the original arrays (the same bytes). Each case runs
under ``bounded``: at most ``SECONDS``, and a peak of traced allocation below ``MEMORY``
(a small multiple of the files' size); on Linux the address space is capped as well, so a
loader that asks for gigabytes fails at once instead of swapping.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import re
import shutil
import signal
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from checkpoint_files import join_safetensors, split_safetensors, to_version_1
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from lmroad.checkpoint import CHECKPOINT_FILE, MODEL_FILE, CheckpointError, load_model, save_checkpoint
from lmroad.data import CharTokenizer
from lmroad.models import TransformerLM
from minigrad import optim

try:
    import resource  # POSIX only: elsewhere the address space is not capped
except ImportError:
    resource = None

SECONDS = 3.0                    # per case; a clean load takes a few milliseconds


# =========================================================================== the checkpoint

def _saved(directory: Path) -> dict:
    """The files of the checkpoint in ``directory`` (name -> bytes) and what loading them gives."""
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    weights, arrays = load(directory)
    size = sum(map(len, files.values()))
    return {"files": files, "weights": weights, "arrays": arrays, "size": size,
            "memory": _memory_budget(size)}


@pytest.fixture(scope="module")
def saved_directory(tmp_path_factory) -> Path:
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
    return directory


@pytest.fixture(scope="module")
def original(saved_directory) -> dict:
    """The version-2 checkpoint: its files and what loading them gives."""
    return _saved(saved_directory)


@pytest.fixture(scope="module")
def original_v1(saved_directory, tmp_path_factory) -> dict:
    """The same checkpoint as version 1 wrote it: one npz."""
    directory = tmp_path_factory.mktemp("original_v1") / "ck"
    shutil.copytree(saved_directory, directory)
    to_version_1(directory)
    return _saved(directory)


def _memory_budget(size: int) -> int:
    """Bytes a load may allocate at its peak: 8 times the files, plus 1 MiB for building the
    model and the Python objects of the JSON (a clean load of the checkpoint here peaks at
    about 4 times its files)."""
    return 8 * size + (1 << 20)


def load(directory: Path) -> tuple[dict[str, np.ndarray], list[bytes]]:
    """(the built model's weights, every distinct array of the checkpoint as bytes, sorted)."""
    model, ckpt = load_model(directory)
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    parts = [ckpt.weights, ckpt.tokenizer, ckpt.optimizer, ckpt.data_state, ckpt.rng_state,
             ckpt.train_config, ckpt.metrics, ckpt.extra]
    distinct = {id(a): a for a in _arrays_in(parts)}     # an array the JSON names twice counts once
    return weights, sorted(a.tobytes() for a in distinct.values())


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


def names(files: dict[str, bytes]) -> tuple[str, str, str]:
    """(the JSON, the model file, the state file) of a version-2 checkpoint."""
    return CHECKPOINT_FILE, MODEL_FILE, next(n for n in files if n.startswith("state-"))


def vouch(files: dict[str, bytes], name: str, raw: bytes) -> dict[str, bytes]:
    """``files`` with file ``name`` replaced by ``raw`` and the JSON's size and hash updated for it."""
    meta = json.loads(files[CHECKPOINT_FILE])
    prefix = "state" if name == meta.get("state_file") else "weights"
    assert meta[f"{prefix}_file"] == name
    meta.update({f"{prefix}_bytes": len(raw), f"{prefix}_sha256": hashlib.sha256(raw).hexdigest()})
    return {**files, name: raw, CHECKPOINT_FILE: json.dumps(meta).encode()}


def _header_end(raw: bytes) -> int:
    """Where a safetensors file's data starts: after its length and its header."""
    return 8 + struct.unpack("<Q", raw[:8])[0]


def test_the_undamaged_checkpoint_loads_as_saved(original, original_v1):
    v2, v1 = outcome(original["files"], original), outcome(original_v1["files"], original_v1)
    assert v2 is not None and v1 is not None
    assert_refused_or_identical(v2, original)
    assert_refused_or_identical(v1, {**original, "arrays": v1[1]})    # the two versions: the same model


# =========================================================================== damaged bytes

def _damage(data: bytes, ops, limit: int | None = None) -> bytes:
    """``data`` with ``ops`` applied, each at a position below ``limit`` (default: anywhere)."""
    b = bytearray(data)
    for op, at, arg in ops:
        at = at % ((len(b) if limit is None else min(limit, len(b))) + 1)
        if op == "flip" and at < len(b):
            b[at] ^= arg or 1
        elif op == "truncate":
            del b[at:]
        elif op == "insert":
            b[at:at] = bytes([arg]) * (1 + arg % 7)
    return bytes(b)


byte_ops = st.lists(st.tuples(st.sampled_from(["flip", "flip", "truncate", "insert"]),
                              st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=3)


@given(target=st.sampled_from(["json", "model", "state", "model header vouched", "state header vouched"]),
       ops=byte_ops)
def test_damaged_bytes_are_refused_or_harmless(original, target, ops):
    files = original["files"]
    js, model, state = names(files)
    name = {"json": js, "model": model, "state": state}[target.split()[0]]
    if target.endswith("vouched"):
        damaged = vouch(files, name, _damage(files[name], ops, limit=_header_end(files[name])))
    else:
        damaged = {**files, name: _damage(files[name], ops)}
    result = outcome(damaged, original)
    if target in ("model", "state") and damaged[name] != files[name]:
        assert result is None, f"a changed {name} whose hash no longer matches was loaded"
    assert_refused_or_identical(result, original)


FLIPS = (0x01, 0x20, 0x80, 0x02, 0x10)          # a digit to a digit, a letter's case, out of ASCII, ...


@pytest.mark.parametrize("which", ["model", "state"])
def test_every_header_byte_flipped_is_refused_or_harmless(original, which):
    files = original["files"]
    name = names(files)[1 if which == "model" else 2]
    raw = files[name]
    for i, at in enumerate(range(0, _header_end(raw), 7)):
        damaged = bytearray(raw)
        damaged[at] ^= FLIPS[i % len(FLIPS)]
        assert_refused_or_identical(outcome(vouch(files, name, bytes(damaged)), original), original)


# =========================================================================== edited JSON fields

json_values = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, -1, 1, 7, 8, 2**31, 2**63, 10**30, -(10**30)])
    | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["transformer", "lstm", "ngram", "model/wte.weight", "wte.weight", "lm_head.weight",
                       "model.safetensors", "state-00000005-00000000.safetensors",
                       "weights-00000005-00000000.npz", "optimizer/state/0/exp_avg"])
    | st.just({"__array__": "model/wte.weight"}) | st.just({"__array__": "optimizer/state/0/exp_avg"})
    | st.just({"__tuple__": 5}) | st.just({"lm_head.weight": "wte.weight"}),
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
            parent[key] = copy.deepcopy(data.draw(json_values, label="value"))   # st.just's: shared
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


# =========================================================================== edited safetensors headers

# dtypes an entry may be given: the readable ones (BF16 aside: it is read as float32, so a
# BF16 entry whose shape also doubled would be a consistent file of other values, which no
# check could tell from the original) and ones no reader takes
dtype_values = st.sampled_from(["F32", "F16", "F64", "I8", "U8", "I16", "U16", "I32", "U32", "I64", "U64",
                                "BOOL", "F8_E4M3", "C64", "f32", "float32", "", None, 3, ["F32"],
                                {"F32": 1}])
dims = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 24, 32, 10**9, 2**62, 2**64, 10**30])


def _offset_values(begin: int, end: int, total: int):
    return st.sampled_from([0, begin, end, total, begin + 4, end - 4, 10**30, -1, 1.5, "0", None]) \
        | st.integers(0, 2**64)


@given(data=st.data())
def test_edited_safetensors_headers_are_refused_or_harmless(original, data):
    files = original["files"]
    name = data.draw(st.sampled_from(names(files)[1:]), label="file")
    header, payload = split_safetensors(files[name])
    entries = [k for k in header if k != "__metadata__"]
    layout, shrink = "as written", None
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        key = data.draw(st.sampled_from(entries), label="entry")
        entry = header.get(key)
        how = data.draw(st.sampled_from(["dtype", "shape", "offsets", "entry keys", "remove", "rename",
                                         "add", "twice", "metadata", "data", "layout"]), label="how")
        if how in ("dtype", "shape", "offsets", "entry keys") and not isinstance(entry, dict):
            continue
        if how == "dtype":
            entry["dtype"] = data.draw(dtype_values, label="dtype")
        elif how == "shape":
            shape = entry.get("shape") if isinstance(entry.get("shape"), list) else []
            entry["shape"] = data.draw(st.one_of(st.lists(dims, max_size=3), st.permutations(shape),
                                                 st.just([math.prod(shape)]), st.just([*shape, 1]),
                                                 st.just([0, *shape])), label="shape")
        elif how == "offsets":
            offsets = entry.get("data_offsets")
            begin, end = offsets if isinstance(offsets, list) and len(offsets) == 2 else (0, 0)
            values = _offset_values(begin, end, len(payload))
            entry["data_offsets"] = data.draw(st.lists(values, min_size=0, max_size=3), label="offsets")
        elif how == "entry keys":
            change = data.draw(st.sampled_from(["remove", "add"]), label="change")
            if change == "remove":
                del entry[data.draw(st.sampled_from(sorted(entry)), label="key")]
            else:
                entry[data.draw(st.sampled_from(["dtype2", "offsets", "", "Dtype"]), label="key")] = 1
        elif how == "remove":
            header.pop(key, None)
        elif how == "rename":
            new = data.draw(st.sampled_from(entries) | st.text(max_size=12) | st.just(key + "x")
                            | st.just("__metadata__") | st.just(key.upper()), label="new name")
            header[new] = header.pop(key, None)
        elif how == "add":
            size = data.draw(st.sampled_from([0, 1, 4, 224]), label="size")
            at = data.draw(st.sampled_from([0, 4, len(payload)]), label="at")
            if at == len(payload) and data.draw(st.booleans(), label="with data"):
                payload += b"\0" * size
            header[data.draw(st.sampled_from(["extra/new", "optimizer/state/0/exp_avg", "wte.weight",
                                              "lm_head.weight", "model/lm_head.weight"]), label="name")] = \
                {"dtype": "U8", "shape": [size], "data_offsets": [at, at + size]}
        elif how == "twice" and key in header:        # the entry again: must be refused
            first = json.dumps({key: header[key]})[1:-1]
            text = json.dumps(header).replace(first, f"{first}, {first}", 1)
            assert outcome(vouch(files, name, join_safetensors(text, payload)), original) is None, \
                f"the entry {key!r} twice in the header of {name} was accepted"
            return
        elif how == "metadata":
            strings = st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)
            header["__metadata__"] = copy.deepcopy(data.draw(json_values | strings, label="metadata"))
        elif how == "data":                            # one way only: cut, then grown back, is new data
            if shrink is None:
                shrink = data.draw(st.booleans(), label="cut")
            n = data.draw(st.integers(1, 8), label="bytes")
            payload = payload[:-n] if shrink else payload + b"\0" * n
        elif how == "layout":
            layout = data.draw(st.sampled_from(["no padding", "a space first", "a tab last"]), label="layout")
    text = json.dumps(header)
    text = {"a space first": " " + text, "a tab last": text + "\t"}.get(layout, text)
    raw = join_safetensors(text, payload, pad=layout != "no padding")
    assert_refused_or_identical(outcome(vouch(files, name, raw), original), original)


# =========================================================================== version 1: edited npz structure

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


def _npz_name(files: dict[str, bytes]) -> str:
    return next(n for n in files if n.endswith(".npz"))


@given(data=st.data())
def test_edited_npz_structure_of_a_version_1_checkpoint_is_refused_or_harmless(original_v1, data):
    files = original_v1["files"]
    members = _members(files[_npz_name(files)])
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
        elif how == "remove":                           # every member of that name: else a duplicate
            members = [(n, m) for n, m in members if n != name]   # left alone is a vouched new value
        else:
            method = zipfile.ZIP_DEFLATED
    try:
        npz = _zip(members, method)
    except (ValueError, UnicodeEncodeError):              # a name zipfile itself cannot write
        return
    meta = json.loads(files[CHECKPOINT_FILE])
    meta.update(weights_bytes=len(npz), weights_sha256=hashlib.sha256(npz).hexdigest())
    damaged = {**files, _npz_name(files): npz, CHECKPOINT_FILE: json.dumps(meta).encode()}
    assert_refused_or_identical(outcome(damaged, original_v1), original_v1)

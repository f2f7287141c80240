"""Checkpoints: one directory per run, no pickle anywhere, crash-safe writes.

    out/lstm/
        checkpoint.json                          what was saved, and the names, sizes and hashes
                                                 of the two weights files that belong to it
        model.safetensors                        the model's weights, a tied weight stored once:
                                                 the file other tools read (a stable name)
        state-00001200-3f9a1c2e.safetensors      every other array: optimizer moments, a carried
                                                 hidden state, ... (absent if there is none)
        metrics.jsonl                            the run's log, one JSON record per line (lmroad.train)
        best/                                    the same layout: the checkpoint with the lowest val loss

``checkpoint.json`` holds the model kind and config, the tokenizer, the step,
the data position (the batcher's state), the RNG state, the training config,
the metrics, the optimizer's hyperparameters, and the name, size and SHA-256
of each weights file. Arrays never go into the JSON: any array in a saved
structure (optimizer moments, a carried hidden state) is stored in the state
file under a prefixed key (``optimizer/...``, ``data/...``, ``extra/...``)
and the JSON holds ``{"__array__": key}`` in its place. Weights that are one
Parameter under two names (``lm_head.weight`` *is* ``wte.weight``) are
stored once, under the first name; ``model.tied`` in the JSON maps the
second to the first.

Why safetensors: its header is JSON and its data plain bytes, so a file can
be read without trusting it (``lmroad.safetensors_file``: no pickle, every
size checked before anything is allocated), and every tool of the field
reads it (``safetensors.numpy.load_file("out/lstm/model.safetensors")``).
Checkpoints written before (format version 1: one ``weights-*.npz`` holding
everything) still load, through ``lmroad.npz_reader``.

Crash safety. Every file is written to a temporary file in the same
directory, flushed and fsynced, then renamed over its final name with
``os.replace`` (atomic on POSIX and Windows). A save writes, in order:

  1. the state file, under a name no earlier save used;
  2. ``checkpoint.next.json``, the new JSON (naming the new files);
  3. ``model.safetensors``, over the old one;
  4. ``checkpoint.next.json`` renamed to ``checkpoint.json``: the commit.

``model.safetensors`` keeps its name, so replacing it destroys the old
weights: everything the new checkpoint needs is in place before that. A
crash before step 3 leaves the old JSON and the old files, which match; a
crash after it leaves ``checkpoint.next.json`` and the new files, which
match, and the loader takes them (the next save commits that JSON before it
writes its own, and finishes the tidying). Files that no JSON names (an
interrupted save's) are removed by the next save.

Loading trusts nothing in the files, and checks everything before anything
is allocated or used. Each problem raises one ``CheckpointError`` that names
the file, what was found and what was expected; nothing else escapes for a
bad file, and nothing is half-loaded (a failed load leaves the model as it
was). What is checked, in order:

  checkpoint.json  a regular file of at most 64 MiB, UTF-8 JSON, no key twice in
                   one object, nested at most 64 deep; ``format``, ``version``;
                   ``step`` an int in [0, 2**63); ``weights_file``
                   ``model.safetensors`` and ``state_file`` a plain name in this
                   directory (version 1: one ``weights-*.npz``); their sizes and
                   SHA-256; ``model.tied`` names listed weights; ``metrics`` an
                   object (``best``: val_loss a finite number or null, step an int
                   or null); ``train_config`` an object or null; the tokenizer one
                   ``lmroad.data`` can rebuild, with no more tokens than the
                   model's vocab_size.
  model config     for a kind in ``lmroad.models.MODELS``: only its config
                   dataclass's fields, each of its type (ints: 1 to 2**31 - 1;
                   floats: finite; no bool for a number, no number for a bool),
                   then the dataclass's own checks (ranges such as dropout in [0, 1)).
  weights files    regular files of exactly the size the JSON gives whose SHA-256
                   matches, each starting as its format does (a pickle renamed is
                   refused by its first bytes); then the header: for safetensors
                   ``lmroad.safetensors_file`` (dtypes plain numbers, shapes
                   matching byte ranges that tile the data), for an npz
                   ``lmroad.npz_reader`` (unique uncompressed members whose
                   headers are plain arrays matching their sizes): all from the
                   headers, before any data is read.
  weights          exactly the names ``checkpoint.json`` lists (in the model file;
                   the state file holds none, a tied alias included); for a known kind
                   exactly the names, shapes and dtype kinds its config implies
                   (``lmroad.weight_shapes``), before the model is built, so a
                   config claiming n_embd=10**9 or n_layer=10**9 costs nothing;
                   float arrays finite.
  references       every ``{"__array__": key}`` names an array of the state file,
                   every array is named by the JSON, tagged objects are well
                   formed and a restored dict has no key twice.

For a model kind lmroad does not know (saved with ``model_kind=``) the
config is not checked; the arrays are still bounded by the files' sizes.
Weights are stored as host arrays, so a checkpoint saved on one device loads
on any other.

The metrics log is read back by ``read_metrics_log`` (a bad line is a
``CheckpointError`` naming the file and line) and, when a run resumes, by
``truncate_metrics_log``, which keeps what it can and warns about each line
it drops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minigrad import backend, nn
from minigrad.tensor import Tensor

from .data import tokenizer_from_dict
from .models import MODELS
from .npz_reader import ArchiveError, NpzArchive
from .safetensors_file import SafetensorsError, SafetensorsFile, to_bytes
from .weight_shapes import KINDS, expected_weights

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "read_checkpoint", "load_model",
           "restore_model", "has_checkpoint", "CHECKPOINT_FILE", "MODEL_FILE", "read_metrics_log",
           "truncate_metrics_log"]

CHECKPOINT_FILE = "checkpoint.json"
MODEL_FILE = "model.safetensors"
NEXT_FILE = "checkpoint.next.json"     # a save's new JSON, until it is renamed to CHECKPOINT_FILE
FORMAT = "lmroad-checkpoint"
VERSION = 2                            # 2: model.safetensors + a state file; 1: one weights-*.npz
_NPZ_NAME = re.compile(r"weights-\d{8,}-[0-9a-f]{8}\.npz")          # version 1's weights file
_STATE_NAME = re.compile(r"state-\d{8,}-[0-9a-f]{8}\.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TMP_PREFIX = ".tmp-"
_ZIP_MAGIC = b"PK\x03\x04"
_ARRAY_KINDS = "fiub"  # float, signed, unsigned, bool: nothing that could hold objects
_MAX_JSON_BYTES = 64 << 20       # checkpoint.json holds no arrays: a tokenizer's vocabulary at most
_MAX_JSON_DEPTH = 64             # containers inside containers; what lmroad saves nests < 10 deep
_MAX_SIZE = 2**31 - 1            # any int in a model config (every one is a size)
_MAX_STEP = 2**63 - 1
_TAGS = ("__array__", "__tuple__", "__items__")


class CheckpointError(Exception):
    """A checkpoint cannot be saved or used: missing, corrupt, unsafe or not for this model."""


@dataclass
class Checkpoint:
    """Everything a checkpoint directory holds, read and checked, arrays on the host."""

    directory: Path
    model_kind: str
    model_config: dict
    weights: dict[str, np.ndarray]
    step: int = 0
    tokenizer: dict | None = None
    optimizer: Any = None
    data_state: Any = None
    rng_state: Any = None
    train_config: dict | None = None
    metrics: dict = field(default_factory=dict)
    extra: Any = None

    @property
    def json_path(self) -> Path:
        return self.directory / CHECKPOINT_FILE


# --------------------------------------------------------------------------- nested state <-> JSON + arrays

def _pack(obj: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able copy of ``obj``; arrays and tensors go into ``arrays`` under ``key``-based names.

    Dicts with string keys stay objects; dicts with other keys (the
    optimizer numbers its parameters) and tuples are tagged so they come
    back as they went in. Arrays are stored little-endian in C order, the
    only layout the loader accepts."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if backend.is_array(obj):
        host = np.array(backend.to_host(obj), order="C")   # a copy: later training must not change it
        if host.dtype.kind not in _ARRAY_KINDS:
            raise CheckpointError(f"cannot save {key}: arrays of dtype {host.dtype} are not allowed "
                                  "(checkpoints hold numeric arrays only)")
        host = host.astype(host.dtype.newbyteorder("<"), copy=False)   # a no-op on little-endian hosts
        if host.dtype.kind == "f" and not np.isfinite(host).all():
            raise CheckpointError(f"refusing to save {key}: it holds NaN or inf (training diverged?); "
                                  "the previous checkpoint is kept")
        if key in arrays:                                # "a/b" as a key and as a path
            key = f"{key}#{len(arrays)}"
        arrays[key] = host
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_pack(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _pack(v, f"{key}/{k}", arrays) for k, v in obj.items()}
        return {"__items__": [[_pack(k, f"{key}/k{i}", arrays), _pack(v, f"{key}/{i}", arrays)]
                              for i, (k, v) in enumerate(obj.items())]}
    raise CheckpointError(f"cannot save {key}: a {type(obj).__name__} is not JSON and not an array")


def _unpack(obj: Any, arrays: dict[str, np.ndarray], where: str, used: set[str]) -> Any:
    """``_pack``'s inverse, checking every tag on the way; the array keys it meets go into ``used``."""
    if isinstance(obj, list):
        return [_unpack(v, arrays, where, used) for v in obj]
    if not isinstance(obj, dict):
        return obj
    tags = [k for k in obj if k.startswith("__")]
    if not tags:
        return {k: _unpack(v, arrays, where, used) for k, v in obj.items()}
    if len(obj) != 1 or tags[0] not in _TAGS:
        raise CheckpointError(f"{where}: an object with keys {sorted(obj)[:5]}; an object with a key "
                              f"starting '__' must be exactly one of {list(_TAGS)}")
    ((tag, value),) = obj.items()
    if tag == "__array__":
        if not isinstance(value, str) or value not in arrays:
            raise CheckpointError(f"{where}: names array {value!r:.80}, which the weights file does "
                                  "not hold")
        used.add(value)
        return arrays[value]
    if tag == "__tuple__":
        if not isinstance(value, list):
            raise CheckpointError(f"{where}: '__tuple__' holds a {type(value).__name__}, expected a list")
        return tuple(_unpack(v, arrays, where, used) for v in value)
    if not (isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value)):
        raise CheckpointError(f"{where}: '__items__' must be a list of [key, value] pairs, got "
                              f"{value!r:.80}")
    out = {}
    for k, v in value:
        key = _unpack(k, arrays, where, used)
        try:
            seen = key in out
        except TypeError:
            raise CheckpointError(f"{where}: a dict key {k!r:.80} is not hashable") from None
        if seen:
            raise CheckpointError(f"{where}: the dict key {key!r:.80} appears twice")
        out[key] = _unpack(v, arrays, where, used)
    return out


def _depth(obj: Any) -> int:
    """How deep containers nest in ``obj`` (0 for a scalar), counted without recursion."""
    deepest, todo = 0, [(obj, 1)]
    while todo and deepest <= _MAX_JSON_DEPTH:
        o, d = todo.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            todo.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


# --------------------------------------------------------------------------- atomic writes

def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(directory: Path, write) -> Path:
    """``write(file)`` into a new temporary file in ``directory``, flushed and fsynced."""
    tmp = directory / f"{_TMP_PREFIX}{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` so that readers see the old file or the complete new one, never a part."""
    tmp = _write_temp(path.parent, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------- what a model config implies

def _field_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand in a config field whose default is ``default`` (None if it can)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_SIZE
        return None if ok else f"expected an int from 1 to {_MAX_SIZE}"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "expected a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "expected a string"
    return None


def _config_object(where: str, kind: str, config: dict) -> Any:
    """The config dataclass of a ``kind`` model that ``config`` (a dict, e.g. from JSON)
    describes, each field checked for type and range; nothing is allocated."""
    cls = MODELS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    merged = {**cls.config_defaults, **config}
    unknown = sorted(k for k in merged if k not in fields)
    if unknown:
        raise CheckpointError(f"{where}: the {kind} model config has unknown fields {unknown[:10]}; "
                              f"a {cls.config_class.__name__} has {sorted(fields)}")
    problems = []
    for name, value in merged.items():
        problem = _field_problem(value, fields[name].default)
        if problem:
            problems.append(f"{name}: {problem}, got {value!r:.40}")
    if problems:
        raise CheckpointError(f"{where}: the {kind} model config is invalid: " + "; ".join(problems))
    try:
        return cls.config_class(**merged)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: the {kind} model config is invalid: {e}") from None


def _fits(got: tuple[int, ...], want: tuple, free: dict[str, int]) -> bool:
    """Does shape ``got`` match ``want``? Ints must be equal; a letter takes the size it
    first meets (kept in ``free``) and must have it wherever it appears again."""
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if isinstance(w, str):
            w = free.setdefault(w, g)
        if g != w:
            return False
    return True


def _check_weights_fit(where: str, kind: str, config: Any,
                       stored: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """``stored`` (weight name -> (shape, dtype)) must be exactly what a ``kind`` model with
    ``config`` holds: its names, shapes and dtype kinds (``lmroad.weight_shapes``)."""
    implied = dict((name, (shape, kinds)) for name, shape, kinds
                   in itertools.islice(expected_weights(kind, config), len(stored) + 1))
    sizes = ", ".join(f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)
                      if _is_int(getattr(config, f.name), 0, _MAX_SIZE))
    the_config = f"the {kind} model config ({sizes})"
    if len(implied) > len(stored):
        raise CheckpointError(f"{where}: {the_config} implies more weights than the {len(stored)} "
                              "the file holds")
    missing = [n for n in implied if n not in stored]
    unexpected = [n for n in stored if n not in implied]
    if missing or unexpected:
        raise CheckpointError(f"{where}: the weights do not match {the_config}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    free: dict[str, int] = {}                # sizes the config leaves open, e.g. N1
    problems = []
    for name, (want, kinds) in implied.items():
        got, dtype = stored[name]
        if dtype.kind not in kinds:
            problems.append(f"{name} has dtype {dtype}, expected "
                            f"{'floating point' if kinds == 'f' else 'integer'}")
        if not _fits(tuple(got), want, free):
            shown = tuple(free.get(w, w) if isinstance(w, str) else w for w in want)
            problems.append(f"{name} has shape {tuple(got)}, the config implies {shown}")
    if problems:
        raise CheckpointError(f"{where}: the weights do not fit {the_config}: " + "; ".join(problems[:5]))


def _check_model(where: str, kind: str, config: dict,
                 stored: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """For a kind lmroad knows: its config valid and ``stored`` the weights it implies."""
    if kind in MODELS and kind in KINDS:
        _check_weights_fit(where, kind, _config_object(where, kind, config), stored)


# --------------------------------------------------------------------------- saving

def _model_identity(model, model_kind: str | None, model_config: dict | None) -> tuple[str, dict]:
    kind = model_kind if model_kind is not None else getattr(model, "model_type", None)
    if kind is None:
        raise CheckpointError(f"save_checkpoint: {type(model).__name__} has no model_type; pass model_kind=")
    if model_config is None:
        cfg = getattr(model, "config", None)
        if cfg is None or not dataclasses.is_dataclass(cfg):
            raise CheckpointError(f"save_checkpoint: {type(model).__name__} has no dataclass config; "
                                  "pass model_config=")
        model_config = dataclasses.asdict(cfg)
    return kind, {k: v.item() if isinstance(v, np.generic) else v for k, v in model_config.items()}


def _model_arrays(model) -> tuple[dict[str, np.ndarray], list[str], dict[str, str]]:
    """(arrays to store by weight name, every weight name, tied name -> the name it is stored
    under): a Parameter that appears under several names is stored once."""
    arrays: dict[str, np.ndarray] = {}
    names, tied, first = [], {}, {}
    for name, t in model.state_dict().items():
        names.append(name)
        key = id(t.data)                       # the same Parameter: the same array under each name
        if key in first:
            tied[name] = first[key]
            continue
        first[key] = name
        packed: dict[str, np.ndarray] = {}
        _pack(t, f"model/{name}", packed)
        arrays[name] = packed[f"model/{name}"]
    return arrays, names, tied


def _commit_pending(directory: Path) -> None:
    """Commit the ``checkpoint.next.json`` of a save that crashed after replacing
    ``model.safetensors``, when the loader would take it (the committed JSON's files do not
    match, its do): the save about to start overwrites that file before it replaces the
    weights, and a crash in between would leave no JSON that matches them."""
    pending, committed = directory / NEXT_FILE, directory / CHECKPOINT_FILE
    if not (pending.is_file() and committed.is_file()):
        return
    for path in (committed, pending):
        try:
            _read_named(path, _read_json(path))
        except (_Mismatch, CheckpointError):
            continue
        if path == pending:
            os.replace(pending, committed)
            _fsync_dir(directory)
        return


def save_checkpoint(directory: str | os.PathLike, model, *, step: int = 0, tokenizer=None,
                    optimizer=None, data_state: Any = None, rng_state: Any = None,
                    train_config: dict | None = None, metrics: dict | None = None,
                    extra: Any = None, model_kind: str | None = None,
                    model_config: dict | None = None) -> Path:
    """Write a checkpoint into ``directory`` (created if needed); returns the JSON's path.

    ``tokenizer`` may be a tokenizer (its ``to_dict()`` is stored) or a dict;
    ``optimizer`` an optimizer (its ``state_dict()``) or a state dict.
    ``data_state``, ``rng_state`` and ``extra`` are any nesting of dicts,
    lists, tuples, numbers, strings and arrays (arrays go to the state file).
    What the loader would refuse (a config or weights that do not fit, a JSON
    over its limits) is refused here, before anything is written."""
    directory = Path(directory)
    kind, config = _model_identity(model, model_kind, model_config)

    weights, weight_names, tied = _model_arrays(model)
    _check_model(f"save_checkpoint({directory})", kind, config,
                 {n: (weights[tied.get(n, n)].shape, weights[tied.get(n, n)].dtype) for n in weight_names})
    state: dict[str, np.ndarray] = {}
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    tok = tokenizer.to_dict() if hasattr(tokenizer, "to_dict") else tokenizer
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"kind": kind, "config": config, "weights": weight_names, "tied": tied},
        "step": int(step),
        "tokenizer": _pack(tok, "tokenizer", state),
        "optimizer": _pack(opt_state, "optimizer", state),
        "data_state": _pack(data_state, "data", state),
        "rng_state": _pack(rng_state, "rng", state),
        "train_config": _pack(train_config, "train_config", state),
        "metrics": _pack(metrics or {}, "metrics", state),
        "extra": _pack(extra, "extra", state),
    }
    model_raw = to_bytes(weights, {"format": "np", "producer": "lmroad"})
    state_raw = to_bytes(state) if state else None
    state_name = f"state-{int(step):08d}-{os.urandom(4).hex()}.safetensors" if state else None
    meta.update(weights_file=MODEL_FILE, weights_bytes=len(model_raw),
                weights_sha256=hashlib.sha256(model_raw).hexdigest(), state_file=state_name,
                state_bytes=len(state_raw) if state else 0,
                state_sha256=hashlib.sha256(state_raw).hexdigest() if state else None)
    text = json.dumps(meta, indent=1).encode("utf-8")
    if len(text) > _MAX_JSON_BYTES or _depth(meta) > _MAX_JSON_DEPTH:
        raise CheckpointError(f"cannot save to {directory}: {CHECKPOINT_FILE} would be {len(text)} "
                              f"bytes nested {_depth(meta)} deep; the limits are {_MAX_JSON_BYTES} "
                              f"bytes and {_MAX_JSON_DEPTH} levels (store big data as arrays)")

    # the order that keeps a matching JSON and files at every moment (the module docstring)
    directory.mkdir(parents=True, exist_ok=True)
    _commit_pending(directory)                                                       # 0. a crashed save's
    if state_raw is not None:
        _atomic_write(directory / state_name, lambda f: f.write(state_raw))          # 1. new name
    _atomic_write(directory / NEXT_FILE, lambda f: f.write(text))                    # 2. the new JSON
    _atomic_write(directory / MODEL_FILE, lambda f: f.write(model_raw))             # 3. the weights
    json_path = directory / CHECKPOINT_FILE
    os.replace(directory / NEXT_FILE, json_path)                                      # 4. the commit
    _fsync_dir(directory)

    # tidy: state and version-1 weights files no JSON names any more, interrupted saves' files
    for p in directory.iterdir():
        stale = (_STATE_NAME.fullmatch(p.name) and p.name != state_name) or _NPZ_NAME.fullmatch(p.name)
        if (stale or p.name.startswith(_TMP_PREFIX)) and p.is_file():
            p.unlink(missing_ok=True)
    return json_path


# --------------------------------------------------------------------------- reading

def has_checkpoint(directory: str | os.PathLike) -> bool:
    """Is there a checkpoint (a ``checkpoint.json``) in ``directory``?"""
    return (Path(directory) / CHECKPOINT_FILE).is_file()


def _json_path(path: Path) -> Path:
    if path.is_dir():
        json_path = path / CHECKPOINT_FILE
        if not json_path.is_file():
            raise CheckpointError(f"{path}: no {CHECKPOINT_FILE} here; not a checkpoint directory "
                                  "(or training has not saved one yet)")
        return json_path
    if path.name == CHECKPOINT_FILE and path.is_file():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: a checkpoint is a directory holding {CHECKPOINT_FILE} "
                              "(e.g. out/lstm), not a single file")
    raise CheckpointError(f"{path}: no such checkpoint directory")


def _read_regular_file(path: Path, size: int | None, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of ``size`` bytes (if given) and at most ``limit``;
    FileNotFoundError passes through (a save may be racing us)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"{path}: not a regular file")
            if size is not None and st.st_size != size:
                raise CheckpointError(f"{path}: {st.st_size} bytes, but {CHECKPOINT_FILE} says {size}; "
                                      "the file is truncated or was replaced")
            if st.st_size > limit:
                raise CheckpointError(f"{path}: {st.st_size} bytes; at most {limit} are allowed")
            raw = f.read(st.st_size + 1)           # + 1: to notice a file still growing
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > limit or (size is not None and len(raw) != size):
        raise CheckpointError(f"{path}: changed size while being read")
    return raw


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _parse_json(path: Path, raw: bytes) -> Any:
    """Strict JSON: UTF-8, no key twice in one object, nested at most _MAX_JSON_DEPTH deep."""
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        raise CheckpointError(f"{path}: the key {e.args[0]!r:.80} appears twice in one object") from None
    except (UnicodeDecodeError, ValueError) as e:   # JSONDecodeError, or an int of over 4300 digits
        raise CheckpointError(f"{path}: not valid JSON ({e}); the file is truncated or corrupt") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply (at most {_MAX_JSON_DEPTH} levels)") from None
    if _depth(obj) > _MAX_JSON_DEPTH:
        raise CheckpointError(f"{path}: JSON nested more than {_MAX_JSON_DEPTH} levels deep")
    return obj


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: the keys a saved tokenizer has, by type: (required, optional); a byte-level BPE has merges
#: and special tokens, no unknown token
_TOKENIZER_KEYS = {"bpe": (("type", "vocab", "merges"), ("special_tokens", "errors")),
                   "other": (("type", "vocab"), ("unk_token", "errors"))}


def _tokenizer_problem(tok: Any, vocab_size: Any) -> str | None:
    """Why the saved tokenizer ``tok`` (a dict or None) is unusable, or None."""
    if tok is None:
        return None
    kind = "bpe" if isinstance(tok, dict) and tok.get("type") == "bpe" else "other"
    required, optional = _TOKENIZER_KEYS[kind]
    if not (isinstance(tok, dict) and set(required) <= set(tok) <= {*required, *optional}):
        return (f"a {tok.get('type') if isinstance(tok, dict) else None!r} tokenizer must be an object "
                f"with {', '.join(map(repr, required))} and optionally {', '.join(map(repr, optional))}, "
                f"got {f'keys {sorted(map(str, tok))}' if isinstance(tok, dict) else repr(tok)}"[:300])
    string_lists = [k for k in ("vocab", "merges", "special_tokens") if k in (*required, *optional)]
    if not (all(isinstance(tok.get(k, []), list) and all(isinstance(t, str) for t in tok.get(k, []))
                for k in string_lists)
            and isinstance(tok["type"], str) and isinstance(tok.get("errors", ""), str)
            and isinstance(tok.get("unk_token"), (str, type(None)))):
        *rest, last = map(repr, string_lists)
        lists = f"{', '.join(rest)} and {last} must be lists" if rest else f"{last} must be a list"
        unk = ", 'unk_token' a string or null" if kind == "other" else ""
        return f"{lists} of strings, 'type' a string, 'errors' a string{unk}"
    try:
        n = tokenizer_from_dict(tok).vocab_size
    except (TypeError, ValueError) as e:
        return str(e)
    if isinstance(vocab_size, int) and n > vocab_size:
        return f"{n} tokens, more than the model's vocab_size {vocab_size}"
    return None


def _read_json(json_path: Path) -> dict:
    try:
        raw = _read_regular_file(json_path, None, _MAX_JSON_BYTES)
    except FileNotFoundError:
        raise CheckpointError(f"{json_path}: missing (removed while being read?)") from None
    meta = _parse_json(json_path, raw)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: not an lmroad checkpoint (no \"format\": \"{FORMAT}\")")
    version = meta.get("version")
    if not _is_int(version, 1, VERSION):
        raise CheckpointError(f"{json_path}: checkpoint format version {version!r:.40}; this "
                              f"lmroad reads versions 1 to {VERSION}")
    problems = []
    model = meta.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("kind"), str)
            and isinstance(model.get("config"), dict) and isinstance(model.get("weights"), list)
            and all(isinstance(n, str) for n in model["weights"])):
        problems.append("'model' must hold 'kind' (a string), 'config' (an object) and 'weights' "
                        "(a list of names)")
    elif len(set(model["weights"])) != len(model["weights"]):
        problems.append("'model.weights' lists a name twice")
    else:
        tied = model.setdefault("tied", {})
        listed = set(model["weights"])
        if not (isinstance(tied, dict) and all(isinstance(v, str) for v in tied.values())
                and set(tied) <= listed and set(tied.values()) <= listed - set(tied)):
            problems.append(f"'model.tied' must map listed weight names to listed names that are not "
                            f"tied themselves, got {tied!r:.80}")
    if not _is_int(meta.get("step"), 0, _MAX_STEP):
        problems.append(f"'step' must be an int from 0 to {_MAX_STEP}, got {meta.get('step')!r:.40}")
    # the files' names: plain names in this directory, never a path that points elsewhere
    name = meta.get("weights_file")
    if version == 1 and not (isinstance(name, str) and _NPZ_NAME.fullmatch(name)):
        problems.append(f"'weights_file' must be a name like weights-00000000-0123abcd.npz, "
                        f"got {name!r:.80}")
    if version > 1 and name != MODEL_FILE:
        problems.append(f"'weights_file' must be {MODEL_FILE!r}, got {name!r:.80}")
    if not (isinstance(meta.get("weights_sha256"), str) and _SHA256.fullmatch(meta["weights_sha256"])
            and _is_int(meta.get("weights_bytes"), 0, _MAX_STEP)):
        problems.append("'weights_sha256' (64 hex digits) and 'weights_bytes' (an int >= 0) are "
                        "missing or malformed")
    if version > 1:
        state, ok = meta.get("state_file"), False
        if state is None:
            ok = meta.get("state_sha256") is None and meta.get("state_bytes") == 0
        elif isinstance(state, str) and _STATE_NAME.fullmatch(state):
            ok = (isinstance(meta.get("state_sha256"), str) and _SHA256.fullmatch(meta["state_sha256"])
                  and _is_int(meta.get("state_bytes"), 0, _MAX_STEP))
        if not ok:
            problems.append(f"'state_file' must be null (with 'state_bytes' 0 and 'state_sha256' null) "
                            f"or a name like state-00000000-0123abcd.safetensors with its size and "
                            f"SHA-256, got {state!r:.80}")
    metrics = meta.get("metrics")
    best = metrics.get("best") if isinstance(metrics, dict) else None
    if not isinstance(metrics, (dict, type(None))):
        problems.append(f"'metrics' must be an object, got {metrics!r:.40}")
    elif best is not None and not (isinstance(best, dict)
                                   and (best.get("val_loss") is None or _is_number(best["val_loss"]))
                                   and (best.get("step") is None or _is_int(best["step"], 0, _MAX_STEP))):
        problems.append(f"'metrics.best' must be an object with 'val_loss' a finite number or null and "
                        f"'step' an int >= 0 or null, got {best!r:.80}")
    if not isinstance(meta.get("train_config"), (dict, type(None))):
        problems.append(f"'train_config' must be an object or null, got {meta['train_config']!r:.40}")
    if not problems:
        tok_problem = _tokenizer_problem(meta.get("tokenizer"), model["config"].get("vocab_size"))
        if tok_problem:
            problems.append(f"'tokenizer': {tok_problem}")
    if problems:
        raise CheckpointError(f"{json_path}: " + "; ".join(problems))
    if model["kind"] in MODELS:
        _config_object(str(json_path), model["kind"], model["config"])
    return meta


class _Mismatch(Exception):
    """A file the JSON names is missing or differs from it: an interrupted save, or a save racing us."""


def _named_files(meta: dict) -> list[tuple[str, int, str]]:
    """(name, bytes, SHA-256) of each file a checkpoint's JSON names."""
    files = [(meta["weights_file"], meta["weights_bytes"], meta["weights_sha256"])]
    if meta["version"] > 1 and meta["state_file"] is not None:
        files.append((meta["state_file"], meta["state_bytes"], meta["state_sha256"]))
    return files


def _read_named(json_path: Path, meta: dict) -> dict[Path, bytes]:
    """The bytes of every file ``meta`` names, each of its size and SHA-256 (else ``_Mismatch``)."""
    out = {}
    for name, size, sha in _named_files(meta):
        path = json_path.parent / name
        try:
            raw = _read_regular_file(path, size, size)
        except FileNotFoundError:
            raise _Mismatch(f"{path}: missing; {json_path.name} names it") from None
        except CheckpointError as e:
            raise _Mismatch(str(e)) from None
        if meta["version"] == 1 and raw[:4] != _ZIP_MAGIC:
            raise CheckpointError(f"{path}: not an .npz (zip) archive (first bytes {raw[:4]!r}); refused "
                                  "without reading it further (it may be a pickle, which could run code)")
        if hashlib.sha256(raw).hexdigest() != sha:
            raise _Mismatch(f"{path}: SHA-256 does not match {json_path.name}; the file is corrupt or "
                            "was replaced")
        out[path] = raw
    return out


def _read_files(json_path: Path) -> tuple[dict, dict[Path, bytes]]:
    """(JSON, {path: bytes} of the files it names), read as one consistent set.

    A trainer saving into the same directory replaces the files while we
    read; a reader caught in between reads the JSON again. A save that
    crashed after replacing ``model.safetensors`` left its complete new JSON
    in ``checkpoint.next.json``: that is taken when its files match and the
    committed JSON's do not. Each file is read whole, once, so every check
    below sees the same bytes."""
    for attempt in range(3):
        meta = _read_json(json_path)
        try:
            return meta, _read_named(json_path, meta)
        except _Mismatch as e:
            problem = e
        pending = json_path.parent / NEXT_FILE
        if pending.is_file():
            try:
                next_meta = _read_json(pending)
                return next_meta, _read_named(pending, next_meta)
            except (_Mismatch, CheckpointError):
                pass
        if attempt == 2 or _read_json(json_path) == meta:     # not a save racing us: really broken
            raise CheckpointError(str(problem)) from None
    raise AssertionError("unreachable")


def _open_archives(meta: dict, files: dict[Path, bytes]) -> list[tuple[Path, Any]]:
    """(path, archive) for each file: its header checked, no data read yet. Version 2's
    model file names its arrays without the ``model/`` prefix; it is added here."""
    out = []
    for path, raw in files.items():
        try:
            if meta["version"] == 1:
                out.append((path, NpzArchive(raw)))
            else:
                out.append((path, _Prefixed(SafetensorsFile(raw), "model/" if path.name == MODEL_FILE
                                            else "")))
        except (ArchiveError, SafetensorsError) as e:
            hint = "" if meta["version"] == 1 else " (it may be a pickle, which could run code: refused)"
            raise CheckpointError(f"{path}: {e}{hint}") from None
    return out


class _Prefixed:
    """A ``SafetensorsFile`` seen through keys with a prefix, as ``NpzArchive``: ``headers``
    of (shape, dtype) and ``read(key)``."""

    def __init__(self, file: SafetensorsFile, prefix: str):
        self.file, self.prefix = file, prefix
        self.headers = {prefix + k: _Header(file.shape(k), file.dtype(k)) for k in file.headers}

    def read(self, key: str) -> np.ndarray:
        return self.file.read(key[len(self.prefix):])


@dataclass(frozen=True)
class _Header:
    shape: tuple[int, ...]
    dtype: np.dtype


def _read_arrays(meta: dict, files: dict[Path, bytes]) -> dict[str, np.ndarray]:
    """Every array of the weights files, as host arrays, keyed as the JSON refers to them
    (``model/<name>`` for weights): first every header checked against its file and the
    model weights against their config, then the data."""
    archives = _open_archives(meta, files)
    names, tied = meta["model"]["weights"], meta["model"]["tied"]
    stored = [n for n in names if n not in tied]                  # tied weights are stored once
    weights_path, weights = archives[0]
    in_file = [k[len("model/"):] for k in weights.headers if k.startswith("model/")]
    missing = [n for n in stored if f"model/{n}" not in weights.headers]
    unlisted = [n for n in in_file if n not in stored]
    if missing or unlisted:
        raise CheckpointError(f"{weights_path}: missing weights {missing[:10]} that {CHECKPOINT_FILE} "
                              "lists" + (f", and holds weights {unlisted[:10]} it does not" if unlisted
                                         else ""))
    _check_model(str(weights_path), meta["model"]["kind"], meta["model"]["config"],
                 {n: (weights.headers[f"model/{tied.get(n, n)}"].shape,
                      weights.headers[f"model/{tied.get(n, n)}"].dtype) for n in names})
    for path, archive in archives[1:]:              # the state file: weights belong in the model file
        clash = [k for k in archive.headers if k.startswith("model/")]
        if clash:
            raise CheckpointError(f"{path}: holds {clash[:5]}; weights are stored in {weights_path.name} "
                                  "only")
    arrays: dict[str, np.ndarray] = {}
    for path, archive in archives:
        for key in archive.headers:
            if key in arrays:
                raise CheckpointError(f"{path}: holds {key!r}, which another weights file holds too")
            try:
                a = arrays[key] = archive.read(key)
            except ArchiveError as e:
                raise CheckpointError(f"{path}: {e}") from None
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                bad = int((~np.isfinite(a)).sum())
                raise CheckpointError(f"{path}: array {key!r} holds {bad} non-finite value(s) (NaN or "
                                      "inf); the run that saved it had diverged")
    for alias, source in tied.items():
        arrays[f"model/{alias}"] = arrays[f"model/{source}"]
    return arrays


def read_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read and check the checkpoint in ``directory`` (or at its ``checkpoint.json``).

    Raises ``CheckpointError`` for anything wrong (see the module docstring
    for what is checked); returns host arrays only."""
    json_path = _json_path(Path(directory))
    meta, files = _read_files(json_path)
    arrays = _read_arrays(meta, files)
    names = meta["model"]["weights"]
    used = {f"model/{n}" for n in names}
    parts = {part: _unpack(meta.get(part), arrays, f"{json_path}: '{part}'", used)
             for part in ("tokenizer", "optimizer", "data_state", "rng_state", "train_config",
                          "metrics", "extra")}
    unnamed = sorted(set(arrays) - used)
    if unnamed:
        raise CheckpointError(f"{list(files)[-1]}: holds arrays {unnamed[:10]} that {CHECKPOINT_FILE} "
                              "does not name")
    return Checkpoint(
        directory=json_path.parent,
        model_kind=meta["model"]["kind"],
        model_config=meta["model"]["config"],
        weights={n: arrays[f"model/{n}"] for n in names},
        step=meta["step"],
        tokenizer=parts["tokenizer"],
        optimizer=parts["optimizer"],
        data_state=parts["data_state"],
        rng_state=parts["rng_state"],
        train_config=parts["train_config"],
        metrics=parts["metrics"] or {},
        extra=parts["extra"],
    )


# --------------------------------------------------------------------------- into a model

def _config_diff(saved: dict, mine: dict) -> list[str]:
    keys = sorted(set(saved) | set(mine))
    return [f"{k}: checkpoint {saved.get(k, '(absent)')!r} vs model {mine.get(k, '(absent)')!r}"
            for k in keys if saved.get(k, "(absent)") != mine.get(k, "(absent)")
            and not (isinstance(saved.get(k), float) and isinstance(mine.get(k), float)
                     and math.isclose(saved[k], mine[k]))]


def restore_model(model, ckpt: Checkpoint, model_kind: str | None = None,
                  model_config: dict | None = None) -> None:
    """Load ``ckpt``'s weights into ``model`` after checking that it is the same
    kind of model with the same config; all-or-nothing."""
    kind, config = _model_identity(model, model_kind, model_config)
    if kind != ckpt.model_kind:
        raise CheckpointError(f"{ckpt.json_path}: holds a {ckpt.model_kind!r} model, not {kind!r}")
    # through JSON, so tuples and lists compare alike
    diff = _config_diff(json.loads(json.dumps(ckpt.model_config)), json.loads(json.dumps(config)))
    if diff:
        raise CheckpointError(f"{ckpt.json_path}: the {kind} model config differs: " + "; ".join(diff))
    try:
        model.load_state_dict(ckpt.weights)
    except (ValueError, IndexError, TypeError) as e:
        raise CheckpointError(f"{ckpt.directory / 'weights'}: does not fit the model: {e}") from None


def load_model(directory: str | os.PathLike | Checkpoint, device: str = "cpu",
               expected_kind: str | None = None):
    """(model, checkpoint): the model a checkpoint describes, built, filled and moved to ``device``.

    The config and the weights' shapes are checked against each other before
    the model is built, so building allocates only what the file holds."""
    ckpt = directory if isinstance(directory, Checkpoint) else read_checkpoint(directory)
    if expected_kind is not None and ckpt.model_kind != expected_kind:
        raise CheckpointError(f"{ckpt.json_path}: holds a {ckpt.model_kind!r} model, not "
                              f"{expected_kind!r}")
    if ckpt.model_kind not in MODELS:
        raise CheckpointError(f"{ckpt.json_path}: unknown model kind {ckpt.model_kind!r}; this lmroad "
                              f"knows {sorted(MODELS)}")
    _check_model(str(ckpt.json_path), ckpt.model_kind, ckpt.model_config,
                 {n: (tuple(a.shape), np.dtype(a.dtype)) for n, a in ckpt.weights.items()})
    try:
        with nn.init.skip_init():                 # every weight is loaded next: draw nothing
            model = MODELS[ckpt.model_kind].from_config(ckpt.model_config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.json_path}: cannot build the {ckpt.model_kind} model from its "
                              f"config: {e}") from None
    restore_model(model, ckpt)
    model.to(device)
    return model, ckpt


# --------------------------------------------------------------------------- the metrics log

def _metrics_lines(path: Path) -> Iterator[tuple[int, bytes, dict | None, str]]:
    """(line number, the line, its record or None, what is wrong with it) for each non-blank
    line of a metrics log: one JSON object per line with an int ``step`` >= 0 and a string
    ``split``."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cut = number == len(lines)              # no newline after it: a write cut short?
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            yield number, line, None, (f"not a JSON record ({type(e).__name__}: {e})"
                                       + ("; the last line, cut short by a crash?" if cut else ""))
            continue
        if not isinstance(rec, dict):
            yield number, line, None, f"a JSON {type(rec).__name__}, expected an object"
        elif not _is_int(rec.get("step"), 0, _MAX_STEP):
            yield number, line, None, f"'step' must be an int >= 0, got {rec.get('step')!r:.40}"
        elif not isinstance(rec.get("split"), str):
            yield number, line, None, f"'split' must be a string, got {rec.get('split')!r:.40}"
        else:
            yield number, line, rec, ""


def read_metrics_log(path: str | os.PathLike) -> list[dict]:
    """Every record of a metrics log (``metrics.jsonl``); a bad line is a ``CheckpointError``
    naming the file and the line."""
    path = Path(path)
    records = []
    for number, _, rec, problem in _metrics_lines(path):
        if rec is None:
            raise CheckpointError(f"{path}:{number}: {problem}")
        records.append(rec)
    return records


def truncate_metrics_log(path: str | os.PathLike, last_step: int,
                         warn: Callable[[str], None] | None = None) -> None:
    """Drop the records a crashed run wrote after its last checkpoint (step > ``last_step``),
    so a resumed log has no repeats. Best effort: a bad line is dropped too, and ``warn``
    (default ``warnings.warn``) is told which file and line. Rewritten atomically."""
    path = Path(path)
    if not path.is_file():
        return
    say = warn if warn is not None else (lambda m: warnings.warn(m, stacklevel=3))
    keep = []
    for number, line, rec, problem in _metrics_lines(path):
        if rec is None:
            say(f"{path}:{number}: {problem}; skipped (the line is dropped from the log)")
        elif rec["step"] <= last_step:
            keep.append(line + b"\n")
    _atomic_write(path, lambda f: f.write(b"".join(keep)))

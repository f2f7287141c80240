"""Checkpoints: one directory per run, no pickle anywhere, crash-safe writes.

    out/lstm/
        checkpoint.json                    what was saved and which weights file belongs to it
        weights-00001200-3f9a1c2e.npz      every array: model weights, optimizer moments, ...
        best/                              the same layout: the checkpoint with the lowest val loss

``checkpoint.json`` holds the model kind and config, the tokenizer, the step,
the data position (the batcher's state), the RNG state, the training config,
the metrics, the optimizer's hyperparameters, and the name, size and SHA-256
of its weights file. Arrays never go into the JSON: any array in a saved
structure (optimizer moments, a carried hidden state) is stored in the npz
under a prefixed key (``model/...``, ``optimizer/...``, ``extra/...``) and
the JSON holds ``{"__array__": key}`` in its place.

Why ``.npz``: NumPy writes and reads it with no extra dependency, and
``np.load(..., allow_pickle=False)`` refuses object arrays, the one way an
npz could carry pickled code. safetensors would do the same job with a
second dependency and nothing we need beyond it (we do not memory-map
multi-gigabyte weights). The file is also checked before NumPy opens it: it
must be a zip archive (a pickle renamed to ``.npz`` is refused by its first
bytes) whose SHA-256 matches the JSON's.

Crash safety. Every file is written to a temporary file in the same
directory, flushed and fsynced, then renamed over its final name with
``os.replace`` (atomic on POSIX and Windows). The weights file gets a new
name at every save and is written first; ``checkpoint.json``, written last,
names it. A crash at any moment therefore leaves either the old JSON naming
the old (untouched) weights, or the new JSON naming the new weights; files
that no JSON names (an interrupted save's) are removed by the next save.

Loading checks everything before anything is used: a missing, truncated or
corrupt file, a pickle in disguise, non-finite values, the wrong model kind
or config, or a shape mismatch each raise one ``CheckpointError`` naming the
file and the problem, and nothing is half-loaded. Weights are stored as
host arrays, so a checkpoint saved on one device loads on any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minigrad import backend
from minigrad.tensor import Tensor

from .models import MODELS

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "read_checkpoint", "load_model",
           "restore_model", "has_checkpoint", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.json"
FORMAT = "lmroad-checkpoint"
VERSION = 1
_WEIGHTS_NAME = re.compile(r"weights-\d{8,}-[0-9a-f]{8}\.npz")
_TMP_PREFIX = ".tmp-"
_ZIP_MAGIC = b"PK\x03\x04"
_ARRAY_KINDS = "fiub"  # float, signed, unsigned, bool: nothing that could hold objects


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
    back as they went in."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if backend.is_array(obj):
        host = np.array(backend.to_host(obj))          # a copy: later training must not change it
        if host.dtype.kind not in _ARRAY_KINDS:
            raise CheckpointError(f"cannot save {key}: arrays of dtype {host.dtype} are not allowed "
                                  "(checkpoints hold numeric arrays only)")
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


def _unpack(obj: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if isinstance(obj, list):
        return [_unpack(v, arrays, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__array__"}:
        key = obj["__array__"]
        if key not in arrays:
            raise CheckpointError(f"{where}: names array {key!r}, which the weights file does not hold")
        return arrays[key]
    if set(obj) == {"__tuple__"}:
        return tuple(_unpack(v, arrays, where) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        return {_unpack(k, arrays, where): _unpack(v, arrays, where) for k, v in obj["__items__"]}
    return {k: _unpack(v, arrays, where) for k, v in obj.items()}


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
    return kind, dict(model_config)


def save_checkpoint(directory: str | os.PathLike, model, *, step: int = 0, tokenizer=None,
                    optimizer=None, data_state: Any = None, rng_state: Any = None,
                    train_config: dict | None = None, metrics: dict | None = None,
                    extra: Any = None, model_kind: str | None = None,
                    model_config: dict | None = None) -> Path:
    """Write a checkpoint into ``directory`` (created if needed); returns the JSON's path.

    ``tokenizer`` may be a tokenizer (its ``to_dict()`` is stored) or a dict;
    ``optimizer`` an optimizer (its ``state_dict()``) or a state dict.
    ``data_state``, ``rng_state`` and ``extra`` are any nesting of dicts,
    lists, tuples, numbers, strings and arrays (arrays go to the npz)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind, config = _model_identity(model, model_kind, model_config)

    arrays: dict[str, np.ndarray] = {}
    weight_names = []
    for name, t in model.state_dict().items():
        _pack(t, f"model/{name}", arrays)
        weight_names.append(name)
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    tok = tokenizer.to_dict() if hasattr(tokenizer, "to_dict") else tokenizer
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"kind": kind, "config": config, "weights": weight_names},
        "step": int(step),
        "tokenizer": _pack(tok, "tokenizer", arrays),
        "optimizer": _pack(opt_state, "optimizer", arrays),
        "data_state": _pack(data_state, "data", arrays),
        "rng_state": _pack(rng_state, "rng", arrays),
        "train_config": _pack(train_config, "train_config", arrays),
        "metrics": _pack(metrics or {}, "metrics", arrays),
        "extra": _pack(extra, "extra", arrays),
    }

    # 1. the weights, under a name no earlier save used
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    raw = buffer.getvalue()
    weights_name = f"weights-{int(step):08d}-{os.urandom(4).hex()}.npz"
    _atomic_write(directory / weights_name, lambda f: f.write(raw))
    meta.update(weights_file=weights_name, weights_bytes=len(raw),
                weights_sha256=hashlib.sha256(raw).hexdigest())

    # 2. the JSON that makes them the current checkpoint
    text = json.dumps(meta, indent=1)
    json_path = directory / CHECKPOINT_FILE
    _atomic_write(json_path, lambda f: f.write(text.encode("utf-8")))

    # 3. tidy: weights no JSON names any more, temporary files of interrupted saves
    for p in directory.iterdir():
        stale_weights = _WEIGHTS_NAME.fullmatch(p.name) and p.name != weights_name
        if (stale_weights or p.name.startswith(_TMP_PREFIX)) and p.is_file():
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


def _read_json(json_path: Path) -> dict:
    try:
        raw = json_path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{json_path}: cannot read ({e.strerror})") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{json_path}: not valid JSON ({e}); the file is truncated or "
                              "corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: not an lmroad checkpoint (no \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{json_path}: checkpoint format version {meta.get('version')!r}; this "
                              f"lmroad reads version {VERSION}")
    problems = []
    model = meta.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("kind"), str)
            and isinstance(model.get("config"), dict) and isinstance(model.get("weights"), list)):
        problems.append("'model' must hold 'kind', 'config' and 'weights'")
    if isinstance(meta.get("step"), bool) or not isinstance(meta.get("step"), int) or meta["step"] < 0:
        problems.append(f"'step' must be an int >= 0, got {meta.get('step')!r}")
    name = meta.get("weights_file")
    if not (isinstance(name, str) and _WEIGHTS_NAME.fullmatch(name)):
        # a plain file name in this directory: never a path that points elsewhere
        problems.append(f"'weights_file' must be a name like weights-00000000-0123abcd.npz, got {name!r}")
    if not isinstance(meta.get("weights_sha256"), str) or not isinstance(meta.get("weights_bytes"), int):
        problems.append("'weights_sha256' and 'weights_bytes' are missing")
    if problems:
        raise CheckpointError(f"{json_path}: " + "; ".join(problems))
    return meta


def _read_weights_bytes(json_path: Path) -> tuple[dict, Path, bytes]:
    """(JSON, weights path, weights bytes), read as one consistent pair.

    A trainer saving into the same directory replaces the JSON and then
    deletes the weights file the old JSON named; a reader caught between the
    two reads the JSON again. The weights are read whole, once, so every
    check below sees the same bytes."""
    for attempt in range(3):
        meta = _read_json(json_path)
        path = json_path.parent / meta["weights_file"]
        try:
            return meta, path, path.read_bytes()
        except FileNotFoundError:
            if attempt == 2 or _read_json(json_path) == meta:   # not a save racing us: really missing
                raise CheckpointError(f"{path}: missing; {CHECKPOINT_FILE} names it as its weights "
                                      "file") from None
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    raise AssertionError("unreachable")


def _read_arrays(path: Path, raw: bytes, meta: dict) -> dict[str, np.ndarray]:
    """Every array of the weights file ``raw``, checked, as host arrays."""
    if len(raw) != meta["weights_bytes"]:
        raise CheckpointError(f"{path}: {len(raw)} bytes, but {CHECKPOINT_FILE} says "
                              f"{meta['weights_bytes']}; the file is truncated or was replaced")
    if raw[:4] != _ZIP_MAGIC:
        raise CheckpointError(f"{path}: not an .npz (zip) archive (first bytes {raw[:4]!r}); refused "
                              "without reading it further (it may be a pickle, which could run code)")
    if hashlib.sha256(raw).hexdigest() != meta["weights_sha256"]:
        raise CheckpointError(f"{path}: SHA-256 does not match {CHECKPOINT_FILE}; the file is "
                              "corrupt or was replaced")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            for key in npz.files:
                arrays[key] = npz[key]
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise CheckpointError(f"{path}: holds an object (pickled) array; refused (checkpoints hold "
                                  "numeric arrays only, and unpickling could run code)") from None
        raise CheckpointError(f"{path}: unreadable npz ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise CheckpointError(f"{path}: unreadable npz ({type(e).__name__}: {e})") from None
    for key, a in arrays.items():
        if a.dtype.kind not in _ARRAY_KINDS:
            raise CheckpointError(f"{path}: array {key!r} has dtype {a.dtype}; only numeric arrays "
                                  "are allowed")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise CheckpointError(f"{path}: array {key!r} holds {bad} non-finite value(s) (NaN or inf); "
                                  "the run that saved it had diverged")
    return arrays


def read_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read and check the checkpoint in ``directory`` (or at its ``checkpoint.json``).

    Raises ``CheckpointError`` for anything wrong; returns host arrays only."""
    json_path = _json_path(Path(directory))
    meta, weights_path, raw = _read_weights_bytes(json_path)
    arrays = _read_arrays(weights_path, raw, meta)
    where = str(json_path)
    names = meta["model"]["weights"]
    missing = [n for n in names if f"model/{n}" not in arrays]
    if missing:
        raise CheckpointError(f"{json_path.parent / meta['weights_file']}: missing weights "
                              f"{missing[:10]} that {CHECKPOINT_FILE} lists")
    return Checkpoint(
        directory=json_path.parent,
        model_kind=meta["model"]["kind"],
        model_config=meta["model"]["config"],
        weights={n: arrays[f"model/{n}"] for n in names},
        step=meta["step"],
        tokenizer=_unpack(meta.get("tokenizer"), arrays, where),
        optimizer=_unpack(meta.get("optimizer"), arrays, where),
        data_state=_unpack(meta.get("data_state"), arrays, where),
        rng_state=_unpack(meta.get("rng_state"), arrays, where),
        train_config=_unpack(meta.get("train_config"), arrays, where),
        metrics=_unpack(meta.get("metrics"), arrays, where) or {},
        extra=_unpack(meta.get("extra"), arrays, where),
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
    """(model, checkpoint): the model a checkpoint describes, built, filled and moved to ``device``."""
    ckpt = directory if isinstance(directory, Checkpoint) else read_checkpoint(directory)
    if expected_kind is not None and ckpt.model_kind != expected_kind:
        raise CheckpointError(f"{ckpt.json_path}: holds a {ckpt.model_kind!r} model, not "
                              f"{expected_kind!r}")
    if ckpt.model_kind not in MODELS:
        raise CheckpointError(f"{ckpt.json_path}: unknown model kind {ckpt.model_kind!r}; this lmroad "
                              f"knows {sorted(MODELS)}")
    try:
        model = MODELS[ckpt.model_kind].from_config(ckpt.model_config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.json_path}: cannot build the {ckpt.model_kind} model from its "
                              f"config: {e}") from None
    restore_model(model, ckpt)
    model.to(device)
    return model, ckpt

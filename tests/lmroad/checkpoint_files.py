"""Helpers for the checkpoint tests: the files of a checkpoint directory read and rewritten by
hand, independently of ``lmroad.checkpoint`` and ``lmroad.safetensors_file`` (so a test can
write what the library would never write), and a version-1 checkpoint made from a version-2 one.

A version-2 directory holds ``checkpoint.json``, ``model.safetensors`` (the weights, a tied
weight stored once: ``model.tied`` maps the alias to the stored name) and, when there are other
arrays, ``state-<step>-<hex>.safetensors``. Version 1 held one ``weights-<step>-<hex>.npz`` with
every array: ``model/<name>`` for each weight (a tied alias as its own copy) and the state's
arrays under the same keys as version 2's state file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint.json"
MODEL = "model.safetensors"

#: safetensors dtype -> NumPy dtype, for reading files by hand (BF16 left out: tests read it apart)
NUMPY_OF = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
            "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
SAFETENSORS_OF = {np.dtype(v): k for k, v in NUMPY_OF.items()}


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def read_json(directory: Path, name: str = CHECKPOINT) -> dict:
    return json.loads((directory / name).read_text())


def write_json(directory: Path, meta: dict, name: str = CHECKPOINT) -> None:
    (directory / name).write_text(json.dumps(meta))


def edit_json(directory: Path, **top) -> dict:
    """Set top-level fields of ``checkpoint.json``; returns the new JSON."""
    meta = read_json(directory)
    meta.update(top)
    write_json(directory, meta)
    return meta


# --------------------------------------------------------------------------- safetensors by hand

def split_safetensors(raw: bytes) -> tuple[dict, bytes]:
    """(the header as a dict, the data bytes) of a well-formed safetensors file."""
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join_safetensors(header: dict | str | bytes, data: bytes, pad: bool = True) -> bytes:
    """A safetensors file of ``header`` (a dict, or its text as is) and ``data``: free to lie."""
    text = header if isinstance(header, bytes) else (
        header.encode() if isinstance(header, str) else json.dumps(header).encode())
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_of(arrays: dict[str, np.ndarray]) -> bytes:
    """A well-formed safetensors file of ``arrays`` (name -> array), written here, not by lmroad."""
    header, chunks, at = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        raw = a.tobytes()
        header[name] = {"dtype": SAFETENSORS_OF[a.dtype], "shape": list(a.shape),
                        "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    return join_safetensors(header, b"".join(chunks))


def arrays_of(raw: bytes) -> dict[str, np.ndarray]:
    """Every array of a well-formed safetensors file (no BF16), read here, not by lmroad."""
    header, data = split_safetensors(raw)
    header.pop("__metadata__", None)
    return {name: np.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]],
                                NUMPY_OF[e["dtype"]]).reshape(e["shape"]).copy()
            for name, e in header.items()}


def state_name(directory: Path) -> str | None:
    return read_json(directory)["state_file"]


def rewrite(directory: Path, name: str, raw: bytes) -> None:
    """Replace the checkpoint's file ``name`` (model.safetensors, its state file or a version-1
    npz) with ``raw`` and make ``checkpoint.json`` vouch for it: its size and SHA-256 updated,
    so that only the loader's content checks stand between the bytes and an allocation."""
    (directory / name).write_bytes(raw)
    meta = read_json(directory)
    prefix = "state" if name == meta.get("state_file") else "weights"
    assert name == meta[f"{prefix}_file"], f"{name} is not a file of this checkpoint"
    meta.update({f"{prefix}_bytes": len(raw), f"{prefix}_sha256": sha256(raw)})
    write_json(directory, meta)


# --------------------------------------------------------------------------- version 1

def to_version_1(directory: Path) -> Path:
    """Rewrite the version-2 checkpoint in ``directory``, in place, as version 1 stored it:
    one ``weights-<step:08d>-<8 hex>.npz`` of every array (``model/<name>`` for each listed
    weight, a tied alias as its own copy; the state file's arrays under their keys) and a
    JSON with ``"version": 1`` and that file's name, size and SHA-256, and no version-2
    fields. Returns the npz's path."""
    meta = read_json(directory)
    assert meta["version"] == 2
    stored = arrays_of((directory / meta["weights_file"]).read_bytes())
    tied = meta["model"].pop("tied")
    arrays = {f"model/{n}": stored[tied.get(n, n)].copy() for n in meta["model"]["weights"]}
    if meta["state_file"] is not None:
        arrays.update(arrays_of((directory / meta["state_file"]).read_bytes()))
        (directory / meta["state_file"]).unlink()
    (directory / meta["weights_file"]).unlink()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    raw = buffer.getvalue()
    name = f"weights-{meta['step']:08d}-{os.urandom(4).hex()}.npz"
    (directory / name).write_bytes(raw)
    for key in ("state_file", "state_bytes", "state_sha256"):
        del meta[key]
    meta.update(version=1, weights_file=name, weights_bytes=len(raw), weights_sha256=sha256(raw))
    write_json(directory, meta)
    return directory / name

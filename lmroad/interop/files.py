"""Reading other tools' files without trusting them: JSON configs and weights.

``read_weights(path, allow_pickle)`` -> name -> float32 host array:

  ``.safetensors``   through ``lmroad.safetensors_file`` (checked, nothing executed);
  ``.bin``, ``.pt``  PyTorch's format: a pickle, which can run any code while it
                     is loaded. Read only with ``allow_pickle=True``, and then
                     with ``torch.load(..., weights_only=True)``, PyTorch's
                     restricted unpickler (tensors and plain containers only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..safetensors_file import SafetensorsError, SafetensorsFile

__all__ = ["InteropError", "read_json", "read_weights", "read_torch_pickle", "PICKLE_SUFFIXES"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_MAX_JSON_BYTES = 16 << 20


class InteropError(ValueError):
    """A model folder or file cannot be imported or exported; the message names the file,
    what was found, and what would be valid."""


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path`` (at most 16 MiB), or an ``InteropError`` naming it."""
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise InteropError(f"{path}: {path.stat().st_size} bytes; a {what} is at most "
                               f"{_MAX_JSON_BYTES} bytes")
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InteropError(f"{path}: missing; expected the {what} here") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InteropError(f"{path}: not a readable JSON {what} ({e})") from None
    if not isinstance(obj, dict):
        raise InteropError(f"{path}: the {what} must be a JSON object, got a {type(obj).__name__}")
    return obj


def _refuse_pickle(path: Path) -> InteropError:
    return InteropError(
        f"{path}: a PyTorch pickle file, which can run arbitrary code when it is loaded; refused. "
        "Pass --allow-pickle (allow_pickle=True) if you trust where it came from (it is then read "
        "with torch.load(weights_only=True)), or convert it to .safetensors first")


def read_torch_pickle(path: Path, allow_pickle: bool):
    """What ``torch.load(path, weights_only=True)`` returns, tensors as they are; only with
    ``allow_pickle``, and only where torch is installed."""
    if not allow_pickle:
        raise _refuse_pickle(path)
    try:
        import torch
    except ImportError:
        raise InteropError(f"{path}: reading a PyTorch pickle needs torch (pip install torch); or "
                           "convert the file to .safetensors") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:          # torch raises many kinds for a bad file; all mean "unreadable"
        raise InteropError(f"{path}: torch.load(weights_only=True) refused it ({type(e).__name__}: "
                           f"{str(e)[:300]})") from None


def tensors_to_numpy(state: dict, path: Path) -> dict[str, np.ndarray]:
    """torch tensors (or arrays) by name -> float32/int host arrays."""
    out = {}
    for name, t in state.items():
        if not isinstance(name, str):
            raise InteropError(f"{path}: a state dict key {name!r:.60} is not a string")
        if hasattr(t, "detach"):                                  # a torch.Tensor
            t = t.detach().cpu()
            t = t.float() if t.is_floating_point() else t
            t = t.numpy()
        if not isinstance(t, np.ndarray) or t.dtype.kind not in "fiub":
            raise InteropError(f"{path}: {name} is a {type(t).__name__}, not a numeric tensor")
        out[name] = t
    return out


def read_weights(path: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """Every array of a weights file, by name, floats as float32."""
    if path.suffix in PICKLE_SUFFIXES:
        state = read_torch_pickle(path, allow_pickle)
        if not isinstance(state, dict):
            raise InteropError(f"{path}: holds a {type(state).__name__}, expected a state dict")
        return tensors_to_numpy(state, path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InteropError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        file = SafetensorsFile(raw)
    except SafetensorsError as e:
        raise InteropError(f"{path}: not a readable safetensors file: {e}") from None
    out = {}
    for name in file.headers:
        a = file.read(name)
        out[name] = a.astype(np.float32, copy=False) if a.dtype.kind == "f" else a
    return out

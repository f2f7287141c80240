"""Models in and out: GPT-2 and nanoGPT weights into lmroad, lmroad's models out to
PyTorch, nanoGPT and Hugging Face.

    model, tokenizer = load_pretrained("gpt2/")          # a Hugging Face GPT-2 folder
    import_pretrained("gpt2/", "out/gpt2")                # ... as an lmroad checkpoint
    export_checkpoint("out/lstm", "torch", "out/lstm-torch")

From the command line::

    python -m lmroad import --from hf-gpt2 gpt2/ --out out/gpt2
    python -m lmroad sample --checkpoint out/gpt2 --prompt "Hello, I'm a language model,"
    python -m lmroad export --to hf-gpt2 --checkpoint out/transformer --out out/transformer-hf

What goes where (names and layouts: ``lmroad.interop.gpt2``, ``.recurrent``):

    source / target   lmroad model       files
    hf-gpt2           TransformerLM      config.json, model.safetensors (or, only with
                                         allow_pickle, pytorch_model.bin), vocab.json and
                                         merges.txt (the BPE tokenizer)
    nanogpt           TransformerLM      model_args.json + model.safetensors (what export
                                         writes), or nanoGPT's own ckpt.pt (a pickle:
                                         only with allow_pickle)
    torch (export)    RNNLM, LSTMLM,     config.json + model.safetensors, for
                      GRULM              nn.Embedding + nn.RNN/LSTM/GRU + nn.Linear

Weights are written as safetensors (no pickle). Nothing is downloaded: a
folder from the Hugging Face hub must already be on disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from minigrad import nn

from ..checkpoint import (
    CheckpointError,
    _atomic_write,
    _check_model,
    _config_object,
    has_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from ..models import MODELS, TransformerLM
from ..safetensors_file import to_bytes
from . import gpt2, recurrent
from .files import (
    PICKLE_SUFFIXES,
    InteropError,
    read_json,
    read_torch_pickle,
    read_weights,
    tensors_to_numpy,
)

__all__ = ["InteropError", "is_pretrained", "load_pretrained", "import_pretrained", "export_checkpoint",
           "SOURCES", "TARGETS"]

SOURCES = ("hf-gpt2", "nanogpt")
TARGETS = ("torch", "nanogpt", "hf-gpt2")
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


# --------------------------------------------------------------------------- in

def is_pretrained(path: str | os.PathLike) -> bool:
    """Is ``path`` something ``load_pretrained`` reads (a GPT-2 folder, a nanoGPT export or
    checkpoint file), rather than an lmroad checkpoint?"""
    try:
        _detect(Path(path))
    except InteropError:
        return False
    return True


def _detect(path: Path) -> str:
    if path.is_dir() and (path / "config.json").is_file():
        return "hf-gpt2"
    if (path.is_dir() and (path / "model_args.json").is_file()) or path.suffix in PICKLE_SUFFIXES:
        return "nanogpt"
    raise InteropError(f"{path}: neither a Hugging Face GPT-2 folder (config.json + model.safetensors) "
                       "nor a nanoGPT export (model_args.json + model.safetensors) or ckpt.pt; "
                       f"pass the source explicitly ({', '.join(SOURCES)})")


def _load_tokenizer(folder: Path):
    """GPT-2's BPE tokenizer from ``vocab.json`` + ``merges.txt`` in ``folder``, or None."""
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        return None
    from ..data.bpe import BPETokenizer
    try:
        return BPETokenizer.from_files(vocab, merges)
    except (ValueError, TypeError) as e:
        raise InteropError(f"{folder}: its tokenizer files cannot be read: {e}") from None


def _hf_weights(folder: Path, allow_pickle: bool) -> dict[str, np.ndarray]:
    for name in _HF_WEIGHTS:
        if (folder / name).is_file():
            return read_weights(folder / name, allow_pickle)
    if (folder / "model.safetensors.index.json").is_file():
        raise InteropError(f"{folder}: the weights are split into shards (model.safetensors.index.json); "
                           "only single-file GPT-2 folders are read")
    raise InteropError(f"{folder}: no weights file; expected one of {list(_HF_WEIGHTS)}")


def _nanogpt(path: Path, allow_pickle: bool) -> tuple[Any, dict[str, np.ndarray]]:
    if path.is_dir():
        args = read_json(path / "model_args.json", "nanoGPT model_args")
        return gpt2.config_from_nanogpt(args, path / "model_args.json"), \
            read_weights(path / "model.safetensors", allow_pickle)
    ckpt = read_torch_pickle(path, allow_pickle)
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict)
            and isinstance(ckpt.get("model_args"), dict)):
        raise InteropError(f"{path}: not a nanoGPT checkpoint (a dict with 'model' and 'model_args')")
    return gpt2.config_from_nanogpt(ckpt["model_args"], path), tensors_to_numpy(ckpt["model"], path)


def load_pretrained(path: str | os.PathLike, source: str | None = None,
                    allow_pickle: bool = False) -> tuple[TransformerLM, Any]:
    """(TransformerLM in float32 on the CPU, its BPE tokenizer or None) from a Hugging Face
    GPT-2 folder or a nanoGPT checkpoint (``source`` "hf-gpt2" or "nanogpt"; guessed from
    the files when None). Everything is checked before the model is built."""
    path = Path(path)
    if not path.exists():
        raise InteropError(f"{path}: no such file or folder")
    source = _detect(path) if source is None else source
    if source not in SOURCES:
        raise InteropError(f"import: unknown source {source!r}; valid: {', '.join(SOURCES)}")
    if source == "hf-gpt2":
        if not path.is_dir():
            raise InteropError(f"{path}: a Hugging Face GPT-2 model is a folder (config.json, "
                               "model.safetensors, vocab.json, merges.txt)")
        cfg = gpt2.config_from_hf(read_json(path / "config.json", "GPT-2 config"), path / "config.json")
        weights = gpt2.to_lmroad(cfg, _hf_weights(path, allow_pickle), path, conv1d=True)
        tokenizer = _load_tokenizer(path)
    else:
        cfg, state = _nanogpt(path, allow_pickle)
        weights = gpt2.to_lmroad(cfg, state, path, conv1d=False)
        tokenizer = _load_tokenizer(path) if path.is_dir() else None
    try:            # every shape against the config's, before anything the config implies is allocated
        _check_model(str(path), "transformer", dataclasses.asdict(cfg),
                     {n: (a.shape, a.dtype) for n, a in weights.items()})
    except CheckpointError as e:
        raise InteropError(str(e)) from None
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise InteropError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens, more than the "
                           f"model's vocab_size {cfg.vocab_size}")
    with nn.init.skip_init():                     # every weight is loaded next: draw nothing
        model = TransformerLM.from_config(cfg)
    try:
        model.load_state_dict(weights)
    except ValueError as e:
        raise InteropError(f"{path}: {e}") from None
    return model, tokenizer


def import_pretrained(path: str | os.PathLike, out: str | os.PathLike, source: str | None = None,
                      allow_pickle: bool = False, overwrite: bool = False) -> Path:
    """``load_pretrained``, saved as an lmroad checkpoint in ``out`` (for ``lmroad sample``,
    ``eval --data`` and ``export``); returns the checkpoint's JSON path. A run already in
    ``out`` is replaced only with ``overwrite``, and only once the import has succeeded."""
    out = Path(out)
    if has_checkpoint(out) and not overwrite:
        raise InteropError(f"{out}: holds a checkpoint already; pass --overwrite to replace it")
    model, tokenizer = load_pretrained(path, source, allow_pickle)
    if has_checkpoint(out):             # --overwrite: the old run's files go, as train --overwrite's do
        from ..train import _remove_run
        _remove_run(out)
    return save_checkpoint(out, model, tokenizer=tokenizer,
                           extra={"imported_from": str(path), "source": source or _detect(Path(path))})


# --------------------------------------------------------------------------- out

def _write_folder(out: Path, files: dict[str, bytes], overwrite: bool) -> list[Path]:
    clash = [n for n in files if (out / n).exists()]
    if clash and not overwrite:
        raise InteropError(f"{out}: {clash} exist already; pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _atomic_write(out / name, lambda f, data=data: f.write(data))
    return [out / n for n in files]


def _json_bytes(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


def _tokenizer_files(tok: dict | None, block_size: int | None) -> dict[str, bytes]:
    """The checkpoint's tokenizer, in the files the target reads: vocab.json + merges.txt for
    a BPE tokenizer (what GPT2TokenizerFast loads); lmroad's own JSON for the others."""
    if tok is None:
        return {}
    from ..data import tokenizer_from_dict
    tokenizer = tokenizer_from_dict(tok)
    if tok["type"] != "bpe":
        return {"lmroad_tokenizer.json": _json_bytes(tok)}
    files = tokenizer.to_files()
    if "<|endoftext|>" in tokenizer.stoi and block_size is not None:
        files["tokenizer_config.json"] = _json_bytes(
            {"tokenizer_class": "GPT2Tokenizer", "model_max_length": block_size,
             "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"})
    return files


def export_checkpoint(checkpoint: str | os.PathLike, to: str, out: str | os.PathLike,
                      overwrite: bool = False) -> list[Path]:
    """Write the model of the lmroad checkpoint ``checkpoint`` for ``to`` ("torch",
    "nanogpt" or "hf-gpt2") into the folder ``out``; returns the files written."""
    if to not in TARGETS:
        raise InteropError(f"export: unknown target {to!r}; valid: {', '.join(TARGETS)}")
    try:
        ckpt = read_checkpoint(checkpoint)
    except CheckpointError as e:
        raise InteropError(str(e)) from None
    kind = ckpt.model_kind
    if kind not in MODELS:
        raise InteropError(f"{ckpt.json_path}: unknown model kind {kind!r}")
    cfg = _config_object(str(ckpt.json_path), kind, ckpt.model_config)     # read_checkpoint checked it
    targets = {"transformer": ("nanogpt", "hf-gpt2"), "rnn": ("torch",), "lstm": ("torch",),
               "gru": ("torch",)}.get(kind, ())
    if to not in targets:
        hint = f"this kind exports to {', '.join(targets)}" if targets else \
            "an n-gram model is a table of counts, which none of them has"
        raise InteropError(f"export --to {to}: a {kind} model has no equivalent there ({hint})")
    out = Path(out)
    meta = {"format": "pt", "producer": "lmroad"}
    if to == "torch":
        files = {"config.json": _json_bytes(recurrent.torch_config(cfg)),
                 "model.safetensors": to_bytes(recurrent.from_lmroad(cfg, ckpt.weights), meta)}
        files.update(_tokenizer_files(ckpt.tokenizer, None))
    elif to == "nanogpt":
        args = gpt2.config_to_nanogpt(cfg)
        files = {"model_args.json": _json_bytes(args),
                 "model.safetensors": to_bytes(gpt2.from_lmroad(cfg, ckpt.weights, conv1d=False,
                                                                with_head=True), meta)}
        files.update(_tokenizer_files(ckpt.tokenizer, cfg.block_size))
    else:
        tok = ckpt.tokenizer
        eos = None
        if tok is not None and tok["type"] == "bpe" and "<|endoftext|>" in tok["vocab"]:
            eos = tok["vocab"].index("<|endoftext|>")
        files = {"config.json": _json_bytes(gpt2.config_to_hf(cfg, eos)),
                 "model.safetensors": to_bytes(gpt2.from_lmroad(cfg, ckpt.weights, conv1d=True,
                                                                with_head=not cfg.tie_weights), meta)}
        files.update(_tokenizer_files(tok, cfg.block_size))
    return _write_folder(out, files, overwrite)

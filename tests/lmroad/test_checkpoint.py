"""Tests of lmroad.checkpoint: round trips, crash safety, and refusing bad files.

Checkpoints are written in format version 2: ``checkpoint.json``, ``model.safetensors`` (the
weights, a tied weight stored once) and ``state-<step>-<hex>.safetensors`` (every other
array). Version 1 (one ``weights-*.npz`` with everything) still loads: its npz-specific
refusals run on version-1 checkpoints made from version-2 ones
(``checkpoint_files.to_version_1``, which writes what the version-1 ``save_checkpoint`` wrote).

Every refusal is a ``CheckpointError`` that names the file; a pickle in any
disguise is refused without being unpickled (its ``__reduce__`` would create
a marker file, which must not appear).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pickle
import re
import shutil
import struct
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from checkpoint_files import (
    MODEL,
    arrays_of,
    edit_json,
    join_safetensors,
    read_json,
    rewrite,
    safetensors_of,
    sha256,
    split_safetensors,
    state_name,
    to_version_1,
    write_json,
)
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from lmroad import checkpoint as ck
from lmroad.checkpoint import (
    CheckpointError,
    has_checkpoint,
    load_model,
    read_checkpoint,
    read_metrics_log,
    restore_model,
    save_checkpoint,
    truncate_metrics_log,
)
from lmroad.data import CharTokenizer
from lmroad.models import LSTMLM, MODELS, NGramLM, TransformerLM, build_model
from lmroad.weight_shapes import KINDS, expected_weights
from minigrad import optim

V = 7


def tiny_transformer(**kw) -> TransformerLM:
    return TransformerLM(**{"vocab_size": V, "n_layer": 1, "n_head": 2, "n_embd": 8, "block_size": 8, **kw})


def trained_step(model, device="cpu"):
    """One AdamW step, so the optimizer has moments to save."""
    opt = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=1e-2)
    x = mg.tensor(np.arange(16).reshape(2, 8) % V, device=device)
    _, loss = model(x, x)
    loss.backward()
    opt.step()
    return opt


def weights(model) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_same_tree(a, b, where: str = "") -> None:
    """Nested dicts, lists and tuples of the same shape; arrays equal in dtype, shape and values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def assert_same_checkpoint(a: ck.Checkpoint, b: ck.Checkpoint) -> None:
    for part in ("model_kind", "model_config", "weights", "step", "tokenizer", "optimizer", "data_state",
                 "rng_state", "train_config", "metrics", "extra"):
        assert_same_tree(getattr(a, part), getattr(b, part), part)


class Booby:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _weights_file(directory: Path) -> Path:
    """The weights file ``checkpoint.json`` names: model.safetensors, or a version-1 npz."""
    return directory / read_json(directory)["weights_file"]


def _state_file(directory: Path) -> Path:
    return directory / state_name(directory)


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def edit_header(directory: Path, name: str, edit) -> None:
    """Apply ``edit(header, data)`` to the checkpoint's safetensors file ``name`` and vouch for
    the result: ``edit`` changes the header dict in place (returning None) or returns a new
    ``(header, data)``, the header a dict or its text as is."""
    header, data = split_safetensors((directory / name).read_bytes())
    out = edit(header, data)
    if out is not None:
        header, data = out
    rewrite(directory, name, join_safetensors(header, data))


def model_arrays(directory: Path) -> dict[str, np.ndarray]:
    """The arrays of ``model.safetensors``, read by hand."""
    return arrays_of((directory / MODEL).read_bytes())


# =========================================================================== round trips

def test_round_trip_restores_weights_optimizer_and_state(tmp_path):
    model = tiny_transformer()
    opt = trained_step(model)
    tok = CharTokenizer.from_text("abcdefg")
    rng = np.random.default_rng(5)
    save_checkpoint(tmp_path, model, step=7, tokenizer=tok, optimizer=opt,
                    data_state={"batcher": {"position": 3}, "carried": (np.ones((1, 2, 3), np.float32),)},
                    rng_state={"data": rng.bit_generator.state}, train_config={"lr": 0.01},
                    metrics={"best": {"val_loss": 1.5, "step": 7}})
    c = read_checkpoint(tmp_path)
    assert (c.model_kind, c.step, c.train_config) == ("transformer", 7, {"lr": 0.01})
    assert c.metrics["best"] == {"val_loss": 1.5, "step": 7}
    assert c.tokenizer == tok.to_dict()
    assert isinstance(c.data_state["carried"], tuple) and c.data_state["carried"][0].shape == (1, 2, 3)
    assert c.rng_state["data"] == rng.bit_generator.state          # 128-bit ints survive JSON
    assert_same_weights(c.weights, weights(model))

    fresh = tiny_transformer()
    opt2 = optim.AdamW(optim.param_groups_for_weight_decay(fresh, 0.1), lr=1e-2)
    restore_model(fresh, c)
    opt2.load_state_dict(c.optimizer)
    assert_same_weights(weights(fresh), weights(model))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(s1["state"][i][name], s2["state"][i][name])


def test_nested_state_comes_back_as_it_went_in(tmp_path):
    extra = {"a/b": np.zeros(2), "a": {"b": np.ones(3)}, 3: (1, [2.5, None], "x"), "__tricky": True,
             "scalar": np.array(2.5), "empty": np.zeros((0, 3), np.int64)}
    save_checkpoint(tmp_path, tiny_transformer(), extra=extra)
    back = read_checkpoint(tmp_path).extra
    assert back["a/b"].shape == (2,) and back["a"]["b"].shape == (3,)
    assert back[3] == (1, [2.5, None], "x") and back["__tricky"] is True
    # before: a 0-d array came back 1-d (the safetensors writer's np.ascontiguousarray)
    assert back["scalar"].shape == () and back["scalar"] == 2.5
    assert back["empty"].shape == (0, 3) and back["empty"].dtype == np.int64


def test_ngram_counts_round_trip_through_load_model(tmp_path):
    model = NGramLM(n=3, vocab_size=V).fit(np.array([0, 1, 2, 3, 4, 5, 6, 1, 2, 3]))
    save_checkpoint(tmp_path, model)
    loaded, c = load_model(tmp_path)
    assert isinstance(loaded, NGramLM) and loaded.num_entries() == model.num_entries()
    np.testing.assert_allclose(loaded.probs([1, 2]), model.probs([1, 2]))


@pytest.mark.parametrize(("saved_on", "loaded_on"), [("fake", "cpu"), ("cpu", "fake")])
def test_checkpoint_saved_on_one_device_loads_on_another(tmp_path, saved_on, loaded_on):
    model = tiny_transformer().to(saved_on)
    trained_step(model, saved_on)
    save_checkpoint(tmp_path, model)
    loaded, _ = load_model(tmp_path, device=loaded_on)
    assert all(p.device == mg.device(loaded_on) for p in loaded.parameters())
    assert_same_weights(weights(loaded), weights(model))


def test_the_files_are_the_model_weights_and_a_state_file(tmp_path):
    model = tiny_transformer()
    opt = trained_step(model)
    save_checkpoint(tmp_path, model, step=7, optimizer=opt, data_state={"carried": np.ones(3, np.float32)})
    meta = read_json(tmp_path)
    assert meta["version"] == 2 and meta["weights_file"] == "model.safetensors"
    assert re.fullmatch(r"state-00000007-[0-9a-f]{8}\.safetensors", meta["state_file"])
    assert files_in(tmp_path) == ["checkpoint.json", "model.safetensors", meta["state_file"]]
    # model.safetensors: the weights alone, by their own names, the tied one once
    stored = model_arrays(tmp_path)
    assert list(stored) == [n for n in model.state_dict() if n != "lm_head.weight"]
    assert meta["model"]["tied"] == {"lm_head.weight": "wte.weight"}
    assert_same_weights(stored, {k: v for k, v in weights(model).items() if k != "lm_head.weight"})
    # the state file: everything else, under prefixed keys the JSON refers to
    state = arrays_of(_state_file(tmp_path).read_bytes())
    assert {k.split("/")[0] for k in state} == {"optimizer", "data"}
    assert "data/carried" in state and "optimizer/state/0/exp_avg" in state
    first = meta["optimizer"]["state"]["__items__"][0][1]
    assert first["exp_avg"] == {"__array__": "optimizer/state/0/exp_avg"}
    assert meta["state_bytes"] == _state_file(tmp_path).stat().st_size
    assert meta["weights_sha256"] == sha256((tmp_path / MODEL).read_bytes())


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_a_tied_weight_is_stored_once_and_loaded_as_one_parameter(tmp_path, kind):
    if kind == "transformer":
        model, alias, source = tiny_transformer(), "lm_head.weight", "wte.weight"
    else:
        model, alias, source = LSTMLM(vocab_size=V, n_embd=4, hidden_size=4, tie_weights=True), \
            "head.weight", "embedding.weight"
    opt = trained_step(model)
    save_checkpoint(tmp_path, model, optimizer=opt)
    assert alias not in model_arrays(tmp_path) and source in model_arrays(tmp_path)
    assert read_json(tmp_path)["model"]["tied"] == {alias: source}
    c = read_checkpoint(tmp_path)
    assert c.weights[alias] is c.weights[source]
    loaded, _ = load_model(c)
    pair = ((loaded.lm_head, loaded.wte) if kind == "transformer" else (loaded.head, loaded.embedding))
    assert pair[0].weight is pair[1].weight, "the two names must be one Parameter after loading"
    assert len(list(loaded.parameters())) == len(list(model.parameters()))   # so trained once a step
    assert_same_weights(weights(loaded), weights(model))
    # a model built apart and restored keeps its own tie as well
    fresh = type(model).from_config(c.model_config)
    restore_model(fresh, c)
    trained_step(fresh)                                   # one step moves both names together
    after = weights(fresh)
    np.testing.assert_array_equal(after[alias], after[source])
    assert not np.array_equal(after[source], c.weights[source])


def test_saves_replace_the_files_and_tidy_up(tmp_path):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1, optimizer=trained_step(model))
    first_state = state_name(tmp_path)
    (tmp_path / ".tmp-0123456789ab").write_bytes(b"a save killed mid-write")
    (tmp_path / "state-00000001-deadbeef.safetensors").write_bytes(b"an interrupted save's state")
    (tmp_path / "notes.txt").write_text("not ours: kept")
    save_checkpoint(tmp_path, model, step=2, optimizer=trained_step(model))
    assert state_name(tmp_path) != first_state
    assert files_in(tmp_path) == ["checkpoint.json", "model.safetensors", "notes.txt", state_name(tmp_path)]
    assert state_name(tmp_path).startswith("state-00000002-")
    assert read_checkpoint(tmp_path / "checkpoint.json").step == 2     # the JSON's path works too
    save_checkpoint(tmp_path, model, step=3)                           # no arrays but the weights
    assert read_json(tmp_path)["state_file"] is None and read_json(tmp_path)["state_bytes"] == 0
    assert files_in(tmp_path) == ["checkpoint.json", "model.safetensors", "notes.txt"]
    assert read_checkpoint(tmp_path).step == 3 and read_checkpoint(tmp_path).optimizer is None


# =========================================================================== crash safety
#
# A save renames four files into place: 1. its state file, 2. checkpoint.next.json, 3.
# model.safetensors (over the old one), 4. checkpoint.next.json to checkpoint.json. A crash
# just before or just after any of them leaves the last checkpoint (up to step 3) or the new
# one (from step 3 on) loadable, never neither, and the next save tidies up.

_REAL_REPLACE = os.replace
STEPS = ["state", "next", "model", "commit"]
CRASHES = [(step, when) for step in STEPS for when in ("before", "after")]


def _step_of(src, dst, model_done: bool) -> str | None:
    name = Path(dst).name
    if name.startswith("state-"):
        return "state"
    if name == ck.NEXT_FILE:
        return "next"
    if name == ck.MODEL_FILE:
        return "model"
    if name == ck.CHECKPOINT_FILE and Path(src).name == ck.NEXT_FILE and model_done:
        return "commit"
    return None


def crashing_replace(step: str, when: str):
    """``os.replace`` for a save that dies just ``when`` ("before" or "after") renaming ``step``."""
    done = set()

    def replace(src, dst):
        this = _step_of(src, dst, "model" in done)
        if this == step and when == "before":
            raise OSError(f"simulated crash before the {step} rename")
        _REAL_REPLACE(src, dst)
        done.add(this)
        if this == step:
            raise OSError(f"simulated crash after the {step} rename")
    return replace


def new_checkpoint_is_in_place(step: str, when: str) -> bool:
    """Does a crash at (step, when) come after model.safetensors was replaced?"""
    return STEPS.index(step) + (when == "after") > STEPS.index("model")


def crash_saving(monkeypatch, crash, directory, model, **kw) -> None:
    """``save_checkpoint(directory, model, **kw)``, dying at ``crash`` = (step, when)."""
    monkeypatch.setattr(ck.os, "replace", crashing_replace(*crash))
    try:
        with pytest.raises(OSError, match="simulated crash"):
            save_checkpoint(directory, model, **kw)
    finally:
        monkeypatch.setattr(ck.os, "replace", _REAL_REPLACE)


class Saved:
    """What one save stored: its step, weights and optimizer state, to compare a load with."""

    def __init__(self, step: int, model, opt):
        self.step, self.weights, self.optimizer = step, weights(model), opt.state_dict()

    def assert_is(self, c: ck.Checkpoint) -> None:
        assert c.step == self.step
        assert_same_weights(c.weights, self.weights)
        assert_same_tree(c.optimizer, self.optimizer, "optimizer")


def save_and_remember(model, step: int) -> tuple[Saved, dict]:
    """Train a step; (what a save with its optimizer will store, that save's arguments)."""
    opt = trained_step(model)
    kw = dict(step=step, optimizer=opt)
    return Saved(step, model, opt), kw


def assert_tidy(directory: Path, step: int) -> None:
    assert files_in(directory) == ["checkpoint.json", "model.safetensors", state_name(directory)]
    assert state_name(directory).startswith(f"state-{step:08d}-")


@pytest.mark.parametrize(("step", "when"), CRASHES)
def test_a_crash_at_any_step_of_a_save_leaves_the_last_or_the_new_checkpoint(tmp_path, monkeypatch,
                                                                              step, when):
    model = tiny_transformer()
    old, kw = save_and_remember(model, 1)
    save_checkpoint(tmp_path, model, **kw)
    new, kw = save_and_remember(model, 2)                 # the weights move on ...
    crash_saving(monkeypatch, (step, when), tmp_path, model, **kw)  # ... and the save dies
    assert not list(tmp_path.glob(".tmp-*"))
    (new if new_checkpoint_is_in_place(step, when) else old).assert_is(read_checkpoint(tmp_path))
    assert has_checkpoint(tmp_path)
    latest, kw = save_and_remember(model, 3)
    save_checkpoint(tmp_path, model, **kw)                          # the next save tidies up
    latest.assert_is(read_checkpoint(tmp_path))
    assert_tidy(tmp_path, 3)


def test_two_crashes_in_a_row_leave_the_newest_complete_checkpoint(tmp_path, monkeypatch):
    # before: a save that crashed after replacing the weights left its JSON in
    # checkpoint.next.json; the next save overwrote that file before replacing the weights, and a
    # crash in between left no JSON that matched them (neither checkpoint loaded)
    model = tiny_transformer()
    distinct = [("state", "before"), ("state", "after"), ("next", "after"), ("model", "after"),
                ("commit", "after")]                    # after one rename = before the next
    for i, first in enumerate(distinct):
        for j, second in enumerate(distinct):
            directory = tmp_path / f"{i}-{j}"
            a, kw = save_and_remember(model, 1)
            save_checkpoint(directory, model, **kw)
            b, kw = save_and_remember(model, 2)
            crash_saving(monkeypatch, first, directory, model, **kw)
            current = b if new_checkpoint_is_in_place(*first) else a
            c, kw = save_and_remember(model, 3)          # e.g. a run resumed from current
            crash_saving(monkeypatch, second, directory, model, **kw)
            expected = c if new_checkpoint_is_in_place(*second) else current
            try:
                expected.assert_is(read_checkpoint(directory))
            except CheckpointError as e:
                raise AssertionError(f"crashes at {first} then {second}: nothing loads ({e})") from None
            d, kw = save_and_remember(model, 4)
            save_checkpoint(directory, model, **kw)
            d.assert_is(read_checkpoint(directory))
            assert_tidy(directory, 4)


@pytest.mark.parametrize("old_version", [1, 2])
def test_a_kill_at_any_moment_of_a_save_leaves_the_last_or_the_new_checkpoint(tmp_path, monkeypatch,
                                                                               old_version):
    # a hard kill runs no clean-up: the directory as it is just before and just after each rename
    # (temporary files included) is what the next load finds
    directory = tmp_path / "ck"
    model = tiny_transformer()
    old, kw = save_and_remember(model, 1)
    save_checkpoint(directory, model, **kw)
    if old_version == 1:
        to_version_1(directory)
    new, kw = save_and_remember(model, 2)
    moments = []

    def replace(src, dst):
        moments.append(shutil.copytree(directory, tmp_path / f"{len(moments):02d}-before-{Path(dst).name}"))
        _REAL_REPLACE(src, dst)
        moments.append(shutil.copytree(directory, tmp_path / f"{len(moments):02d}-after-{Path(dst).name}"))

    monkeypatch.setattr(ck.os, "replace", replace)
    save_checkpoint(directory, model, **kw)
    monkeypatch.undo()
    assert len(moments) == 2 * len(STEPS)
    steps = []
    for moment in moments:
        try:
            c = read_checkpoint(moment)
        except CheckpointError as e:
            raise AssertionError(f"{moment.name}: neither checkpoint loads ({e})") from None
        (new if c.step == 2 else old).assert_is(c)
        steps.append(c.step)
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 2    # once new, new from then on
    # version 2: the old checkpoint stands until model.safetensors is replaced; version 1's npz
    # is not replaced, so its JSON stands until the commit
    assert steps.count(1) == (5 if old_version == 2 else 7)


def test_a_crash_in_the_first_save_leaves_no_checkpoint_and_the_next_save_succeeds(tmp_path, monkeypatch):
    model = tiny_transformer()
    _, kw = save_and_remember(model, 1)
    crash_saving(monkeypatch, ("commit", "before"), tmp_path, model, **kw)
    assert not has_checkpoint(tmp_path)                          # a new run does not resume it
    saved, kw = save_and_remember(model, 2)
    save_checkpoint(tmp_path, model, **kw)
    saved.assert_is(read_checkpoint(tmp_path))
    assert_tidy(tmp_path, 2)


def test_crash_while_writing_leaves_no_partial_file_in_place(tmp_path, monkeypatch):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1)
    before = weights(model)
    trained_step(model)

    def killed(fd):                                        # the bytes are out, not yet on disk
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model, step=2)
    monkeypatch.undo()
    assert not list(tmp_path.glob(".tmp-*"))
    assert_same_weights(read_checkpoint(tmp_path).weights, before)
    # a hard kill leaves its temporary file behind: loading ignores it, the next save removes it
    (tmp_path / ".tmp-deadbeef0000").write_bytes(b"PK\x03\x04 partial")
    assert read_checkpoint(tmp_path).step == 1
    save_checkpoint(tmp_path, model, step=3)
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("race", ["a whole save", "a save up to its commit"])
def test_a_reader_racing_a_save_reads_the_new_checkpoint(tmp_path, monkeypatch, race):
    # the reader has read checkpoint.json (step 1) when a save replaces the files it names
    model = tiny_transformer()
    _, kw = save_and_remember(model, 1)
    save_checkpoint(tmp_path, model, **kw)
    new, kw = save_and_remember(model, 2)
    real, seen = ck._read_named, []

    def save_meanwhile(json_path, meta):
        seen.append((json_path.name, meta["step"]))
        if len(seen) == 1:
            if race == "a whole save":
                save_checkpoint(tmp_path, model, **kw)
            else:                                  # model.safetensors replaced, not yet committed
                crash_saving(monkeypatch, ("commit", "before"), tmp_path, model, **kw)
        return real(json_path, meta)

    monkeypatch.setattr(ck, "_read_named", save_meanwhile)
    new.assert_is(read_checkpoint(tmp_path))
    assert seen[0] == ("checkpoint.json", 1)
    assert seen[1] == (("checkpoint.json" if race == "a whole save" else ck.NEXT_FILE), 2)


# =========================================================================== corrupt files

def _flip_middle(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(("damage", "expect"), [
    ("truncate model", "truncated"),
    ("flip a model byte", "SHA-256"),
    ("delete model", "model.safetensors: missing"),
    ("truncate state", "truncated"),
    ("flip a state byte", "SHA-256"),
    ("delete state", r"state-00000001-[0-9a-f]{8}\.safetensors: missing"),
    ("truncate json", "not valid JSON"),
    ("garbage json", "not an lmroad checkpoint"),
    ("weights path escape", "'weights_file' must be 'model.safetensors'"),
    ("state path escape", "'state_file' must be null"),
    ("weights an npz", "'weights_file' must be 'model.safetensors'"),
    ("state absent but sized", "'state_file' must be null"),
    ("state size", "bytes, but checkpoint.json says 5"),
    ("state hash", "SHA-256 does not match"),
    ("version 3", "format version 3; this lmroad reads versions 1 to 2"),
])
def test_corrupt_or_truncated_files_raise_one_clear_error(saved, damage, expect):
    model, state, js = saved / MODEL, _state_file(saved), saved / ck.CHECKPOINT_FILE
    fields = {"weights path escape": {"weights_file": "../../etc/passwd"},
              "state path escape": {"state_file": f"../{state.name}"},
              "weights an npz": {"weights_file": "weights-00000001-0123abcd.npz"},
              "state absent but sized": {"state_file": None},
              "state size": {"state_bytes": 5},
              "state hash": {"state_sha256": "0" * 64},
              "version 3": {"version": 3}}
    if damage in fields:
        edit_json(saved, **fields[damage])
    elif damage == "truncate json":
        js.write_text(js.read_text()[:100])
    elif damage == "garbage json":
        js.write_text(json.dumps({"format": "something else"}))
    else:
        file = model if "model" in damage else state
        if damage.startswith("truncate"):
            file.write_bytes(file.read_bytes()[:200])
        elif damage.startswith("flip"):
            _flip_middle(file)
        else:
            file.unlink()
    with pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(saved)
    assert str(saved) in str(err.value)


@pytest.mark.parametrize("which", ["model", "state", "version-1 npz"])
def test_a_corrupt_file_that_passes_the_hash_is_still_refused(saved, which):
    if which == "version-1 npz":
        npz = to_version_1(saved)
        rewrite(saved, npz.name, b"PK\x03\x04" + b"\x00" * 300)
        expect = "not a readable npz"
    else:
        name = MODEL if which == "model" else state_name(saved)
        rewrite(saved, name, b"\x00" * 300)
        expect = "the header does not start with '{'"
    with pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(saved)
    assert str(_weights_file(saved) if which != "state" else _state_file(saved)) in str(err.value)


def test_missing_directory_and_plain_file_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        read_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no checkpoint.json"):
        read_checkpoint(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a directory"):
        read_checkpoint(tmp_path / "model.pt")


@pytest.mark.parametrize("where", ["model", "state"])
def test_non_finite_arrays_are_refused_on_load(saved, where):
    name = MODEL if where == "model" else state_name(saved)
    arrays = arrays_of((saved / name).read_bytes())
    key = next(k for k in arrays if k.endswith(("weight", "exp_avg")) and arrays[k].dtype.kind == "f")
    arrays[key].flat[0] = np.nan
    rewrite(saved, name, safetensors_of(arrays))
    with pytest.raises(CheckpointError, match=f"{re.escape(name)}: array '(model/)?{re.escape(key)}' holds "
                                              "1 non-finite value"):
        read_checkpoint(saved)


def test_non_finite_weights_are_refused_on_save_and_the_last_checkpoint_kept(tmp_path):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1)
    before = files_in(tmp_path), (tmp_path / MODEL).read_bytes()
    p = next(iter(model.parameters()))
    p.data[...] = np.inf
    with pytest.raises(CheckpointError, match="refusing to save"):
        save_checkpoint(tmp_path, model, step=2)
    assert (files_in(tmp_path), (tmp_path / MODEL).read_bytes()) == before     # nothing written
    assert read_checkpoint(tmp_path).step == 1


# =========================================================================== the wrong model

def test_wrong_kind_or_config_is_refused_and_nothing_is_loaded(tmp_path):
    save_checkpoint(tmp_path, tiny_transformer(), step=1)
    c = read_checkpoint(tmp_path)
    lstm = LSTMLM(vocab_size=V, n_embd=4, hidden_size=4)
    with pytest.raises(CheckpointError, match="holds a 'transformer' model, not 'lstm'"):
        restore_model(lstm, c)
    with pytest.raises(CheckpointError, match="holds a 'transformer' model, not 'lstm'"):
        load_model(tmp_path, expected_kind="lstm")
    other = tiny_transformer(n_embd=12)
    before = weights(other)
    with pytest.raises(CheckpointError, match=r"config differs: n_embd: checkpoint 8 vs model 12"):
        restore_model(other, c)
    assert_same_weights(weights(other), before)


def test_shape_mismatch_is_refused_and_nothing_is_loaded(tmp_path):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1)
    good = read_checkpoint(tmp_path)
    arrays = model_arrays(tmp_path)
    arrays["wte.weight"] = np.zeros((3, 3), np.float32)
    rewrite(tmp_path, MODEL, safetensors_of(arrays))
    # the file: refused on reading, from the header, naming the weight and both shapes
    with pytest.raises(CheckpointError, match=r"wte\.weight has shape \(3, 3\), the config implies "
                                              r"\(7, 8\)") as err:
        read_checkpoint(tmp_path)
    assert str(tmp_path / MODEL) in str(err.value)
    # a Checkpoint made in memory: refused by the model, which is left as it was
    good.weights["wte.weight"] = np.zeros((3, 3), np.float32)
    fresh = tiny_transformer()
    before = weights(fresh)
    with pytest.raises(CheckpointError, match="does not fit the model.*shape"):
        restore_model(fresh, good)
    assert_same_weights(weights(fresh), before)


def test_unknown_model_kind_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path, tiny_transformer(), model_kind="mamba")
    with pytest.raises(CheckpointError, match="unknown model kind 'mamba'"):
        load_model(tmp_path)


# =========================================================================== pickles in disguise

@pytest.mark.parametrize("disguise", ["model", "state", "version-1 npz", "json", "directory"])
def test_pickle_file_renamed_as_a_checkpoint_is_refused(tmp_path, disguise):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Booby(str(marker)))
    directory = tmp_path / "ck"
    save_checkpoint(directory, tiny_transformer(), step=1, optimizer=trained_step(tiny_transformer()))
    if disguise in ("model", "state"):                     # the JSON even vouches for its hash
        rewrite(directory, MODEL if disguise == "model" else state_name(directory), payload)
        match = r"header length says .* \(it may be a pickle, which could run code: refused\)"
    elif disguise == "version-1 npz":
        rewrite(directory, to_version_1(directory).name, payload)
        match = "not an .npz"
    elif disguise == "json":
        (directory / ck.CHECKPOINT_FILE).write_bytes(payload)
        match = "not valid JSON"
    else:
        directory = tmp_path / "model.ckpt"
        directory.write_bytes(payload)
        match = "is a directory"
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(directory)
    assert not marker.exists()


@pytest.mark.parametrize("dtype", ["O", "object", "|O"])
def test_an_object_dtype_in_a_safetensors_header_is_refused_without_unpickling(saved, dtype):
    marker = saved / "pwned"
    payload = pickle.dumps(Booby(str(marker)))

    def smuggle(header, data):           # the pickle as the data of an entry the JSON names
        header["extra/evil"] = {"dtype": dtype, "shape": [len(payload)],
                                "data_offsets": [len(data), len(data) + len(payload)]}
        return header, data + payload

    edit_header(saved, state_name(saved), smuggle)
    edit_json(saved, extra={"__array__": "extra/evil"})
    with pytest.raises(CheckpointError, match=f"'extra/evil': dtype '{re.escape(dtype)}'; readable are"):
        load_model(saved)
    assert not marker.exists()


def test_saving_refuses_objects_it_cannot_store_without_pickle(tmp_path):
    with pytest.raises(CheckpointError, match="not JSON and not an array"):
        save_checkpoint(tmp_path, tiny_transformer(), extra={"fn": print})
    with pytest.raises(CheckpointError, match="dtype object"):
        save_checkpoint(tmp_path, tiny_transformer(), extra={"a": np.array([None], dtype=object)})


# =========================================================================== crafted files
#
# Each class of crafted file, written by hand so that it passes the hash check (the JSON
# vouches for it): only the loader's own checks stand between it and an allocation.


@contextlib.contextmanager
def bounded(seconds: float, megabytes: float):
    """The block must finish within ``seconds`` and allocate at most ``megabytes`` at its peak."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        elapsed, (_, peak) = time.perf_counter() - t0, tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < megabytes * 2**20, f"allocated {peak / 2**20:.1f} MiB at the peak"


@pytest.fixture
def saved(tmp_path) -> Path:
    save_checkpoint(tmp_path, tiny_transformer(), step=1, optimizer=trained_step(tiny_transformer()),
                    tokenizer=CharTokenizer.from_text("abcdefg"))
    return tmp_path


@pytest.mark.parametrize(("where", "edit", "expect"), [
    # before np.load believed an npz header and asked for 3.5 EiB (MemoryError); a safetensors
    # header's shape must match its byte range
    ("model", ("wte.weight", "shape", [10**9, 10**9]),
     r"'wte\.weight': shape \(1000000000, 1000000000\) of F32 is 4000000000000000000 bytes, but its "
     r"data_offsets span 224"),
    ("state", ("optimizer/state/0/exp_avg", "shape", [10**9, 10**9]),
     r"'optimizer/state/0/exp_avg': shape \(1000000000, 1000000000\)"),
    ("model", ("wte.weight", "data_offsets", [0, 10**18]),
     r"'wte\.weight': data_offsets must be \[begin, end\]"),
    ("model", ("wte.weight", "shape", [10**30]), "is 4000000000000000000000000000000 bytes"),
    ("model", ("wte.weight", "shape", [7] * 65), "shape must be a list of at most 64 ints"),
])
def test_a_header_claiming_a_huge_shape_is_refused_from_the_header_alone(saved, where, edit, expect):
    name, (entry, key, value) = MODEL if where == "model" else state_name(saved), edit
    edit_header(saved, name, lambda header, data: header[entry].__setitem__(key, value))
    with bounded(seconds=2, megabytes=4), pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(saved)
    assert str(saved / name) in str(err.value)


def test_a_header_length_beyond_the_file_is_refused(saved):
    raw = (saved / MODEL).read_bytes()
    rewrite(saved, MODEL, struct.pack("<Q", 10**18) + raw[8:])
    with bounded(seconds=2, megabytes=4), pytest.raises(CheckpointError, match="the header length says "
                                                                                 "1000000000000000000 bytes"):
        read_checkpoint(saved)


def test_an_empty_array_claiming_huge_sizes_is_refused_from_the_header(saved):
    # before: shape (0, 10**30) is 0 bytes and passed the header checks, then NumPy's reshape
    # raised a ValueError (not a CheckpointError) while reading the data
    def add_empty(header, data):
        header["extra/empty"] = {"dtype": "F32", "shape": [0, 10**30], "data_offsets": [0, 0]}

    edit_header(saved, state_name(saved), add_empty)
    edit_json(saved, extra={"__array__": "extra/empty"})
    with pytest.raises(CheckpointError, match=r"'extra/empty': shape \(0, 10{30}\) is empty but larger than "
                                              "any array can be"):
        read_checkpoint(saved)


@pytest.mark.parametrize("dtype", ["F8_E4M3", "C64", "F128", "f32", "float32", "", 3, None, ["F32"]])
def test_unknown_dtypes_are_refused(saved, dtype):
    edit_header(saved, MODEL, lambda header, data: header["wte.weight"].__setitem__("dtype", dtype))
    with pytest.raises(CheckpointError, match=r"entry 'wte\.weight': dtype .*; readable are \['BF16', "
                                              "'BOOL'") as err:
        read_checkpoint(saved)
    assert str(saved / MODEL) in str(err.value)


def test_weights_of_an_integer_dtype_are_refused(saved):
    edit_header(saved, MODEL, lambda header, data: header["wte.weight"].__setitem__("dtype", "I32"))
    with pytest.raises(CheckpointError, match=r"wte\.weight has dtype int32, expected floating point"):
        read_checkpoint(saved)


def test_bfloat16_weights_as_other_tools_write_them_load_as_float32(saved):
    # a bfloat16 is the top half of a float32: the weights as bfloat16, then back, exactly
    header, data = split_safetensors((saved / MODEL).read_bytes())
    arrays = model_arrays(saved)
    out, chunks, at = {"__metadata__": header["__metadata__"]}, [], 0
    for name, a in arrays.items():
        raw = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
        out[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    rewrite(saved, MODEL, join_safetensors(out, b"".join(chunks)))
    model, c = load_model(saved)
    for name, a in arrays.items():
        want = ((a.view(np.uint32) >> 16) << 16).view(np.float32)
        assert c.weights[name].dtype == np.float32
        np.testing.assert_array_equal(c.weights[name], want, err_msg=name)
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), want, err_msg=name)


@pytest.mark.parametrize("key", ["wte.weight", "__metadata__"])
def test_a_key_twice_in_a_safetensors_header_is_refused(saved, key):
    # json.loads would keep the last of the two: the impostor's
    def twice(header, data):
        text = json.dumps(header)
        first = json.dumps({key: header[key]})[1:-1]
        return text.replace(first, f"{first}, {first}", 1), data

    edit_header(saved, MODEL, twice)
    with pytest.raises(CheckpointError, match=f"the header has the key '{key}' twice") as err:
        read_checkpoint(saved)
    assert str(saved / MODEL) in str(err.value)


def _entries(header: dict) -> list[tuple[str, dict]]:
    return sorted(((k, e) for k, e in header.items() if k != "__metadata__"),
                  key=lambda kv: kv[1]["data_offsets"])


def _gap(header, data):                          # the second array moved 4 bytes on, its bytes too
    _, *rest = _entries(header)
    cut = rest[0][1]["data_offsets"][0]
    for _, e in rest:
        e["data_offsets"] = [e["data_offsets"][0] + 4, e["data_offsets"][1] + 4]
    return header, data[:cut] + b"\0" * 4 + data[cut:]


def _overlap(header, data):                      # the second array starts inside the first
    _, (_, b), *_ = _entries(header)
    b["data_offsets"] = [b["data_offsets"][0] - 4, b["data_offsets"][1] - 4]


def _empty_inside(header, data):                 # an empty array in the middle of another one
    header["blocks.0.x"] = {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}


MALFORMED = {
    "gap": (_gap, r"starts at byte 228 of the data, but the entries before it end at 224: arrays must tile"),
    "overlap": (_overlap, "starts at byte 220 of the data, but the entries before it end at 224"),
    "an empty array inside another": (_empty_inside, "starts at byte 4 of the data, but the entries before "
                                                     "it end at 224"),
    "trailing bytes": (lambda h, d: (h, d + b"\0" * 4), "but the file holds .*: bytes that no array owns"),
    "data cut short": (lambda h, d: (h, d[:-4]), "data_offsets must be .* <= "),
    "header a list": (lambda h, d: ("[" + json.dumps(h) + "]", d), "the header does not start with '{'"),
    "header after a space": (lambda h, d: (" " + json.dumps(h), d), "the header does not start with '{'"),
    "header cut short": (lambda h, d: (json.dumps(h)[:-1], d), "the header is not valid JSON"),
    "header not utf-8": (lambda h, d: (json.dumps(h).encode() + b"\xff", d), "the header is not valid JSON"),
    "header two objects": (lambda h, d: ("{}" + json.dumps(h), d), "the header is not valid JSON"),
    "entry without dtype": (lambda h, d: h["wte.weight"].__delitem__("dtype"),
                            r"entry 'wte\.weight': must be an object with exactly "
                            r"\['data_offsets', 'dtype', 'shape'\]"),
    "entry with more keys": (lambda h, d: h["wte.weight"].update(more=1), "must be an object with exactly"),
    "entry a list": (lambda h, d: h.update({"wte.weight": [0, 224]}), "must be an object with exactly"),
    "shape of a float": (lambda h, d: h["wte.weight"].update(shape=[7, 8.0]),
                         "shape must be a list of at most 64 ints >= 0"),
    "shape negative": (lambda h, d: h["wte.weight"].update(shape=[7, -8]), "shape must be a list"),
    "shape of a bool": (lambda h, d: h["wte.weight"].update(shape=[7, True]), "shape must be a list"),
    "shape a string": (lambda h, d: h["wte.weight"].update(shape="7, 8"), "shape must be a list"),
    "shape too big for its bytes": (lambda h, d: h["wte.weight"].update(shape=[8, 8]),
                                    r"shape \(8, 8\) of F32 is 256 bytes, but its data_offsets span 224"),
    "offsets reversed": (lambda h, d: h["wte.weight"].update(data_offsets=[224, 0]), "data_offsets must be"),
    "offsets one number": (lambda h, d: h["wte.weight"].update(data_offsets=[0]), "data_offsets must be"),
    "offsets floats": (lambda h, d: h["wte.weight"].update(data_offsets=[0.0, 224]), "data_offsets must be"),
    "metadata not strings": (lambda h, d: h.update(__metadata__={"format": 1}),
                             "'__metadata__' must map strings to strings"),
    "metadata a list": (lambda h, d: h.update(__metadata__=["np"]),
                        "'__metadata__' must map strings to strings"),
}


@pytest.mark.parametrize(("edit", "expect"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_safetensors_header_is_refused(saved, edit, expect):
    edit_header(saved, MODEL, edit)
    with pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(saved)
    assert str(saved / MODEL) in str(err.value)


@pytest.mark.parametrize(("where", "extra", "expect"), [
    ("state", "extra/stowaway", r"holds arrays \['extra/stowaway'\] that checkpoint\.json does not name"),
    ("model", "evil.weight", r"holds weights \['evil\.weight'\] it does not"),
    ("model", "lm_head.weight", r"holds weights \['lm_head\.weight'\] it does not"),   # the tie stored twice
    # before: the alias in the state file was silently replaced by the weight it is tied to
    ("state", "model/lm_head.weight", r"holds \['model/lm_head\.weight'\]; weights are stored in "
                                      r"model\.safetensors only"),
    ("state", "model/wte.weight", r"holds \['model/wte\.weight'\]; weights are stored in"),
])
def test_an_array_the_json_does_not_name_is_refused(saved, where, extra, expect):
    name = MODEL if where == "model" else state_name(saved)
    arrays = arrays_of((saved / name).read_bytes())
    arrays[extra] = np.zeros((7, 8), np.float32)
    rewrite(saved, name, safetensors_of(arrays))
    with pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(saved)
    assert str(saved / name) in str(err.value)


@pytest.mark.parametrize(("tied", "expect"), [
    ({}, r"model\.safetensors: missing weights \['lm_head\.weight'\] that checkpoint\.json lists"),
    ({"lm_head.weight": "nope"}, "'model.tied' must map listed weight names to listed names"),
    ({"lm_head.weight": "lm_head.weight"}, "'model.tied' must map"),
    ({"wte.weight": "lm_head.weight"}, r"missing weights \['lm_head\.weight'\].*and holds weights "
                                       r"\['wte\.weight'\] it does not"),
    ({"lm_head.weight": "wte.weight", "wpe.weight": "lm_head.weight"}, "'model.tied' must map"),
    ({"lm_head.weight": "wpe.weight"}, r"lm_head\.weight has shape \(8, 8\), the config implies \(7, 8\)"),
    ([["lm_head.weight", "wte.weight"]], "'model.tied' must map"),
])
def test_a_tie_the_files_do_not_bear_out_is_refused(saved, tied, expect):
    meta = read_json(saved)
    meta["model"]["tied"] = tied
    write_json(saved, meta)
    with pytest.raises(CheckpointError, match=expect):
        read_checkpoint(saved)


def test_a_weight_missing_from_the_model_file_is_refused(saved):
    arrays = model_arrays(saved)
    del arrays["wpe.weight"]
    rewrite(saved, MODEL, safetensors_of(arrays))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing weights \['wpe\.weight'\]"):
        read_checkpoint(saved)


@pytest.mark.parametrize(("old", "new", "key"), [
    ('"step": 1,', '"step": 1, "step": 999,', "step"),
    ('"n_embd": 8,', '"n_embd": 8, "n_embd": 16,', "n_embd"),
])
def test_a_key_twice_in_one_json_object_is_refused(saved, old, new, key):
    # before: json kept the last value without a word
    js = saved / ck.CHECKPOINT_FILE
    js.write_text(json.dumps(json.loads(js.read_text())).replace(old, new, 1))
    with pytest.raises(CheckpointError, match=f"the key '{key}' appears twice") as err:
        read_checkpoint(saved)
    assert str(js) in str(err.value)


INT_RANGE = "expected an int from 1 to 2147483647"


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("n_embd", "8", f"n_embd: {INT_RANGE}, got '8'"),
    ("n_embd", -1, f"n_embd: {INT_RANGE}, got -1"),
    ("n_embd", True, f"n_embd: {INT_RANGE}, got True"),
    ("n_embd", 8.0, f"n_embd: {INT_RANGE}, got 8.0"),
    ("n_layer", 10**30, f"n_layer: {INT_RANGE}, got 1000000000000000000000000000000"),
    ("n_head", None, f"n_head: {INT_RANGE}, got None"),
    ("dropout", float("nan"), "dropout: expected a finite number, got nan"),
    ("dropout", "0.1", "dropout: expected a finite number"),
    ("dropout", 1.5, r"dropout must be in \[0, 1\)"),
    ("bias", "yes", "bias: expected true or false, got 'yes'"),                 # before: loaded
    ("activation", 3, "activation: expected a string, got 3"),
    ("surprise", 1, r"unknown fields \['surprise'\]"),
])
def test_config_values_of_the_wrong_type_are_refused_naming_the_field_and_range(saved, field, value,
                                                                                 expect):
    meta = json.loads((saved / ck.CHECKPOINT_FILE).read_text())
    meta["model"]["config"][field] = value
    (saved / ck.CHECKPOINT_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(saved)
    assert str(saved / ck.CHECKPOINT_FILE) in str(err.value)


def test_a_recurrent_config_value_of_the_wrong_type_is_refused(tmp_path):
    save_checkpoint(tmp_path, LSTMLM(vocab_size=V, n_embd=4, hidden_size=4))
    meta = json.loads((tmp_path / ck.CHECKPOINT_FILE).read_text())
    meta["model"]["config"]["tie_weights"] = 1                                 # before: tied them
    (tmp_path / ck.CHECKPOINT_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="tie_weights: expected true or false, got 1"):
        load_model(tmp_path)


@pytest.mark.parametrize(("field", "value", "expect"), [
    # before: asked NumPy for 112 GiB for the attention's (300000, 100000) projection
    ("n_embd", 100_000, r"wte\.weight has shape \(7, 8\), the config implies \(7, 100000\)"),
    # before: built a block at a time, 41 s for 20000 of them, and would for 10**9
    ("n_layer", 10**9, "implies more weights than the 17 the file holds"),
    ("block_size", 10**6, r"wpe\.weight has shape \(8, 8\), the config implies \(1000000, 8\)"),
    ("vocab_size", 9, r"wte\.weight has shape \(7, 8\), the config implies \(9, 8\)"),
    ("bias", False, r"unexpected \['blocks\.0\.ln1\.bias'"),
])
def test_a_config_that_disagrees_with_its_weights_is_refused_before_building(saved, field, value, expect):
    meta = json.loads((saved / ck.CHECKPOINT_FILE).read_text())
    meta["model"]["config"][field] = value
    (saved / ck.CHECKPOINT_FILE).write_text(json.dumps(meta))
    with bounded(seconds=2, megabytes=4), pytest.raises(CheckpointError, match=expect) as err:
        load_model(saved)
    assert _weights_file(saved).name in str(err.value) and "the transformer model config (" in str(err.value)


def test_a_checkpoint_object_edited_in_memory_is_checked_before_building(saved):
    c = read_checkpoint(saved)
    c.model_config = {**c.model_config, "n_embd": 100_000}
    with bounded(seconds=2, megabytes=4), pytest.raises(CheckpointError, match=r"wte\.weight has shape"):
        load_model(c)


@pytest.mark.parametrize(("extra", "expect"), [
    ({"__array__": [1]}, r"names array \[1\]"),                                 # before: TypeError
    ({"__tuple__": 5}, "'__tuple__' holds a int, expected a list"),             # before: TypeError
    ({"__items__": [[[1], 2]]}, r"a dict key \[1\] is not hashable"),          # before: TypeError
    ({"__items__": [[1, 2], [1, 3]]}, "the dict key 1 appears twice"),
    ({"__items__": [[1]]}, r"must be a list of \[key, value\] pairs"),          # before: ValueError
    ({"__array__": "model/wte.weight", "x": 1}, "must be exactly one of"),
    ({"__pickle__": "x"}, "must be exactly one of"),
])
def test_malformed_tags_in_the_json_are_refused(saved, extra, expect):
    edit_json(saved, extra=extra)
    with pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(saved)
    assert "'extra'" in str(err.value) and str(saved) in str(err.value)


@pytest.mark.parametrize(("text", "expect"), [
    ('[' * 100_000 + ']' * 100_000, "nested too deeply"),                       # before: RecursionError
    ('[' * 70 + ']' * 70, "nested more than 64 levels"),
    ('1' + '0' * 5000, "not valid JSON.*4300 digits"),                          # before: ValueError
])
def test_json_too_deep_or_with_a_huge_number_is_refused(saved, text, expect):
    js = saved / ck.CHECKPOINT_FILE
    js.write_text(js.read_text()[:-1] + f', "extra_field": {text}}}')
    with pytest.raises(CheckpointError, match=expect):
        read_checkpoint(saved)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.parametrize("which", ["model", "state"])
def test_a_weights_file_that_is_not_a_regular_file_is_refused(saved, which):
    # before: read_bytes() on /dev/zero, which never ends
    path = saved / MODEL if which == "model" else _state_file(saved)
    path.unlink()
    path.symlink_to("/dev/zero")
    with bounded(seconds=2, megabytes=4), pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(saved)


@pytest.mark.parametrize(("tokenizer", "expect"), [
    ({"type": "char", "vocab": ["a", "b"], "unk_token": 5}, "'unk_token' a string or null"),
    ({"type": "char", "vocab": "abc"}, "'vocab' must be a list of strings"),
    ({"type": "char", "vocab": ["a", "a"]}, "duplicate tokens"),
    ({"type": "sentencepiece", "vocab": ["a"]}, "unknown tokenizer type 'sentencepiece'"),
    ({"type": "bpe", "vocab": ["a"]}, "a 'bpe' tokenizer must be an object with 'type', 'vocab', 'merges'"),
    ({"type": "bpe", "vocab": ["a"], "merges": "a b"}, "'merges' and 'special_tokens' must be lists"),
    ({"type": "bpe", "vocab": ["a"], "merges": [], "unk_token": None}, "optionally 'special_tokens'"),
    ({"type": "bpe", "vocab": ["a"], "merges": []}, "lacks 255 of the 256 one-byte tokens"),
    ({"type": "char", "vocab": list("abcdefghij")}, "10 tokens, more than the model's vocab_size 7"),
])
def test_a_tokenizer_that_cannot_be_rebuilt_is_refused(saved, tokenizer, expect):
    # before: read_checkpoint returned it, and sampling failed later with a TypeError or ValueError
    edit_json(saved, tokenizer=tokenizer)
    with pytest.raises(CheckpointError, match=f"'tokenizer': .*{expect}"):
        read_checkpoint(saved)


@pytest.mark.parametrize("metrics", [[1], {"best": "x"}, {"best": {"val_loss": "low"}},
                                     {"best": {"val_loss": 1.0, "step": -3}}])
def test_malformed_metrics_are_refused(saved, metrics):
    # before: read, then resuming failed on resumed.metrics.get("best") with an AttributeError
    edit_json(saved, metrics=metrics)
    with pytest.raises(CheckpointError, match="'metrics"):
        read_checkpoint(saved)


def test_saving_refuses_a_config_that_does_not_fit_the_weights(tmp_path):
    model = tiny_transformer()
    config = {**dataclasses.asdict(model.config), "n_embd": 16}
    with pytest.raises(CheckpointError, match=r"wte\.weight has shape \(7, 8\), the config implies "
                                              r"\(7, 16\)"):
        save_checkpoint(tmp_path / "ck", model, model_config=config)
    assert not (tmp_path / "ck").exists()                                       # nothing written


def test_arrays_are_saved_little_endian_in_c_order(tmp_path):
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    big = np.arange(4, dtype=">i4")
    save_checkpoint(tmp_path, tiny_transformer(), extra={"f": fortran, "big": big})
    back = read_checkpoint(tmp_path).extra
    np.testing.assert_array_equal(back["f"], fortran)
    np.testing.assert_array_equal(back["big"], big)
    assert back["big"].dtype == np.dtype("<i4")


# =========================================================================== version 1: one npz
#
# Checkpoints written before format version 2 still load. Each is made here from a version-2
# one (checkpoint_files.to_version_1 writes what the version-1 save_checkpoint wrote), and the
# npz's own refusals are tested on it.

@pytest.fixture
def saved_v1(saved) -> Path:
    to_version_1(saved)
    return saved


def test_a_version_1_checkpoint_loads_as_the_version_2_one_it_came_from(tmp_path):
    model = tiny_transformer()
    opt = trained_step(model)
    rng = np.random.default_rng(5)
    save_checkpoint(tmp_path / "v2", model, step=7, tokenizer=CharTokenizer.from_text("abcdefg"),
                    optimizer=opt,
                    data_state={"batcher": {"position": 3}, "carried": (np.ones((1, 2, 3), np.float32),)},
                    rng_state={"data": rng.bit_generator.state}, train_config={"lr": 0.01},
                    metrics={"best": {"val_loss": 1.5, "step": 7}},
                    extra={"a/b": np.zeros(2), "a": {"b": np.ones(3)}, 3: (1, "x")})
    shutil.copytree(tmp_path / "v2", tmp_path / "v1")
    npz = to_version_1(tmp_path / "v1")
    assert files_in(tmp_path / "v1") == ["checkpoint.json", npz.name]
    assert read_json(tmp_path / "v1")["version"] == 1 and "tied" not in read_json(tmp_path / "v1")["model"]
    with np.load(npz) as z:                               # the tied weight was a copy of its own
        assert "model/lm_head.weight" in z.files and "optimizer/state/0/exp_avg" in z.files
    v1, v2 = read_checkpoint(tmp_path / "v1"), read_checkpoint(tmp_path / "v2")
    assert_same_checkpoint(v1, v2)
    loaded, _ = load_model(v1)
    assert loaded.lm_head.weight is loaded.wte.weight     # one Parameter again
    assert_same_weights(weights(loaded), weights(model))
    fresh = optim.AdamW(optim.param_groups_for_weight_decay(loaded, 0.1), lr=1e-2)
    fresh.load_state_dict(v1.optimizer)
    assert_same_tree(fresh.state_dict(), opt.state_dict())


def test_saving_over_a_version_1_checkpoint_replaces_it_cleanly(saved_v1):
    npz = _weights_file(saved_v1)
    model, _ = load_model(saved_v1)
    new, kw = save_and_remember(model, 2)
    save_checkpoint(saved_v1, model, **kw)
    assert not npz.exists() and not list(saved_v1.glob("*.npz"))
    assert read_json(saved_v1)["version"] == 2
    assert_tidy(saved_v1, 2)
    new.assert_is(read_checkpoint(saved_v1))


def npy_member(descr, shape, data: bytes, fortran: bool = False) -> bytes:
    """An .npy member whose header is written by hand, free to lie about ``data``."""
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def members_of(directory: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(_weights_file(directory)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def rewrite_members(directory: Path, members: list[tuple[str, bytes]], method=zipfile.ZIP_STORED) -> None:
    """Replace the npz with these (name, bytes) members and vouch for it in the JSON."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", method) as z:
        warnings.simplefilter("ignore")                   # zipfile warns about a duplicate name
        for name, data in members:
            z.writestr(name, data)
    rewrite(directory, _weights_file(directory).name, buffer.getvalue())


def replace_member(directory: Path, name: str, data: bytes) -> None:
    rewrite_members(directory, [(n, data if n == name else d) for n, d in members_of(directory)])


def test_a_version_1_object_array_is_refused_without_unpickling(saved_v1):
    marker = saved_v1 / "pwned"
    members = members_of(saved_v1)
    evil = io.BytesIO()
    np.save(evil, np.array([Booby(str(marker))], dtype=object), allow_pickle=True)
    rewrite_members(saved_v1, [*members, ("model/evil.npy", evil.getvalue())])
    with pytest.raises(CheckpointError, match="pickled"):
        read_checkpoint(saved_v1)
    assert not marker.exists()


def test_a_version_1_header_claiming_a_huge_shape_is_refused_from_the_header_alone(saved_v1):
    # before: np.load believed the header and asked for 3.5 EiB (MemoryError)
    replace_member(saved_v1, "model/wte.weight.npy", npy_member("<f4", (10**9, 10**9), b"\0" * 2000))
    with bounded(seconds=2, megabytes=4), pytest.raises(CheckpointError) as err:
        read_checkpoint(saved_v1)
    assert re.search(r"'model/wte\.weight'.*claims shape \(1000000000, 1000000000\).*holds 2000 bytes",
                     str(err.value))
    assert _weights_file(saved_v1).name in str(err.value)


@pytest.mark.parametrize("shape", [(0, 10**19), (0, 2**62, 2**62), (1,) * 65])
def test_a_version_1_array_numpy_cannot_hold_is_refused_from_the_header(saved_v1, shape):
    # before: an empty array passed the header checks whatever its other sizes, then NumPy's
    # reshape raised a ValueError (not a CheckpointError)
    data = b"" if 0 in shape else b"\0" * 4
    rewrite_members(saved_v1, [*members_of(saved_v1), ("extra/odd.npy", npy_member("<f4", shape, data))])
    edit_json(saved_v1, extra={"__array__": "extra/odd"})
    with pytest.raises(CheckpointError, match=r"'extra/odd': header claims shape .*, more than a NumPy array "
                                              "can have"):
        read_checkpoint(saved_v1)


@pytest.mark.parametrize(("descr", "shape", "data", "fortran", "expect"), [
    ("|O", (10**12,), b"", False, "object \\(pickled\\) array"),
    ([("a", "<f4"), ("b", "|O")], (7,), b"\0" * 84, False, "not a plain array header"),
    ("<U2", (7, 8), b"\0" * 448, False, "dtype '<U2'"),
    ("<c8", (7, 4), b"\0" * 224, False, "dtype '<c8'"),
    ("<M8[s]", (7, 8), b"\0" * 448, False, "not a plain array header|dtype"),
    (">f4", (7, 8), np.ones((7, 8), ">f4").tobytes(), False, "dtype '>f4'"),     # before: loaded
    ("<f4", (7, 8), np.ones((7, 8), "<f4").tobytes(), True, "Fortran order"),    # before: loaded, transposed
])
def test_version_1_arrays_that_are_not_plain_numeric_c_order_are_refused(saved_v1, descr, shape, data,
                                                                         fortran, expect):
    marker = saved_v1 / "pwned"
    replace_member(saved_v1, "model/wte.weight.npy", npy_member(descr, shape, data, fortran))
    with pytest.raises(CheckpointError, match=expect) as err:
        load_model(saved_v1)
    assert "model/wte.weight" in str(err.value) and str(saved_v1) in str(err.value)
    assert not marker.exists()


def test_a_version_1_member_twice_in_the_zip_is_refused(saved_v1):
    # before: zipfile kept the last of the two, so the weights silently became the impostor's
    members = members_of(saved_v1)
    impostor = next(d for n, d in members if n == "model/wte.weight.npy").replace(b"\x00", b"\x01")
    rewrite_members(saved_v1, [*members, ("model/wte.weight.npy", impostor)])
    with pytest.raises(CheckpointError, match=r"members \['model/wte\.weight\.npy'\] appear more than once"):
        read_checkpoint(saved_v1)


def test_a_version_1_compressed_member_is_refused(saved_v1):
    rewrite_members(saved_v1, members_of(saved_v1), method=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match=r"member '.*\.npy' is compressed"):
        read_checkpoint(saved_v1)


def test_a_version_1_array_the_json_does_not_name_is_refused(saved_v1):
    extra = io.BytesIO()
    np.save(extra, np.zeros(3, np.float32))
    rewrite_members(saved_v1, [*members_of(saved_v1), ("extra/stowaway.npy", extra.getvalue())])
    with pytest.raises(CheckpointError, match=r"holds arrays \['extra/stowaway'\] that checkpoint\.json "
                                              "does not name"):
        read_checkpoint(saved_v1)


def test_a_version_1_shape_mismatch_is_refused(saved_v1):
    replace_member(saved_v1, "model/wte.weight.npy", npy_member("<f4", (3, 3), b"\0" * 36))
    with pytest.raises(CheckpointError, match=r"wte\.weight has shape \(3, 3\), the config implies \(7, 8\)"):
        read_checkpoint(saved_v1)


# =========================================================================== the weights a config implies

@given(st.data())
def test_the_implied_weights_are_what_each_model_holds(data):
    kind = data.draw(st.sampled_from(sorted(MODELS)), label="kind")
    size = st.integers(1, 5)
    if kind == "transformer":
        n_head = data.draw(st.integers(1, 3))
        cfg = dict(n_layer=data.draw(size), n_head=n_head, n_embd=n_head * data.draw(size),
                   block_size=data.draw(size), bias=data.draw(st.booleans()))
    elif kind == "ngram":
        cfg = dict(n=data.draw(size))
    else:
        hidden = data.draw(size)
        tie = data.draw(st.booleans())
        cfg = dict(n_embd=hidden if tie else data.draw(size), hidden_size=hidden, tie_weights=tie,
                   num_layers=data.draw(size), **({"cell": data.draw(st.sampled_from(["rnn", "lstm", "gru"]))}
                                                  if kind == "rnn" else {}))
    model = build_model(kind, {"vocab_size": data.draw(st.integers(2, 6)), **cfg})
    if kind == "ngram":
        model.fit(np.array(data.draw(st.lists(st.integers(0, 1), min_size=0, max_size=12)), np.int64))
    held = {name: (t.shape, t.dtype) for name, t in model.state_dict().items()}
    implied = list(expected_weights(kind, model.config))
    assert sorted(name for name, _, _ in implied) == sorted(held)
    free: dict = {}
    for name, shape, kinds in implied:
        assert ck._fits(tuple(held[name][0]), shape, free), (name, held[name][0], shape)
        assert np.dtype(held[name][1]).kind in kinds, name


def test_every_model_kind_has_its_implied_weights():
    assert set(KINDS) == set(MODELS)


# =========================================================================== the metrics log

def test_a_corrupt_metrics_log_names_its_file_and_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    good = [json.dumps({"step": s, "split": "train", "loss": 1.0}) for s in (1, 2)]
    log.write_bytes("\n".join([good[0], "[1]", '{"step": "3", "split": "val"}', good[1], "\udcff",
                               '{"step": 9, "spl']).encode("utf-8", "surrogateescape"))
    with pytest.raises(CheckpointError, match=f"{re.escape(str(log))}:2: a JSON list, expected an object"):
        read_metrics_log(log)
    said = []
    # before: AttributeError ('list' object has no attribute 'get') from the resume's truncation
    truncate_metrics_log(log, last_step=5, warn=said.append)
    assert log.read_text().splitlines() == good
    assert [m.split(": ", 1)[0] for m in said] == [f"{log}:{n}" for n in (2, 3, 5, 6)]
    assert "'step' must be an int >= 0, got '3'" in said[1] and "UnicodeDecodeError" in said[2]
    assert "cut short" in said[3] and all("skipped" in m for m in said)
    assert read_metrics_log(log) == [json.loads(g) for g in good]


def test_resuming_with_a_corrupt_metrics_log_warns_which_line_it_skipped(tmp_path):
    from lmroad.data import tiny_corpus
    from lmroad.train import TrainConfig, train

    corpus = tiny_corpus(seed=0, n_chars=3000)
    (tmp_path / "tiny.txt").write_text(corpus.train + corpus.val, encoding="utf-8")
    cfg = dict(model="lstm", data=str(tmp_path / "tiny.txt"), out=str(tmp_path / "run"), max_iters=4,
               batch_size=2, block_size=8, n_embd=4, hidden_size=4, eval_interval=2, eval_iters=1,
               log_interval=1, warmup_iters=1, seed=0, progress="lines")

    def stop_at_2(step, info):
        if step == 2:
            raise KeyboardInterrupt

    train(TrainConfig(**cfg), on_step=stop_at_2, stream=io.StringIO())
    log = tmp_path / "run" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([*lines, "[1]", '{"step": 3, "split": "tr']))     # the crash's last words
    out = io.StringIO()
    result = train(TrainConfig(**cfg, resume=True), stream=out)
    assert result.step == 4
    said = out.getvalue()
    assert f"{log}:{len(lines) + 1}: a JSON list" in said and f"{log}:{len(lines) + 2}: not a JSON" in said
    assert read_metrics_log(log)[-1]["step"] == 4

"""Tests of lmroad.checkpoint: round trips, crash safety, and refusing bad files.

Every refusal is a ``CheckpointError`` that names the file; a pickle in any
disguise is refused without being unpickled (its ``__reduce__`` would create
a marker file, which must not appear).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import pickle
import re
import struct
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from lmroad import checkpoint as ck
from lmroad.checkpoint import (
    CheckpointError,
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


class Booby:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_weights(directory: Path, arrays: dict, **savez_kw) -> None:
    """Replace a checkpoint's npz with ``arrays`` and make the JSON vouch for it (size and hash),
    so that only the content checks stand between the file and the loader."""
    meta = json.loads((directory / ck.CHECKPOINT_FILE).read_text())
    path = directory / meta["weights_file"]
    np.savez(path, **arrays, **savez_kw)
    meta["weights_bytes"] = path.stat().st_size
    meta["weights_sha256"] = sha256_of(path)
    (directory / ck.CHECKPOINT_FILE).write_text(json.dumps(meta))


def saved_arrays(directory: Path) -> dict:
    meta = json.loads((directory / ck.CHECKPOINT_FILE).read_text())
    with np.load(directory / meta["weights_file"]) as z:
        return {k: z[k] for k in z.files}


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
    extra = {"a/b": np.zeros(2), "a": {"b": np.ones(3)}, 3: (1, [2.5, None], "x"), "__tricky": True}
    save_checkpoint(tmp_path, tiny_transformer(), extra=extra)
    back = read_checkpoint(tmp_path).extra
    assert back["a/b"].shape == (2,) and back["a"]["b"].shape == (3,)
    assert back[3] == (1, [2.5, None], "x") and back["__tricky"] is True


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


def test_saves_replace_the_weights_file_and_tidy_up(tmp_path):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1)
    save_checkpoint(tmp_path, model, step=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0] == "checkpoint.json" and names[1].startswith("weights-00000002-")
    assert read_checkpoint(tmp_path / "checkpoint.json").step == 2     # the JSON's path works too


# =========================================================================== crash safety

def test_crash_after_the_weights_file_leaves_the_last_checkpoint_loadable(tmp_path, monkeypatch):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1)
    before = weights(model)
    trained_step(model)                                   # the weights move on ...
    real = ck._atomic_write

    def crash_on_json(path, write):                       # ... and the save dies before its JSON
        if path.name == ck.CHECKPOINT_FILE:
            raise OSError("simulated crash: disk full")
        real(path, write)

    monkeypatch.setattr(ck, "_atomic_write", crash_on_json)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, model, step=2)
    monkeypatch.undo()
    assert len(list(tmp_path.glob("weights-*.npz"))) == 2  # the new weights were written, unnamed
    c = read_checkpoint(tmp_path)
    assert c.step == 1
    assert_same_weights(c.weights, before)
    save_checkpoint(tmp_path, model, step=3)              # the next save removes the orphan
    assert len(list(tmp_path.glob("weights-*.npz"))) == 1


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


def test_a_reader_racing_a_save_rereads_the_json(tmp_path, monkeypatch):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1)
    stale = json.loads((tmp_path / ck.CHECKPOINT_FILE).read_text())
    save_checkpoint(tmp_path, model, step=2)           # deletes the weights the stale JSON names
    real, calls = ck._read_json, []

    def first_stale(path):
        calls.append(path)
        return stale if len(calls) == 1 else real(path)

    monkeypatch.setattr(ck, "_read_json", first_stale)
    assert read_checkpoint(tmp_path).step == 2


# =========================================================================== corrupt files

def _weights_file(directory: Path) -> Path:
    return directory / json.loads((directory / ck.CHECKPOINT_FILE).read_text())["weights_file"]


@pytest.mark.parametrize("damage", ["truncate_npz", "flip_byte", "truncate_json", "delete_npz",
                                    "garbage_json", "path_escape"])
def test_corrupt_or_truncated_files_raise_one_clear_error(tmp_path, damage):
    save_checkpoint(tmp_path, tiny_transformer(), step=1)
    npz, js = _weights_file(tmp_path), tmp_path / ck.CHECKPOINT_FILE
    if damage == "truncate_npz":
        npz.write_bytes(npz.read_bytes()[:200])
        expect = "truncated"
    elif damage == "flip_byte":
        raw = bytearray(npz.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        npz.write_bytes(bytes(raw))
        expect = "SHA-256"
    elif damage == "truncate_json":
        js.write_text(js.read_text()[:100])
        expect = "not valid JSON"
    elif damage == "delete_npz":
        npz.unlink()
        expect = "missing"
    elif damage == "garbage_json":
        js.write_text(json.dumps({"format": "something else"}))
        expect = "not an lmroad checkpoint"
    else:
        meta = json.loads(js.read_text())
        meta["weights_file"] = "../../etc/passwd"
        js.write_text(json.dumps(meta))
        expect = "weights_file"
    with pytest.raises(CheckpointError, match=expect) as err:
        read_checkpoint(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_a_corrupt_zip_that_passes_the_hash_is_still_refused(tmp_path):
    save_checkpoint(tmp_path, tiny_transformer(), step=1)
    npz = _weights_file(tmp_path)
    npz.write_bytes(b"PK\x03\x04" + b"\x00" * 300)
    meta = json.loads((tmp_path / ck.CHECKPOINT_FILE).read_text())
    meta.update(weights_bytes=npz.stat().st_size, weights_sha256=sha256_of(npz))
    (tmp_path / ck.CHECKPOINT_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable npz"):
        read_checkpoint(tmp_path)


def test_missing_directory_and_plain_file_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        read_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no checkpoint.json"):
        read_checkpoint(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a directory"):
        read_checkpoint(tmp_path / "model.pt")


def test_non_finite_weights_are_refused_on_load_and_on_save(tmp_path):
    model = tiny_transformer()
    save_checkpoint(tmp_path, model, step=1)
    arrays = saved_arrays(tmp_path)
    name = next(k for k in arrays if k.endswith("weight") and arrays[k].dtype.kind == "f")
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan
    rewrite_weights(tmp_path, arrays)
    with pytest.raises(CheckpointError, match=f"{name}.*non-finite"):
        read_checkpoint(tmp_path)

    p = next(iter(model.parameters()))
    p.data[...] = np.inf
    with pytest.raises(CheckpointError, match="refusing to save"):
        save_checkpoint(tmp_path / "other", model)


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
    arrays = saved_arrays(tmp_path)
    arrays["model/wte.weight"] = np.zeros((3, 3), np.float32)
    rewrite_weights(tmp_path, arrays)
    # the file: refused on reading, from the header, naming the weight and both shapes
    with pytest.raises(CheckpointError, match=r"wte\.weight has shape \(3, 3\), the config implies "
                                              r"\(7, 8\)") as err:
        read_checkpoint(tmp_path)
    assert _weights_file(tmp_path).name in str(err.value)
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

def test_object_array_in_the_npz_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    save_checkpoint(tmp_path / "ck", tiny_transformer(), step=1)
    arrays = saved_arrays(tmp_path / "ck")
    arrays["model/evil"] = np.array([Booby(str(marker))], dtype=object)
    rewrite_weights(tmp_path / "ck", arrays)
    with pytest.raises(CheckpointError, match="pickled"):
        read_checkpoint(tmp_path / "ck")
    assert not marker.exists()


@pytest.mark.parametrize("disguise", ["weights", "json", "directory"])
def test_pickle_file_renamed_as_a_checkpoint_is_refused(tmp_path, disguise):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Booby(str(marker)))
    directory = tmp_path / "ck"
    save_checkpoint(directory, tiny_transformer(), step=1)
    if disguise == "weights":                              # the JSON even vouches for its hash
        npz = _weights_file(directory)
        npz.write_bytes(payload)
        meta = json.loads((directory / ck.CHECKPOINT_FILE).read_text())
        meta.update(weights_bytes=len(payload), weights_sha256=sha256_of(npz))
        (directory / ck.CHECKPOINT_FILE).write_text(json.dumps(meta))
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


def test_saving_refuses_objects_it_cannot_store_without_pickle(tmp_path):
    with pytest.raises(CheckpointError, match="not JSON and not an array"):
        save_checkpoint(tmp_path, tiny_transformer(), extra={"fn": print})
    with pytest.raises(CheckpointError, match="dtype object"):
        save_checkpoint(tmp_path, tiny_transformer(), extra={"a": np.array([None], dtype=object)})


# =========================================================================== crafted files
#
# Each class of crafted file, written by hand so that it passes the hash check (the JSON
# vouches for it): only the loader's own checks stand between it and an allocation.

def npy_member(descr, shape, data: bytes, fortran: bool = False) -> bytes:
    """An .npy member whose header is written by hand, free to lie about ``data``."""
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def members_of(directory: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(_weights_file(directory)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def rewrite_members(directory: Path, members: list[tuple[str, bytes]]) -> None:
    """Replace the npz with these (name, bytes) members, stored, and vouch for it in the JSON."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as z:
        warnings.simplefilter("ignore")                   # zipfile warns about a duplicate name
        for name, data in members:
            z.writestr(name, data)
    npz = _weights_file(directory)
    npz.write_bytes(buffer.getvalue())
    edit_json(directory, weights_bytes=npz.stat().st_size, weights_sha256=sha256_of(npz))


def edit_json(directory: Path, **top) -> dict:
    meta = json.loads((directory / ck.CHECKPOINT_FILE).read_text())
    meta.update(top)
    (directory / ck.CHECKPOINT_FILE).write_text(json.dumps(meta))
    return meta


def replace_member(directory: Path, name: str, data: bytes) -> None:
    rewrite_members(directory, [(n, data if n == name else d) for n, d in members_of(directory)])


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


def test_a_header_claiming_a_huge_shape_is_refused_from_the_header_alone(saved):
    # before: np.load believed the header and asked for 3.5 EiB (MemoryError)
    replace_member(saved, "model/wte.weight.npy", npy_member("<f4", (10**9, 10**9), b"\0" * 2000))
    with bounded(seconds=2, megabytes=4), pytest.raises(CheckpointError) as err:
        read_checkpoint(saved)
    assert re.search(r"'model/wte\.weight'.*claims shape \(1000000000, 1000000000\).*holds 2000 bytes",
                     str(err.value))
    assert _weights_file(saved).name in str(err.value)


@pytest.mark.parametrize(("descr", "shape", "data", "fortran", "expect"), [
    ("|O", (10**12,), b"", False, "object \\(pickled\\) array"),
    ([("a", "<f4"), ("b", "|O")], (7,), b"\0" * 84, False, "not a plain array header"),
    ("<U2", (7, 8), b"\0" * 448, False, "dtype '<U2'"),
    ("<c8", (7, 4), b"\0" * 224, False, "dtype '<c8'"),
    ("<M8[s]", (7, 8), b"\0" * 448, False, "not a plain array header|dtype"),
    (">f4", (7, 8), np.ones((7, 8), ">f4").tobytes(), False, "dtype '>f4'"),     # before: loaded
    ("<f4", (7, 8), np.ones((7, 8), "<f4").tobytes(), True, "Fortran order"),    # before: loaded, transposed
])
def test_arrays_that_are_not_plain_numeric_c_order_are_refused(saved, descr, shape, data, fortran, expect):
    marker = saved / "pwned"
    replace_member(saved, "model/wte.weight.npy", npy_member(descr, shape, data, fortran))
    with pytest.raises(CheckpointError, match=expect) as err:
        load_model(saved)
    assert "model/wte.weight" in str(err.value) and str(saved) in str(err.value)
    assert not marker.exists()


def test_a_member_twice_in_the_zip_is_refused(saved):
    # before: zipfile kept the last of the two, so the weights silently became the impostor's
    members = members_of(saved)
    impostor = next(d for n, d in members if n == "model/wte.weight.npy").replace(b"\x00", b"\x01")
    rewrite_members(saved, [*members, ("model/wte.weight.npy", impostor)])
    with pytest.raises(CheckpointError, match=r"members \['model/wte\.weight\.npy'\] appear more than once"):
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


def test_an_array_the_json_does_not_name_is_refused(saved):
    extra = io.BytesIO()
    np.save(extra, np.zeros(3, np.float32))
    rewrite_members(saved, [*members_of(saved), ("extra/stowaway.npy", extra.getvalue())])
    with pytest.raises(CheckpointError, match=r"holds arrays \['extra/stowaway'\] that checkpoint\.json "
                                              "does not name"):
        read_checkpoint(saved)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_weights_file_that_is_not_a_regular_file_is_refused(saved):
    # before: read_bytes() on /dev/zero, which never ends
    npz = _weights_file(saved)
    npz.unlink()
    npz.symlink_to("/dev/zero")
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

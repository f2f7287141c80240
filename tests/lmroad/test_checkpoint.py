"""Tests of lmroad.checkpoint: round trips, crash safety, and refusing bad files.

Every refusal is a ``CheckpointError`` that names the file; a pickle in any
disguise is refused without being unpickled (its ``__reduce__`` would create
a marker file, which must not appear).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from lmroad import checkpoint as ck
from lmroad.checkpoint import CheckpointError, load_model, read_checkpoint, restore_model, save_checkpoint
from lmroad.data import CharTokenizer
from lmroad.models import LSTMLM, NGramLM, TransformerLM
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
    with pytest.raises(CheckpointError, match="unreadable npz"):
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
    arrays = saved_arrays(tmp_path)
    name = next(k for k in arrays if arrays[k].ndim == 2)
    arrays[name] = np.zeros((3, 3), np.float32)
    rewrite_weights(tmp_path, arrays)
    fresh = tiny_transformer()
    before = weights(fresh)
    with pytest.raises(CheckpointError, match="does not fit the model.*shape"):
        restore_model(fresh, read_checkpoint(tmp_path))
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

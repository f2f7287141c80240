"""lmroad.interop without PyTorch: the name maps, round trips through every layout, and
the refusals (a pickle without --allow-pickle, settings a target cannot hold, a folder
that is not a model). The comparisons with PyTorch and Hugging Face themselves are in
test_interop_torch.py."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from lmroad.checkpoint import load_model, read_checkpoint, save_checkpoint
from lmroad.cli import main
from lmroad.interop import InteropError, export_checkpoint, gpt2, import_pretrained, load_pretrained
from lmroad.models import GRULM, LSTMLM, RNNLM, NGramLM, TransformerLM
from lmroad.safetensors_file import SafetensorsFile, to_bytes
from lmroad.weight_shapes import expected_weights


def tiny_gpt(**kw) -> TransformerLM:
    mg.manual_seed(3)
    return TransformerLM(**{"vocab_size": 41, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 12,
                            **kw})


def logits(model, x) -> np.ndarray:
    model.eval()
    with mg.no_grad():
        return model(mg.tensor(x))[0].numpy()


X = np.random.default_rng(0).integers(0, 41, (2, 12))


def saved(tmp_path: Path, model, name="ck") -> Path:
    save_checkpoint(tmp_path / name, model)
    return tmp_path / name


@pytest.mark.parametrize("kw", [{}, {"tie_weights": False}, {"activation": "gelu"},
                                {"layer_norm_eps": 1e-6, "activation": "relu"}])
def test_hf_gpt2_export_then_import_gives_the_same_model(tmp_path, kw):
    model = tiny_gpt(**kw)
    files = export_checkpoint(saved(tmp_path, model), "hf-gpt2", tmp_path / "hf")
    assert sorted(p.name for p in files) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_positions"] == 12
    back, tokenizer = load_pretrained(tmp_path / "hf")
    assert tokenizer is None and back.config == model.config
    np.testing.assert_array_equal(logits(back, X), logits(model, X))
    assert (back.lm_head.weight is back.wte.weight) == model.config.tie_weights


def test_hf_layout_is_conv1d_transposed_and_leaves_a_tied_head_out(tmp_path):
    model = tiny_gpt()
    export_checkpoint(saved(tmp_path, model), "hf-gpt2", tmp_path / "hf")
    f = SafetensorsFile((tmp_path / "hf" / "model.safetensors").read_bytes())
    assert f.metadata["format"] == "pt"                        # transformers checks this
    assert "lm_head.weight" not in f.headers
    C = 16
    assert f.shape("transformer.h.0.attn.c_attn.weight") == (C, 3 * C)     # (in, out)
    assert f.shape("transformer.h.1.mlp.c_fc.weight") == (C, 4 * C)
    np.testing.assert_array_equal(f.read("transformer.h.0.mlp.c_proj.weight"),
                                  model.blocks[0].mlp.proj.weight.numpy().T)
    np.testing.assert_array_equal(f.read("transformer.wte.weight"), model.wte.weight.numpy())


def test_nanogpt_export_then_import_gives_the_same_model(tmp_path):
    model = tiny_gpt(activation="gelu", bias=False)
    export_checkpoint(saved(tmp_path, model), "nanogpt", tmp_path / "nano")
    args = json.loads((tmp_path / "nano" / "model_args.json").read_text())
    assert args == {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 12, "bias": False,
                    "vocab_size": 41, "dropout": 0.0}
    f = SafetensorsFile((tmp_path / "nano" / "model.safetensors").read_bytes())
    assert f.shape("transformer.h.0.attn.c_attn.weight") == (48, 16)          # nn.Linear: (out, in)
    assert "lm_head.weight" in f.headers and "transformer.h.0.ln_1.bias" not in f.headers
    back, _ = load_pretrained(tmp_path / "nano")
    assert back.config == model.config
    np.testing.assert_array_equal(logits(back, X), logits(model, X))


def test_names_cover_exactly_the_weights_of_the_model():
    for kw in ({}, {"bias": False}, {"tie_weights": False}):
        model = tiny_gpt(**kw)
        ours = [o for o, _, _ in gpt2.names(model.config)]
        assert ours == list(model.state_dict())
        assert ours == [n for n, _, _ in expected_weights("transformer", model.config)]


def test_a_torch_compiled_nanogpt_prefix_and_the_mask_buffers_are_accepted(tmp_path):
    model = tiny_gpt(activation="gelu")
    export_checkpoint(saved(tmp_path, model), "nanogpt", tmp_path / "nano")
    path = tmp_path / "nano" / "model.safetensors"
    f = SafetensorsFile(path.read_bytes())
    arrays = {f"_orig_mod.{k}": f.read(k) for k in f.headers}
    arrays["_orig_mod.transformer.h.0.attn.bias"] = np.tril(np.ones((1, 1, 12, 12), np.float32))
    path.write_bytes(to_bytes(arrays))
    back, _ = load_pretrained(tmp_path / "nano")
    np.testing.assert_array_equal(logits(back, X), logits(model, X))


def test_import_writes_a_checkpoint_that_loads_and_samples(tmp_path):
    model = tiny_gpt()
    export_checkpoint(saved(tmp_path, model), "hf-gpt2", tmp_path / "hf")
    import_pretrained(tmp_path / "hf", tmp_path / "imported")
    back, ckpt = load_model(tmp_path / "imported")
    assert ckpt.extra["source"] == "hf-gpt2"
    np.testing.assert_array_equal(logits(back, X), logits(model, X))
    with pytest.raises(InteropError, match="--overwrite"):
        import_pretrained(tmp_path / "hf", tmp_path / "imported")


@pytest.mark.parametrize("cls", [LSTMLM, GRULM, RNNLM])
def test_torch_export_of_the_recurrent_models_renames_only(tmp_path, cls):
    mg.manual_seed(4)
    model = cls(vocab_size=23, n_embd=8, hidden_size=8, num_layers=2, tie_weights=True)
    export_checkpoint(saved(tmp_path, model), "torch", tmp_path / "t")
    f = SafetensorsFile((tmp_path / "t" / "model.safetensors").read_bytes())
    assert list(f.headers) == ["embedding.weight"] + [
        f"rnn.{w}_l{layer}" for layer in range(2) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ] + ["head.weight", "head.bias"]
    np.testing.assert_array_equal(f.read("rnn.weight_hh_l1"), model.core.cells[1].weight_hh.numpy())
    np.testing.assert_array_equal(f.read("head.weight"), f.read("embedding.weight"))     # tied
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["model_type"] == model.config.cell and config["num_layers"] == 2


# --------------------------------------------------------------------------- refusals

def test_a_target_without_an_equivalent_is_refused_by_name(tmp_path):
    with pytest.raises(InteropError, match="a transformer model has no equivalent there .*nanogpt, hf-gpt2"):
        export_checkpoint(saved(tmp_path, tiny_gpt()), "torch", tmp_path / "x")
    with pytest.raises(InteropError, match="an n-gram model is a table of counts"):
        export_checkpoint(saved(tmp_path, NGramLM(vocab_size=5, n=2), "ng"), "hf-gpt2", tmp_path / "y")
    lstm = saved(tmp_path, LSTMLM(vocab_size=5, n_embd=4, hidden_size=4), "lstm")
    with pytest.raises(InteropError, match="lstm model has no equivalent there .*torch"):
        export_checkpoint(lstm, "nanogpt", tmp_path / "z")
    with pytest.raises(InteropError, match="unknown target 'onnx'"):
        export_checkpoint(lstm, "onnx", tmp_path / "z")


def test_what_nanogpt_and_gpt2_cannot_be_is_named(tmp_path):
    with pytest.raises(InteropError, match="activation 'gelu_tanh'.*exact GELU"):
        export_checkpoint(saved(tmp_path, tiny_gpt()), "nanogpt", tmp_path / "a")
    with pytest.raises(InteropError, match="untied head"):
        export_checkpoint(saved(tmp_path, tiny_gpt(activation="gelu", tie_weights=False), "b"), "nanogpt",
                          tmp_path / "a")
    with pytest.raises(InteropError, match="no biases"):
        export_checkpoint(saved(tmp_path, tiny_gpt(bias=False), "c"), "hf-gpt2", tmp_path / "a")
    assert not (tmp_path / "a").exists()                  # nothing written for a refused export


def test_export_does_not_overwrite_without_being_asked(tmp_path):
    ck = saved(tmp_path, tiny_gpt())
    export_checkpoint(ck, "hf-gpt2", tmp_path / "hf")
    before = (tmp_path / "hf" / "model.safetensors").read_bytes()
    with pytest.raises(InteropError, match="exist already; pass --overwrite"):
        export_checkpoint(ck, "hf-gpt2", tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == before
    export_checkpoint(ck, "hf-gpt2", tmp_path / "hf", overwrite=True)


def _hf_folder(tmp_path: Path) -> Path:
    export_checkpoint(saved(tmp_path, tiny_gpt()), "hf-gpt2", tmp_path / "hf")
    return tmp_path / "hf"


class Booby:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_is_not_read_without_allow_pickle(tmp_path):
    folder = _hf_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Booby(marker)))
    with pytest.raises(InteropError, match="pickle.*--allow-pickle"):
        load_pretrained(folder)
    ck = tmp_path / "nanogpt-ckpt.pt"
    ck.write_bytes(pickle.dumps(Booby(marker)))
    with pytest.raises(InteropError, match="pickle.*--allow-pickle"):
        load_pretrained(ck)
    assert not marker.exists()


def test_config_settings_transformerlm_cannot_reproduce_are_listed(tmp_path):
    folder = _hf_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    for edit, message in [({"activation_function": "swish"}, "activation_function 'swish'"),
                          ({"n_inner": 7}, "n_inner 7"),
                          ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
                          ({"model_type": "llama"}, "only GPT-2"),
                          ({"n_layer": 3}, "transformer.h.2.ln_1.weight is missing"),
                          ({"n_embd": 0}, "'n_embd' must be an int >= 1"),
                          ({"n_head": 3}, "divisible")]:
        (folder / "config.json").write_text(json.dumps({**config, **edit}))
        with pytest.raises(InteropError, match=message):
            load_pretrained(folder)


def test_weights_that_do_not_fit_the_config_are_refused_before_building(tmp_path):
    folder = _hf_folder(tmp_path)
    path = folder / "model.safetensors"
    f = SafetensorsFile(path.read_bytes())
    arrays = {k: f.read(k) for k in f.headers}
    extra = {**arrays, "transformer.h.9.ln_1.weight": np.ones(16, np.float32)}
    path.write_bytes(to_bytes(extra))
    with pytest.raises(InteropError, match=r"unexpected weights \['transformer.h.9.ln_1.weight'\]"):
        load_pretrained(folder)
    wrong = {**arrays, "transformer.wpe.weight": np.ones((5, 16), np.float32)}
    path.write_bytes(to_bytes(wrong))
    with pytest.raises(InteropError, match="wpe.weight"):
        load_pretrained(folder)
    untied = {**arrays, "lm_head.weight": np.ones((41, 16), np.float32)}
    path.write_bytes(to_bytes(untied))
    with pytest.raises(InteropError, match="differs from wte.weight"):
        load_pretrained(folder)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(InteropError, match="not a readable safetensors file"):
        load_pretrained(folder)


def test_a_folder_that_is_no_model_says_what_it_expected(tmp_path):
    with pytest.raises(InteropError, match="no such file"):
        load_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InteropError, match="neither a Hugging Face GPT-2 folder"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("[1, 2]")
    with pytest.raises(InteropError, match="must be a JSON object"):
        load_pretrained(tmp_path / "empty")


# --------------------------------------------------------------------------- the command line

def test_cli_import_sample_and_export(tmp_path, capsys):
    folder = _hf_folder(tmp_path)
    assert main(["import", str(folder), "--out", str(tmp_path / "imp")]) == 0
    assert read_checkpoint(tmp_path / "imp").model_kind == "transformer"
    # no tokenizer in this folder: sampling says so instead of failing deep inside
    assert main(["sample", "--checkpoint", str(tmp_path / "imp"), "--prompt", "hi"]) == 2
    assert "comes with no tokenizer" in capsys.readouterr().err
    assert main(["export", "--to", "nanogpt", "--checkpoint", str(tmp_path / "imp"), "--out",
                 str(tmp_path / "n")]) == 1
    assert "lmroad export: error: export --to nanogpt" in capsys.readouterr().err
    assert main(["export", "--to", "hf-gpt2", "--checkpoint", str(tmp_path / "imp"), "--out",
                 str(tmp_path / "again")]) == 0
    again = (tmp_path / "again" / "model.safetensors").read_bytes()
    assert again == (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle")
    assert main(["import", str(folder), "--out", str(tmp_path / "imp2")]) == 1
    assert "--allow-pickle" in capsys.readouterr().err


def test_a_config_claiming_huge_sizes_is_refused_before_anything_is_allocated(tmp_path):
    import tracemalloc
    folder = _hf_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_positions": 10**7}))   # wpe: 640 MB
    tracemalloc.start()
    try:
        with pytest.raises(InteropError, match=r"wpe.weight has shape \(12, 16\), the config implies"):
            load_pretrained(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20


def test_import_overwrite_replaces_a_trained_run_only_once_the_import_succeeded(tmp_path):
    folder = _hf_folder(tmp_path)
    out = tmp_path / "run"
    save_checkpoint(out, tiny_gpt(n_layer=1))
    save_checkpoint(out / "best", tiny_gpt(n_layer=1))
    (out / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 3.0}\n')
    (folder / "model.safetensors").rename(tmp_path / "aside")
    with pytest.raises(InteropError):                        # a failed import changes nothing
        import_pretrained(folder, out, overwrite=True)
    assert (out / "metrics.jsonl").is_file() and read_checkpoint(out).model_config["n_layer"] == 1
    (tmp_path / "aside").rename(folder / "model.safetensors")
    import_pretrained(folder, out, overwrite=True)
    assert read_checkpoint(out).model_config["n_layer"] == 2
    assert not (out / "metrics.jsonl").exists() and not (out / "best" / "checkpoint.json").exists()


def test_sample_reads_a_nanogpt_export_folder_as_a_model(tmp_path, capsys):
    from lmroad.data import CharTokenizer
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ")
    mg.manual_seed(3)
    model = TransformerLM(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=8, block_size=12,
                          activation="gelu")
    save_checkpoint(tmp_path / "ck", model, tokenizer=tok)
    export_checkpoint(tmp_path / "ck", "nanogpt", tmp_path / "nano")
    # read as a model (not refused as a folder without checkpoint.json), then: no tokenizer
    assert main(["sample", "--checkpoint", str(tmp_path / "nano"), "--prompt", "ab"]) == 2
    err = capsys.readouterr().err
    assert "comes with no tokenizer" in err and "checkpoint.json" not in err

"""lmroad.interop against the real thing: Hugging Face's GPT2LMHeadModel, a nanoGPT-layout
GPT in PyTorch, and PyTorch's nn.LSTM/GRU/RNN. Every model is created here with random
weights (no download); logits must agree to 1e-4 in float32 and greedy continuations
exactly. Needs torch and transformers (the interop extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

import minigrad as mg  # noqa: E402
from lmroad.checkpoint import save_checkpoint  # noqa: E402
from lmroad.interop import InteropError, export_checkpoint, load_pretrained  # noqa: E402
from lmroad.models import GRULM, LSTMLM, RNNLM, TransformerLM  # noqa: E402

V, T = 61, 16
X = np.random.default_rng(0).integers(0, V, (3, T))


def ours(model, x) -> np.ndarray:
    model.eval()
    with mg.no_grad():
        return model(mg.tensor(x))[0].numpy()


def hf_gpt2(**kw):
    torch.manual_seed(0)
    # initializer_range 0.1 (GPT-2's is 0.02): logits of size ~1-5, so 1e-4 is a real bound
    config = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=32, n_layer=3, n_head=4,
                                     initializer_range=0.1, **kw)
    return transformers.GPT2LMHeadModel(config).eval()


def theirs(model, x) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.tensor(x))
    return (out.logits if hasattr(out, "logits") else out).numpy()


@pytest.mark.parametrize("kw", [{}, {"tie_word_embeddings": False},
                                {"activation_function": "gelu", "layer_norm_epsilon": 1e-6},
                                {"activation_function": "relu"}])
def test_a_saved_gpt2_gives_the_same_logits_and_greedy_text(tmp_path, kw):
    hf = hf_gpt2(**kw)
    hf.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    model, _ = load_pretrained(tmp_path)
    ref = theirs(hf, X)
    assert np.abs(ref).max() > 0.5                       # not a trivially small comparison
    np.testing.assert_allclose(ours(model, X), ref, atol=1e-4, rtol=0)
    prompt = X[:1, :4]
    with torch.no_grad():
        want = hf.generate(torch.tensor(prompt), max_new_tokens=T - 4, do_sample=False,
                           pad_token_id=0).numpy()
    got = model.generate(mg.tensor(prompt), T - 4, temperature=0.0).numpy()
    np.testing.assert_array_equal(got, want)


def test_a_pytorch_bin_loads_only_with_allow_pickle(tmp_path):
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()             # the older layout: a pickled state dict
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(InteropError, match="--allow-pickle"):
        load_pretrained(tmp_path)
    model, _ = load_pretrained(tmp_path, allow_pickle=True)
    np.testing.assert_allclose(ours(model, X), theirs(hf, X), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kw", [{}, {"tie_weights": False}, {"activation": "gelu"}])
def test_an_exported_transformer_loads_into_gpt2lmheadmodel(tmp_path, kw):
    mg.manual_seed(1)
    model = TransformerLM(vocab_size=V, n_layer=2, n_head=4, n_embd=32, block_size=T, **kw)
    save_checkpoint(tmp_path / "ck", model)
    export_checkpoint(tmp_path / "ck", "hf-gpt2", tmp_path / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    np.testing.assert_allclose(theirs(hf, X), ours(model, X), atol=1e-4, rtol=0)


class NanoGPT(torch.nn.Module):
    """nanoGPT's GPT, as its model.py lays it out (the same module names, nn.Linear
    everywhere, exact GELU, pre-LN, tied head), written here for the comparison."""

    def __init__(self, n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout=0.0):
        super().__init__()
        nn = torch.nn
        self.n_head = n_head

        def block():
            b = nn.Module()
            b.ln_1, b.ln_2 = nn.LayerNorm(n_embd, bias=bias), nn.LayerNorm(n_embd, bias=bias)
            b.attn = nn.Module()
            b.attn.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
            b.attn.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
            b.mlp = nn.Module()
            b.mlp.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
            b.mlp.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
            return b

        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList(block() for _ in range(n_layer)), ln_f=nn.LayerNorm(n_embd, bias=bias)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        F = torch.nn.functional
        B, T_ = idx.shape
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T_))
        for b in self.transformer.h:
            q, k, v = b.attn.c_attn(b.ln_1(x)).split(x.shape[-1], dim=2)
            q, k, v = (t.view(B, T_, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + b.attn.c_proj(y.transpose(1, 2).reshape(B, T_, -1))
            x = x + b.mlp.c_proj(F.gelu(b.mlp.c_fc(b.ln_2(x))))
        return self.lm_head(self.transformer.ln_f(x))


@pytest.mark.parametrize("bias", [True, False])
def test_an_exported_transformer_loads_into_a_nanogpt_and_back(tmp_path, bias):
    mg.manual_seed(2)
    model = TransformerLM(vocab_size=V, n_layer=2, n_head=4, n_embd=32, block_size=T, bias=bias,
                          activation="gelu")
    save_checkpoint(tmp_path / "ck", model)
    export_checkpoint(tmp_path / "ck", "nanogpt", tmp_path / "nano")
    args = json.loads((tmp_path / "nano" / "model_args.json").read_text())
    nano = NanoGPT(**args).eval()
    state = safetensors_torch.load_file(tmp_path / "nano" / "model.safetensors")
    nano.load_state_dict(state, strict=True)
    np.testing.assert_allclose(theirs(nano, X), ours(model, X), atol=1e-4, rtol=0)
    # nanoGPT's own checkpoint file: a pickle of {"model": state_dict, "model_args": ...}
    torch.save({"model": {f"_orig_mod.{k}": v for k, v in nano.state_dict().items()},
                "model_args": args, "iter_num": 5}, tmp_path / "ckpt.pt")
    with pytest.raises(InteropError, match="--allow-pickle"):
        load_pretrained(tmp_path / "ckpt.pt")
    back, _ = load_pretrained(tmp_path / "ckpt.pt", allow_pickle=True)
    np.testing.assert_array_equal(ours(back, X), ours(model, X))


class TorchRNNLM(torch.nn.Module):
    """The PyTorch module lmroad.interop.recurrent's docstring gives."""

    def __init__(self, model_type, vocab_size, n_embd, hidden_size, num_layers, dropout, **_):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, n_embd)
        self.rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[model_type](
            n_embd, hidden_size, num_layers, batch_first=True, dropout=dropout)
        self.head = torch.nn.Linear(hidden_size, vocab_size)

    def forward(self, idx):
        y, _ = self.rnn(self.embedding(idx))
        return self.head(y)


@pytest.mark.parametrize("cls", [LSTMLM, GRULM, RNNLM])
@pytest.mark.parametrize("tie", [False, True])
def test_an_exported_recurrent_model_loads_into_torch_nn(tmp_path, cls, tie):
    mg.manual_seed(5)
    model = cls(vocab_size=V, n_embd=24, hidden_size=24, num_layers=2, tie_weights=tie)
    save_checkpoint(tmp_path / "ck", model)
    export_checkpoint(tmp_path / "ck", "torch", tmp_path / "t")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    net = TorchRNNLM(**config).eval()
    net.load_state_dict(safetensors_torch.load_file(tmp_path / "t" / "model.safetensors"), strict=True)
    np.testing.assert_allclose(theirs(net, X), ours(model, X), atol=1e-4, rtol=0)


def test_agreement_is_not_vacuous(tmp_path):
    """The negative control: one square matrix left in Conv1D's (in, out) layout (the
    mistake the transposes prevent) moves the logits far beyond the tolerance."""
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    model, _ = load_pretrained(tmp_path)
    w = model.blocks[0].attn.out_proj.weight
    w.data = np.ascontiguousarray(w.numpy().T)
    assert np.abs(ours(model, X) - theirs(hf, X)).max() > 1e-2


def _gpt2_folder_with_tokenizer(tmp_path):
    """A GPT-2 folder as a user downloads one: weights, config, and a byte-level BPE
    (trained here with Hugging Face's tokenizers on a small text, saved as GPT-2 saves it)."""
    pytest.importorskip("tokenizers")
    from hf_bpe import hf_train
    text = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
            "it was the age of foolishness. Ça va? Überall 東京 🙂 123 456.\n") * 20
    tok = hf_train(text, 320)
    folder = tmp_path / "gpt2"
    folder.mkdir()
    tok.model.save(str(folder))                                   # vocab.json, merges.txt
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=32,
                                     n_layer=2, n_head=4, initializer_range=0.1,
                                     bos_token_id=tok.token_to_id("<|endoftext|>"),
                                     eos_token_id=tok.token_to_id("<|endoftext|>"))
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(folder)
    return folder, hf


def test_sample_on_a_gpt2_folder_and_its_import_continues_as_hugging_face_does(tmp_path, capsys):
    from lmroad.cli import main
    folder, hf = _gpt2_folder_with_tokenizer(tmp_path)
    hf_tok = transformers.GPT2TokenizerFast.from_pretrained(folder)
    prompt = "It was the age of 東京 🙂,"
    ids = hf_tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = hf.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    want = prompt + hf_tok.decode(out[0, ids.shape[1]:])
    args = ["--prompt", prompt, "--max-new-tokens", "12", "--temperature", "0"]
    assert main(["sample", "--checkpoint", str(folder), *args]) == 0          # straight from the folder
    assert capsys.readouterr().out == want + "\n"
    assert main(["import", "--from", "hf-gpt2", str(folder), "--out", str(tmp_path / "imp")]) == 0
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(tmp_path / "imp"), *args]) == 0
    assert capsys.readouterr().out == want + "\n"
    # and out again: the tokenizer goes with the weights, and transformers reads both
    assert main(["export", "--to", "hf-gpt2", "--checkpoint", str(tmp_path / "imp"), "--out",
                 str(tmp_path / "hf")]) == 0
    again = transformers.GPT2TokenizerFast.from_pretrained(tmp_path / "hf")
    assert again(prompt)["input_ids"] == ids[0].tolist()
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    np.testing.assert_allclose(theirs(back, X % 300), theirs(hf, X % 300), atol=1e-6, rtol=0)


def test_a_model_trained_with_our_bpe_exports_a_tokenizer_transformers_reads(tmp_path):
    from lmroad.data.bpe import BPETokenizer
    text = "To be, or not to be, that is the question: whether 'tis nobler in the mind\n" * 30
    tok = BPETokenizer.train(text, 300)
    mg.manual_seed(6)
    model = TransformerLM(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=T)
    save_checkpoint(tmp_path / "ck", model, tokenizer=tok)
    export_checkpoint(tmp_path / "ck", "hf-gpt2", tmp_path / "hf")
    hf_tok = transformers.GPT2TokenizerFast.from_pretrained(tmp_path / "hf")
    sample = "Whether 'tis nobler? To be... <|endoftext|> or not 🙂"
    assert hf_tok(sample)["input_ids"] == tok.encode(sample).tolist()
    assert hf_tok.eos_token == "<|endoftext|>"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["eos_token_id"] == tok.stoi["<|endoftext|>"]

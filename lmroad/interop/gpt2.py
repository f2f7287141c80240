"""GPT-2 in two layouts, and ``TransformerLM`` between them.

Hugging Face's ``GPT2LMHeadModel`` and nanoGPT's ``GPT`` are the same
network as ``TransformerLM`` with ``bias=True``, learned positions, a tied
head and pre-LN blocks; only the names and one layout differ:

    lmroad TransformerLM             Hugging Face GPT-2 / nanoGPT
    wte.weight        (V, C)         transformer.wte.weight
    wpe.weight        (T, C)         transformer.wpe.weight
    blocks.i.ln1                     transformer.h.i.ln_1
    blocks.i.attn.in_proj_weight     transformer.h.i.attn.c_attn.weight    (3C, C): q, k, v rows
    blocks.i.attn.in_proj_bias       transformer.h.i.attn.c_attn.bias
    blocks.i.attn.out_proj           transformer.h.i.attn.c_proj
    blocks.i.ln2                     transformer.h.i.ln_2
    blocks.i.mlp.fc                  transformer.h.i.mlp.c_fc              (4C, C)
    blocks.i.mlp.proj                transformer.h.i.mlp.c_proj            (C, 4C)
    ln_f                             transformer.ln_f
    lm_head.weight  (V, C)           lm_head.weight (tied to wte; HF leaves it out of the file)

The layout: Hugging Face's GPT-2 keeps OpenAI's ``Conv1D`` modules, which
store a weight as (in, out), the transpose of ``nn.Linear``'s (out, in), so
its four matrices per block are transposed on the way in and out. nanoGPT
uses ``nn.Linear`` and needs no transpose (its ``from_pretrained``
transposes the same four). The buffers ``attn.bias`` and
``attn.masked_bias`` that some GPT-2 files hold are the causal mask, which
``TransformerLM`` builds itself: they are skipped.

The activations: GPT-2 uses the tanh approximation of GELU
(``activation_function: "gelu_new"``, our ``"gelu_tanh"``); nanoGPT's
``nn.GELU()`` is the exact one (our ``"gelu"``). Both use LayerNorm eps
1e-5 unless GPT-2's config says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..models import TransformerConfig
from .files import InteropError

__all__ = ["names", "config_from_hf", "config_to_hf", "config_from_nanogpt", "config_to_nanogpt",
           "to_lmroad", "from_lmroad", "HF_ACTIVATIONS"]

#: Hugging Face's activation_function -> TransformerLM's activation
HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                  "relu": "relu"}
_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")


def names(cfg: TransformerConfig) -> Iterator[tuple[str, str, bool]]:
    """(lmroad name, GPT-2 name, stored transposed by Hugging Face's Conv1D) for every weight."""
    def pair(ours: str, theirs: str, conv1d: bool = False):
        yield f"{ours}.weight", f"{theirs}.weight", conv1d
        if cfg.bias:
            yield f"{ours}.bias", f"{theirs}.bias", False

    yield "wte.weight", "transformer.wte.weight", False
    yield "wpe.weight", "transformer.wpe.weight", False
    for i in range(cfg.n_layer):
        o, t = f"blocks.{i}", f"transformer.h.{i}"
        yield from pair(f"{o}.ln1", f"{t}.ln_1")
        yield f"{o}.attn.in_proj_weight", f"{t}.attn.c_attn.weight", True
        if cfg.bias:
            yield f"{o}.attn.in_proj_bias", f"{t}.attn.c_attn.bias", False
        yield from pair(f"{o}.attn.out_proj", f"{t}.attn.c_proj", True)
        yield from pair(f"{o}.ln2", f"{t}.ln_2")
        yield from pair(f"{o}.mlp.fc", f"{t}.mlp.c_fc", True)
        yield from pair(f"{o}.mlp.proj", f"{t}.mlp.c_proj", True)
    yield from pair("ln_f", "transformer.ln_f")
    yield "lm_head.weight", "lm_head.weight", False


# --------------------------------------------------------------------------- configs

def _need_int(config: dict, key: str, where: Path) -> int:
    v = config.get(key)
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        raise InteropError(f"{where}: {key!r} must be an int >= 1, got {v!r:.40}")
    return v


def config_from_hf(config: dict, where: Path) -> TransformerConfig:
    """A Hugging Face ``GPT2Config`` (its config.json) as a TransformerConfig, or an error
    naming each setting ``TransformerLM`` has no equivalent for."""
    if config.get("model_type") != "gpt2":
        raise InteropError(f"{where}: model_type {config.get('model_type')!r:.40}; only GPT-2 "
                           "('gpt2') folders can be imported")
    n_embd = _need_int(config, "n_embd", where)
    act = config.get("activation_function", "gelu_new")
    problems = []
    if act not in HF_ACTIVATIONS:
        problems.append(f"activation_function {act!r:.40} (supported: {sorted(HF_ACTIVATIONS)})")
    if config.get("n_inner") not in (None, 4 * n_embd):
        problems.append(f"n_inner {config['n_inner']!r:.20} (TransformerLM's MLP is 4 * n_embd = "
                        f"{4 * n_embd} wide)")
    for key, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                      ("add_cross_attention", False)):
        if config.get(key, want) != want:
            problems.append(f"{key}={config[key]!r:.20} (TransformerLM has {want})")
    eps = config.get("layer_norm_epsilon", 1e-5)
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps <= 0.1):
        problems.append(f"layer_norm_epsilon {eps!r:.20} (must be in (0, 0.1])")
    if problems:
        raise InteropError(f"{where}: this GPT-2 has settings TransformerLM cannot reproduce: "
                           + "; ".join(problems))
    try:
        return TransformerConfig(vocab_size=_need_int(config, "vocab_size", where),
                                 n_layer=_need_int(config, "n_layer", where),
                                 n_head=_need_int(config, "n_head", where), n_embd=n_embd,
                                 block_size=_need_int(config, "n_positions", where), dropout=0.0,
                                 bias=True, activation=HF_ACTIVATIONS[act],
                                 layer_norm_eps=float(eps),
                                 tie_weights=bool(config.get("tie_word_embeddings", True)))
    except ValueError as e:
        raise InteropError(f"{where}: {e}") from None


def config_to_hf(cfg: TransformerConfig, eos_token_id: int | None) -> dict:
    """The config.json of the ``GPT2LMHeadModel`` that is this TransformerLM."""
    if not cfg.bias:
        raise InteropError("export --to hf-gpt2: this TransformerLM has no biases (bias=False), and "
                           "Hugging Face's GPT-2 always has them; export --to nanogpt instead, whose "
                           "bias=False is this model")
    out = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
           "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_embd": cfg.n_embd,
           "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
           "activation_function": _TO_HF_ACTIVATION[cfg.activation],
           "layer_norm_epsilon": cfg.layer_norm_eps, "resid_pdrop": cfg.dropout,
           "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
           "tie_word_embeddings": cfg.tie_weights, "torch_dtype": "float32",
           # GPT-2's <|endoftext|> starts and ends a text; a vocabulary without it has neither
           "bos_token_id": eos_token_id, "eos_token_id": eos_token_id}
    return out


def config_from_nanogpt(args: dict, where: Path) -> TransformerConfig:
    """nanoGPT's ``model_args`` (n_layer, n_head, n_embd, block_size, bias, vocab_size,
    dropout) as a TransformerConfig: exact GELU, eps 1e-5, a tied head."""
    bias = args.get("bias", True)
    if not isinstance(bias, bool):
        raise InteropError(f"{where}: 'bias' must be true or false, got {bias!r:.20}")
    try:
        return TransformerConfig(vocab_size=_need_int(args, "vocab_size", where),
                                 n_layer=_need_int(args, "n_layer", where),
                                 n_head=_need_int(args, "n_head", where),
                                 n_embd=_need_int(args, "n_embd", where),
                                 block_size=_need_int(args, "block_size", where), dropout=0.0,
                                 bias=bias, activation="gelu", layer_norm_eps=1e-5, tie_weights=True)
    except ValueError as e:
        raise InteropError(f"{where}: {e}") from None


def config_to_nanogpt(cfg: TransformerConfig) -> dict:
    """nanoGPT's ``model_args`` for this TransformerLM, or an error naming what nanoGPT's
    GPT cannot be."""
    problems = []
    if cfg.activation != "gelu":
        problems.append(f"activation {cfg.activation!r} (nanoGPT's MLP uses the exact GELU, 'gelu'; "
                        "export --to hf-gpt2 for GPT-2's tanh GELU)")
    if cfg.layer_norm_eps != 1e-5:
        problems.append(f"layer_norm_eps {cfg.layer_norm_eps} (nanoGPT's LayerNorm uses 1e-5)")
    if not cfg.tie_weights:
        problems.append("an untied head (nanoGPT ties lm_head to wte)")
    if problems:
        raise InteropError("export --to nanogpt: this TransformerLM differs from nanoGPT's GPT: "
                           + "; ".join(problems))
    return {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
            "block_size": cfg.block_size, "bias": cfg.bias, "vocab_size": cfg.vocab_size,
            "dropout": cfg.dropout}


# --------------------------------------------------------------------------- weights

def _canonical(name: str) -> str:
    """A GPT-2 weight's name with the prefixes tools add removed: ``_orig_mod.`` (a
    torch.compile'd nanoGPT), and ``transformer.`` put back where HF's base model left it out."""
    name = name.removeprefix("_orig_mod.")
    if not name.startswith(("transformer.", "lm_head.")):
        name = "transformer." + name
    return name


def to_lmroad(cfg: TransformerConfig, state: dict[str, np.ndarray], where: Path,
              conv1d: bool) -> dict[str, np.ndarray]:
    """A GPT-2 state dict (HF's with ``conv1d``, nanoGPT's without) as TransformerLM's,
    every name and shape checked; the tied head is checked equal to the embedding."""
    state = {_canonical(k): v for k, v in state.items() if not k.endswith(_MASK_BUFFERS)}
    out, problems = {}, []
    expected = list(names(cfg))
    for ours, theirs, transposed in expected:
        if theirs == "lm_head.weight" and cfg.tie_weights:
            continue
        if theirs not in state:
            problems.append(f"{theirs} is missing")
            continue
        a = state[theirs]
        a = a.T if transposed and conv1d else a
        out[ours] = np.ascontiguousarray(a, dtype=np.float32)
    if cfg.tie_weights:
        out["lm_head.weight"] = out.get("wte.weight")
        head = state.get("lm_head.weight")
        if head is not None and "wte.weight" in out and not (
                head.shape == out["wte.weight"].shape and np.array_equal(head, out["wte.weight"])):
            problems.append("lm_head.weight differs from wte.weight, but the config ties them "
                            "(tie_word_embeddings)")
    known = {theirs for _, theirs, _ in expected}
    unexpected = sorted(set(state) - known)
    if unexpected:
        problems.append(f"unexpected weights {unexpected[:5]}")
    if problems:
        raise InteropError(f"{where}: the weights do not match the config "
                           f"(n_layer={cfg.n_layer}, bias={cfg.bias}): " + "; ".join(problems[:6]))
    return out


def from_lmroad(cfg: TransformerConfig, weights: dict[str, np.ndarray], conv1d: bool,
                with_head: bool) -> dict[str, np.ndarray]:
    """TransformerLM's weights with GPT-2's names (HF's layout with ``conv1d``);
    ``with_head``: also ``lm_head.weight`` when it is tied (nanoGPT's state dict has it;
    HF's files leave it out)."""
    out = {}
    for ours, theirs, transposed in names(cfg):
        if theirs == "lm_head.weight" and cfg.tie_weights and not with_head:
            continue
        a = weights[ours]
        out[theirs] = np.ascontiguousarray(a.T if transposed and conv1d else a, dtype=np.float32)
    return out

"""The benchmark workloads: one training iteration of each model, in minigrad
and in PyTorch, on the same data, sizes, dtype (float32) and optimizer.

An iteration is what a training loop does per batch:

    loss = model(x, y); loss.backward(); clip_grad_norm_(1.0); AdamW step; zero_grad()

with AdamW(lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on matrices and
embeddings only), the same batch every iteration (drawn once from a seeded
generator, identical for both frameworks), no dropout. Each builder returns a
``TrainStep``: calling it runs one iteration and returns the loss as a Python
float (reading it is also the point where any pending work must have finished).

Import this module only after ``common.set_threads``: NumPy's BLAS reads its
thread count when NumPy is first imported. minigrad and lmroad are imported
inside the minigrad builders, so that a PyTorch-only process (memory.py's
worker) does not carry them in its resident memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch_reference

__all__ = ["TrainStep", "GPTConfig", "GPT_PRESETS", "RNNBenchConfig", "RNN_PRESETS", "gpt_param_count",
           "gpt_matmul_flops", "rnn_matmul_flops", "minigrad_gpt", "torch_gpt", "minigrad_rnn", "torch_rnn"]

LR, BETAS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0


# --------------------------------------------------------------------------- configurations

@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    vocab_size: int = 65          # Shakespeare's characters
    # the MLP's GELU, given to both frameworks: "gelu_tanh" (GPT-2's approximation, the
    # default of lmroad's TransformerLM) or "gelu" (exact, with erf, as nanoGPT's nn.GELU)
    activation: str = "gelu_tanh"

    def as_dict(self) -> dict:
        return asdict(self)


GPT_PRESETS = {
    # nanoGPT README, "I only have a macbook": the CPU baby GPT
    "baby": GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12),
    # nanoGPT config/train_shakespeare_char.py
    "medium": GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64),
    "smoke": GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=2),
}


@dataclass(frozen=True)
class RNNBenchConfig:
    cell: str                     # "lstm", "gru" or "rnn"
    hidden_size: int = 256        # also the embedding width
    num_layers: int = 2
    seq_len: int = 64
    batch_size: int = 32
    vocab_size: int = 65

    def as_dict(self) -> dict:
        return asdict(self)


RNN_PRESETS = {
    "default": dict(hidden_size=256, num_layers=2, seq_len=64, batch_size=32),
    "smoke": dict(hidden_size=16, num_layers=2, seq_len=4, batch_size=2),
}


def _batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0):
    """Random token ids x, y, each (B, T) int64, the same for both frameworks."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, vocab_size, (batch_size, seq_len), dtype=np.int64),
            rng.integers(0, vocab_size, (batch_size, seq_len), dtype=np.int64))


# --------------------------------------------------------------------------- FLOP count

def gpt_param_count(c: GPTConfig) -> dict:
    """Parameters of the pre-LN GPT with a tied head, by kind."""
    C, L = c.n_embd, c.n_layer
    matmul = L * 12 * C * C + c.vocab_size * C       # qkv 3C², proj C², fc 4C², fc_proj 4C²; head VC
    # positions; biases (qkv 3C, proj C, fc 4C, fc_proj C); LayerNorms (2 per block and ln_f)
    other = c.block_size * C + L * 9 * C + (2 * L + 1) * 2 * C
    return {"matmul_weights": matmul, "total": matmul + other}


def gpt_matmul_flops(c: GPTConfig) -> dict:
    """Matrix-product FLOPs of one training iteration (a multiply-add is 2 FLOPs).

    Forward, per token:
      weights    2·N, N = 12·L·C² + V·C: every token goes through each weight matrix
                 once (qkv C×3C, proj C×C, fc C×4C, fc_proj 4C×C per layer, the tied
                 head C×V; the embeddings are lookups, no FLOPs).
      attention  4·L·T·C: q·kᵀ scores for T keys (2·T·C summed over the heads, hs·nh = C)
                 and the weighted sum att·v (2·T·C). Eager attention computes the whole
                 T×T square, masked half included, so T (not T/2) keys are counted.
    Backward costs twice the forward (each product gives two gradient products),
    so per token 6·N + 12·L·T·C, times B·T tokens per iteration. This is nanoGPT's
    ``estimate_mfu`` count (which uses all parameters but the positions for N).
    Not counted: biases, LayerNorm, softmax, GELU, the loss, clipping and AdamW
    (elementwise, O(N + B·T·C) each)."""
    N = gpt_param_count(c)["matmul_weights"]
    per_token = 6 * N + 12 * c.n_layer * c.block_size * c.n_embd
    tokens = c.batch_size * c.block_size
    return {"per_token": per_token, "per_iter": per_token * tokens, "tokens_per_iter": tokens}


def rnn_matmul_flops(c: RNNBenchConfig) -> dict:
    """Matrix-product FLOPs of one training iteration of the char RNN/LSTM.

    Forward, per token: each layer's two products for all G gates at once,
    x W_ihᵀ (2·I·G·H) and h W_hhᵀ (2·H·G·H), with I = H here (the embedding is
    H wide), G = 4 for the LSTM and 1 for the tanh RNN; then the output layer
    (2·H·V). Backward twice that: 6·(L·2·G·H² + H·V) per token. G = 3 for the GRU."""
    G = {"lstm": 4, "gru": 3, "rnn": 1}[c.cell]
    H = c.hidden_size
    per_token = 6 * (c.num_layers * 2 * G * H * H + H * c.vocab_size)
    tokens = c.batch_size * c.seq_len
    return {"per_token": per_token, "per_iter": per_token * tokens, "tokens_per_iter": tokens}


# --------------------------------------------------------------------------- one iteration

class TrainStep:
    """One training iteration as three phases, for either framework:
    ``forward() -> loss``, ``backward(loss)``, ``update()`` (clip, AdamW step,
    zero the gradients). Calling it runs one iteration and returns the loss."""

    def __init__(self, forward: Callable, backward: Callable, update: Callable[[], None]):
        self.forward, self.backward, self.update = forward, backward, update

    def __call__(self) -> float:
        loss = self.forward()
        self.backward(loss)
        self.update()
        return float(loss.item())

    def timed_phases(self) -> dict[str, float]:
        """One iteration; seconds spent in each phase."""
        t0 = time.perf_counter()
        loss = self.forward()
        t1 = time.perf_counter()
        self.backward(loss)
        t2 = time.perf_counter()
        self.update()
        t3 = time.perf_counter()
        loss.item()
        return {"forward": t1 - t0, "backward": t2 - t1, "update": t3 - t2}


# --------------------------------------------------------------------------- minigrad

class GraphedTrainStep(TrainStep):
    """minigrad's whole iteration recorded once as a CUDA graph and replayed
    (``minigrad.graphs``); its phases cannot be timed apart."""

    def __init__(self, step, x, y):
        self.step, self.x, self.y = step, x, y

    def __call__(self) -> float:
        return float(self.step(self.x, self.y).item())

    def timed_phases(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self()
        return {"graph replay": time.perf_counter() - t0}


def _minigrad_step(model, x, y, device: str = "cpu", cuda_graph: bool = False) -> TrainStep:
    import minigrad as mg
    from minigrad import optim
    model.to(device)
    x, y = mg.tensor(x, device=device), mg.tensor(y, device=device)
    opt = model.configure_optimizers(weight_decay=WEIGHT_DECAY, lr=LR, betas=BETAS,
                                     capturable=cuda_graph)
    params = [p for p in model.parameters() if p.requires_grad]
    if cuda_graph:
        from minigrad.graphs import graphed_step

        def whole_step(xb, yb):
            loss = model(xb, yb)[1]
            loss.backward()
            optim.clip_grad_norm_(params, CLIP)
            opt.step()
            opt.zero_grad()
            return loss
        return GraphedTrainStep(graphed_step(whole_step, opt), x, y)

    def update() -> None:
        optim.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad()
    def forward():
        with mg.device_checks(False):      # as the trainer: no validation syncs on a GPU
            return model(x, y)[1]
    return TrainStep(forward, lambda loss: loss.backward(), update)


def minigrad_gpt(c: GPTConfig, seed: int = 0, device: str = "cpu", cuda_graph: bool = False) -> TrainStep:
    import minigrad as mg
    from lmroad.models import TransformerLM
    mg.manual_seed(seed)
    model = TransformerLM(vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                          n_embd=c.n_embd, block_size=c.block_size, dropout=0.0,
                          activation=c.activation)
    x, y = _batch(c.vocab_size, c.batch_size, c.block_size, seed)
    return _minigrad_step(model, x, y, device, cuda_graph)


def minigrad_rnn(c: RNNBenchConfig, seed: int = 0, device: str = "cpu") -> TrainStep:
    """lmroad's LSTMLM/RNNLM: embedding -> stacked cells stepped per time step -> Linear."""
    import minigrad as mg
    from lmroad.models import RNNLM
    mg.manual_seed(seed)
    model = RNNLM(vocab_size=c.vocab_size, n_embd=c.hidden_size, hidden_size=c.hidden_size,
                  num_layers=c.num_layers, dropout=0.0, cell=c.cell)
    x, y = _batch(c.vocab_size, c.batch_size, c.seq_len, seed)
    return _minigrad_step(model, x, y, device)


# --------------------------------------------------------------------------- PyTorch

def _torch_step(torch, model, x, y, device: str = "cpu") -> TrainStep:
    model.to(device)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.AdamW(torch_reference.weight_decay_groups(model, WEIGHT_DECAY), lr=LR,
                            betas=BETAS)
    params = list(model.parameters())

    def update() -> None:
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad()
    return TrainStep(lambda: model(x, y), lambda loss: loss.backward(), update)


def torch_gpt(torch, c: GPTConfig, seed: int = 0, device: str = "cpu") -> TrainStep:
    GPT, _ = torch_reference.build(torch)
    torch.manual_seed(seed)
    gelu = {"gelu_tanh": "tanh", "gelu": "none"}[c.activation]
    model = GPT(c.vocab_size, c.n_layer, c.n_head, c.n_embd, c.block_size, gelu=gelu)
    x, y = _batch(c.vocab_size, c.batch_size, c.block_size, seed)
    return _torch_step(torch, model, torch.from_numpy(x), torch.from_numpy(y), device)


def torch_rnn(torch, c: RNNBenchConfig, fused: bool = False, seed: int = 0,
              device: str = "cpu") -> TrainStep:
    """CharRNN stepping nn.LSTMCell/GRUCell/RNNCell per time step, or (``fused``) one nn.LSTM/GRU/RNN."""
    _, CharRNN = torch_reference.build(torch)
    torch.manual_seed(seed)
    model = CharRNN(c.vocab_size, c.hidden_size, c.num_layers, c.cell, fused=fused)
    x, y = _batch(c.vocab_size, c.batch_size, c.seq_len, seed)
    return _torch_step(torch, model, torch.from_numpy(x), torch.from_numpy(y), device)

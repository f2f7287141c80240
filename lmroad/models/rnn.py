"""``RNNLM`` (and ``LSTMLM``, ``GRULM``): recurrent language models
(Mikolov et al. 2010; Zaremba et al. 2014 for the LSTM with dropout).

    e_t = Dropout(E[w_t])                          embedding        (B, T, n_embd)
    h_t = core(e_t, h_{t-1})                       num_layers of RNN/LSTM/GRU cells
    logits_t = W_out Dropout(h_t) + b_out          next-token scores (B, T, V)

The hidden state is the model's whole memory of the past, so a long text is
trained in consecutive windows that hand the state on (truncated
backpropagation through time): the state at the end of one window starts
the next, detached so gradients stop at the window boundary.

    state = None
    for x, y in consecutive_windows:
        logits, loss = model(x, y, state=state)
        loss.backward(); opt.step(); opt.zero_grad()
        state = model.detach_state(model.last_state)

``model.last_state`` is the final state of the most recent ``forward``
(still attached to its graph; ``detach_state`` cuts it), so ``forward``
keeps the one interface ``(logits, loss)``. The state is the core's: a
tensor h (num_layers, B, hidden_size) for "rnn" and "gru", a tuple (h, c)
of two such tensors for "lstm". ``generate`` does not touch ``last_state``.

``tie_weights=True`` uses the embedding matrix as the output weights
(Press & Wolf 2017; Inan et al. 2017), which needs n_embd == hidden_size.
Initialisation: PyTorch's defaults for every layer, as a model built from
``nn.Embedding``, ``nn.LSTM`` (``nn.RNN``, ``nn.GRU``) and ``nn.Linear`` starts:
the embedding N(0, 1), the recurrent cells U(±1/√hidden_size), the output
layer U(±1/√hidden_size) (Kaiming-uniform with a = √5) and its bias
U(±1/√hidden_size). An earlier version started the embedding at U(±0.1), as
PyTorch's word-language-model example does for its 200- to 1500-wide
embeddings; with the narrow embeddings of small models that feeds the cells
inputs of standard deviation 0.06 against recurrent weights of about
1/√H, and an LSTM then stayed at chance on the recall task at every learning
rate tried (the same LSTM in PyTorch from those weights did too).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmroad.layers import GRU, LSTM, RNN, Dropout, Embedding, Linear
from minigrad.tensor import Tensor

from .base import LanguageModel, check_sizes

__all__ = ["RNNLM", "LSTMLM", "GRULM", "RNNConfig", "detach_state"]

CORES = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


@dataclass(frozen=True)
class RNNConfig:
    vocab_size: int = 256
    n_embd: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    tie_weights: bool = False
    cell: str = "rnn"
    forget_bias: float = 0.0   # LSTM only: initial forget-gate bias (1.0 starts the gates open)

    def __post_init__(self):
        check_sizes(self, ("vocab_size", "n_embd", "hidden_size", "num_layers"), "RNNLM")
        if self.cell not in CORES:
            raise ValueError(f"RNNLM: cell must be one of {tuple(CORES)}, got {self.cell!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RNNLM: dropout must be in [0, 1), got {self.dropout}")
        if self.forget_bias and self.cell != "lstm":
            raise ValueError(f"RNNLM: forget_bias is for cell='lstm' only, got cell={self.cell!r}")
        if self.tie_weights and self.n_embd != self.hidden_size:
            raise ValueError(f"RNNLM: tie_weights needs n_embd == hidden_size (the output layer "
                             f"reuses the (vocab_size, n_embd) embedding as its (vocab_size, "
                             f"hidden_size) weight), got n_embd={self.n_embd}, "
                             f"hidden_size={self.hidden_size}")


def detach_state(state):
    """The state with every tensor cut from its graph (None stays None)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"detach_state: expected a Tensor, a tuple of Tensors or None, "
                    f"got {type(state).__name__}")


class RNNLM(LanguageModel):
    """Embedding -> multi-layer RNN/LSTM/GRU -> (dropout) -> Linear to the vocabulary."""

    config_class = RNNConfig
    model_type = "rnn"

    def __init__(self, vocab_size: int = 256, n_embd: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.0, tie_weights: bool = False,
                 cell: str = "rnn", forget_bias: float = 0.0):
        super().__init__()
        cfg = self._config = RNNConfig(vocab_size=vocab_size, n_embd=n_embd, hidden_size=hidden_size,
                                       num_layers=num_layers, dropout=dropout,
                                       tie_weights=tie_weights, cell=cell, forget_bias=forget_bias)
        self.embedding = Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = Dropout(cfg.dropout)
        # dropout between stacked layers too (Zaremba et al. 2014), inside the core
        extra = {"forget_bias": cfg.forget_bias} if cfg.cell == "lstm" else {}
        self.core = CORES[cfg.cell](cfg.n_embd, cfg.hidden_size, cfg.num_layers, batch_first=True,
                                    dropout=cfg.dropout, **extra)
        self.head = Linear(cfg.hidden_size, cfg.vocab_size)     # PyTorch's defaults, see above
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight    # one Parameter, (V, n_embd)
        self.last_state = None

    def extra_repr(self) -> str:
        c = self._config
        return f"cell={c.cell!r}, tie_weights={c.tie_weights}"

    def forward(self, idx: Tensor, targets: Tensor | None = None, state=None):
        """idx (B, T) -> (logits (B, T, V), loss or None), starting from ``state``
        (zeros when None); the final state is left in ``self.last_state``."""
        logits, self.last_state = self._run(idx, state)
        return logits, self._loss(logits, targets)

    def _run(self, idx: Tensor, state):
        self._check_idx(idx)
        x = self.drop(self.embedding(idx))              # (B, T, n_embd)
        y, state = self.core(x, state)                  # (B, T, H), final state
        return self.head(self.drop(y)), state           # (B, T, V)

    @staticmethod
    def detach_state(state):
        """See ``lmroad.models.rnn.detach_state``: cut the state from its graph for the next window."""
        return detach_state(state)

    # generation: the carried state is the cache; each new token is one step of the core
    def _prefill(self, idx: Tensor):
        logits, state = self._run(idx, None)
        return logits[:, -1, :], state

    def _decode(self, new: Tensor, state):
        h, state = self.core.step(self.embedding(new[:, 0]), state)   # (B, H)
        return self.head(h), state                                     # (B, V)


def _one_cell_init(cell_type: str, class_name: str):
    """The constructor of an RNNLM whose cell is always ``cell_type`` (LSTMLM, GRULM): RNNLM's
    own parameters, with ``cell`` defaulting to ``cell_type`` and refusing any other (it is
    accepted at all because a saved config names its cell)."""
    def __init__(self, vocab_size: int = 256, n_embd: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.0, tie_weights: bool = False,
                 cell: str = cell_type, forget_bias: float = 0.0):
        if cell != cell_type:
            raise ValueError(f"{class_name}: cell is always {cell_type!r}, got {cell!r}; "
                             "use RNNLM(cell=...)")
        RNNLM.__init__(self, vocab_size, n_embd, hidden_size, num_layers, dropout, tie_weights, cell,
                       forget_bias)
    return __init__


class LSTMLM(RNNLM):
    """``RNNLM`` with LSTM cells."""

    config_defaults = {"cell": "lstm"}
    model_type = "lstm"
    __init__ = _one_cell_init("lstm", "LSTMLM")


class GRULM(RNNLM):
    """``RNNLM`` with GRU cells."""

    config_defaults = {"cell": "gru"}
    model_type = "gru"
    __init__ = _one_cell_init("gru", "GRULM")

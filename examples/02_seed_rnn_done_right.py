"""Step 2: the seed document's NumPy RNN, done right on minigrad.

    python examples/02_seed_rnn_done_right.py [--device cpu|cuda] [--quick] [--threads N]

The seed's snippet does not run (it indexes the hidden state along the wrong
axis and past its end), uses a sigmoid state, and has no loss and no gradient
step, so it "trains" nothing. Here is the same network, with its equations
(tanh for the state, see docs/seed.md):

    h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h)        x_t: one-hot character
    y_t = W_hy h_t + b_y                              logits over the next character
    L   = mean_t  -log softmax(y_t)[next character]  cross-entropy

and the three things the snippet lacks: a loss, backpropagation through time
(``loss.backward()`` through the unrolled loop), and an optimizer (Adam).
It learns a tiny generated text and then writes some of its own.
"""

import numpy as np
from _common import example_parser, parse_example_args  # the flags all examples share

import minigrad as mg
import minigrad.functional as F
from lmroad.data import CharTokenizer, tiny_corpus
from minigrad import nn, optim

args = parse_example_args(example_parser(__doc__, quick="a few steps only (CI smoke test)"))
dev = mg.device(args.device)
mg.manual_seed(0)

text = tiny_corpus(n_chars=20_000).train                 # a small synthetic dialogue
tok = CharTokenizer.from_text(text)
data = tok.encode(text)                                  # (N,) int64 token ids
V, H, T, B = tok.vocab_size, 64, 32, 16                  # vocab, hidden, unroll length, batch
steps = 20 if args.quick else 600


class SeedRNN(nn.Module):
    """The seed's parameters, with the seed's names; small random initial weights."""

    def __init__(self, V: int, H: int):
        super().__init__()
        s = 1.0 / np.sqrt(H)
        self.W_xh = nn.Parameter(mg.randn(V, H) * s)     # row v = W_xh x_t for the one-hot x_t = e_v
        self.W_hh = nn.Parameter(mg.randn(H, H) * s)
        self.b_h = nn.Parameter(mg.zeros(H))
        self.W_hy = nn.Parameter(mg.randn(H, V) * s)
        self.b_y = nn.Parameter(mg.zeros(V))

    def forward(self, idx: mg.Tensor, h: mg.Tensor):
        """idx (B, T) token ids, h (B, H) -> logits (B, T, V), last h (B, H)."""
        ys = []
        for t in range(idx.shape[1]):
            # one-hot x_t times W_xh is a row lookup: F.embedding does it without the zeros
            h = (h @ self.W_hh + F.embedding(idx[:, t], self.W_xh) + self.b_h).tanh()  # (B, H)
            ys.append(h @ self.W_hy + self.b_y)                                        # (B, V)
        return mg.stack(ys, axis=1), h


model = SeedRNN(V, H).to(dev)
opt = optim.Adam(model.parameters(), lr=3e-3)
rng = np.random.default_rng(0)
for step in range(steps + 1):
    starts = rng.integers(0, len(data) - T - 1, size=B)
    window = np.stack([data[s:s + T + 1] for s in starts])            # (B, T+1)
    x, y = mg.tensor(window[:, :-1], device=dev), mg.tensor(window[:, 1:], device=dev)
    logits, _ = model(x, mg.zeros(B, H, device=dev))
    loss = F.cross_entropy(logits.reshape(B * T, V), y.reshape(B * T))  # softmax + NLL
    opt.zero_grad()
    loss.backward()                                      # backpropagation through time
    optim.clip_grad_norm_(model.parameters(), 1.0)       # RNN gradients can explode: clip them
    opt.step()
    if step % max(1, steps // 6) == 0:
        print(f"step {step:4d}  loss {loss.item():.3f} nats/char  (uniform guess: {np.log(V):.3f})")

# Sampling: feed the model its own output, one character at a time.
with mg.no_grad():
    h = mg.zeros(1, H, device=dev)
    ids = list(tok.encode("The"))
    _, h = model(mg.tensor([ids[:-1]], device=dev), h)
    for _ in range(120):
        logits, h = model(mg.tensor([[ids[-1]]], device=dev), h)
        p = F.softmax(logits[0, -1] / 0.8, axis=-1).numpy().astype(np.float64)
        ids.append(int(rng.choice(V, p=p / p.sum())))
print("sample:", tok.decode(ids).replace("\n", " / "))

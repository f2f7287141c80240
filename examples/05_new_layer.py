"""Step 5: add a layer of your own, check it with the layer test kit, use it.

    python examples/05_new_layer.py [--device cpu|cuda] [--quick] [--threads N]

The layer: an LSTM cell with *peepholes* (Gers & Schmidhuber 2000), whose
gates also look at the cell state through diagonal weights p_i, p_f, p_o:

    i  = σ(W_ii x + W_hi h + b_i + p_i ⊙ c)
    f  = σ(W_if x + W_hf h + b_f + p_f ⊙ c)
    g  = tanh(W_ig x + W_hg h + b_g)
    c' = f ⊙ c + i ⊙ g
    o  = σ(W_io x + W_ho h + b_o + p_o ⊙ c')        (the output gate sees the new cell)
    h' = o ⊙ tanh(c')

A new layer is one class: it subclasses ``LSTMCell`` (which owns the
weights, their PyTorch layout and the input checks), adds three parameters
and rewrites ``recurrence``, the step proper. ``check_layer`` then verifies
what every layer owes its users: dtypes, every parameter used, gradients
against finite differences (for inputs and parameters), the same numbers on
cpu and on the strict fake device, state_dict round trips, eval mode.
Finally the cell drops into ``lmroad.layers.LSTM`` to run whole sequences.
"""

from _common import example_parser, parse_example_args  # the flags all examples share

import minigrad as mg
import minigrad.functional as F
from lmroad.layers import LSTM, Embedding, Linear, LSTMCell
from minigrad import nn, optim
from minigrad.nn.testing import check_layer

args = parse_example_args(example_parser(__doc__, quick="fewer training steps (CI smoke test)"))
dev = mg.device(args.device)


class PeepholeLSTMCell(LSTMCell):
    """LSTMCell plus peephole weights ``weight_ci``, ``weight_cf``, ``weight_co`` (H,)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, forget_bias: float = 0.0):
        super().__init__(input_size, hidden_size, bias, forget_bias)
        for name in ("weight_ci", "weight_cf", "weight_co"):
            setattr(self, name, nn.Parameter(mg.zeros(hidden_size)))   # start as a plain LSTM
        nn.init.uniform_(self.weight_ci, -0.1, 0.1)                     # ... nearly
        nn.init.uniform_(self.weight_cf, -0.1, 0.1)
        nn.init.uniform_(self.weight_co, -0.1, 0.1)

    def recurrence(self, gx, state):
        h, c = state                                        # each (B, H)
        i, f, g, o = (gx + self.hidden_projection(h)).split(4, axis=-1)
        i = (i + self.weight_ci * c).sigmoid()
        f = (f + self.weight_cf * c).sigmoid()
        c_next = f * c + i * g.tanh()
        o = (o + self.weight_co * c_next).sigmoid()
        return o * c_next.tanh(), c_next


class PeepholeLSTM(LSTM):
    """The sequence layer: ``LSTM`` runs whatever ``cell_class`` says, one cell per layer."""

    cell_class = PeepholeLSTMCell


# 1. The test kit. One call; an AssertionError names the check that failed.
x, h, c = mg.randn(2, 3), mg.randn(2, 4), mg.randn(2, 4)
check_layer(lambda: PeepholeLSTMCell(3, 4), (x, (h, c)), fast_mode=args.quick)  # fast: random directions
print("check_layer(PeepholeLSTMCell): dtype, params_used, gradcheck, parity, state_dict, train_eval: ok")
check_layer(lambda: PeepholeLSTM(3, 4, num_layers=2, batch_first=True), (mg.randn(2, 5, 3),),
            checks=("dtype", "params_used", "gradcheck"), fast_mode=True)
print("check_layer(PeepholeLSTM, 2 layers): ok")

# 2. Use it: a character model on a repeating pattern, which needs memory of the phase.
mg.manual_seed(0)
text = "abcabdabcabe" * (8 if args.quick else 40)
vocab = sorted(set(text))
ids = mg.tensor([[vocab.index(ch) for ch in text]], device=dev)           # (1, N)
emb, rnn, head = Embedding(len(vocab), 8), PeepholeLSTM(8, 32, batch_first=True), Linear(32, len(vocab))
params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
for m in (emb, rnn, head):
    m.to(dev)
opt = optim.Adam(params, lr=1e-2)
steps = 15 if args.quick else 150
for step in range(steps + 1):
    y, _ = rnn(emb(ids[:, :-1]))                                            # (1, N-1, 32)
    logits = head(y)                                                        # (1, N-1, V)
    loss = F.cross_entropy(logits.reshape(-1, len(vocab)), ids[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % max(1, steps // 5) == 0:
        print(f"step {step:3d}  loss {loss.item():.3f} nats/char")
print("peephole weights after training (mean |p|):",
      {n: round(float(abs(getattr(rnn.cells[0], n)).mean().item()), 3)
       for n in ("weight_ci", "weight_cf", "weight_co")})

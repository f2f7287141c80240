"""Step 6: look at the graph autograd builds, as a picture.

    python examples/06_graph_viz.py [--device cpu|cuda] [--quick] [--out DIR] [--threads N]

Builds a tiny recurrent network (the seed's RNN: h_t = tanh(W_hh h_{t-1} +
W_xh x_t + b_h), y_t = W_hy h_t + b_y) unrolled over a few steps, computes a
cross-entropy loss, and writes its graph with ``minigrad.viz.to_dot``: before
backward (the forward graph), and after ``backward(retain_graph=True)``, when
every parameter box also shows the norm of its gradient. The DOT text needs no
Graphviz; if the ``dot`` program is installed the script also renders PNGs.
Look for the unrolled chain: W_hh feeds one ``matmul`` per time step, which is
why its gradient is a sum over time (backpropagation through time).
"""

import os
import shutil
import subprocess

from _common import example_parser, parse_example_args  # the flags all examples share

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

parser = example_parser(__doc__, quick="two time steps instead of four")
parser.add_argument("--out", default="out/graph_viz", help="folder for the .dot (and .png) files")
args = parse_example_args(parser)
dev = mg.device(args.device)
mg.manual_seed(0)


class TinyRNN(nn.Module):
    """The seed's RNN cell with a linear read-out; V tokens, H hidden units."""

    def __init__(self, V: int, H: int):
        super().__init__()
        self.W_xh = nn.Parameter(mg.randn(V, H) * 0.5)     # rows are token embeddings
        self.W_hh = nn.Parameter(mg.randn(H, H) * 0.5)
        self.b_h = nn.Parameter(mg.zeros(H))
        self.W_hy = nn.Parameter(mg.randn(H, V) * 0.5)
        self.b_y = nn.Parameter(mg.zeros(V))

    def forward(self, tokens: mg.Tensor, targets: mg.Tensor) -> mg.Tensor:
        B, T = tokens.shape
        h = mg.zeros(B, self.W_hh.shape[0], device=tokens.device)    # (B, H)
        loss = 0
        for t in range(T):
            x = F.embedding(tokens[:, t], self.W_xh)                  # (B, H): one-hot @ W_xh
            h = (x + h @ self.W_hh + self.b_h).tanh()                 # (B, H)
            y = h @ self.W_hy + self.b_y                              # (B, V) logits
            loss = loss + F.cross_entropy(y, targets[:, t])
        return loss / T


T = 2 if args.quick else 4
model = TinyRNN(V=5, H=3).to(dev)
tokens = mg.randint(0, 5, (2, T + 1), device=dev)
loss = model(tokens[:, :-1], tokens[:, 1:])
names = dict(model.named_parameters())

os.makedirs(args.out, exist_ok=True)
paths = {"forward": os.path.join(args.out, "rnn_forward.dot"),
         "backward": os.path.join(args.out, "rnn_with_grads.dot")}
with open(paths["forward"], "w") as f:
    f.write(mg.viz.to_dot(loss, params=names))
loss.backward(retain_graph=True)             # keep the graph so it can still be drawn
with open(paths["backward"], "w") as f:
    f.write(mg.viz.to_dot(loss, params=names))

text = open(paths["forward"]).read()
print(f"T={T}: {text.count('shape=ellipse')} op nodes, {text.count('shape=box')} tensors; "
      f"the RNN is unrolled over {T} steps, so W_hh feeds {T} matmuls")
dot = shutil.which("dot")
for label, path in paths.items():
    if dot:
        png = path[:-4] + ".png"
        subprocess.run([dot, "-Tpng", path, "-o", png], check=True)
        print(f"{label}: {path} and {png}")
    else:
        print(f"{label}: {path}  (install Graphviz for PNGs: `dot -Tpng {path} -o graph.png`)")

"""Step 1 of the road: tensors, the graph, backward, and a Hessian-vector product.

    python examples/01_autograd_basics.py [--device cpu|cuda] [--quick] [--threads N]

Everything a neural network needs from minigrad is here in miniature: a
tensor remembers the op that made it, ``backward()`` walks that graph in
reverse and leaves d(loss)/d(leaf) in ``.grad``, and because backward is
itself written with differentiable ops, gradients can be differentiated again.
"""

import numpy as np
from _common import example_parser, parse_example_args  # the flags all examples share

import minigrad as mg
import minigrad.functional as F

args = parse_example_args(example_parser(__doc__, quick="accepted for uniformity; this example is tiny"))
dev = mg.device(args.device)
mg.manual_seed(0)

# --- 1. tensors and the graph ------------------------------------------------
x = mg.tensor([1.0, 2.0, 3.0], device=dev, requires_grad=True)   # a leaf
y = (x * x).sum()                                                  # mul -> sum
print("y =", y.item(), "made by", y.grad_fn)                       # <sum node>
print("is x a leaf?", x.is_leaf, "| is y?", y.is_leaf)

# --- 2. backward: dy/dx = 2x ---------------------------------------------------
y.backward()
print("dy/dx =", x.grad.numpy(), "(expected 2x =", 2 * x.numpy(), ")")

# Gradients accumulate into .grad across backward calls; reset between steps.
x.zero_grad()

# --- 3. a tiny classifier: logits -> cross-entropy -> gradients of weights -----
inputs = mg.randn(8, 3, device=dev)                                # (B, in)
labels = mg.tensor([0, 1, 1, 0, 1, 0, 0, 1], device=dev)           # (B,)
w = mg.randn(3, 2, device=dev, requires_grad=True)
b = mg.zeros(2, device=dev, requires_grad=True)
loss = F.cross_entropy(inputs @ w + b, labels)                     # softmax + NLL, fused
loss.backward()
print(f"loss {loss.item():.4f}; |dL/dw| = {np.linalg.norm(w.grad.numpy()):.4f}")

# One plain gradient-descent step lowers the loss (the whole idea of training).
with mg.no_grad():                                                 # do not record the update
    w2, b2 = w - 0.5 * w.grad, b - 0.5 * b.grad
    print(f"after one step: {F.cross_entropy(inputs @ w2 + b2, labels).item():.4f}")

# --- 4. gradients of gradients: a Hessian-vector product ------------------------
# f(v) = sum(v^3) + v0·v1. With create_graph=True the gradient g = ∇f is itself
# a graph, so differentiating g·u gives H u without ever building the Hessian H.
v = mg.tensor([1.0, 2.0, 3.0], dtype="float64", device=dev, requires_grad=True)
u = mg.tensor([0.5, -1.0, 2.0], dtype="float64", device=dev)
f = (v ** 3).sum() + v[0] * v[1]
(g,) = mg.grad(f, v, create_graph=True)                            # 3v² + (v1, v0, 0)
(hu,) = mg.grad((g * u).sum(), v)                                  # H u
H = np.diag(6 * v.numpy()) + np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
print("Hu =", hu.numpy(), "| explicit H @ u =", H @ u.numpy())
assert np.allclose(hu.numpy(), H @ u.numpy())

# --- 5. trust, but check: finite differences agree with backward ----------------
a = mg.randn(2, 3, dtype="float64", device=dev, requires_grad=True)
c = mg.randn(3, 2, dtype="float64", device=dev, requires_grad=True)
print("gradcheck(tanh(a @ c)):", mg.gradcheck(lambda a, c: (a @ c).tanh(), (a, c)))

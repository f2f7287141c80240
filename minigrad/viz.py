"""The graph of a tensor as Graphviz DOT text (no Graphviz needed to make it).

    print(minigrad.viz.to_dot(loss))      # paste into any DOT viewer, or `dot -Tpng`

Tensors are boxes (shape, dtype, device, and the gradient's norm once
backward has run), ops are ellipses, arrows point from inputs to outputs.
Call it before backward() or use retain_graph=True: backward frees the graph.
"""

from __future__ import annotations

import math

from . import backend
from .tensor import Tensor

__all__ = ["to_dot"]


def _label(t: Tensor, names: dict[int, str]) -> str:
    parts = [names.get(id(t), "")]
    parts.append(f"{t.shape} {t.dtype}" + ("" if t.device.type == "cpu" else f" {t.device}"))
    if t.grad is not None:
        g = backend.to_host(t.grad.data).astype("float64")
        parts.append(f"|grad| = {math.sqrt(float((g * g).sum())):.4g}")
    return "\\n".join(p for p in parts if p)


def to_dot(root: Tensor, params: dict[str, Tensor] | None = None, max_nodes: int = 2000) -> str:
    """DOT text for the graph that produced ``root``. ``params``: optional
    {name: tensor} (e.g. ``dict(model.named_parameters())``) to label leaves."""
    names = {id(t): n for n, t in (params or {}).items()}
    lines = ["digraph minigrad {", '  rankdir="BT";', '  node [fontname="Helvetica", fontsize=10];']
    seen: set[int] = set()
    stack = [root]
    while stack and len(seen) < max_nodes:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        shade = "lightblue" if t.is_leaf and t.requires_grad else "white"
        lines.append(f'  t{id(t)} [shape=box, style=filled, fillcolor={shade}, label="{_label(t, names)}"];')
        fn = t._ctx
        if fn is None:
            continue
        lines.append(f'  f{id(fn)} [shape=ellipse, label="{fn.name()}"];')
        lines.append(f"  f{id(fn)} -> t{id(t)};")
        for p in getattr(fn, "inputs", ()):
            lines.append(f"  t{id(p)} -> f{id(fn)};")
            stack.append(p)
    if stack:
        lines.append(f'  truncated [shape=plaintext, label="... graph truncated at {max_nodes} tensors"];')
    lines.append("}")
    return "\n".join(lines)

"""The graph of a tensor as Graphviz DOT text (no Graphviz needed to make it).

    print(minigrad.viz.to_dot(loss))                  # paste into any DOT viewer, or `dot -Tpng`
    dot = minigrad.viz.to_dot(loss, params=dict(model.named_parameters()), grads=True)

Tensors are boxes (name if given, shape, dtype, device), ops are ellipses,
arrows point from inputs to outputs. Leaves that require grad are shaded.

Gradients, two ways:

* by default a box shows ``|grad|``, the norm of ``t.grad``, where that is set:
  the leaves (and ``retain_grad()`` tensors) after ``backward()``, with
  whatever earlier backward passes accumulated there;
* ``grads=True`` shows it for every tensor that requires grad, intermediate
  ones included: ``to_dot`` differentiates ``root`` (a scalar, e.g. the loss)
  itself, with one pass of ``minigrad.grad`` with respect to every tensor in
  the graph, and labels each box with the norm of d root / d tensor. It writes
  no ``.grad`` and keeps the graph, so it works before ``backward()`` or after
  ``backward(retain_graph=True)``, and a tensor used in several places shows
  its total gradient. Boxes of tensors that do not require grad (input data)
  have no gradient to show.

``backward()`` frees the graph: draw it before, or pass ``retain_graph=True``;
a freed graph is a ``GraphError``, not a picture with its inputs missing.
"""

from __future__ import annotations

import math

from . import backend
from .autograd import grad
from .errors import GraphError
from .tensor import Tensor

__all__ = ["to_dot"]


def _norm(g: Tensor) -> float:
    a = backend.to_host(g.data).astype("float64")
    return math.sqrt(float((a * a).sum()))


def _walk(root: Tensor, max_nodes: int) -> tuple[list[Tensor], bool]:
    """The tensors of ``root``'s graph, outputs first (at most ``max_nodes``), and whether
    the walk stopped early."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack = [root]
    while stack and len(seen) < max_nodes:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        order.append(t)
        fn = t._ctx
        if fn is None:
            continue
        if getattr(fn, "_freed", False):
            raise GraphError("to_dot: the graph was freed by backward(); draw it before backward(), "
                             "or call backward(retain_graph=True)")
        stack.extend(fn.inputs)
    return order, bool(stack)


def _grad_norms(root: Tensor, tensors: list[Tensor]) -> dict[int, float | None]:
    """{id(t): |d root / d t|} for the tensors that require grad (None: no gradient reaches t)."""
    if not root.requires_grad:
        raise GraphError("to_dot(grads=True): root does not require grad, so there is no "
                         "gradient to show (was it computed under no_grad()?)")
    if root.size != 1:
        raise ValueError(f"to_dot(grads=True): root must be a scalar (a loss) to differentiate, "
                         f"got shape {root.shape}; draw root.sum() or the loss instead")
    wrt = [t for t in tensors if t.requires_grad]
    gs = grad(root, wrt, retain_graph=True, allow_unused=True)
    return {id(t): None if g is None else _norm(g) for t, g in zip(wrt, gs)}


def _label(t: Tensor, names: dict[int, str], norms: dict[int, float | None] | None) -> str:
    parts = [names.get(id(t), "")]
    parts.append(f"{t.shape} {t.dtype}" + ("" if t.device.type == "cpu" else f" {t.device}"))
    if norms is None:
        if t.grad is not None:
            parts.append(f"|grad| = {_norm(t.grad):.4g}")
    elif id(t) in norms:
        n = norms[id(t)]
        parts.append("no gradient" if n is None else f"|grad| = {n:.4g}")
    return "\\n".join(p for p in parts if p)


def to_dot(root: Tensor, params: dict[str, Tensor] | None = None, grads: bool = False,
           max_nodes: int = 2000) -> str:
    """DOT text for the graph that produced ``root``.

    ``params``: optional {name: tensor} (e.g. ``dict(model.named_parameters())``)
    to label leaves. ``grads=True``: label every tensor that requires grad with
    the norm of d root / d tensor, computed here (``root`` must be a scalar;
    see the module docstring); otherwise only tensors whose ``.grad`` is set
    show one. At most ``max_nodes`` tensors are drawn."""
    names = {id(t): n for n, t in (params or {}).items()}
    tensors, truncated = _walk(root, max_nodes)
    norms = _grad_norms(root, tensors) if grads else None
    drawn = {id(t) for t in tensors}
    lines = ["digraph minigrad {", '  rankdir="BT";', '  node [fontname="Helvetica", fontsize=10];']
    for t in tensors:
        shade = "lightblue" if t.is_leaf and t.requires_grad else "white"
        lines.append(f'  t{id(t)} [shape=box, style=filled, fillcolor={shade}, '
                     f'label="{_label(t, names, norms)}"];')
        fn = t._ctx
        if fn is None:
            continue
        lines.append(f'  f{id(fn)} [shape=ellipse, label="{fn.name()}"];')
        lines.append(f"  f{id(fn)} -> t{id(t)};")
        for p in fn.inputs:
            if id(p) in drawn:
                lines.append(f"  t{id(p)} -> f{id(fn)};")
    if truncated:
        lines.append(f'  truncated [shape=plaintext, label="... graph truncated at {max_nodes} tensors"];')
    lines.append("}")
    return "\n".join(lines)

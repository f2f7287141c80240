"""``einsum``: Einstein summation, and its gradient, which is another einsum.

    einsum("ij,jk->ik", a, b)      # matmul: out[i,k] = Σ_j a[i,j] b[j,k]
    einsum("bij,bkj->bik", q, k)   # batched q kᵀ
    einsum("ii->", a)              # trace
    einsum("...ij->...ji", x)      # '...' stands for the leading (broadcast) dims

Each operand's letters name its dims; the output keeps the letters after
``->`` (without ``->``: the letters used once, alphabetically, as NumPy) and
sums over the rest. The gradient of operand k is the einsum of the output's
gradient with the other operands, written to operand k's letters: a letter only
operand k has gets a ones vector (its dim was summed away: the gradient
broadcasts over it), and a letter operand k repeats (a diagonal, "ii") gets an
identity matrix, which puts the gradient back on the diagonal.
"""

from __future__ import annotations

import string
from collections import Counter

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor

_LETTERS = string.ascii_letters


class Einsum(Function):
    """out[out letters] = Σ_(other letters) Π_k operand_k[letters_k] (see the module docstring)."""
    op_name = "einsum"

    def forward(self, *xs):
        return backend.xp_of(xs[0]).einsum(",".join(self.terms) + "->" + self.out, *xs)

    def backward(self, g):
        return [self._grad(g, k) if t.requires_grad else None for k, t in enumerate(self.inputs)]

    def _grad(self, g: Tensor, k: int) -> Tensor:
        target = self.terms[k]
        sizes = dict(zip(target, self.inputs[k].shape))
        unique = "".join(dict.fromkeys(target))
        subs = [self.out] + [s for j, s in enumerate(self.terms) if j != k]
        ops = [g] + [t for j, t in enumerate(self.inputs) if j != k]
        present = set("".join(subs))
        for c in unique:        # a dim only operand k has was summed away: the gradient broadcasts
            if c not in present:
                subs.append(c)
                ops.append(Tensor._make(g.xp.ones(sizes[c], dtype=g.dtype), g._device))
        grad = _einsum(subs, unique, ops)
        if len(unique) == len(target):
            return grad
        # a repeated letter (a diagonal): spread the gradient with identity matrices, each
        # later occurrence of the letter renamed to a fresh one
        free = (c for c in _LETTERS if c not in set("".join(self.terms) + self.out))
        spread, eyes, seen = "", [], set()
        for c in target:
            if c in seen:
                f = next(free)
                spread += f
                eyes.append((c + f, Tensor._make(g.xp.eye(sizes[c], dtype=g.dtype), g._device)))
            else:
                seen.add(c)
                spread += c
        return _einsum([unique] + [s for s, _ in eyes], spread, [grad] + [e for _, e in eyes])


def _einsum(terms: list[str], out: str, tensors: list[Tensor]) -> Tensor:
    return Einsum.apply(*tensors, terms=tuple(terms), out=out)


def _check_dots(term: str, where: str, subscripts: str) -> None:
    if term.count("...") > 1 or "." in term.replace("...", "", 1):
        raise ValueError(f"einsum: {where} in {subscripts!r} has a stray '.'; '...' may appear "
                         "once per term")


def _parse(subscripts: str, operands: list[Tensor]) -> tuple[list[str], str]:
    """Terms and output with '...' replaced by fresh letters (right-aligned, as broadcasting)."""
    spec = subscripts.replace(" ", "")
    lhs, arrow, rhs = spec.partition("->")
    bad = sorted(set(spec) - set(_LETTERS + ".,->"))
    if bad or any(c in lhs + rhs for c in "->") or "," in rhs:
        what = f"invalid character {bad[0]!r}" if bad else "a misplaced '-', '>' or ','"
        raise ValueError(f"einsum: {what} in {subscripts!r}; valid: letters a-z and A-Z, '...', "
                         "',' between operands and one '->' before the output")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {subscripts!r} names {len(terms)} operand(s), got {len(operands)}")
    ranks = []
    for i, (t, x) in enumerate(zip(terms, operands)):
        _check_dots(t, f"operand {i}'s term {t!r}", subscripts)
        letters = t.replace("...", "")
        extra = x.ndim - len(letters)
        if extra < 0 or (extra and "..." not in t):
            raise ValueError(f"einsum: operand {i} has shape {x.shape} ({x.ndim} dims) but its "
                             f"subscripts {t!r} name {len(letters)}"
                             f"{'' if '...' not in t else ' besides ...'}")
        ranks.append(extra)
    used = set(lhs + rhs)
    n_ell = max(ranks, default=0)
    free = [c for c in _LETTERS if c not in used]
    if n_ell > len(free):
        raise ValueError(f"einsum: {subscripts!r} leaves too few letters for '...' ({n_ell} dims)")
    ell = "".join(free[:n_ell])
    terms = [t.replace("...", ell[n_ell - r:]) for t, r in zip(terms, ranks)]
    if not arrow:   # implicit output: the broadcast dims, then the letters used once, sorted
        counts = Counter("".join(terms))
        return terms, ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    _check_dots(rhs, f"the output {rhs!r}", subscripts)
    if n_ell and "..." not in rhs:
        raise ValueError(f"einsum: the operands of {subscripts!r} have dims under '...' that the "
                         "output does not name; add '...' to the output")
    out = rhs.replace("...", ell)
    for c in out:
        if c not in lhs and c not in ell:
            raise ValueError(f"einsum: output subscript {c!r} in {subscripts!r} is not in any input")
        if out.count(c) > 1:
            raise ValueError(f"einsum: output subscript {c!r} appears twice in {subscripts!r}")
    return terms, out


def einsum(subscripts: str, *operands: Tensor) -> Tensor:
    """Einstein summation over ``operands`` as ``numpy.einsum`` / ``torch.einsum``
    (``subscripts`` such as ``"bij,bjk->bik"``; see the module docstring).

    A letter's dims must agree across operands, or be 1 (broadcast); '...' dims
    broadcast as usual. Float operands of mixed precision meet in the wider one;
    integer ones join a float one in its dtype. Differentiable in every operand,
    to any order."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a string such as 'ij,jk->ik', got "
                        f"{type(subscripts).__name__} (the interleaved form is not supported)")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, x in enumerate(operands):
        if not isinstance(x, Tensor):
            raise TypeError(f"einsum: operand {i} is a {type(x).__name__}, expected a Tensor")
    if not operands:
        raise ValueError("einsum: needs at least one operand")
    terms, out = _parse(subscripts, list(operands))
    sizes: dict[str, int] = {}
    for i, (t, x) in enumerate(zip(terms, operands)):
        for c, n in zip(t, x.shape):
            if t.count(c) > 1 and n != x.shape[t.index(c)]:
                raise ValueError(f"einsum: operand {i} repeats subscript {c!r} over dims of sizes "
                                 f"{x.shape[t.index(c)]} and {n} (shape {x.shape}); they must agree")
            m = sizes.setdefault(c, n)
            if n != m and 1 not in (n, m):
                raise ValueError(f"einsum: subscript {c!r} has size {m} in one operand and {n} in "
                                 f"operand {i} (shape {x.shape}) of {subscripts!r}")
            if m == 1:
                sizes[c] = n
    tensors = []
    floats = [x.dtype for x in operands if x.dtype.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.result_type(*[x.dtype for x in operands])
    for t, x in zip(terms, operands):
        x = x if x.dtype == dtype else x.astype(dtype)
        full = tuple(sizes[c] for c in t)
        tensors.append(x if x.shape == full else x.broadcast_to(full))   # size-1 dims broadcast
    return _einsum(terms, out, tensors)


# --------------------------------------------------------------------------- exports

__all__ = ["einsum"]

METHODS: dict = {}

"""``LayerNorm`` (Ba, Kiros & Hinton 2016)."""

from __future__ import annotations

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_positive, check_tensor


class LayerNorm(nn.Module):
    """y = (x - μ) / √(σ² + eps) · weight + bias, with μ and σ² the mean and
    (biased) variance over the trailing ``normalized_shape`` axes.

    ``weight`` (ones) and ``bias`` (zeros) have shape ``normalized_shape``, as
    in PyTorch's ``torch.nn.LayerNorm`` (same names), so weights can be
    exchanged with PyTorch. ``elementwise_affine=False`` drops both;
    ``bias=False`` drops only the bias (as PyTorch ≥ 2.1 and GPT-2-style
    models without biases). The numerics (two-pass variance, a fused
    gradient) live in ``minigrad.functional.layer_norm``.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        check_positive("LayerNorm", **{f"normalized_shape[{i}]": n for i, n in enumerate(shape)})
        if not shape:
            raise ValueError("LayerNorm: normalized_shape must have at least one axis")
        if not eps >= 0:
            raise ValueError(f"LayerNorm: eps must be >= 0, got {eps}")
        self.normalized_shape, self.eps = shape, float(eps)
        self.elementwise_affine = elementwise_affine
        self.register_parameter("weight", nn.Parameter(mg.ones(shape)) if elementwise_affine else None)
        self.register_parameter("bias", nn.Parameter(mg.zeros(shape))
                                if elementwise_affine and bias else None)

    def forward(self, x: Tensor) -> Tensor:
        ns = self.normalized_shape
        name = f"LayerNorm(normalized_shape={ns})"
        check_tensor(name, x)
        if x.ndim < len(ns) or x.shape[x.ndim - len(ns):] != ns:
            raise ValueError(f"{name}: input has shape {x.shape}, "
                             f"expected (..., {', '.join(map(str, ns))})")
        return F.layer_norm(x, ns, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

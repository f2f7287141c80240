"""``Linear``: y = x Wᵀ + b."""

from __future__ import annotations

import math

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_features, check_positive


class Linear(nn.Module):
    """y = x Wᵀ + b, applied to the last axis: (..., in_features) -> (..., out_features).

    Parameters as PyTorch's ``torch.nn.Linear`` (same names, shapes and
    initialisation), so weights can be exchanged with PyTorch by key and shape:

    - ``weight`` (out_features, in_features), U(-1/√in, 1/√in)
      (PyTorch's kaiming_uniform_ with a=√5 comes to exactly this bound);
    - ``bias`` (out_features,), U(-1/√in, 1/√in), or None when ``bias=False``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        check_positive("Linear", in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(mg.zeros(out_features, in_features))
        self.register_parameter("bias", nn.Parameter(mg.zeros(out_features)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's recipe: kaiming_uniform_(a=√5) has gain √(2/(1+5)) and bound
        # gain·√(3/fan_in) = 1/√fan_in; the bias uses the same bound.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        check_features(f"Linear(in_features={self.in_features})", x, self.in_features)
        return F.linear(x, self.weight, self.bias)          # (..., out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

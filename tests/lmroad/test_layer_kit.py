"""The layer test kit (``minigrad.testing.layer_kit.check_layer``) catches what it
claims to: each test hands it a layer broken in one way and expects the
matching check to fail, naming itself and the layer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis.extra import numpy as hnp

import minigrad as mg
import minigrad.functional as F
from lmroad.layers import Linear
from minigrad import nn
from minigrad.autograd import Function
from minigrad.testing.layer_kit import bound_parameters, check_layer


def x23():
    return mg.tensor(np.random.default_rng(0).standard_normal((2, 3)))


class _WrongGrad(Function):
    def forward(self, x):
        return x * 2

    def backward(self, g):
        return g * 3


class WrongGradient(Linear):
    def forward(self, x):
        return _WrongGrad.apply(super().forward(x))


class OwnReference(Linear):
    """Reads its weight through a reference of its own: binding cannot reach it."""

    def __init__(self, *a):
        super().__init__(*a)
        self._w = [self.weight]

    def forward(self, x):
        return x @ self._w[0].T + self.bias


class UnusedBias(Linear):
    def forward(self, x):
        return x @ self.weight.T


class DeviceDependent(Linear):
    def forward(self, x):
        y = super().forward(x)
        return y * 2.0 if x.device.type == "fake" else y


class PromotesToFloat64(Linear):
    def forward(self, x):
        return super().forward(x) * mg.tensor(np.ones(2), device=x.device)   # float64 constant


class AlwaysDropout(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.5, training=True)


class Unsaved(Linear):
    def __init__(self, *a):
        super().__init__(*a)
        self.scale = mg.randn(2)      # random, but neither a parameter nor a buffer

    def forward(self, x):
        return super().forward(x) * self.scale.to(x.device, x.dtype)


@pytest.mark.parametrize("layer, check", [
    (WrongGradient, "gradcheck"), (OwnReference, "gradcheck"), (UnusedBias, "params_used"),
    (DeviceDependent, "parity"), (PromotesToFloat64, "dtype"), (Unsaved, "state_dict")])
def test_the_kit_catches_a_broken_layer(layer, check):
    with pytest.raises(AssertionError, match=rf"check_layer\[{check}\] {layer.__name__}"):
        check_layer(lambda: layer(3, 2), (x23(),))


def test_the_kit_catches_randomness_in_eval_mode():
    with pytest.raises(AssertionError, match=r"(?s)check_layer\[train_eval\] AlwaysDropout: .*output 0 "
                                             r"in eval mode depends on the random seed"):
        check_layer(AlwaysDropout, (x23(),))


def test_the_kit_passes_a_correct_layer_and_accepts_unused_params():
    check_layer(lambda: Linear(3, 2), (x23(),), gradgradcheck=True)
    check_layer(lambda: UnusedBias(3, 2), (x23(),), unused_params=("bias",))


def test_the_kit_runs_as_a_hypothesis_test_over_a_strategy():
    seen = []

    def factory():
        seen.append(1)
        return Linear(3, 2)

    check_layer(factory, hnp.arrays(np.float64, (2, 3), elements=dict(min_value=-2, max_value=2))
                .map(lambda a: (a,)), checks=("gradcheck", "dtype"))
    assert len(seen) > 1


def test_bound_parameters_restores_the_parameters_even_after_an_error():
    layer = Linear(3, 2)
    before = list(layer.parameters())
    copies = [mg.zeros(p.shape) for p in before]
    with pytest.raises(RuntimeError), bound_parameters(layer, copies):
        assert layer.weight is copies[0]
        raise RuntimeError
    assert all(a is b for a, b in zip(layer.parameters(), before))

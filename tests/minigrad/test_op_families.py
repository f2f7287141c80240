"""A new op in two places: its family file and its registry entry (README, "Adding an op").

The recipe is followed here with a temporary family module: ``register_family``
is what ``minigrad/ops/__init__.py`` calls for every family file it finds.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import test_ops_registry
from op_registry import REGISTRY, OpInfo, unary

import minigrad as mg
from minigrad import ops

FAMILY = '''
import minigrad as mg
from minigrad.ops._lift import require_float


class Softplus(mg.Function):
    """log(1 + e^x); d/dx = sigmoid(x)."""
    def forward(self, x):
        return mg.backend.xp_of(x).logaddexp(0, x)
    def backward(self, g):
        return g * self.inputs[0].sigmoid()


def softplus(x):
    require_float(x, "softplus")
    return Softplus.apply(x)


__all__ = ["softplus"]
METHODS = {"softplus": softplus}
'''


@pytest.fixture
def softplus_family(monkeypatch):
    """The family registered as the package registers its files; undone afterwards."""
    module = types.ModuleType("minigrad.ops._test_softplus")
    exec(compile(FAMILY, "<softplus family>", "exec"), module.__dict__)
    for owner in (mg, ops, mg.Tensor):
        monkeypatch.setattr(owner, "softplus", None, raising=False)   # deleted again at teardown
    monkeypatch.setattr(mg, "__all__", list(mg.__all__))
    monkeypatch.setattr(ops, "__all__", list(ops.__all__))
    monkeypatch.setattr(ops, "FAMILIES", dict(ops.FAMILIES))
    ops.register_family(module)
    return module


def test_every_family_file_is_registered():
    assert {"elementwise", "reduce", "shape", "index", "linalg", "compare", "softmax", "norm",
            "attention", "recurrent"} <= set(ops.FAMILIES)
    assert "fused" not in ops.FAMILIES                       # the alias module exports nothing new
    for fam in ops.FAMILIES.values():
        for name in fam.__all__:
            assert getattr(mg, name) is getattr(fam, name) and name in mg.__all__
        for name, method in getattr(fam, "METHODS", {}).items():
            assert mg.Tensor.__dict__[name] is method


def test_a_new_family_is_exported_and_bound_as_a_method(softplus_family):
    assert mg.softplus is ops.softplus is softplus_family.softplus
    assert "softplus" in mg.__all__ and "softplus" in ops.__all__
    x = mg.tensor([[0.5, -1.0], [2.0, 0.0]], dtype="float64", requires_grad=True)
    np.testing.assert_allclose(x.softplus().numpy(), np.logaddexp(0, x.numpy()))
    assert mg.gradcheck(mg.softplus, (x,)) and mg.gradgradcheck(mg.softplus, (x,))
    with pytest.raises(TypeError, match="softplus"):
        mg.softplus(mg.tensor([1, 2]))


def test_the_meta_test_flags_the_missing_registry_entry_until_it_is_added(softplus_family, monkeypatch):
    with pytest.raises(AssertionError, match="softplus"):
        test_ops_registry.test_every_exported_differentiable_op_has_a_registry_entry()
    entry = OpInfo("softplus", mg.softplus, unary(-4.0, 4.0), lambda x: np.logaddexp(0, x),
                   empty_ok=True)
    monkeypatch.setattr(test_ops_registry, "REGISTRY", [*REGISTRY, entry])
    test_ops_registry.test_every_exported_differentiable_op_has_a_registry_entry()


def test_two_families_cannot_export_the_same_name(monkeypatch):
    clash = types.ModuleType("minigrad.ops._test_clash")
    clash.exp = lambda x: x
    clash.__all__ = ["exp"]
    monkeypatch.setattr(ops, "FAMILIES", dict(ops.FAMILIES))
    with pytest.raises(ValueError, match="'exp' is already exported"):
        ops.register_family(clash)
    assert mg.exp is mg.ops.elementwise.exp

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


class Softsign(mg.Function):
    """x / (1 + |x|); d/dx = 1 / (1 + |x|)²."""
    def forward(self, x):
        return x / (1 + mg.backend.xp_of(x).abs(x))
    def backward(self, g):
        return g / (1.0 + self.inputs[0].abs()) ** 2


def softsign(x):
    require_float(x, "softsign")
    return Softsign.apply(x)


__all__ = ["softsign"]
METHODS = {"softsign": softsign}
'''


@pytest.fixture
def softsign_family(monkeypatch):
    """The family registered as the package registers its files; undone afterwards."""
    module = types.ModuleType("minigrad.ops._test_softsign")
    exec(compile(FAMILY, "<softsign family>", "exec"), module.__dict__)
    for owner in (mg, ops, mg.Tensor):
        monkeypatch.setattr(owner, "softsign", None, raising=False)   # deleted again at teardown
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


def test_a_new_family_is_exported_and_bound_as_a_method(softsign_family):
    assert mg.softsign is ops.softsign is softsign_family.softsign
    assert "softsign" in mg.__all__ and "softsign" in ops.__all__
    x = mg.tensor([[0.5, -1.0], [2.0, 0.0]], dtype="float64", requires_grad=True)
    np.testing.assert_allclose(x.softsign().numpy(), x.numpy() / (1 + np.abs(x.numpy())))
    assert mg.gradcheck(mg.softsign, (x,)) and mg.gradgradcheck(mg.softsign, (x,))
    with pytest.raises(TypeError, match="softsign"):
        mg.softsign(mg.tensor([1, 2]))


def test_the_meta_test_flags_the_missing_registry_entry_until_it_is_added(softsign_family, monkeypatch):
    with pytest.raises(AssertionError, match="softsign"):
        test_ops_registry.test_every_exported_differentiable_op_has_a_registry_entry()
    entry = OpInfo("softsign", mg.softsign, unary(-4.0, 4.0), lambda x: x / (1 + np.abs(x)),
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

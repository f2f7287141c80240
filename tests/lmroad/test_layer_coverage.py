"""The layers' meta-test, as ops have theirs: every layer that ``lmroad.layers``
exports is built by the factory of at least one ``check_layer`` case in the tests.

Read from the test files' syntax: the names used inside each ``check_layer(...)``
call's first argument (the factory), and, where the factory picks a class from a
module-level dict (``CELLS[kind]``), every name in that dict."""

import ast
import pathlib

import lmroad.layers

TESTS = pathlib.Path(__file__).resolve().parents[1]
# not a Module: the key/value store MultiHeadAttention fills (tested through the attention's kit case
# and against uncached attention in test_attention.py)
NOT_LAYERS = {"KVCache"}


def _checked_names(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tables = {}
    for node in tree.body:                           # module-level NAME = {...} dicts of classes
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    tables[target.id] = {n.id for v in node.value.values for n in ast.walk(v)
                                         if isinstance(n, ast.Name)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_layer" and node.args:
            used = {n.id for n in ast.walk(node.args[0]) if isinstance(n, ast.Name)}
            names |= used
            for u in used & tables.keys():
                names |= tables[u]
    return names


def covered() -> set[str]:
    return set().union(*(_checked_names(p) for p in TESTS.rglob("test_*.py")))


def test_every_exported_layer_has_a_layer_kit_case():
    missing = set(lmroad.layers.__all__) - NOT_LAYERS - covered()
    assert not missing, (f"layers without a check_layer case: {sorted(missing)}; add one (see "
                         "minigrad.testing.layer_kit.check_layer and tests/lmroad/test_layers.py)")


def test_the_meta_test_sees_a_missing_case(tmp_path):
    (tmp_path / "test_x.py").write_text("TABLE = {'a': Linear}\n"
                                        "def test():\n    check_layer(lambda: TABLE['a'](1, 2), ())\n"
                                        "    other(lambda: GRU(1, 2))\n")
    names = _checked_names(tmp_path / "test_x.py")
    assert "Linear" in names and "GRU" not in names

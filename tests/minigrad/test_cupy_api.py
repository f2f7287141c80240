"""Every function minigrad and lmroad call through ``xp`` exists in CuPy.

The fake device runs op code on NumPy, which has functions CuPy lacks; this
catches a NumPy-only call before it meets a GPU. Needs CuPy importable (not
a GPU): ``pip install cupy-cuda13x`` works on a machine without one."""

import ast
import pathlib

import pytest

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install cupy-cuda13x)")

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _is_xp(node) -> bool:
    """``xp``, ``<anything>.xp``, or a call of ``xp_of``/``xp_for``."""
    if isinstance(node, ast.Name):
        return node.id == "xp"
    if isinstance(node, ast.Attribute):
        return node.attr == "xp"
    if isinstance(node, ast.Call):
        f = node.func
        return (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)) in ("xp_of", "xp_for")
    return False


def _xp_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for package in ("minigrad", "lmroad"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and _is_xp(node.value):
                    names.setdefault(node.attr, set()).add(str(path.relative_to(ROOT)))
    return names


def test_the_scan_finds_the_array_calls():
    names = _xp_names()
    assert {"exp", "tanh", "where", "take_along_axis", "zeros_like"} <= set(names)


def test_every_xp_function_used_exists_in_cupy():
    missing = {n: sorted(files) for n, files in _xp_names().items() if not hasattr(cupy, n)}
    assert not missing, f"called through xp but missing in CuPy {cupy.__version__}: {missing}"

"""Every minigrad module imports on its own, and the core imports form no circle.

``tensor.py`` imports only the backend (and the error classes); ``autograd.py``
imports ``tensor``; the op families import both. What would close a circle
(``Tensor.backward``, ``Tensor.to``, the operators) is bound onto ``Tensor`` by
the module that defines it, never imported inside a function.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PKG = pathlib.Path(__file__).resolve().parents[2] / "minigrad"


def _name(path: pathlib.Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_name(p) for p in PKG.rglob("*.py"))


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PKG.parent, timeout=120)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    r = _python(f"import {module}")
    assert r.returncode == 0, f"import {module} failed:\n{r.stderr}"


def test_import_minigrad_does_not_import_lmroad():
    r = _python("import sys, minigrad, minigrad.functional, minigrad.nn, minigrad.optim\n"
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lmroad'))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"import minigrad imported {r.stdout.strip()}"


def _imports(module: str) -> set[str]:
    """The minigrad modules ``module`` imports anywhere in its file (inside functions too)."""
    path = PKG.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            src = (base + "." + node.module if node.module else base) if node.level else node.module
            names = [f"{src}.{a.name}" if f"{src}.{a.name}" in MODULES else src for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in MODULES:
                n = n.rpartition(".")[0]
            if n and n != module:
                out.add(n)
    return out


CORE = ["minigrad.tensor", "minigrad.autograd", "minigrad.ops.shape", "minigrad.ops._lift",
        "minigrad.backend", "minigrad.cuda"]   # the backend asks nothing of cuda: cuda asks the backend


def test_the_core_modules_import_no_circle():
    assert _imports("minigrad.tensor") <= {"minigrad.backend", "minigrad.errors"}
    assert "minigrad.tensor" in _imports("minigrad.autograd")
    assert not any(m.startswith("minigrad.ops") for m in _imports("minigrad.autograd"))
    graph = {m: _imports(m) for m in MODULES}
    for start in CORE:                        # no path leads from a core module back to itself
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            assert m != start, f"{start} reaches itself through its imports"
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])

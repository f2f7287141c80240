"""minigrad's packages import on their own, and every old module path still works.

Modules moved into packages (``minigrad.cuda``, ``minigrad.backend``,
``minigrad.testing``) left their old path behind as an alias: a module that
puts the new one into ``sys.modules`` under the old name (see
``minigrad/kernels.py``). Each new module is imported alone in a fresh
interpreter (so an import that only works after another module has run
fails here), and then through its old path, which must give the very same
module object: one namespace, so a test that patches one patches the other.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# new module -> its old path (None: new, no old path)
MODULES = {
    "minigrad.backend": None,
    "minigrad.backend.fake": None,
    "minigrad.cuda": None,
    "minigrad.cuda.kernels": "minigrad.kernels",
    "minigrad.cuda.graphs": "minigrad.graphs",
    "minigrad.testing": None,
    "minigrad.testing.strategies": None,
    "minigrad.testing.layer_kit": "minigrad.nn.testing",
    "minigrad.testing.kernel_emulator": "minigrad.kernel_emulator",
}
OLD_PATHS = {old: new for new, old in MODULES.items() if old is not None}


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(MODULES) + sorted(OLD_PATHS))
def test_imports_alone_in_a_fresh_interpreter(name):
    done = _fresh(f"import {name}")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("old, new", sorted(OLD_PATHS.items()))
def test_old_path_is_the_same_module(old, new):
    new_mod, old_mod = importlib.import_module(new), importlib.import_module(old)
    assert old_mod is new_mod
    assert sys.modules[old] is new_mod
    parent, _, attr = old.rpartition(".")
    assert getattr(sys.modules[parent], attr) is new_mod     # ``from minigrad import kernels``


@pytest.mark.parametrize("old, new", sorted(OLD_PATHS.items()))
def test_old_path_first_in_a_fresh_interpreter(old, new):
    """Imported through the old path before anything else, the alias is still the new module
    (with all its public names), and importing the new path later finds the same object."""
    done = _fresh(f"import {old} as a, {new} as b, sys\n"
                  f"assert a is b is sys.modules[{old!r}] is sys.modules[{new!r}], (a, b)\n"
                  f"assert a.__name__ == {new!r}\n"
                  "assert all(hasattr(a, n) for n in getattr(b, '__all__', ()))\n")
    assert done.returncode == 0, done.stderr


def test_from_imports_through_old_paths():
    import minigrad as mg
    from minigrad.cuda import graphs, kernels
    from minigrad.graphs import CUDAGraph, graphed_step
    from minigrad.kernel_emulator import run
    from minigrad.kernels import REGISTRY, Elementwise, use_kernels
    from minigrad.nn.testing import check_layer
    from minigrad.testing import kernel_emulator, layer_kit
    assert (CUDAGraph, graphed_step) == (graphs.CUDAGraph, graphs.graphed_step)
    assert (REGISTRY, Elementwise, use_kernels) == (kernels.REGISTRY, kernels.Elementwise,
                                                    kernels.use_kernels)
    assert mg.use_kernels is kernels.use_kernels
    assert run is kernel_emulator.run and check_layer is layer_kit.check_layer


def test_testing_package_offers_the_strategies_names():
    """``from minigrad.testing import shapes`` works although the package imports the
    strategies (and so hypothesis) only when one of their names is asked for."""
    import minigrad.testing as testing
    from minigrad.testing import strategies
    assert testing.__all__ == strategies.__all__
    for name in strategies.__all__:
        assert getattr(testing, name) is getattr(strategies, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        testing.nope  # noqa: B018


def test_testing_tools_without_hypothesis():
    """The layer kit and the kernel emulator do not need hypothesis (a dev dependency)."""
    done = _fresh("import sys\n"
                  "sys.modules['hypothesis'] = None\n"           # `import hypothesis` now fails
                  "import minigrad.testing, minigrad.testing.layer_kit, minigrad.nn.testing\n"
                  "import minigrad.testing.kernel_emulator\n"
                  "from minigrad.testing.layer_kit import check_layer\n")
    assert done.returncode == 0, done.stderr


def test_only_the_backend_imports_cupy():
    """CuPy is imported in one place, ``minigrad.backend`` (``_cupy()`` and two ``cupyx``
    helpers); everything else asks it."""
    import pathlib

    import minigrad
    root = pathlib.Path(minigrad.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.parent.name == "backend":
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            words = line.strip().split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1 and words[1].split(".")[0] in (
                    "cupy", "cupyx"):
                offenders.append(f"{path.relative_to(root)}:{i}: {line.strip()}")
    assert not offenders, offenders

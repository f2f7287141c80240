"""Primitive ops, one family per file, gathered here.

A family file (every module in this folder whose name does not start with
``_``) holds its ops whole: each ``Function`` (forward and backward), its
user-facing function, and, at the end of the file, two lists:

- ``__all__``: the functions that ``minigrad.ops`` and ``minigrad`` export;
- ``METHODS``: Tensor methods and operators, ``{"exp": exp, "__neg__": neg}``.

This module imports every family and does both (``register_family``), so a
new op is its family file plus its entry in ``tests/minigrad/op_registry.py``.
"""

from __future__ import annotations

import importlib as _importlib
import pkgutil as _pkgutil
import sys as _sys
from types import ModuleType

from ..tensor import Tensor

_ALIASES = {"fused"}      # modules kept for old imports: not families (their names live elsewhere)
__all__: list[str] = []
FAMILIES: dict[str, ModuleType] = {}


def register_family(module: ModuleType) -> None:
    """Export ``module.__all__`` from ``minigrad.ops`` (and ``minigrad``, once it is
    imported) and bind ``module.METHODS`` onto ``Tensor``. A name two families
    export is an error, not a silent override."""
    names = list(getattr(module, "__all__", ()))
    here = _sys.modules[__name__]
    for name in names:
        owner = getattr(here, name, None)
        if name in __all__ and owner is not getattr(module, name):
            raise ValueError(f"op family {module.__name__}: {name!r} is already exported by another family")
    for name in names:
        setattr(here, name, getattr(module, name))
    __all__.extend(n for n in names if n not in __all__)
    for name, method in getattr(module, "METHODS", {}).items():
        setattr(Tensor, name, method)
    FAMILIES[module.__name__.rsplit(".", 1)[-1]] = module
    top = _sys.modules.get(__package__.rsplit(".", 1)[0])
    if top is not None and hasattr(top, "__version__"):    # minigrad fully imported: export there too
        for name in names:
            setattr(top, name, getattr(module, name))
        top.__all__.extend(n for n in names if n not in top.__all__)


for _info in _pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name not in _ALIASES:
        register_family(_importlib.import_module(f"{__name__}.{_info.name}"))

from . import fused  # noqa: E402,F401  (the old import path of the fused ops)
from .index import setitem  # noqa: E402,F401  (kept for old imports; it is Tensor.__setitem__)

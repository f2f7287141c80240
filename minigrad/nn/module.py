"""``Module``: parameters, buffers and submodules found by attribute assignment.

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(mg.randn(4, 3))   # registered as a parameter
            self.blocks = nn.ModuleList([...])      # registered as submodules

Names and behaviour follow PyTorch's ``torch.nn.Module``, so ``state_dict``
keys and shapes can be exchanged with PyTorch models of the same layout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, _check_dtype
from .parameter import Parameter


def _is_dtype(x) -> bool:
    """Is ``x`` a dtype (``mg.float64``, ``"float64"``, ``np.float32``) rather than a device?"""
    if isinstance(x, backend.Device):
        return False
    try:
        np.dtype(x)
    except TypeError:
        return False
    return True


class Module:
    """Base class of every layer and model."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                 "attributes")
        if name in self._parameters and value is not None and not isinstance(value, Parameter):
            raise TypeError(f"{type(self).__name__}: cannot assign a {type(value).__name__} to parameter "
                            f"{name!r} (a Parameter or None expected); wrap it with nn.Parameter(...) "
                            "or assign into its .data")
        # a tensor (or None) assigned to a buffer's name stays a buffer (decided before the pop)
        keep_buffer = name in self._buffers and (value is None or isinstance(value, Tensor))
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif keep_buffer:
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: Tensor | None, persistent: bool = True) -> None:
        """A tensor saved in ``state_dict`` (unless ``persistent=False``) and
        moved by ``to()``, but not trained (e.g. a causal mask, running stats)."""
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(value).__name__}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"register_buffer: {name!r} is already a parameter or submodule of "
                           f"{type(self).__name__}")
        self.__dict__.pop(name, None)
        self._buffers[name] = value
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module

    # ----------------------------------------------------------------- traversal
    def named_modules(self, prefix: str = "", memo: set | None = None) -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) pairs, each shared parameter once (first name wins)."""
        seen: set[int] = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for n, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mp}.{n}" if mp else n), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for mp, m in self.named_modules(prefix):
            for n, b in m._buffers.items():
                if b is not None:
                    yield (f"{mp}.{n}" if mp else n), b

    def buffers(self) -> Iterator[Tensor]:
        for _, b in self.named_buffers():
            yield b

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    def apply(self, fn: Callable[[Module], None]) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ----------------------------------------------------------------- modes and devices
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._make(p.xp.zeros_like(p.grad.data), p.device)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def to(self, device=None, dtype=None) -> Module:
        """Move (and/or cast floating) parameters and buffers in place; the
        Parameter objects stay the same, so an optimizer made before keeps working.
        As in PyTorch, a dtype alone may come first: ``model.to(mg.float64)``."""
        if dtype is None and device is not None and _is_dtype(device):
            device, dtype = None, device
        dev = backend.device(device) if device is not None else None
        dt = _check_dtype(dtype, "Module.to") if dtype is not None else None
        if dt is not None and dt.kind != "f":
            raise TypeError(f"Module.to: only floating dtypes, got {dt}")

        def move(t: Tensor) -> None:
            arr = t.data
            if dt is not None and arr.dtype.kind == "f":
                arr = arr.astype(dt)
            if dev is not None:
                arr = backend.to_device(arr, dev)
                t._device = dev
            t.data = arr
            if t.grad is not None:
                move(t.grad)

        for m in self.modules():
            for t in list(m._parameters.values()) + list(m._buffers.values()):
                if t is not None:
                    move(t)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Module:
        return self.to(f"cuda:{index}")

    # ----------------------------------------------------------------- state
    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name (detached, not copied)."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for mp, m in self.named_modules():
            for n, p in m._parameters.items():
                if p is not None:
                    out[f"{mp}.{n}" if mp else n] = p.detach()
            for n, b in m._buffers.items():
                if b is not None and n not in m._non_persistent:
                    out[f"{mp}.{n}" if mp else n] = b.detach()
        return out

    def _state_targets(self) -> dict[str, Tensor]:
        out = {}
        for mp, m in self.named_modules():
            for n, p in m._parameters.items():
                if p is not None:
                    out[f"{mp}.{n}" if mp else n] = p
            for n, b in m._buffers.items():
                if b is not None and n not in m._non_persistent:
                    out[f"{mp}.{n}" if mp else n] = b
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy values in by name. Everything is checked first, so a bad dict
        loads nothing: missing and unexpected keys (when ``strict``) and shape
        mismatches (always) are reported together in one ValueError.
        Returns (missing_keys, unexpected_keys)."""
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        arrays = {}
        mismatched = []
        for k, v in state_dict.items():
            if k not in targets:
                continue
            arr = v.data if isinstance(v, Tensor) else v
            if not (backend.is_array(arr) or isinstance(arr, np.ndarray)):
                arr = np.asarray(arr)
            if tuple(arr.shape) != targets[k].shape:
                mismatched.append(f"{k}: checkpoint {tuple(arr.shape)} vs model {targets[k].shape}")
            arrays[k] = arr
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + " | ".join(problems)
                             + "; nothing was loaded")
        for k, arr in arrays.items():
            t = targets[k]
            t.data = backend.to_device(backend.to_host(arr) if backend.device_of(arr) != t.device
                                       else arr, t.device).astype(t.dtype, copy=True)
        return missing, unexpected

    # ----------------------------------------------------------------- calling and printing
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in self._forward_hooks:
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    def register_forward_hook(self, hook: Callable) -> Callable[[], None]:
        """Call ``hook(module, args, output)`` after every forward (to record
        activations, attention maps, ...); a returned value replaces the output.
        Returns a function that removes the hook."""
        self._forward_hooks.append(hook)
        return lambda: self._forward_hooks.remove(hook) if hook in self._forward_hooks else None

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self) -> Iterable[str]:
        return list(super().__dir__()) + list(self._parameters) + list(self._modules) + list(self._buffers)


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ..."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        self._modules[str(len(self._modules))] = module
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        if isinstance(i, slice):
            return ModuleList(items[i])
        return items[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class ModuleDict(Module):
    """A dict of modules, registered under their keys."""

    def __init__(self, modules: dict[str, Module] | None = None):
        super().__init__()
        for k, m in (modules or {}).items():
            self[k] = m

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: expected a Module for {key!r}, got {type(module).__name__}")
        self._modules[key] = module

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()


class Sequential(ModuleList):
    """Modules applied one after another, as PyTorch's: ``Sequential(a, b, c)``
    (children "0", "1", ...) or ``Sequential({"fc": a, "act": b})`` (named)."""

    def __init__(self, *modules: Module | dict[str, Module]):
        if len(modules) == 1 and isinstance(modules[0], dict):
            super().__init__()
            for key, m in modules[0].items():
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: expected a Module for {key!r}, got "
                                    f"{type(m).__name__}")
                self._modules[key] = m
        else:
            super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x

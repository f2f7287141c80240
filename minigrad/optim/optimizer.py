"""``Optimizer``: parameter groups, ``zero_grad``, ``step`` and a state dict.

A concrete optimizer (``SGD``, ``Adam``, ...) only writes ``_update``: the
rule for one parameter, on raw backend arrays, in place on ``p.data``.
Everything else (groups, skipping parameters without a gradient, saving and
loading) lives here, as in PyTorch's ``torch.optim.Optimizer``:

    opt = AdamW([{"params": decay, "weight_decay": 0.1},
                 {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)
    opt.zero_grad(); loss.backward(); opt.step()

Update rules never mutate a gradient array (the engine lets one gradient
array be shared by several parameters, e.g. both inputs of an ``add``), and
never read a device value on the host, so ``step()`` does not synchronise.
``step()`` bumps each updated parameter's version: a graph built before the
step (and not yet backpropagated) then refuses its backward, instead of
computing gradients from weights that are no longer there.
Hyperparameters are turned into Python floats before use: NumPy (>= 2, and
1.x for scalars) and CuPy treat Python scalars as "weak", so a float32
parameter stays float32.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from typing import Any

from .. import backend
from ..autograd import enable_grad
from ..tensor import Tensor

__all__ = ["Optimizer", "param_groups_for_weight_decay"]

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


class Optimizer:
    """Base class. ``param_groups`` is a list of dicts, each with ``"params"``
    (a list of tensors) and that group's hyperparameters (missing ones are
    taken from ``defaults``). ``state[p]`` holds the per-parameter buffers
    (``exp_avg``, ``momentum_buffer``, ...) as backend arrays, plus ``step``."""

    #: names of the per-parameter entries in ``state[p]``; a state entry has all of them
    state_keys: tuple[str, ...] = ()

    def __init__(self, params: ParamsT, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self._check_hyperparameters(self.defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        if isinstance(params, Tensor):
            raise TypeError(f"{self._name()}: params must be an iterable of tensors or of dicts, "
                            "got a single Tensor; wrap it in a list")
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name()}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def _name(self) -> str:
        return type(self).__name__

    # ----------------------------------------------------------------- groups
    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group (``{"params": [...], "lr": ..., ...}``); unspecified
        hyperparameters come from ``defaults``."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{self._name()}: a parameter group must be a dict with a 'params' "
                            f"key, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{self._name()}: params[{i}] is a {type(p).__name__}, not a Tensor")
            if not p.is_leaf:
                raise ValueError(f"{self._name()}: params[{i}] (shape {p.shape}) is not a leaf "
                                 "tensor; optimize leaves (Parameters), not results of ops")
            if not p.requires_grad:
                raise ValueError(f"{self._name()}: params[{i}] (shape {p.shape}) does not require "
                                 "grad")
            if id(p) in seen:
                raise ValueError(f"{self._name()}: params[{i}] (shape {p.shape}) appears in more "
                                 "than one place; each parameter may be in one group only, once")
            seen.add(id(p))
        new = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self._check_hyperparameters(new)
        new["params"] = params
        self.param_groups.append(new)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        """Raise ValueError for an invalid hyperparameter (subclasses extend)."""
        lr = group.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or lr < 0:
            raise ValueError(f"{self._name()}: lr must be a number >= 0, got {lr!r}")
        wd = group.get("weight_decay", 0.0)
        if wd < 0:
            raise ValueError(f"{self._name()}: weight_decay must be >= 0, got {wd}")

    # ----------------------------------------------------------------- the loop
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (``grad = None``, the default), or set them to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:  # a fresh array: the old one may be shared with another gradient
                    p.grad = Tensor._make(p.grad.xp.zeros_like(p.grad.data), p.grad.device)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, in place. ``closure``
        (optional) re-evaluates the model and returns the loss, which is returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            hyper = {k: v for k, v in group.items() if k != "params"}
            hyper["_index"] = index
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data
                if tuple(g.shape) != tuple(p.data.shape):
                    raise ValueError(f"{self._name()}.step: a parameter of shape {p.shape} has a "
                                     f"gradient of shape {tuple(g.shape)}")
                if g.dtype != p.data.dtype:
                    g = g.astype(p.data.dtype)
                self._update(p, g, self.state.setdefault(p, {}), hyper)
                p._bump_version()   # a graph that saved p refuses its backward from now on
        return loss

    def _update(self, p: Tensor, g, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Update ``p.data`` in place from its gradient array ``g`` (do not modify ``g``)."""
        raise NotImplementedError(f"{self._name()} has no update rule")

    # ----------------------------------------------------------------- saving and loading
    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {"step": int, name: array, ...}}, "param_groups":
        [{hyperparameters..., "params": [indices]}]}``. Parameters are
        numbered across groups in order; arrays are copies on the parameters'
        device (move them to the host to write a checkpoint)."""
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {}
        for p, entry in self.state.items():
            if entry:
                state[index[id(p)]] = {k: (v.copy() if backend.is_array(v) else v)
                                       for k, v in entry.items()}
        groups, start = [], 0
        for g in self.param_groups:
            hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()
                     if k != "params"}
            hyper["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(hyper)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by ``state_dict()`` (arrays
        may be host NumPy arrays; they are copied to each parameter's device
        and dtype; keys may be ints or, after JSON, strings). Everything is
        checked first: group count and sizes, state indices, entry names and
        array shapes; on any mismatch a ValueError lists the problems and
        nothing is loaded."""
        where = f"{self._name()}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{where}: expected a dict with keys 'state' and 'param_groups'")
        groups, saved_state = state_dict["param_groups"], state_dict["state"]
        problems: list[str] = []
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{where}: the saved state has {len(groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}; nothing was loaded")
        for i, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(mine["params"]):
                problems.append(f"group {i} has {len(saved['params'])} parameters in the saved "
                                f"state, {len(mine['params'])} here")
            try:
                self._check_hyperparameters({**mine, **saved})
            except ValueError as e:
                problems.append(f"group {i}: {e}")
        params = self._params()
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, entry in saved_state.items():
            try:
                idx = int(key)
            except (TypeError, ValueError):
                problems.append(f"state key {key!r} is not a parameter index")
                continue
            if not 0 <= idx < len(params):
                problems.append(f"state for parameter {idx}, but there are {len(params)}")
                continue
            p = params[idx]
            if set(entry) != {"step", *self.state_keys}:
                problems.append(f"parameter {idx}: state entries {sorted(entry)}, expected "
                                f"{sorted({'step', *self.state_keys})}")
                continue
            loaded = {"step": int(entry["step"])}
            for name in self.state_keys:
                arr = entry[name].data if isinstance(entry[name], Tensor) else entry[name]
                if not backend.is_array(arr):
                    problems.append(f"parameter {idx}: {name} is a {type(arr).__name__}, not an array")
                elif tuple(arr.shape) != p.shape:
                    problems.append(f"parameter {idx}: {name} has shape {tuple(arr.shape)}, the "
                                    f"parameter {p.shape}")
                else:
                    loaded[name] = arr
            new_state[p] = loaded
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems) + "; nothing was loaded")
        for p, entry in new_state.items():  # copies (astype copies), on the parameter's device
            for name in self.state_keys:
                entry[name] = backend.to_device(entry[name], p.device).astype(p.dtype)
        self.state = new_state
        for saved, mine in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = tuple(v) if isinstance(v, list) else v

    def __repr__(self) -> str:
        lines = [f"{self._name()} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"  group {i}: {len(g['params'])} params, "
                         + ", ".join(f"{k}={v}" for k, v in g.items() if k != "params"))
        return "\n".join(lines) + "\n)"


def param_groups_for_weight_decay(module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups, as nanoGPT: matrices and embeddings (ndim >= 2) decay;
    biases and LayerNorm weights (ndim < 2) do not. Only parameters that
    require grad are included; both groups are always present (possibly
    empty), so the group layout is the same for every model.

        opt = AdamW(param_groups_for_weight_decay(model, 0.1), lr=3e-4)
    """
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": float(weight_decay)},
            {"params": no_decay, "weight_decay": 0.0}]

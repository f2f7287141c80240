"""Input checks shared by the layers: errors that name the layer, what it
expected and what it was given, raised before any op sees the bad input."""

from __future__ import annotations

from minigrad.tensor import Tensor


def check_tensor(layer: str, x, what: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer}: {what} must be a minigrad Tensor, got {type(x).__name__}")
    return x


def check_features(layer: str, x, n: int, ndims: tuple[int, ...] | None = None,
                   what: str = "input", expected: str | None = None) -> Tensor:
    """``x`` must end in ``n`` features (and have one of ``ndims`` dims, if given).

    ``expected`` is the shape shown in the message, e.g. ``"(B, 8) or (8,)"``."""
    check_tensor(layer, x, what)
    shown = expected or f"(..., {n})"
    if ndims is not None and x.ndim not in ndims:
        raise ValueError(f"{layer}: {what} has shape {x.shape}, expected {shown}")
    if x.ndim == 0 or x.shape[-1] != n:
        got = x.shape[-1] if x.ndim else 0
        raise ValueError(f"{layer}: {what} has {got} features (shape {x.shape}), expected {shown}")
    if x.dtype.kind != "f":
        raise TypeError(f"{layer}: {what} must be floating point, got {x.dtype}")
    return x


def check_shape(layer: str, x, shape: tuple[int, ...], what: str) -> Tensor:
    check_tensor(layer, x, what)
    if x.shape != tuple(shape):
        raise ValueError(f"{layer}: {what} has shape {x.shape}, expected {tuple(shape)}")
    return x


def check_positive(layer: str, **sizes: int) -> None:
    for name, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{layer}: {name} must be a positive int, got {n!r}")


def check_probability(layer: str, p: float, name: str = "dropout") -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{layer}: {name} must be a probability in [0, 1], got {p!r}")
    return float(p)

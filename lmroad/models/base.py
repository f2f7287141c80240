"""What every language model on the road shares: one interface, one sampler.

    logits, loss = model(idx, targets)        # idx, targets: int tensors (B, T)
    out = model.generate(idx, max_new_tokens=100, temperature=0.8, top_k=40, seed=0)

``logits`` is (B, T, V): row t scores the token that follows ``idx[:, t]``.
``loss`` is the mean cross-entropy of ``logits`` against ``targets``
(``minigrad.functional.cross_entropy`` on (B·T, V)), or None without targets;
its exponential is the perplexity, comparable across every model here, the
n-gram baseline included (it returns log-probabilities as its logits).

A model is rebuilt from its config: ``type(model).from_config(model.config)``;
``dataclasses.asdict(model.config)`` is plain JSON for checkpoints.

Generation is one loop for all models (``LanguageModel.generate``). A model
plugs its own incremental computation into two hooks:

    _prefill(idx)        -> (logits of the last position (B, V), cache)
    _decode(new, cache)  -> (logits of the new position (B, V), cache)

so a recurrent model carries its hidden state and the Transformer its
key/value cache, and each new token costs one step. The default hooks
recompute the forward pass on the last ``context_size`` tokens, which is
also the reference the incremental paths are tested against
(``generate(..., use_cache=False)``).

Sampling (temperature, top-k, top-p) is one function on a host (B, V)
array, ``sample_logits``; it draws from its own ``numpy.random.Generator``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import backend, nn, optim
from minigrad.tensor import Tensor

__all__ = ["LanguageModel", "sample_logits", "filter_logits", "check_sampling_args"]


# --------------------------------------------------------------------------- sampling

def check_sampling_args(temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None, where: str = "sample") -> None:
    """ValueError (TypeError for a wrong type) unless the sampling settings make sense."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)):
        raise TypeError(f"{where}: temperature must be a number, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"{where}: temperature must be a finite number >= 0 (0 means greedy), "
                         f"got {temperature}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise TypeError(f"{where}: top_k must be an int or None, got {type(top_k).__name__}")
        if top_k < 1:
            raise ValueError(f"{where}: top_k must be >= 1 (or None for no limit), got {top_k}")
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.number)):
            raise TypeError(f"{where}: top_p must be a number or None, got {type(top_p).__name__}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"{where}: top_p must be in (0, 1] (or None for no limit), got {top_p}")


def filter_logits(logits: np.ndarray, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """``logits`` (B, V) with the tokens outside the top-k and the nucleus set to -inf.

    top-k keeps exactly the k highest (ties go to the lower token id, as
    ``argmax`` does, so top_k=1 is greedy). top-p (nucleus, Holtzman et al.
    2019) then keeps the smallest set of most probable tokens whose
    probability reaches ``top_p``: a token stays when the mass ranked above
    it is still below ``top_p``, so the most probable token always stays."""
    x = np.array(logits, dtype=np.float64)          # (B, V), a copy
    V = x.shape[-1]
    if top_k is None and (top_p is None or top_p >= 1.0):
        return x
    order = np.argsort(-x, axis=-1, kind="stable")   # (B, V), best first, ties by id
    if top_k is not None and top_k < V:
        np.put_along_axis(x, order[:, top_k:], -np.inf, axis=-1)
    if top_p is not None and top_p < 1.0:
        ranked = np.take_along_axis(x, order, axis=-1)
        p = np.exp(ranked - ranked[:, :1])           # unnormalised, ranked[:, 0] is the max
        p /= p.sum(axis=-1, keepdims=True)
        mass_above = np.cumsum(p, axis=-1) - p
        np.put_along_axis(x, order, np.where(mass_above < top_p, ranked, -np.inf), axis=-1)
    return x


def sample_logits(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """One token id per row of ``logits`` (B, V) -> (B,) int64.

    p ∝ exp(logit / temperature) over the tokens that survive ``filter_logits``.
    temperature 0 is greedy (argmax; top-k/top-p cannot change it). The draw
    is inverse-CDF sampling with one uniform number per row from ``rng``
    (default: minigrad's host generator, seeded by ``minigrad.manual_seed``)."""
    check_sampling_args(temperature, top_k, top_p)
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"sample: logits must be (B, V) with V >= 1, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("sample: logits contain NaN (has training diverged?)")
    if temperature == 0:
        return np.argmax(x, axis=-1).astype(np.int64)
    x = filter_logits(x, top_k, top_p)
    top = x.max(axis=-1, keepdims=True)
    if not np.isfinite(top).all():
        raise ValueError("sample: a row of logits has no finite maximum (all -inf, or +inf)")
    # subtract the max before dividing, so a tiny temperature cannot overflow
    p = np.exp((x - top) / temperature)              # (B, V), masked tokens exactly 0
    cdf = np.cumsum(p, axis=-1)
    rng = backend.host_rng() if rng is None else rng
    u = rng.random((x.shape[0], 1)) * cdf[:, -1:]
    # the first token whose cdf exceeds u; zero-probability tokens add no width
    return np.minimum((cdf <= u).sum(axis=-1), x.shape[1] - 1).astype(np.int64)


def check_sizes(config: Any, names: tuple[str, ...], where: str) -> None:
    """A config's size fields must be ints >= 1 (the one check every model config starts with)."""
    for name in names:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{where}: {name} must be an int >= 1, got {v!r}")


def _check_count(value: Any, name: str, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return int(value)


# --------------------------------------------------------------------------- the interface

class LanguageModel(nn.Module):
    """Base class of the models: input checks, the loss, config handling, generation.

    A subclass sets ``config_class`` (a frozen dataclass whose fields are its
    constructor's keyword arguments) and ``model_type`` (its name in
    ``lmroad.models.MODELS``), stores its config as ``self._config``, and
    implements ``forward(idx, targets=None) -> (logits, loss)``. It may
    override ``_prefill``/``_decode`` for incremental generation."""

    config_class: ClassVar[type]
    model_type: ClassVar[str] = "base"

    # ----------------------------------------------------------------- config
    #: config fields a subclass fixes (LSTMLM: cell="lstm"), filled in when a dict omits them
    config_defaults: dict = {}

    @classmethod
    def from_config(cls, config) -> LanguageModel:
        """Build the model a config (or its ``asdict`` dict, e.g. read from JSON) describes."""
        if isinstance(config, dict):
            config = {**cls.config_defaults, **config}
            fields = {f.name for f in dataclasses.fields(cls.config_class)}
            unknown = sorted(set(config) - fields)
            if unknown:
                raise ValueError(f"{cls.__name__}.from_config: unknown fields {unknown}; "
                                 f"valid: {sorted(fields)}")
            config = cls.config_class(**config)
        if not isinstance(config, cls.config_class):
            raise TypeError(f"{cls.__name__}.from_config: expected a {cls.config_class.__name__} "
                            f"or a dict, got {type(config).__name__}")
        return cls(**dataclasses.asdict(config))

    @property
    def config(self):
        """The (frozen) config this model was built from."""
        return self._config

    @property
    def vocab_size(self) -> int:
        return self._config.vocab_size

    @property
    def context_size(self) -> int | None:
        """How many past tokens the model can see (None: unbounded, as an RNN)."""
        return None

    # ----------------------------------------------------------------- checks and loss
    def _check_idx(self, idx: Any, name: str = "idx") -> None:
        where = type(self).__name__
        if not isinstance(idx, Tensor):
            raise TypeError(f"{where}: {name} must be an integer minigrad Tensor of shape (B, T), "
                            f"got {type(idx).__name__}")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{where}: {name} must hold integer token ids, got dtype {idx.dtype}")
        if idx.ndim != 2:
            raise ValueError(f"{where}: {name} must have shape (B, T), got {idx.shape}")
        V = self.vocab_size
        bad = mg.backend.first_out_of_range(idx.data, 0, V)
        if bad is not None:
            raise IndexError(f"{where}: token id {bad} in {name} is out of range for vocab_size={V} "
                             f"(valid: 0 to {V - 1})")

    def _loss(self, logits: Tensor, targets: Tensor | None) -> Tensor | None:
        """Mean cross-entropy of (B, T, V) logits against (B, T) targets (-100 is ignored)."""
        if targets is None:
            return None
        B, T, V = logits.shape
        if not isinstance(targets, Tensor) or targets.shape != (B, T):
            got = targets.shape if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"{type(self).__name__}: targets must be a tensor of shape "
                             f"{(B, T)} like idx, got {got}")
        return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))

    # ----------------------------------------------------------------- training
    def configure_optimizers(self, weight_decay: float = 0.1, lr: float = 3e-4,
                             betas: tuple[float, float] = (0.9, 0.95),
                             capturable: bool = False) -> optim.AdamW:
        """AdamW with two parameter groups, as nanoGPT: matrices and embeddings
        (ndim >= 2) decay, biases and LayerNorm weights (ndim < 2) do not.
        ``capturable``: for a step recorded as a CUDA graph (``minigrad.cuda.graphs``)."""
        if not any(p.requires_grad for p in self.parameters()):
            raise TypeError(f"{type(self).__name__} has no parameters to train")
        return optim.AdamW(optim.param_groups_for_weight_decay(self, weight_decay), lr=lr,
                           betas=betas, capturable=capturable)

    # ----------------------------------------------------------------- generation
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True) -> Tensor:
        """Extend each row of ``idx`` (B, T) by ``max_new_tokens`` sampled tokens.

        Returns (B, T + max_new_tokens) int64 on idx's device. Runs without
        recording a graph and in eval mode (dropout off); each submodule's
        mode is restored afterwards. ``seed`` makes the draws reproducible
        through a private ``numpy.random.Generator``; without it they come
        from minigrad's host generator (``minigrad.manual_seed``).
        ``use_cache=False`` recomputes the forward pass for every token (the
        reference that the incremental path must match)."""
        where = f"{type(self).__name__}.generate"
        n_new = _check_count(max_new_tokens, "max_new_tokens", where)
        check_sampling_args(temperature, top_k, top_p, where)
        if seed is not None:
            _check_count(seed, "seed", where)
        self._check_idx(idx)
        if idx.shape[1] == 0:
            raise ValueError(f"{where}: the prompt must hold at least one token per row, got shape "
                             f"{idx.shape}")
        rng = np.random.default_rng(seed) if seed is not None else None
        prefill, decode = ((self._prefill, self._decode) if use_cache
                           else (self._recompute_prefill, self._recompute_decode))
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        new_tokens = []
        try:
            with mg.no_grad():
                if n_new:
                    logits, cache = prefill(idx)
                for i in range(n_new):
                    nxt = sample_logits(logits.numpy(), temperature, top_k, top_p, rng)  # (B,)
                    new_tokens.append(nxt)
                    if i + 1 < n_new:
                        logits, cache = decode(mg.tensor(nxt[:, None], device=idx.device), cache)
        finally:
            for m, mode in modes:
                object.__setattr__(m, "training", mode)
        if not new_tokens:
            return mg.tensor(idx.data, dtype=mg.int64, device=idx.device)
        new = mg.tensor(np.stack(new_tokens, axis=1), device=idx.device)    # (B, n_new)
        return mg.concatenate([idx.astype(mg.int64), new], axis=1)

    def _prefill(self, idx: Tensor):
        return self._recompute_prefill(idx)

    def _decode(self, new: Tensor, cache):
        return self._recompute_decode(new, cache)

    def _recompute_prefill(self, idx: Tensor):
        """The reference path: the whole (cropped) context through forward, every step."""
        ctx = self.context_size
        window = idx if ctx is None or idx.shape[1] <= ctx else idx[:, -ctx:]
        logits, _ = self(window)
        return logits[:, -1, :], idx

    def _recompute_decode(self, new: Tensor, cache):
        return self._recompute_prefill(mg.concatenate([cache, new.astype(cache.dtype)], axis=1))

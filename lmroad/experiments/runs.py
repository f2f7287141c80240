"""One run of the road: a plain dict of settings in, a plain dict of results out.

The road is a list of independent runs (an n-gram fit, a learning-rate trial,
one architecture at one size and seed, one long-range task at one distance).
Each is described by a *spec*, a JSON-able dict, and ``execute(spec, data)``
computes its result from the spec and the data alone: seeds come from the
spec, budgets are token counts, never seconds. So a run gives the same
numbers in whichever worker process runs it, and a finished run can be saved
and skipped when the command is run again (``pool.py``). Only the keys that
end in ``_s`` or ``per_s`` (timings) may differ between two executions.

    kind      what it does                                      section
    ngram     count an n-gram model, score it                   1, 2
    sweep     train a neural LM at the smallest size, score it on the tuning windows   1
    lm        train a neural LM, score it, look inside it       1, 2, 3, 5
    recall    the recall-the-first-token task at distance k     4
    copy      the copying-memory task at delay T                4
    adding    the adding problem at length T                    4
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np

import minigrad as mg
from lmroad.models import NGramLM

from . import tasks
from .common import train_steps
from .flops import forward_flops_per_token, non_embedding_parameters, training_flops
from .gradient_flow import decay_summary, gradient_norms, recurrent_singular_value
from .interpret import attention_maps, lstm_gates, mean_attention_distance
from .long_range import recall_accuracy, recall_batch
from .positions import carried_position_loss, eval_windows, per_position_loss
from .quality import RECURRENT, build_model, train_lm

__all__ = ["Data", "execute", "spec_id", "spec_hash", "is_timing"]


def is_timing(key: str) -> bool:
    """Whether a result key is a timing (the only values that may differ between two runs)."""
    return key.endswith("_s")


@dataclass
class Data:
    """What every run reads: the token streams and the tokenizer."""

    train: np.ndarray        # training tokens
    tune: np.ndarray         # the first part of the validation split: learning-rate choice only
    val: np.ndarray          # the rest of the validation split: every reported loss
    tokenizer: object
    prompt: str              # where samples start
    line: str                # the line the interpretability probes read

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def spec_id(spec: dict) -> str:
    """A readable, unique file name for a run: kind, model, size, settings, seed."""
    parts = [spec["kind"]]
    if "arch" in spec or "n" in spec:
        parts.append(spec.get("arch") or f"{spec['n']}gram")
    for key, tag in (("width", "w"), ("T", "T"), ("k", "k"), ("lr", "lr")):
        if key in spec:
            parts.append(f"{tag}{spec[key]:g}" if isinstance(spec[key], float) else f"{tag}{spec[key]}")
    parts.append(f"s{spec.get('seed', 0)}")
    return "-".join(str(p) for p in parts)


def spec_hash(spec: dict) -> str:
    """What makes two specs the same run (the cost estimate is only for scheduling)."""
    same = {k: v for k, v in spec.items() if k != "cost"}
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:16]


def execute(spec: dict, data: Data) -> dict:
    """Run ``spec`` and return its result (the spec's keys, then the measurements)."""
    run = {"ngram": _ngram, "sweep": _sweep, "lm": _lm, "recall": _recall,
           "copy": _task, "adding": _task}.get(spec["kind"])
    if run is None:
        raise ValueError(f"road: unknown run kind {spec['kind']!r}")
    t0 = time.perf_counter()
    result = run(spec, data)
    return {**spec, **result, "run_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- text models

def _windows(data: Data, spec: dict, split: str = "val") -> np.ndarray:
    ids = data.val if split == "val" else data.tune
    n = spec["eval_windows"] if split == "val" else spec["tune_windows"]
    return eval_windows(ids, n, spec["n_ctx"], spec["data_seed"])


def _sample(model, data: Data, n_chars: int, seed: int) -> tuple[str, float]:
    idx = mg.tensor(data.tokenizer.encode(data.prompt)[None, :])
    t0 = time.perf_counter()
    out = model.generate(idx, max_new_tokens=n_chars, temperature=0.8, top_k=40, seed=seed)
    return data.tokenizer.decode(out.numpy()[0]), n_chars / max(time.perf_counter() - t0, 1e-9)


def _ngram(spec: dict, data: Data) -> dict:
    t0 = time.perf_counter()
    lm = NGramLM(spec["n"], data.vocab_size, "kneser_ney").fit(data.train)
    fit_s = time.perf_counter() - t0
    curve = per_position_loss(lm, _windows(data, spec))
    sample, speed = _sample(lm, data, spec["sample_chars"], spec["seed"])
    return dict(entries=lm.num_entries(), val_loss=float(curve.mean()), position_loss=curve.tolist(),
                fit_s=fit_s, sample=sample, sample_chars_per_s=speed)


def _train(spec: dict, data: Data, evaluate=None):
    mg.manual_seed(spec["seed"])
    model = build_model(spec["arch"], data.vocab_size, spec["width"], spec["n_ctx"])
    t0 = time.perf_counter()
    stats = train_lm(model, spec["arch"], data.train, tokens=spec["tokens"], batch_size=spec["batch_size"],
                     n_ctx=spec["n_ctx"], lr=spec["lr"], seed=spec["seed"],
                     curve_points=spec.get("curve_points", 8), evaluate=evaluate)
    seconds = time.perf_counter() - t0
    stats.update(train_s=seconds, train_tokens_per_s=stats["tokens"] / max(seconds, 1e-9),
                 parameters=model.num_parameters(), non_embedding_parameters=non_embedding_parameters(model),
                 forward_flops_per_token=forward_flops_per_token(model, spec["n_ctx"]),
                 train_flops=training_flops(model, spec["n_ctx"], stats["tokens"]))
    return model, stats


def _sweep(spec: dict, data: Data) -> dict:
    model, stats = _train(spec, data)
    stats["tune_loss"] = float(per_position_loss(model, _windows(data, spec, "tune")).mean())
    stats.pop("curve")
    return stats


def _gradients(model, spec: dict, data: Data) -> dict:
    """‖∂L_T/∂h_t‖ by distance on fixed validation windows, its summary, σ_max(W_hh)."""
    w = eval_windows(data.val, spec["grad_batch"], spec["grad_T"], spec["data_seed"] + 1)
    norms = gradient_norms(model, mg.tensor(w[:, :-1]), mg.tensor(w[:, 1:]))
    return dict(norms=norms.tolist(), sigma_max=recurrent_singular_value(model), **decay_summary(norms))


def _lm(spec: dict, data: Data) -> dict:
    recurrent = spec["arch"] in RECURRENT
    curve_windows = _windows(data, spec)[:spec["curve_windows"]]
    grad_init = None
    if recurrent:                   # the same initial weights the trained model starts from
        mg.manual_seed(spec["seed"])
        fresh = build_model(spec["arch"], data.vocab_size, spec["width"], spec["n_ctx"])
        grad_init = _gradients(fresh, spec, data)
    model, out = _train(spec, data, evaluate=lambda m: per_position_loss(m, curve_windows).mean())
    t0 = time.perf_counter()
    curve = per_position_loss(model, _windows(data, spec))
    out.update(val_loss=float(curve.mean()), position_loss=curve.tolist(), eval_s=time.perf_counter() - t0)
    if recurrent:
        carried = carried_position_loss(model, data.val, spec["n_ctx"], spec["carried_lanes"],
                                        spec["carried_windows"])
        out.update(carried_loss=float(carried.mean()), carried_position_loss=carried.tolist(),
                   grad_init=grad_init, grad_trained=_gradients(model, spec, data))
    out["sample"], out["sample_chars_per_s"] = _sample(model, data, spec["sample_chars"], spec["seed"])
    if spec.get("interpret"):
        ids = data.tokenizer.encode(data.line)
        if spec["arch"] == "transformer":
            maps = attention_maps(model, ids, "cpu")
            out["attention"] = maps.tolist()
            out["attention_distance"] = mean_attention_distance(maps).tolist()
        elif spec["arch"] == "lstm":
            out["gates"] = {k: v.tolist() for k, v in lstm_gates(model, ids, "cpu").items()}
    return out


# --------------------------------------------------------------------------- long-range tasks

def _recall(spec: dict, data: Data) -> dict:
    k, n_sym = spec["k"], spec["n_symbols"]
    mg.manual_seed(spec["seed"])
    model = build_model(spec["arch"], n_sym + 1, spec["width"], k + 1)
    rng = np.random.default_rng([spec["seed"], k, 3])

    def batch():
        idx, targets = recall_batch(rng, spec["batch_size"], k, n_sym)
        return mg.tensor(idx), mg.tensor(targets)

    stats = train_steps(model, batch, steps=spec["steps"], lr=spec["lr"])
    acc = recall_accuracy(model, k, n_sym, spec["n_eval"], spec["seed"])
    return dict(accuracy=acc, final_loss=stats["final_loss"], curve=stats["curve"],
                parameters=model.num_parameters(), chance=1.0 / n_sym, baseline=float(np.log(n_sym)))


def _task(spec: dict, data: Data) -> dict:
    out = tasks.run_task(spec["kind"], spec["arch"], spec["T"], size=spec["width"], steps=spec["steps"],
                         batch_size=spec["batch_size"], lr=spec["lr"], seed=spec["seed"],
                         eval_every=max(1, spec["steps"] // 20), n_eval=spec["n_eval"])
    out["train_s"] = out.pop("seconds", None)
    return {k: v for k, v in out.items() if k not in spec}

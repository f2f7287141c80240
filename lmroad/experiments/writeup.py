"""The report: the saved runs of the road turned into tables, figures and verdicts.

``write_report(rep, setup, runs)`` reads nothing but its arguments: a run's
saved result (``runs.execute``) is a plain dict, so the whole report can be
rebuilt from ``OUT/runs/*.json``. Every sentence that states a result is
built from the numbers (``verdicts.py`` decides, by the rule of
``stats.py``); sentences that are not computed here are citations, with
their source.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np

from . import verdicts as V
from .common import fmt_seconds
from .positions import smooth, summarize
from .quality import ARCHS, RECURRENT
from .report import Report, markdown_table
from .stats import LOSS_EFFECT, best_of, mean_se

__all__ = ["write_report", "aggregate"]

LN2 = math.log(2)
COLORS = {"rnn": "#d33", "lstm": "#36c", "gru": "#3a3", "transformer": "#a3a"}
LOG10_UNDERFLOW = -38.0         # log10 of float32's smallest normal number, about 1.2e-38
TIMING_NOTE = ("*Timing columns (tokens/s, chars/s) measure this implementation on this machine "
               "and change with its load; every other number is the same on any machine.*")


def _pm(values, spec=".3f", scale=1.0) -> str:
    """'mean ± 2·se' of the values (one seed: just the value; a NaN among them: 'diverged')."""
    if any(v is not None and math.isnan(v) for v in values):
        return "diverged"
    m, se = mean_se([v * scale for v in values])
    if math.isnan(m):
        return "–"
    return f"{m:{spec}}" if len(values) < 2 else f"{m:{spec}} ± {2 * se:{spec}}"


def _two_se(rs: list[dict], key: str) -> float | None:
    """Twice the standard error over the runs' ``key`` (None for fewer than two runs)."""
    return 2 * mean_se(_vals(rs, key))[1] if len(rs) > 1 else None


def aggregate(runs: list[dict]) -> dict:
    """Group the runs: by (arch, size index) for the text models, by (task, arch, T) for the tasks."""
    g = dict(lm=defaultdict(list), sweep=[], ngram={}, task=defaultdict(list))
    for r in runs:
        k = r["kind"]
        if k == "lm":
            g["lm"][(r["arch"], r["size_index"])].append(r)
        elif k == "sweep":
            g["sweep"].append(r)
        elif k == "ngram":
            g["ngram"][r["n"]] = r
        else:
            g["task"][(k, r["arch"], r.get("T", r.get("k")))].append(r)
    return g


def _vals(rs, key):
    return [r[key] for r in rs if r.get(key) is not None]


# --------------------------------------------------------------------------- sections

def _setup(rep: Report, setup: dict, g: dict) -> None:
    b = setup["budget"]
    sizes = ", ".join(f"{n:,}" for n in b["sizes"])
    toks = ", ".join(f"{round(c / (6 * n)):,}" for c, n in zip(b["flops"], b["sizes"]))
    flops = ", ".join(f"{c:.2g}" for c in b["flops"])
    rows = [
        dict(k="command", v=f"`{setup['command']}`"),
        dict(k="corpus", v=f"{setup['corpus']}: {setup['train_tokens']:,} training characters; validation "
                           f"split {setup['tune_tokens'] + setup['val_tokens']:,} characters, of which the "
                           f"first {setup['tune_tokens']:,} only choose learning rates; vocabulary "
                           f"{setup['vocab']}"),
        dict(k="sizes (non-embedding parameters)", v=sizes),
        dict(k="training FLOP budget per size", v=f"{flops} (tokens D = C / (3 · 2N): {toks})"),
        dict(k="seeds", v=f"{b['seeds']} per architecture and size: {setup['seed']} … "
                          f"{setup['seed'] + b['seeds'] - 1}"),
        dict(k="training", v=f"batches of {b['batch_size']} × {b['n_ctx']} tokens; AdamW (β = 0.9, 0.99), "
                             "warmup 5 % then cosine to 0, clip 1; Transformer weight decay 0.1; LSTM "
                             "forget bias 1"),
        dict(k="learning rates (sweep winner)", v=", ".join(f"{a} {lr:g}" for a, lr in setup["lrs"].items())),
        dict(k="evaluation", v=f"{b['eval_windows']:,} random validation windows of {b['n_ctx']} tokens, "
                               "the same for every model, each from a fresh state"),
        dict(k="machine", v=f"{setup['machine']}; Python {setup['python']}, NumPy {setup['numpy']}; "
                            f"{setup['jobs']} worker process(es), 1 BLAS thread each; the fused ops: "
                            f"{setup.get('cpu_kernels', 'not recorded')}"),
        dict(k="time", v=f"{fmt_seconds(setup['wall_s'])} for this invocation (runs saved by an earlier "
                         f"invocation are loaded, not rerun); the runs took {fmt_seconds(setup['run_s'])} of "
                         "worker time in all"),
    ]
    rep.add("## Setup", markdown_table(rows, [("k", "", ""), ("v", "", "")]))


def _sweep(rep: Report, g: dict, setup: dict) -> None:
    rows = sorted(g["sweep"], key=lambda r: (ARCHS.index(r["arch"]), r["lr"]))
    table = [dict(arch=r["arch"], lr=r["lr"], width=r["width"], N=r["non_embedding_parameters"],
                  loss=r["tune_loss"], chosen="✓" if setup["lrs"][r["arch"]] == r["lr"] else "")
             for r in rows]
    rep.csv("lr_sweep.csv", table)
    edge = [a for a in ARCHS if any(r["arch"] == a for r in rows) and setup["lrs"][a] in
            (min(r["lr"] for r in rows if r["arch"] == a), max(r["lr"] for r in rows if r["arch"] == a))]
    rep.add("## 1. Learning rates",
            "Each architecture, at the smallest size and the first seed, trains once per learning rate "
            "on the smallest size's token budget; the one with the lowest loss on the *tuning* windows "
            "(the first tenth of the validation split, never used for a reported number) is used for "
            "every size and seed of that architecture, and for its long-range tasks. The same procedure "
            "for every architecture, with no preferred outcome.",
            markdown_table(table, [("arch", "architecture", ""), ("width", "width", ""),
                                   ("N", "non-embedding parameters", ",d"), ("lr", "learning rate", "g"),
                                   ("loss", "tuning loss (nats)", ".3f"), ("chosen", "chosen", "")]),
            *([f"*At the edge of the grid for {', '.join(edge)}: a value beyond it might do better; the "
               "grid is the budget's `sweep_lrs`.*"] if edge else []))


def _quality(rep: Report, g: dict, setup: dict) -> list[dict]:
    b = setup["budget"]
    rows = []
    for n, r in sorted(g["ngram"].items()):
        rows.append(dict(model=f"{n}-gram (Kneser-Ney)", arch="ngram", size=None, N=None,
                         entries=r["entries"], tokens=setup["train_tokens"], flops=None,
                         loss=_pm([r["val_loss"]]), bpc=r["val_loss"] / LN2, loss_mean=r["val_loss"],
                         carried=None, train_tokens_per_s=None, sample_chars_per_s=r["sample_chars_per_s"]))
    for a in ARCHS:
        for i in range(len(b["sizes"])):
            rs = g["lm"].get((a, i), [])
            if not rs:
                continue
            losses = _vals(rs, "val_loss")
            rows.append(dict(model=f"{a} (width {rs[0]['width']})", arch=a, size=i,
                             N=rs[0]["non_embedding_parameters"], entries=None, tokens=rs[0]["tokens"],
                             flops=rs[0]["train_flops"], loss=_pm(losses), loss_mean=mean_se(losses)[0],
                             bpc=mean_se(losses)[0] / LN2,
                             carried=_pm(_vals(rs, "carried_loss")) if a in RECURRENT else None,
                             train_tokens_per_s=float(np.mean(_vals(rs, "train_tokens_per_s"))),
                             sample_chars_per_s=float(np.mean(_vals(rs, "sample_chars_per_s")))))
    # the CSV holds numbers: the mean and its 2 se, not the table's "mean ± 2 se" text
    rep.csv("quality.csv", [dict({k: v for k, v in r.items() if k not in ("loss", "carried")},
                                 loss_2se=_two_se(g["lm"].get((r["arch"], r["size"]), []), "val_loss"))
                            for r in rows])
    rep.add("## 2. Quality at matched compute and matched parameters",
            f"Each neural architecture at {len(b['sizes'])} sizes (non-embedding parameters N), "
            f"{b['seeds']} seeds each, every model of one size on the same number of training tokens. "
            "*val loss*: mean next-token cross-entropy on the evaluation windows, each read from a fresh "
            "state (nats; ± is twice the standard error over seeds); *carried*: the recurrent models "
            "scored with their state carried through the text, as they were trained. *training FLOPs*: "
            "3 × forward matrix-product FLOPs per token × tokens (docs/models.md). n-gram models count "
            "the whole training text; *entries* are their stored n-grams.",
            markdown_table(rows, [("model", "model", ""), ("N", "non-embedding parameters", ",d"),
                                  ("entries", "n-gram entries", ",d"), ("tokens", "training tokens", ",d"),
                                  ("flops", "training FLOPs", ".2e"), ("loss", "val loss (nats)", ""),
                                  ("bpc", "bits/char", ".3f"), ("carried", "carried-state loss", ""),
                                  ("train_tokens_per_s", "train tokens/s", ",.0f"),
                                  ("sample_chars_per_s", "sampling chars/s", ",.0f")]),
            TIMING_NOTE,
            rep.figure("quality_params.png", _fig_quality(g, b, "N"),
                       "Validation loss against non-embedding parameters (error bars: 2 se over seeds; "
                       "dotted: n-gram models)."),
            rep.figure("quality_flops.png", _fig_frontier(g, b),
                       "Validation loss against training FLOPs: each model's learning curve (thin), the "
                       "lower envelope per architecture (thick: its compute frontier), final points with "
                       "error bars."))
    return rows


def _positions(rep: Report, g: dict, setup: dict) -> dict:
    b = setup["budget"]
    largest = len(b["sizes"]) - 1
    rows, gains, plateaus, curves = [], {}, {}, {}
    # the highest-order n-gram sees only its last n − 1 tokens: how much its loss falls from position 100
    # to n_ctx is how much easier the text there happens to be in these windows, not a gain from context
    ref = summarize(max(g["ngram"].items())[1]["position_loss"])["gain_100"] if g["ngram"] else 0.0
    for a in ARCHS:
        rs = g["lm"].get((a, largest), [])
        if not rs:
            continue
        curve = np.mean([r["position_loss"] for r in rs], axis=0)
        curves[a] = curve
        n = len(curve)
        ps = [summarize(r["position_loss"]) for r in rs]
        gains[a] = [p["gain_100"] - (ref or 0.0) for p in ps if p["gain_100"] is not None]
        plateaus[a] = [p["within_001"] for p in ps]
        rows.append(dict(model=a, L1=_pm([p["L1"] for p in ps]), L10=_pm([p["L10"] for p in ps]),
                         L100=_pm([p["L100"] for p in ps if p["L100"] is not None]) if n >= 100 else None,
                         Lctx=_pm([p["L_ctx"] for p in ps]), within=_pm(plateaus[a], ".0f"),
                         fit=_fit_text(ps)))
    for n_, r in sorted(g["ngram"].items()):
        p = summarize(r["position_loss"])
        curves[f"{n_}-gram"] = np.asarray(r["position_loss"])
        rows.append(dict(model=f"{n_}-gram", L1=_pm([p["L1"]]), L10=_pm([p["L10"]]),
                         L100=_pm([p["L100"]]) if p["L100"] is not None else None, Lctx=_pm([p["L_ctx"]]),
                         within=f"{p['within_001']}", fit="–"))
    carried = {a: np.mean([r["carried_position_loss"] for r in g["lm"][(a, largest)]], axis=0)
               for a in RECURRENT if g["lm"].get((a, largest))}
    rep.csv("position_loss.csv", [dict(position=t + 1, **{k: float(c[t]) for k, c in curves.items()},
                                       **{f"{k}_carried": float(c[t]) for k, c in carried.items()})
                                  for t in range(b["n_ctx"])])
    rep.csv("position_summary.csv", rows)
    n_ctx = b["n_ctx"]
    rep.add("## 3. Loss against position in the context",
            f"The largest size of each architecture, mean over seeds: the loss at position t of "
            f"{b['eval_windows']:,} validation windows, each read from a fresh state (recurrent models from "
            "zero, the Transformer with an empty cache), so position t has exactly t tokens of context "
            "(Kaplan et al. 2020, figure 7). L(10), L(100) and L(n_ctx) are means over the positions "
            "within 10 % of t (a single position is noisy); *within 0.01*: the position from which the "
            f"fitted curve L(t) = a + b·t^−c stays within 0.01 nats of its value at t = {n_ctx}.",
            markdown_table(rows, [("model", "model", ""), ("L1", "L(1)", ""), ("L10", "L(10)", ""),
                                  ("L100", "L(100)", ""), ("Lctx", f"L({n_ctx})", ""),
                                  ("within", "within 0.01 from t =", ""), ("fit", "fit a + b·t^−c", "")]),
            rep.figure("position_loss.png", _fig_positions(curves, carried),
                       "Per-token validation loss against position in the context (log scale; dashed: "
                       "recurrent models with their state carried in from the preceding text)."))
    return dict(gains=gains, plateaus=plateaus, n_ctx=n_ctx)


def _fit_text(ps: list[dict]) -> str:
    a, b, c = (np.mean([p[k] for p in ps]) for k in ("fit_a", "fit_b", "fit_c"))
    return f"{a:.3f} + {b:.3f}·t^−{c:.2f}"


def _gradients(rep: Report, g: dict, setup: dict) -> dict:
    b = setup["budget"]
    largest = len(b["sizes"]) - 1
    T = b["grad_T"]
    dist = 50 if T > 50 else T // 2
    rows, logs, curves = [], {}, {}
    for a in RECURRENT:
        rs = g["lm"].get((a, largest), [])
        for stage in ("init", "trained"):
            gs = [r[f"grad_{stage}"] for r in rs if r.get(f"grad_{stage}")]
            if not gs:
                continue
            norms = np.asarray([x["norms"] for x in gs])
            curves[(a, stage)] = norms.mean(axis=0)
            # below float32's smallest number the gradient is exactly 0: floor the log there
            ratio = [max(math.log10(max(x["norms"][dist] / x["norms"][0], 1e-300)), LOG10_UNDERFLOW)
                     for x in gs]
            if stage == "trained":
                logs[a] = ratio
            rows.append(dict(model=a, stage=stage, r10=_pm([x["ratio_10"] for x in gs], ".2e"),
                             rd=_pm(ratio, ".2f"), step=_pm(_vals(gs, "step_ratio")),
                             factor=_pm(_vals(gs, "factor_per_step")),
                             half=(_pm(_vals(gs, "half_life"), ".1f") if _vals(gs, "half_life")
                                   else "no decay"),
                             sigma=_pm(_vals(gs, "sigma_max"))))
    rep.csv("gradient_flow.csv", [dict(distance=d, **{f"{m}_{s}": float(c[d])
                                                      for (m, s), c in curves.items()}) for d in range(T)])
    rep.csv("gradient_flow_summary.csv", rows)
    rep.add("## 4. Gradient flow through time (Pascanu, Mikolov & Bengio 2013)",
            f"‖∂L_T/∂h_t‖ for the loss at the last of T = {T} validation characters against the distance "
            "T − t, for the largest size, at initialisation and after training (mean over seeds). *factor "
            "per step*: exp of the slope of log‖g‖ against distance; *half-life*: steps for the gradient to "
            "halve at that rate; *σ_max*: the largest singular value of the recurrent weight W_hh (all "
            "gates stacked). For the tanh RNN, ‖∂h_t/∂h_{t−1}‖ ≤ σ_max(W_hh) (tanh' ≤ 1 = 1/γ), so "
            "σ_max < 1 forces the gradient to vanish; gates lift that bound for the LSTM and GRU. A log10 "
            "ratio of −38 means the gradient underflowed to 0 in float32 before that distance.",
            markdown_table(rows, [("model", "model", ""), ("stage", "weights", ""),
                                  ("r10", "‖g‖ at 10 / at 0", ""), ("rd", f"log10 ‖g‖ at {dist} / at 0", ""),
                                  ("step", "median step ratio", ""), ("factor", "factor per step", ""),
                                  ("half", "half-life (steps)", ""), ("sigma", "σ_max(W_hh)", "")]),
            rep.figure("gradient_flow.png", _fig_gradients(curves),
                       "Gradient norm against distance, log scale (dashed: at initialisation)."))
    return dict(logs=logs, distance=dist)


def _tasks(rep: Report, g: dict, setup: dict) -> dict:
    b = setup["budget"]
    out = {}
    rep.add("## 5. Long-range tasks",
            f"Each task trains every model from scratch for {b['task_steps']} steps of {b['task_batch']} "
            f"sequences ({b['task_seeds']} seed(s); the architecture's learning rate from section 1; "
            "warmup and cosine as above), then scores fresh sequences. Learning curves are drawn, so "
            "\"did not learn within this budget\" shows as a flat curve at the baseline, not as "
            "\"cannot\". The grid of T here is what this budget affords; `--budget large` runs the "
            "published grids (copy T = 100 … 500, adding T = 100 … 750).")
    for task, title, key, unit, base_txt in (
            ("copy", "Copying memory (Arjovsky, Shah & Bengio 2016)", "final_eval_loss", "nats per step",
             "memoryless baseline 10·ln 8 / (T + 20)"),
            ("adding", "Adding problem (Hochreiter & Schmidhuber 1997)", "final_eval_loss", "MSE",
             "baseline: always predict 1, MSE 1/6"),
            ("recall", "Recall the first symbol (this project's task)", "accuracy", "accuracy",
             "baseline: chance accuracy")):
        cells = {(a, T): rs for (k, a, T), rs in g["task"].items() if k == task}
        if not cells:
            continue
        Ts = sorted({T for _, T in cells})
        archs = [a for a in ARCHS if any((a, T) in cells for T in Ts)]
        rows = []
        for T in Ts:
            any_r = next(cells[(a, T)][0] for a in archs if (a, T) in cells)
            row = dict(T=T, baseline=any_r.get("chance" if task == "recall" else "baseline"))
            for a in archs:
                rs = cells.get((a, T), [])
                row[a] = _pm(_vals(rs, key)) if rs else None
                if task != "recall":
                    row[f"{a} acc"] = _pm(_vals(rs, "accuracy"), ".2f") if rs else None
            rows.append(row)
        out[task] = dict(cells={(a, T): _vals(rs, key) for (a, T), rs in cells.items()},
                         baseline={T: cells[next((a, T) for a in archs if (a, T) in cells)][0].get(
                             "chance" if task == "recall" else "baseline") for T in Ts}, Ts=Ts, archs=archs)
        rep.csv(f"task_{task}.csv", [{k: v for k, v in r.items() if k not in ("curve",)}
                                     for rs in cells.values() for r in rs])
        cols = [("T", "T" if task != "recall" else "k", ""), ("baseline", "baseline", ".4f")]
        for a in archs:
            cols.append((a, f"{a} {unit}", ""))
            if task != "recall":
                cols.append((f"{a} acc", f"{a} accuracy", ""))
        rep.add(f"### {title}", f"{unit}; {base_txt}.", markdown_table(rows, cols),
                rep.figure(f"task_{task}.png", _fig_task(cells, Ts, archs, task),
                           f"{title}: training loss against step, one panel per T (dotted: baseline)."))
    return out


def _inside(rep: Report, g: dict, setup: dict) -> None:
    largest = len(setup["budget"]["sizes"]) - 1
    t = [r for r in g["lm"].get(("transformer", largest), []) if r.get("attention")]
    l_ = [r for r in g["lm"].get(("lstm", largest), []) if r.get("gates")]
    if not (t or l_):
        return
    rep.add("## 6. Inside the trained models", f"The line both models read: `{setup['line']}`")
    if t:
        dist = np.asarray(t[0]["attention_distance"])
        rows = [dict(layer=i, **{f"head {h}": float(dist[i, h]) for h in range(dist.shape[1])})
                for i in range(dist.shape[0])]
        rep.csv("attention_distance.csv", rows)
        rep.add("Mean attention distance (tokens back) per head of the largest Transformer, first seed:",
                markdown_table(rows, [("layer", "layer", "")] + [(f"head {h}", f"head {h}", ".1f")
                                                                 for h in range(dist.shape[1])]),
                rep.figure("attention.png", _fig_attention(np.asarray(t[0]["attention"]), setup["line"]),
                           "Attention weights per layer and head (row: query position, column: key)."))
    if l_:
        gates = {k: np.asarray(v) for k, v in l_[0]["gates"].items()}
        rows = [dict(gate=name, mean=float(gates[k].mean()), open=float((gates[k] > 0.9).mean()),
                     closed=float((gates[k] < 0.1).mean()))
                for k, name in (("i", "input gate"), ("f", "forget gate"), ("o", "output gate"))]
        rep.csv("lstm_gates.csv", rows)
        rep.add("Gates of the largest LSTM over the line (fractions of all unit-steps):",
                markdown_table(rows, [("gate", "gate", ""), ("mean", "mean", ".2f"),
                                      ("open", "> 0.9", ".2f"), ("closed", "< 0.1", ".2f")]),
                rep.figure("lstm_gates.png", _fig_gates(gates, setup["line"]),
                           "LSTM gate activations and cell state per character."))


def _choose(rep: Report, g: dict, setup: dict, quality_rows, pos: dict, grads: dict, tasks: dict) -> None:
    b = setup["budget"]
    largest = len(b["sizes"]) - 1
    final = {a: _vals(g["lm"].get((a, largest), []), "val_loss") for a in ARCHS}
    final = {a: v for a, v in final.items() if v}
    verdicts: list[V.Verdict] = []
    verdicts.append(V.claim_best("The Transformer performs better than the RNN and the LSTM (and the GRU), "
                                 "on real text at matched parameters and tokens", "seed FAQ 3",
                                 "transformer", final))
    if g["ngram"] and final:
        best_n = min(g["ngram"].values(), key=lambda r: r["val_loss"])
        best_a = min(final, key=lambda a: mean_se(final[a])[0])
        groups = {best_a: final[best_a], f"{best_n['n']}-gram": [best_n["val_loss"]]}
        v = V.claim_best("Statistical n-gram models are of limited effect: the best neural model beats the "
                         "best n-gram", "seed, background", best_a, groups)
        tokens = g["lm"][(best_a, largest)][0]["tokens"]
        verdicts.append(dataclasses.replace(v, measured=v.measured + (
            f" (the n-gram counted all {setup['train_tokens']:,} training characters; the {best_a} trained "
            f"on {tokens:,} tokens)")))
    if "rnn" in final and "lstm" in final:
        verdicts.append(V.claim_best("The LSTM models text better than the plain RNN", "seed FAQ 1",
                                     "lstm", {"lstm": final["lstm"], "rnn": final["rnn"]}))
    if grads["logs"].get("rnn") and grads["logs"].get("lstm"):
        verdicts += V.claim_gradients(grads["logs"]["rnn"], grads["logs"]["lstm"], grads["distance"])
    verdicts.append(V.claim_context(pos["gains"], pos["plateaus"], pos["n_ctx"]))
    for task, name in (("copy", "copying memory"), ("adding", "adding problem")):
        t = tasks.get(task)
        if not t:
            continue
        T = max(t["Ts"])
        groups = {a: t["cells"][(a, T)] for a in t["archs"] if (a, T) in t["cells"]}
        verdicts.append(V.claim_task(f"The Transformer handles long-range dependencies better ({name}, "
                                     f"T = {T})", "seed FAQ 2 and 3", "transformer", groups,
                                     t["baseline"][T], min_effect=0.1 * t["baseline"][T], spec=".4f"))
    t = tasks.get("recall")
    if t:
        k = max(t["Ts"])
        groups = {a: t["cells"][(a, k)] for a in t["archs"] if (a, k) in t["cells"]}
        verdicts.append(V.claim_task(f"The Transformer handles long-range dependencies better (recall of the "
                                     f"first symbol, k = {k})", "seed FAQ 2 and 3", "transformer", groups,
                                     t["baseline"][k], lower_is_better=False, min_effect=0.05, spec=".3f"))
    rep.csv("verdicts.csv", [v.__dict__ for v in verdicts])

    # how to choose: each row computed from the tables above
    choose = []
    for i, n in enumerate(b["sizes"]):
        groups = {a: _vals(g["lm"].get((a, i), []), "val_loss") for a in ARCHS}
        best, tied = best_of({a: v for a, v in groups.items() if v})
        if best:
            choose.append(dict(need=f"the lowest loss at ~{n:,} parameters ({b['flops'][i]:.2g} training "
                                    "FLOPs)", choose=best,
                               why=f"{mean_se(groups[best])[0]:.3f} nats" +
                                   (f"; tied within the noise: {', '.join(x for x in tied if x != best)}"
                                    if len(tied) > 1 else "")))
    for task, name in (("copy", "copying memory"), ("adding", "adding problem")):
        t = tasks.get(task)
        if not t:
            continue
        solved = {a: V.solved_distance({T: t["cells"][(a, T)] for T in t["Ts"] if (a, T) in t["cells"]},
                                       t["baseline"]) for a in t["archs"]}
        learned = {a: s for a, s in solved.items() if s is not None}
        choose.append(dict(need=f"memory over long gaps ({name}: largest T learned, loss < 1/10 of baseline)",
                           choose=max(learned, key=learned.get) if learned else "none learned it",
                           why=", ".join(f"{a}: T = {s}" if s else f"{a}: none" for a, s in solved.items())))
    neural = [r for r in quality_rows if r["arch"] != "ngram" and r["size"] == largest]
    if neural:
        fast = max(neural, key=lambda r: r["train_tokens_per_s"])
        samp = max(neural, key=lambda r: r["sample_chars_per_s"])
        choose.append(dict(need="fast training on this implementation (timing, machine-dependent)",
                           choose=fast["arch"],
                           why=f"{fast['train_tokens_per_s']:,.0f} tokens/s at the largest size"))
        choose.append(dict(need="fast sampling on this implementation (timing, machine-dependent)",
                           choose=samp["arch"],
                           why=f"{samp['sample_chars_per_s']:,.0f} chars/s at the largest size"))
    choose.append(dict(need="time series", choose="not measured",
                       why="the seed's advice (RNN/LSTM for time series) is not tested by the road"))
    rep.csv("how_to_choose.csv", [r for r in choose if "timing" not in r["need"]])
    rep.csv("speed_timing.csv", [r for r in choose if "timing" in r["need"]])   # differs run to run
    rep.add("## 7. How to choose, and the seed document's claims",
            f"The rule for every verdict: a difference counts only if it exceeds twice its standard error "
            f"over seeds and {LOSS_EFFECT} nats (for the tasks: a tenth of the baseline; for gradients a "
            "factor of 2), else it is a tie at this budget. Everything in this section is computed from "
            "the runs above.",
            markdown_table(choose, [("need", "if you need", ""), ("choose", "choose", ""),
                                    ("why", "measured", "")]),
            "### The claims, checked",
            markdown_table([dict(c=v.claim, v=f"**{v.verdict}**", m=v.measured, s=v.source)
                            for v in verdicts],
                           [("c", "claim", ""), ("v", "verdict", ""), ("m", "measured", ""),
                            ("s", "source", "")]),
            "### Limits",
            "Small models, character-level text, CPU-sized budgets: rankings can change with scale (the "
            "literature finds Transformers gaining more from compute and data: Kaplan et al. 2020). One "
            "learning rate per architecture, picked at the smallest size, serves every size. Where the seed "
            "document is wrong on history or equations, see docs/seed.md.")


# --------------------------------------------------------------------------- figures

def _label(ax, xlabel: str, ylabel: str, title: str, legend: int = 8, xlog: bool = True) -> None:
    """Axis labels with units, a title and a legend: every figure of the report has them."""
    if xlog:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend)


def _fig_quality(g, b, _):
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for a in ARCHS:
            pts = []
            for i in range(len(b["sizes"])):
                rs = g["lm"].get((a, i), [])
                if rs:
                    m, se = mean_se(_vals(rs, "val_loss"))
                    pts.append((rs[0]["non_embedding_parameters"], m, 2 * se))
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, color=COLORS[a], label=a)
        for n, r in sorted(g["ngram"].items()):
            ax.axhline(r["val_loss"], color="gray", linestyle=":", linewidth=1)
            ax.text(ax.get_xlim()[0], r["val_loss"], f" {n}-gram", fontsize=7, va="bottom", color="gray")
        _label(ax, "non-embedding parameters N", "validation loss (nats per character)",
               "Quality against model size (same tokens per size)")
    return draw


def _fig_frontier(g, b):
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for a in ARCHS:
            env = []
            for i in range(len(b["sizes"])):
                rs = g["lm"].get((a, i), [])
                for r in rs:
                    per_token = r["train_flops"] / r["tokens"]
                    xs = [p["tokens"] * per_token for p in r["curve"]]
                    ys = [p["val_loss"] for p in r["curve"]]
                    ax.plot(xs, ys, color=COLORS[a], alpha=0.25, linewidth=0.8)
                    env += list(zip(xs, ys))
                if rs:
                    m, se = mean_se(_vals(rs, "val_loss"))
                    ax.errorbar([rs[0]["train_flops"]], [m], yerr=[2 * se], marker="o", capsize=3,
                                color=COLORS[a])
            if env:
                env.sort()
                xs, best, front = [], math.inf, []
                for x, y in env:
                    best = min(best, y)
                    front.append(best)
                    xs.append(x)
                ax.plot(xs, front, color=COLORS[a], linewidth=2, label=f"{a} frontier")
        _label(ax, "training FLOPs (3 × forward matrix-product FLOPs)",
               "validation loss (nats per character)", "Compute frontier per architecture")
    return draw


def _fig_positions(curves, carried):
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        greys = iter(["#bbb", "#999", "#777", "#555", "#333", "#111"])
        for k, c in curves.items():
            t, y = smooth(c)
            ax.plot(t, y, color=COLORS.get(k) or next(greys), linestyle="-" if k in COLORS else ":", label=k)
        for k, c in carried.items():
            t, y = smooth(c)
            ax.plot(t, y, color=COLORS[k], linestyle="--", linewidth=1, label=f"{k}, carried state")
        _label(ax, "position t in the context (tokens seen)", "loss at position t (nats)",
               "Loss against position in the context (means over log-spaced bins)", legend=7)
    return draw


def _fig_gradients(curves):
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4))
        for (model, stage), norms in curves.items():
            ax.semilogy(np.arange(len(norms)), np.maximum(norms, 1e-30), color=COLORS.get(model, "k"),
                        linestyle="--" if stage == "init" else "-", label=f"{model}, {stage}")
        _label(ax, "distance T − t (steps back from the loss)", "‖∂L_T / ∂h_t‖ (mean over windows and seeds)",
               "Gradient flow through time", xlog=False)
    return draw


def _fig_task(cells, Ts, archs, task):
    def draw(plt):
        fig, axes = plt.subplots(1, len(Ts), figsize=(3.4 * len(Ts), 3.2), squeeze=False)
        for ax, T in zip(axes[0], Ts):
            base = None
            for a in archs:
                for j, r in enumerate(cells.get((a, T), [])):
                    c = r["curve"]
                    ax.plot([p["step"] for p in c], [p["train_loss"] for p in c], color=COLORS[a],
                            alpha=0.9 if j == 0 else 0.4, label=a if j == 0 else None)
                    base = r.get("baseline")
            if base is not None:
                ax.axhline(base, color="gray", linestyle=":", label="baseline")
            ax.set_title(f"{'k' if task == 'recall' else 'T'} = {T}", fontsize=9)
            ax.set_xlabel("training step")
            ax.set_yscale("log")
        axes[0][0].set_ylabel("training loss" + (" (MSE)" if task == "adding" else " (nats)"))
        axes[0][0].legend(fontsize=7)
    return draw


def _fig_attention(maps, line):
    def draw(plt):
        L, H, T, _ = maps.shape
        fig, axes = plt.subplots(L, H, figsize=(2.6 * H, 2.6 * L), squeeze=False)
        chars = [c if c != " " else "␣" for c in line]
        for i in range(L):
            for h in range(H):
                ax = axes[i][h]
                top = float(maps[i, h][2:].max()) if T > 2 else 1.0
                ax.imshow(maps[i, h], cmap="viridis", vmin=0, vmax=max(top, 1e-6))
                ax.set_title(f"layer {i} head {h}", fontsize=8)
                ax.set_xticks(range(T))
                ax.set_yticks(range(T))
                ax.set_xticklabels(chars, fontsize=4)
                ax.set_yticklabels(chars, fontsize=4)
                ax.set_xlabel("key position", fontsize=6)
                ax.set_ylabel("query position", fontsize=6)
        fig.suptitle("Attention of the trained Transformer (colour scaled to rows 2..T)", fontsize=10)
    return draw


def _fig_gates(gates, line, n_units=32):
    def draw(plt):
        names = [("i", "input gate"), ("f", "forget gate"), ("o", "output gate"), ("c", "cell state c")]
        T, H = gates["f"].shape
        units = np.argsort(-gates["c"].std(axis=0))[:min(n_units, H)]
        fig, axes = plt.subplots(len(names), 1, figsize=(max(6, 0.18 * T), 9), sharex=True)
        for ax, (key, title) in zip(axes, names):
            vals = gates[key][:, units].T
            lim = float(np.abs(vals).max()) or 1.0
            im = ax.imshow(vals, aspect="auto", cmap="RdBu_r" if key == "c" else "viridis",
                           vmin=-lim if key == "c" else 0, vmax=lim if key == "c" else 1)
            ax.set_ylabel(f"{title}\n(unit)", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.02)
        axes[-1].set_xticks(range(T))
        axes[-1].set_xticklabels([c if c != " " else "␣" for c in line], fontsize=7)
        axes[-1].set_xlabel("character of the line")
        fig.suptitle(f"LSTM gates over a line ({len(units)} most active of {H} units)", fontsize=10)
    return draw


# --------------------------------------------------------------------------- the report

def write_report(rep: Report, setup: dict, runs: list[dict]) -> str:
    g = aggregate(runs)
    quick = setup["budget"]["name"] == "quick"
    rep.add("# The road of language models, measured",
            f"Reproduce every number below with `{setup['command']}` (seeds fixed; budgets in tokens, "
            "so the same on any machine, at any load, with any number of workers; only timing columns "
            "differ). It trains n-gram, RNN, LSTM, GRU and Transformer language models at several sizes "
            "and seeds, measures them the way the literature does, and checks the claims of the document "
            "this project grew from. CSV files beside this report hold every number; `runs/` holds each "
            "run's full result.")
    if quick:
        rep.add("> **Quick run.** Tiny models on tiny budgets: this checks that every section works; its "
                "numbers say nothing about the models. Run `python -m lmroad road` for the measurement.")
    if not rep.plots_available:
        rep.add("*Plots were skipped: matplotlib is not installed (`pip install -e \".[extras]\"`). "
                "The tables and CSV files hold the same numbers.*")
    _setup(rep, setup, g)
    _sweep(rep, g, setup)
    rows = _quality(rep, g, setup)
    largest = len(setup["budget"]["sizes"]) - 1
    samples = [(r["arch"], r["sample"]) for a in ARCHS for r in g["lm"].get((a, largest), [])[:1]]
    samples += [(f"{n}-gram", r["sample"]) for n, r in sorted(g["ngram"].items())[-1:]]
    rep.add(f"Samples of the largest models, first seed (prompt `{setup['prompt']}`, temperature 0.8, "
            "top-k 40):", *[f"**{m}**\n\n```text\n{s.strip()}\n```" for m, s in samples])
    pos = _positions(rep, g, setup)
    grads = _gradients(rep, g, setup)
    tasks = _tasks(rep, g, setup)
    _inside(rep, g, setup)
    _choose(rep, g, setup, rows, pos, grads, tasks)
    rep.add("## Files", "\n".join(f"- `{f}`" for f in rep.files + ["report.md"]))
    return rep.write()


"""Section 5 and the report: tables, figures, "how to choose" (FAQ 4) and the
seed document's claims checked against the numbers of sections 1-4.

Every sentence that states a result is built from the measured numbers
(with the comparison spelled out), so a run whose numbers differ gets a
report that says something different: nothing here is a fixed conclusion.
"""

from __future__ import annotations

import math

import numpy as np

from .common import fmt_seconds
from .report import Report, fmt, markdown_table

__all__ = ["write_report", "how_to_choose", "check_claims"]

QUALITY_COLUMNS = [("model", "model", ""), ("parameters", "parameters", ",d"),
                   ("entries", "n-gram entries", ",d"), ("size", "size", ""),
                   ("steps", "steps", ",d"), ("train_tokens", "training tokens", ",d"),
                   ("train_seconds", "training s", ".1f"), ("tokens_per_s", "tokens/s", ",.0f"),
                   ("val_bpc", "val bits/char", ".3f"), ("val_perplexity", "val perplexity", ".2f"),
                   ("gen_chars_per_s", "sampling chars/s", ",.0f")]
GRAD_COLUMNS = [("model", "model", ""), ("stage", "weights", ""), ("ratio_10", "‖g‖ at 10 / at 0", ".2e"),
                ("ratio_25", "at 25 / at 0", ".2e"), ("ratio_50", "at 50 / at 0", ".2e"),
                ("factor_per_step", "factor per step", ".3f")]


# --------------------------------------------------------------------------- derived numbers

def _neural(rows):
    return [r for r in rows if r["kind"] != "ngram"]


def _best(rows, key, lowest=True):
    rows = [r for r in rows if r.get(key) is not None and not (isinstance(r[key], float)
                                                                and math.isnan(r[key]))]
    if not rows:
        return None, None
    ranked = sorted(rows, key=lambda r: r[key], reverse=not lowest)
    return ranked[0], (ranked[1] if len(ranked) > 1 else None)


def _solved_k(long_range, model, threshold=0.9):
    ks = [r["k"] for r in long_range.rows if r["model"] == model and r["accuracy"] >= threshold]
    return max(ks) if ks else None


def _mean_acc(long_range, model):
    accs = [r["accuracy"] for r in long_range.rows if r["model"] == model]
    return float(np.mean(accs)) if accs else None


def how_to_choose(quality, grads, long_range) -> list[dict]:
    """FAQ 4 as a table: a question, the model the numbers pick, the number, the runner-up."""
    out = []

    def add(question, best, runner, key, spec, unit):
        if best is None:
            return
        out.append(dict(question=question, answer=best["model"],
                        measured=f"{format(best[key], spec)} {unit}",
                        runner_up="–" if runner is None
                        else f"{runner['model']} ({format(runner[key], spec)})"))

    b, r = _best(quality.rows, "val_bpc")
    add("lowest validation bits/char, any model", b, r, "val_bpc", ".3f", "bits/char")
    b, r = _best(_neural(quality.rows), "val_bpc")
    add("best neural model at matched parameters and time", b, r, "val_bpc", ".3f", "bits/char")
    b, r = _best(_neural(quality.rows), "tokens_per_s", lowest=False)
    add("fastest to train (tokens/s)", b, r, "tokens_per_s", ",.0f", "tokens/s")
    b, r = _best(quality.rows, "gen_chars_per_s", lowest=False)
    add("fastest to sample (chars/s)", b, r, "gen_chars_per_s", ",.0f", "chars/s")
    lr_rows = [dict(model=m, mean=_mean_acc(long_range, m), solved=_solved_k(long_range, m) or 0)
               for m in sorted({r["model"] for r in long_range.rows})]
    b, r = _best(lr_rows, "mean", lowest=False)
    ks = ", ".join(str(k) for k in sorted({x["k"] for x in long_range.rows}))
    add(f"best at long range (mean recall accuracy over k = {ks})", b, r, "mean", ".2f", "accuracy")
    trained = [dict(model=x["model"], factor=x["factor_per_step"]) for x in grads.rows
               if x["stage"] == "trained" and x["factor_per_step"] is not None]
    b, r = _best(trained, "factor", lowest=False)
    add("slowest gradient decay through time, trained", b, r, "factor", ".3f", "× per step")
    return out


def _verdict(ok: bool | None) -> str:
    return {True: "**consistent**", False: "**contradicted here**", None: "**not settled here**"}[ok]


def check_claims(quality, grads, long_range) -> list[str]:
    """The seed's claims, each with what this run measured and whether the numbers agree."""
    lines = []
    g = {(x["model"], x["stage"]): x for x in grads.rows}
    # FAQ 1
    ri, li = g[("rnn", "init")], g[("lstm", "init")]
    rt, lt = g[("rnn", "trained")], g[("lstm", "trained")]
    far = max((d for d in (50, 25, 10) if ri.get(f"ratio_{d}") is not None), default=None)
    if far is not None:
        key = f"ratio_{far}"
        eases = lt[key] is not None and rt[key] is not None and lt[key] > rt[key]
        solved = lt[key] is not None and lt[key] > 0.1
        lines.append(
            f"- *\"LSTM solves the vanishing-gradient problem of the RNN\"* (FAQ 1). At distance {far} the "
            f"gradient is {fmt(ri[key], '.1e')} (RNN) and {fmt(li[key], '.1e')} (LSTM) of its size at "
            f"distance 0 at initialisation, {fmt(rt[key], '.1e')} and {fmt(lt[key], '.1e')} after training. "
            f"That the LSTM keeps more gradient than the RNN after training: {_verdict(eases)}. "
            f"That it *solves* vanishing (keeps more than a tenth at distance {far}): {_verdict(solved)} "
            "(the literature says *eases*: Hochreiter & Schmidhuber 1997, Gers et al. 2000; see ERRATA.md).")
    # FAQ 2/3: long range
    accs = {m: _mean_acc(long_range, m) for m in ("rnn", "lstm", "transformer")}
    if all(v is not None for v in accs.values()):
        best = max(accs, key=accs.get)
        ranked = sorted(accs.values())
        # below these margins the difference is within the noise of a few hundred test sequences
        unclear = ranked[-1] - ranked[-2] < 0.05 or ranked[-1] < long_range.chance + 0.1
        ok = None if unclear else best == "transformer"
        lines.append(
            "- *\"The Transformer handles long-range dependencies better\"* (FAQ 2, 3). Mean recall "
            "accuracy over k: " + ", ".join(f"{m} {v:.2f}" for m, v in accs.items())
            + f" (chance {long_range.chance:.2f}); largest k recalled with ≥ 90% accuracy: "
            + ", ".join(f"{m} {_solved_k(long_range, m) or 'none'}" for m in accs) + f". {_verdict(ok)}.")
    # FAQ 3: quality
    neural = {r["model"]: r["val_bpc"] for r in _neural(quality.rows)}
    if "transformer" in neural and len(neural) > 1:
        best = min(neural, key=neural.get)
        lines.append(
            "- *\"The Transformer performs better than RNN and LSTM\"* (FAQ 3), on real text at matched "
            "parameters and training time: validation bits/char " +
            ", ".join(f"{m} {v:.3f}" for m, v in neural.items()) +
            f". {_verdict(best == 'transformer')} at this budget"
            + ("" if best == "transformer" else f" ({best} is best)") + ".")
    # background: n-gram limits
    ngram = [r for r in quality.rows if r["kind"] == "ngram"]
    if ngram and neural:
        bn = min(ngram, key=lambda r: r["val_bpc"])
        best_neural = min(neural.values())
        lines.append(
            f"- *\"Statistical n-gram models are of limited effect\"* (background). The best n-gram here "
            f"({bn['model']}, {bn['entries']:,} stored n-grams) reaches {bn['val_bpc']:.3f} bits/char, "
            f"the best neural model {best_neural:.3f}: {_verdict(best_neural < bn['val_bpc'])} "
            "at this budget.")
    lines.append(
        "- *\"Use RNN/LSTM for time series, the Transformer for long dependencies\"* (FAQ 4): only the "
        "second half is measured here (section 3); the road has no time-series task.")
    return lines


# --------------------------------------------------------------------------- figures

def _fig_quality(rows):
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        names = [r["model"] for r in rows]
        colors = ["#9aa" if r["kind"] == "ngram" else "#36c" for r in rows]
        ax.bar(names, [r["val_bpc"] for r in rows], color=colors)
        ax.set_ylabel("validation bits per character")
        ax.set_title("Quality at matched parameters and training time (lower is better)")
        for i, r in enumerate(rows):
            ax.text(i, r["val_bpc"], f"{r['val_bpc']:.2f}", ha="center", va="bottom", fontsize=8)
    return draw


def _fig_gradients(grads):
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4))
        colors = {"rnn": "#d33", "lstm": "#36c", "gru": "#3a3"}
        for (model, stage), norms in grads.curves.items():
            ax.semilogy(np.arange(len(norms)), np.maximum(norms, 1e-30), color=colors.get(model, "k"),
                        linestyle="--" if stage == "init" else "-", label=f"{model}, {stage}")
        ax.set_xlabel("distance T − t (steps back from the loss)")
        ax.set_ylabel("‖∂L_T / ∂h_t‖ (batch mean)")
        ax.set_title("Gradient flow through time")
        ax.legend(fontsize=8)
    return draw


def _fig_long_range(long_range):
    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4))
        for model in sorted({r["model"] for r in long_range.rows}):
            pts = sorted((r["k"], r["accuracy"]) for r in long_range.rows if r["model"] == model)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
        ax.axhline(long_range.chance, color="gray", linestyle=":", label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("distance k between the token and its recall")
        ax.set_ylabel("recall accuracy")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Long-range recall ({long_range.steps} training steps per point)")
        ax.legend(fontsize=8)
    return draw


def _fig_attention(maps, line):
    def draw(plt):
        L, H, T, _ = maps.shape
        fig, axes = plt.subplots(L, H, figsize=(2.6 * H, 2.6 * L), squeeze=False)
        chars = [c if c != " " else "␣" for c in line]
        for l in range(L):
            for h in range(H):
                ax = axes[l][h]
                # the first queries see one or two keys (weights near 1); scale by the rest
                top = float(maps[l, h][2:].max()) if T > 2 else 1.0
                ax.imshow(maps[l, h], cmap="viridis", vmin=0, vmax=max(top, 1e-6))
                ax.set_title(f"layer {l} head {h}", fontsize=8)
                ax.set_xticks(range(T))
                ax.set_yticks(range(T))
                ax.set_xticklabels(chars, fontsize=4)
                ax.set_yticklabels(chars, fontsize=4)
        fig.suptitle("Attention of the trained Transformer (row: query, column: key; "
                     "colour scaled to each panel's rows 2..T)", fontsize=10)
    return draw


def _fig_gates(gates, line, n_units=32):
    def draw(plt):
        names = [("i", "input gate"), ("f", "forget gate"), ("o", "output gate"), ("c", "cell state c")]
        T, H = gates["f"].shape
        units = np.argsort(-gates["c"].std(axis=0))[:min(n_units, H)]   # the most active cells
        fig, axes = plt.subplots(len(names), 1, figsize=(max(6, 0.18 * T), 9), sharex=True)
        for ax, (key, title) in zip(axes, names):
            vals = gates[key][:, units].T                                # (units, T)
            if key == "c":
                im = ax.imshow(vals, aspect="auto", cmap="RdBu_r", vmin=-np.abs(vals).max(),
                               vmax=np.abs(vals).max())
            else:
                im = ax.imshow(vals, aspect="auto", cmap="viridis", vmin=0, vmax=1)
            ax.set_ylabel(f"{title}\n(unit)", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.02)
        axes[-1].set_xticks(range(T))
        axes[-1].set_xticklabels([c if c != " " else "␣" for c in line], fontsize=7)
        fig.suptitle(f"LSTM gates over a line ({len(units)} most active of {H} units)", fontsize=10)
    return draw


# --------------------------------------------------------------------------- the report

def write_report(rep: Report, setup: dict, quality, grads, long_range, interp, tok) -> str:
    b = setup["budget"]
    quick = b["name"] == "quick"
    rep.add("# The road of language models, measured",
            "This report was written by `python -m lmroad road"
            + (" --quick" if quick else "") + "`. It measures the claims of the seed document "
            "(`shared/seed/`, see ERRATA.md) on one corpus and one budget. Every number below comes from "
            "this run; CSV files beside this report hold them all.")
    if quick:
        rep.add("> **Quick run.** Tiny models trained for seconds: this checks that every section works; "
                "its numbers say nothing about the models. Run `python -m lmroad road` for the measurement.")
    rep.add("## Setup", markdown_table([
        dict(k="corpus", v=f"{setup['corpus']} ({setup['train_chars']:,} training, {setup['val_chars']:,} "
                           f"validation characters; vocabulary {setup['vocab']} characters)"),
        dict(k="device, seed", v=f"{setup['device']}, {setup['seed']}"),
        dict(k="machine", v=f"{setup['machine']}; Python {setup['python']}, NumPy {setup['numpy']}; "
                            f"OPENBLAS_NUM_THREADS={setup.get('blas_threads', 'default')}"),
        dict(k="budget", v=f"{b['name']}: about {b['param_budget']:,} parameters and "
                           f"{b['seconds_per_model']:.0f} s of training per neural model, batch "
                           f"{b['batch_size']} × {b['block_size']} characters"),
        dict(k="evaluation", v=f"the first {quality.eval_tokens:,} validation characters, every model"),
        dict(k="run time", v=f"{fmt_seconds(setup['seconds'])} (forecast {fmt_seconds(setup['forecast'])})"),
    ], [("k", "", ""), ("v", "", "")]))
    if not rep.plots_available:
        rep.add("*Plots were skipped: matplotlib is not installed (`pip install -e \".[extras]\"`). "
                "The tables and CSV files hold the same numbers.*")

    # 1
    rep.csv("quality.csv", [{k: v for k, v in r.items()} for r in quality.rows])
    rep.add("## 1. Quality and cost",
            "n-gram models (interpolated Kneser-Ney) count the training text; their \"parameters\" are the "
            "stored n-gram counts. The neural models are sized to about the same number of parameters "
            "(*size*: hidden units, or the Transformer's width with 4 layers and 4 heads) and each "
            f"trains for the same wall-clock time ({b['seconds_per_model']:.0f} s; the step count follows "
            "from its speed). Recurrent models train by truncated backpropagation through time over "
            f"{b['block_size']}-character windows with the state carried across windows. "
            "*tokens/s* is training throughput (for n-gram models: counting speed); *sampling chars/s* "
            "is generation speed, one sequence, with the models' incremental state (RNN state, "
            "Transformer key/value cache).",
            markdown_table(quality.rows, QUALITY_COLUMNS),
            rep.figure("quality.png", _fig_quality(quality.rows),
                       "Validation bits per character (grey: n-gram, blue: neural)."),
            f"Samples (prompt `{quality.prompt}`, temperature 0.8, top-k 40):")
    for r in quality.rows:
        rep.add(f"**{r['model']}**\n\n```text\n{r['sample'].strip()}\n```")

    # 2
    rep.csv("gradient_flow.csv", [dict(distance=d, **{f"{m}_{s}": float(c[d])
                                                      for (m, s), c in grads.curves.items()})
                                  for d in range(grads.T)])
    rep.csv("gradient_flow_summary.csv", grads.rows)
    rep.add("## 2. Gradient flow through time (FAQ 1)",
            f"‖∂L_T/∂h_t‖ for the loss L_T at the last of T = {grads.T} validation characters, against "
            "the distance T − t, averaged over a batch of windows. *init*: the same architecture with the "
            "initial weights the trained model started from; *trained*: the model of section 1. "
            "*factor per step*: the fitted ratio between neighbouring distances (1 = no decay).",
            markdown_table(grads.rows, GRAD_COLUMNS),
            rep.figure("gradient_flow.png", _fig_gradients(grads),
                       "Gradient norm against distance, log scale (dashed: at initialisation)."))

    # 3
    rep.csv("long_range.csv", long_range.rows)
    ks = sorted({r["k"] for r in long_range.rows})
    models = sorted({r["model"] for r in long_range.rows})
    acc = {(r["model"], r["k"]): r["accuracy"] for r in long_range.rows}
    params = {r["model"]: r["parameters"] for r in long_range.rows}
    pivot = [dict(k=k, **{m: acc.get((m, k)) for m in models}) for k in ks]
    rep.add("## 3. Long-range dependency (FAQ 2 and 3)",
            f"Task: a sequence starts with one of {long_range.n_symbols} symbols, then k − 1 random "
            "symbols, then a query mark; the model must answer the first symbol (the only loss). "
            f"Chance: {long_range.chance:.2f}. For every k each model trains from scratch for "
            f"{long_range.steps} steps of {long_range.batch_size} sequences (same budget for all): "
            "accuracy near chance means the model did not learn the task within this budget, not that "
            "it never could; accuracy below chance means confident wrong answers (see `final_loss` in "
            "long_range.csv: above ln(symbols) the training was unstable). "
            "Parameters: " + ", ".join(f"{m} {params[m]:,}" for m in models) + ".",
            markdown_table(pivot, [("k", "k", "")] + [(m, f"{m} accuracy", ".2f") for m in models]),
            rep.figure("long_range.png", _fig_long_range(long_range), "Recall accuracy against distance k."))

    # 4
    rep.add("## 4. Inside the trained models", f"The line read by both models: `{interp.line}`")
    if interp.attention is not None:
        from .interpret import mean_attention_distance
        dist = mean_attention_distance(interp.attention)
        rows = [dict(layer=l, **{f"head {h}": float(dist[l, h]) for h in range(dist.shape[1])})
                for l in range(dist.shape[0])]
        rep.csv("attention_distance.csv", rows)
        rep.add("Mean attention distance (characters back) per head of the trained Transformer:",
                markdown_table(rows, [("layer", "layer", "")] + [(f"head {h}", f"head {h}", ".1f")
                                                                 for h in range(dist.shape[1])]),
                rep.figure("attention.png", _fig_attention(interp.attention, interp.line),
                           "Attention weights per layer and head (row: query position, column: key)."))
    if interp.gates is not None:
        rows = []
        for key, name in (("i", "input gate"), ("f", "forget gate"), ("o", "output gate")):
            v = interp.gates[key]
            rows.append(dict(gate=name, mean=float(v.mean()), open=float((v > 0.9).mean()),
                             closed=float((v < 0.1).mean())))
        rep.csv("lstm_gates.csv", rows)
        rep.add("Trained LSTM gates over the line (fractions of all unit-steps):",
                markdown_table(rows, [("gate", "gate", ""), ("mean", "mean", ".2f"),
                                      ("open", "> 0.9", ".2f"), ("closed", "< 0.1", ".2f")]),
                rep.figure("lstm_gates.png", _fig_gates(interp.gates, interp.line),
                           "LSTM gate activations and cell state per character."))

    # 5
    choose = how_to_choose(quality, grads, long_range)
    rep.csv("how_to_choose.csv", choose)
    rep.add("## 5. How to choose (FAQ 4), from the numbers above",
            markdown_table(choose, [("question", "if you need", ""), ("answer", "choose", ""),
                                    ("measured", "measured", ""), ("runner_up", "runner-up", "")]),
            "### The seed document's claims, checked", "\n".join(check_claims(quality, grads, long_range)),
            "### Limits of this measurement",
            "One seed, one corpus, small models and a short CPU budget: a longer budget can change the "
            "ranking (Transformers in particular gain more from more compute and data). Time budgets "
            "depend on the machine, and speeds on what else it runs at the time; the step counts in the "
            "tables say how much each model actually trained.")
    rep.add("## Files", "\n".join(f"- `{f}`" for f in rep.files + ["report.md"]))
    return rep.write()

"""A run's training log in the forms people plot from.

``metrics.jsonl`` (one JSON record per line, written by the trainer) stays the
record of a run. From it come:

- ``metrics.csv``: the same records as a table (one row per record, the union
  of their fields as columns, empty where a record has none), for a
  spreadsheet or pandas; rewritten whole from the log, so a resumed run's CSV
  never holds the steps a crash left behind;
- ``metrics.png``: the training and validation loss and the learning rate
  against the step (``lmroad plot DIR``, and the end of ``lmroad train``
  where matplotlib is installed).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .checkpoint import _atomic_write, read_metrics_log

__all__ = ["write_csv", "plot_metrics", "METRICS_CSV", "METRICS_PNG"]

METRICS_CSV = "metrics.csv"
METRICS_PNG = "metrics.png"
#: the columns shown first, in this order; any other field follows, sorted
_FIRST = ("step", "split", "loss", "lr", "grad_norm", "perplexity", "bpc", "tokens", "skipped",
          "reason", "skipped_steps", "time")


def write_csv(run_dir: str | os.PathLike) -> Path:
    """``run_dir/metrics.csv`` from ``run_dir/metrics.jsonl``; returns its path."""
    run_dir = Path(run_dir)
    records = read_metrics_log(run_dir / "metrics.jsonl")
    fields = {k for r in records for k in r}
    columns = [c for c in _FIRST if c in fields] + sorted(fields - set(_FIRST))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    path = run_dir / METRICS_CSV
    _atomic_write(path, lambda f: f.write(text.getvalue().encode("utf-8")))
    return path


def plot_metrics(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw the loss (training and validation) and the learning rate against the step
    to ``out`` (default ``run_dir/metrics.png``); returns its path. Needs matplotlib."""
    run_dir = Path(run_dir)
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting a run needs matplotlib: pip install -e \".[extras]\" (the CSV "
                          f"{run_dir / METRICS_CSV} has the same numbers)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    records = read_metrics_log(run_dir / "metrics.jsonl")
    if not records:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no records to plot")
    train = [r for r in records if r["split"] == "train" and r.get("loss") is not None
             and not r.get("skipped")]
    val = [r for r in records if r["split"] == "val" and r.get("loss") is not None]
    skipped = [r["step"] for r in records if r.get("skipped")]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                      gridspec_kw={"height_ratios": (3, 1)})
    if train:
        top.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train")
    if val:
        top.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="validation")
    for step in skipped:
        top.axvline(step, color="red", lw=0.5, alpha=0.5)
    top.set_ylabel("loss (nats per token)")
    top.legend()
    top.set_title(f"{run_dir}" + (f" ({len(skipped)} skipped steps: red)" if skipped else ""))
    lrs = [r for r in records if r["split"] == "train" and r.get("lr") is not None]
    bottom.plot([r["step"] for r in lrs], [r["lr"] for r in lrs], lw=1, color="black")
    bottom.set_xlabel("step")
    bottom.set_ylabel("learning rate")
    fig.tight_layout()
    path = Path(out) if out is not None else run_dir / METRICS_PNG
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""A run's training log in the forms people plot from.

``metrics.jsonl`` (one JSON record per line, written by the trainer) stays the
record of a run. From it come:

- ``metrics.csv``: the same records as a table (one row per record, the union
  of their fields as columns, empty where a record has none), for a
  spreadsheet or pandas; rewritten whole from the log, so a resumed run's CSV
  never holds the steps a crash left behind;
- ``metrics.png``: the training and validation loss and the learning rate
  against the step (``lmroad plot DIR``, and the end of ``lmroad train``
  where matplotlib is installed);
- ``tensorboard/``: TensorBoard event files (``lmroad train --log tensorboard``,
  then ``tensorboard --logdir OUT/tensorboard``), written by
  ``lmroad/tensorboard.py``. Every record becomes one scalar per number in
  it, tagged ``<split>/<field>`` (``train/loss``, ``train/lr``, ``val/loss``,
  ``val/perplexity``, ...) at the record's step and wall time: the same
  numbers as the log, to float32. The trainer adds a record's events as it
  appends the record; when a run starts or resumes, the folder is first
  rewritten from the log (``open_tensorboard``), so the steps a crash left
  after the last checkpoint, which the resumed log no longer holds, are not
  shown twice.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from .checkpoint import _atomic_write, read_metrics_log
from .tensorboard import SummaryWriter

__all__ = ["write_csv", "plot_metrics", "tensorboard_scalars", "add_record", "open_tensorboard",
           "METRICS_CSV", "METRICS_PNG", "TENSORBOARD_DIR", "EVENT_FILES"]

METRICS_CSV = "metrics.csv"
METRICS_PNG = "metrics.png"
TENSORBOARD_DIR = "tensorboard"
EVENT_FILES = "events.out.tfevents.*"        # the event files of a TensorBoard folder (PyTorch's too)
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


# --------------------------------------------------------------------------- TensorBoard

def tensorboard_scalars(record: dict) -> list[tuple[str, float]]:
    """The scalars of one metrics record, as (tag, value): every number in it but ``step``
    and ``time``, tagged ``"<split>/<field>"`` (``train/loss``, ``val/perplexity``); true
    or false as 1 or 0 (``train/skipped``). Text (``reason``) is left out, and so is a
    NaN or an infinity, which metrics.jsonl holds as null: the events of a record are
    the same whether made from the record or from its line in the log."""
    scalars = []
    for field, value in record.items():
        if field in ("step", "split", "time"):
            continue
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            scalars.append((f"{record['split']}/{field}", float(value)))
    return scalars


def add_record(writer: SummaryWriter, record: dict) -> None:
    """The scalars of ``record`` (``tensorboard_scalars``) at its step and its wall time."""
    when = record.get("time")
    walltime = float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else None
    for tag, value in tensorboard_scalars(record):
        writer.add_scalar(tag, value, record["step"], walltime=walltime)


def open_tensorboard(run_dir: str | os.PathLike) -> SummaryWriter:
    """``run_dir/tensorboard/`` rewritten from ``run_dir/metrics.jsonl``, and the writer that
    goes on in it.

    Every record of the log is written to one new event file, created whole at
    its first flush (a temporary name, renamed); then the folder's other event
    files go. A resumed run calls this after the log was cut back to the
    checkpoint's step, so the events match the log exactly; a new run finds no
    log (or an empty one) and starts an empty folder. A crash between the
    rename and the removal leaves the old files beside the new one, until the
    next resume rewrites the folder again."""
    run_dir = Path(run_dir)
    folder = run_dir / TENSORBOARD_DIR
    old = [p for p in folder.glob(EVENT_FILES) if p.is_file()]
    log = run_dir / "metrics.jsonl"
    records = read_metrics_log(log) if log.is_file() else []
    writer = SummaryWriter(folder, flush_secs=math.inf)      # no flush half-way through the history
    for record in records:
        add_record(writer, record)
    writer.flush()
    for path in old:
        path.unlink(missing_ok=True)
    writer.flush_secs = 120                                   # PyTorch's default from here on
    return writer

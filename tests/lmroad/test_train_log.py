"""A run's log in the forms people plot from (lmroad/train_log.py): metrics.csv beside
metrics.jsonl, and the loss and learning-rate curves drawn to metrics.png by ``lmroad
plot DIR`` and at the end of ``lmroad train``."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys

import pytest

from lmroad import cli
from lmroad.train import TrainConfig, train

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(text_file, out, **kw) -> TrainConfig:
    base = dict(model="lstm", data=str(text_file), out=str(out), max_iters=6, batch_size=4, block_size=16,
                n_embd=8, hidden_size=16, eval_interval=3, eval_iters=1, log_interval=1, seed=3,
                progress="none")
    return TrainConfig(**{**base, **kw})


def _jsonl(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _csv(out) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_csv_holds_every_record_of_the_log_also_after_a_resume(text_file, tmp_path):
    train(_config(text_file, tmp_path, max_iters=3))
    with open(tmp_path / "metrics.jsonl", "a") as f:       # what a crash after the checkpoint leaves
        f.write(json.dumps({"step": 5, "split": "train", "loss": 9.0, "lr": 0.1}) + "\n")
    train(_config(text_file, tmp_path, resume=True))
    records, rows = _jsonl(tmp_path), _csv(tmp_path)
    assert [(r["step"], r["split"]) for r in rows] == [(str(r["step"]), r["split"]) for r in records]
    assert all(r["loss"] != "9.0" for r in rows)              # the crashed record is gone from both
    for rec, row in zip(records, rows):
        assert float(row["loss"]) == rec["loss"]
        assert row.get("lr", "") == ("" if "lr" not in rec else repr(rec["lr"]))
    assert list(rows[0])[:3] == ["step", "split", "loss"]


def test_plot_needs_a_run_folder_and_says_so(tmp_path, capsys):
    assert cli.main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmroad plot: error: ") and "no metrics.jsonl here" in err


def test_plot_without_matplotlib_names_it(text_file, tmp_path, capsys, monkeypatch):
    train(_config(text_file, tmp_path, max_iters=2))
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # `import matplotlib` fails now
    assert cli.main(["plot", str(tmp_path)]) == 1
    assert "plotting a run needs matplotlib" in capsys.readouterr().err
    assert (tmp_path / "metrics.csv").is_file()               # the CSV is written all the same


@pytest.mark.skipif(not HAVE_MPL, reason="drawing needs matplotlib (the extras extra)")
def test_plot_draws_the_curves_and_train_draws_them_at_the_end(text_file, tmp_path, capsys):
    train(_config(text_file, tmp_path / "a"))
    assert cli.main(["plot", str(tmp_path / "a"), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)
    flags = ["--model", "lstm", "--data", str(text_file), "--max-iters", "2", "--batch-size", "4",
             "--block-size", "16", "--n-embd", "8", "--hidden-size", "16", "--progress", "none"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "metrics.png").read_bytes().startswith(PNG_MAGIC)
    assert cli.main(["train", *flags, "--out", str(tmp_path / "c"), "--no-plot"]) == 0
    assert not (tmp_path / "c" / "metrics.png").exists() and (tmp_path / "c" / "metrics.csv").exists()

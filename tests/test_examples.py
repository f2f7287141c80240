"""Every example in examples/ runs with its tiny settings (``--quick``), offline, in a subprocess.

Together they take a few seconds of CPU; each gets a generous timeout so a slow
shared machine does not fail them."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))


def test_the_progression_is_complete():
    names = [p.name for p in EXAMPLES]
    assert names[:6] == ["01_autograd_basics.py", "02_seed_rnn_done_right.py", "03_char_lstm.py",
                         "04_baby_gpt.py", "05_new_layer.py", "06_graph_viz.py"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_quick(path, tmp_path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", LMROAD_CACHE=str(tmp_path / "cache"))
    args = [sys.executable, str(path), "--quick", "--device", "cpu", "--threads", "1"]
    if path.name == "06_graph_viz.py":
        args += ["--out", str(tmp_path / "graph")]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip()
    if path.name == "06_graph_viz.py":
        assert (tmp_path / "graph" / "rnn_forward.dot").read_text().startswith("digraph")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_takes_threads(path, tmp_path):
    """Every example shares examples/_common.py's flags: --device, --quick and --threads."""
    proc = subprocess.run([sys.executable, str(path), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = " ".join(proc.stdout.split())
    assert "--device" in text and "--quick" in text and "--threads N" in text and "default 1" in text
    bad = subprocess.run([sys.executable, str(path), "--threads", "0"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--threads" in bad.stderr and "positive integer" in bad.stderr

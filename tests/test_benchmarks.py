"""Every side-by-side benchmark script runs with its tiny settings (``--smoke``:
a tiny model, one repetition, minigrad only even when PyTorch is installed) in
a subprocess, and its stdout is JSON lines a program can read.

No timing is asserted: the figures depend on the machine. Together the runs
take a few seconds."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

SCRIPTS = {
    "gpt": (["gpt.py", "--smoke", "--profile"], {"gpt-smoke", "gpt-smoke-profile"}),
    "lstm": (["lstm.py", "--smoke"], {"lstm"}),
    # the device path that benchmarks/gpu_check.sh takes with --device cuda, on the strict fake device
    "gpt-device": (["gpt.py", "--smoke", "--device", "fake"], {"gpt-smoke"}),
    "gpt-no-kernels": (["gpt.py", "--smoke", "--device", "fake", "--no-kernels"], {"gpt-smoke"}),
    "lstm-device": (["lstm.py", "--smoke", "--device", "fake"], {"lstm"}),
    "rnn": (["lstm.py", "--smoke", "--cell", "rnn"], {"rnn"}),
    "gru": (["lstm.py", "--smoke", "--cell", "gru"], {"gru"}),
    "scaling": (["scaling.py", "--smoke"], {"gpt-scaling"}),
    "memory": (["memory.py", "--smoke"], {"memory-gpt-smoke", "memory-lstm-smoke"}),
}


def test_cpu_kernels_benchmark_times_each_op_both_ways(tmp_path):
    pytest.importorskip("numba", reason='needs numba (pip install -e ".[fast]")')
    rows = _run(["cpu_kernels.py", "--smoke"], tmp_path)
    assert len(rows) == 5 and all(r["bench"] == "cpu-kernels" for r in rows)
    for r in rows:
        assert {"numpy", "minigrad", "copy"} <= set(r["ms"]) and all(v > 0 for v in r["ms"].values())


def _run(args: list[str], tmp_path) -> list[dict]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", LMROAD_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"{args} printed nothing on stdout"
    return [json.loads(line) for line in lines]          # every stdout line is one JSON object


@pytest.mark.parametrize("name", SCRIPTS, ids=list(SCRIPTS))
def test_benchmark_script_prints_json_lines(name, tmp_path):
    args, benches = SCRIPTS[name]
    rows = _run(args, tmp_path)
    assert {r["bench"] for r in rows} == benches
    measured = [r for r in rows if r.get("framework") is not None]
    # --smoke: no PyTorch; the CPU iterations also time their own products alone in NumPy
    floor = {"numpy_matmul_floor"} if name in ("gpt", "lstm", "rnn", "gru") else set()
    assert measured and {r["framework"] for r in measured} == {"minigrad"} | floor
    ratios = [r for r in rows if "ratio" in r]
    assert ratios and all(set(r["ratio"]) == {f"minigrad/{f}" for f in floor} for r in ratios)
    for r in ratios:
        assert all(v > 0 for v in r["ratio"].values())
    for r in measured:
        if r["framework"] == "numpy_matmul_floor":
            assert r["ms"]["median"] > 0
            continue
        if name == "memory":
            assert r["peak_rss_mb"] > 0 and r["steps"] == 1
        else:
            assert r["ms"]["min"] <= r["ms"]["median"] <= r["ms"]["max"]
            assert r["config"]["dtype"] == "float32" and r["config"]["threads"] == 1
            assert r["tokens_per_s"] > 0
        if "first_loss" in r:
            assert 0 < r["first_loss"] < 10                                 # ~ln(65) = 4.17 at the start


def test_cuda_graph_flag_without_a_cuda_device_is_refused_by_name(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "gpt.py"), "--smoke", "--cuda-graph"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode != 0 and "--cuda-graph needs --device cuda" in proc.stderr


def test_gpu_check_script_dry_run_on_the_fake_device(tmp_path):
    """benchmarks/gpu_check.sh is meant for one precious call on a lent GPU: its plumbing
    (tests, every benchmark's flags, the summary) runs here on the fake device first."""
    env = dict(os.environ, GPU_CHECK_DEVICE="fake", OUT=str(tmp_path / "out"), PYTHON=sys.executable,
               OPENBLAS_NUM_THREADS="1", LMROAD_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = proc.stdout.split("== summary", 1)[1].splitlines()[1:]
    rows = {line.split()[0]: line for line in summary if line.strip()}
    for name in ("gpt", "gpt-medium", "lstm", "gpt-no-kernels"):
        assert "minigrad" in rows[name] and " ms" in rows[name], rows
    assert "no result" in rows["gpt-cuda-graph"]          # CUDA only: not run on the fake device


def test_threads_benchmark_times_one_and_two_threads_idle_and_busy(tmp_path):
    rows = _run(["threads.py", "--smoke"], tmp_path)
    timed = [r for r in rows if r["bench"] == "threads"]
    assert {(r["condition"], r["threads"]) for r in timed} == {("idle", 1), ("idle", 2), ("busy", 1),
                                                                ("busy", 2)}
    assert all(r["ms"]["median"] > 0 and r["busy"] == (None if r["condition"] == "idle" else "python")
               for r in timed)
    (ratio,) = [r for r in rows if r["bench"] == "threads-ratio"]
    assert set(ratio["ratio"]) == {"smoke/idle", "smoke/busy"} and ratio["threads"] == [1, 2]
    blas = [b for b in timed[0]["env"].get("blas", []) if b["user_api"] == "blas"]
    assert blas and blas[0]["internal_api"]                  # the BLAS kernel is recorded


def test_distributed_benchmark_measures_one_and_two_ranks_and_checks_its_model(tmp_path):
    pytest.importorskip("mpi4py", reason='needs mpi4py and mpich: pip install -e ".[distributed]"')
    rows = _run(["distributed.py", "--smoke"], tmp_path)
    runs = {r["ranks"]: r for r in rows if r["bench"] == "distributed"}
    assert set(runs) == {1, 2}
    for r in runs.values():
        assert all(r[mode]["median_s"] > 0 for mode in ("compute", "flat", "buckets"))
        assert r["grad_bytes"] > 0 and r["buckets"]["buckets"] > r["flat"]["buckets"] == 1
    assert runs[2]["allreduce_sweep_s"] and runs[2]["allreduce_grad_s"] > 0
    (check,) = [r for r in rows if r["bench"] == "distributed-model-check"]
    assert check["ranks"] == 2 and check["bandwidth_Bps"] > 0 and abs(check["error"]) < 1.0
    model = [r for r in rows if r["bench"] == "distributed-model"]
    assert {r["network"] for r in model} == {"10 GbE", "100 Gb InfiniBand", "NVLink (NCCL)"}
    for r in model:        # efficiency falls (or stays) as N grows, and never exceeds 1
        eff = [r["efficiency"][str(n)] for n in (2, 4, 8, 16, 32, 64, 128, 256)]
        assert all(0 < e <= 1 for e in eff) and eff == sorted(eff, reverse=True)


def test_gpt2_agreement_compares_an_imported_gpt2_with_hugging_face(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    (row,) = _run(["gpt2_agreement.py", "--smoke"], tmp_path)
    assert row["bench"] == "gpt2-agreement" and row["max_abs_logit_diff"] < 1e-4
    assert row["greedy_identical"] and row["argmax_agreement"] == 1.0


def test_bpe_benchmark_times_ours_and_hf_and_checks_they_agree(tmp_path):
    rows = _run(["bpe.py", "--smoke"], tmp_path)
    timed = {r["framework"]: r for r in rows if r["bench"] == "bpe"}
    (check,) = [r for r in rows if r["bench"] == "bpe-ratio"]
    assert check["config"]["vocab_size"] == 300 and check["config"]["tokens"] > 0
    assert all(v > 0 for phase in timed["lmroad"]["s"].values() for v in phase.values())
    if "hf_tokenizers" in timed:                    # HF tokenizers installed (the dev extra)
        assert check["same_merges"] is True and check["same_ids"] is True
        assert set(check["ratio"]["lmroad/hf_tokenizers"]) == {"train", "encode"}

#!/usr/bin/env bash
# The GPU check, in one call, for whoever has an NVIDIA GPU at hand (about 8 minutes at most):
#   1. the CUDA test marker (every op, layer and model test parametrised on the cuda device,
#      the custom kernels against their fallbacks, a replayed CUDA graph against eager steps),
#   2. the gpt, gpt-medium and lstm benchmarks on the GPU, minigrad (CuPy) against PyTorch
#      CUDA eager when a CUDA build of torch is importable; then the baby gpt again with
#      minigrad's custom kernels off (the xp fallbacks) and with its step as a CUDA graph,
#   3. minigrad.distributed, where mpi4py is installed: a one-rank NCCL all-reduce and broadcast,
#      and two ranks sharing the GPU (through host memory) training as one process,
#   4. a short table of the ratios, printed last; everything also in ${OUT:-gpu-check-out}/.
#
#   bash benchmarks/gpu_check.sh
#   GPU_CHECK_DEVICE=fake bash benchmarks/gpu_check.sh    # a dry run of the plumbing, no GPU
#
# No install step: it runs the repository in place (PYTHONPATH) with a python3 that already
# has NumPy, pytest, hypothesis, CuPy and (for the comparison) PyTorch, as the lent GPU
# machines here do; they reach no package index. Elsewhere: pip install -e ".[dev,cuda]" first.
# Never yet run on a GPU (no session had one): expect to fix small things on the first run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
py=${PYTHON:-python3}
dev=${GPU_CHECK_DEVICE:-cuda}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
smoke=""
if [ "$dev" = cuda ]; then
    "$py" - <<'PY' || { echo "gpu_check: no usable GPU, stopping"; exit 1; }
import minigrad as mg
print("minigrad.cuda.is_available():", mg.cuda.is_available(), mg.cuda.unavailable_reason())
raise SystemExit(0 if mg.cuda.is_available() else 1)
PY
else
    smoke="--smoke"     # the dry run: tiny models on the fake device, minigrad only
fi

echo "== CUDA tests (pytest -m cuda)"
HYPOTHESIS_PROFILE=ci timeout 200 "$py" -m pytest -q -m cuda -p no:cacheprovider 2>&1 \
    | tee "$out/tests.log" | tail -5

torch_flag=""
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null || {
    echo "(no CUDA build of PyTorch importable: timing minigrad alone)"; torch_flag="--no-torch"; }

bench() {   # name, time limit (s), script and flags
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$py" "benchmarks/$@" --device "$dev" $smoke $torch_flag \
        >"$out/$name.jsonl" 2>"$out/$name.txt" || echo "($name: failed or timed out, see $out/$name.txt)"
}
echo "== benchmarks on $dev"
bench gpt 60 gpt.py --repeats 20
bench gpt-medium 100 gpt.py --preset medium --repeats 5
bench lstm 60 lstm.py --repeats 5
bench gpt-no-kernels 40 gpt.py --repeats 20 --no-kernels
if [ "$dev" = cuda ]; then
    bench gpt-cuda-graph 40 gpt.py --repeats 20 --cuda-graph
fi

echo "== distributed on $dev (needs mpi4py and mpiexec; skipped without them)"
mpiexec=$(dirname "$(command -v "$py")")/mpiexec
[ -x "$mpiexec" ] || mpiexec=$(command -v mpiexec || true)
if "$py" -c "import mpi4py" 2>/dev/null && [ -n "$mpiexec" ]; then
    if [ "$dev" = cuda ]; then     # NCCL itself, one rank (NCCL refuses two ranks on one GPU)
        timeout 60 "$mpiexec" -n 1 "$py" tests/minigrad/mpi_cases.py nccl 2>&1 | tee "$out/nccl.log" | tail -3
    fi
    # two ranks sharing the one device, gradients through host memory: DDP = one big batch
    MINIGRAD_GPU_COLLECTIVES=mpi MPI_CASES_MODEL_DEVICE="$dev" timeout 120 "$mpiexec" -n 2 "$py" \
        tests/minigrad/mpi_cases.py equivalence 2>&1 | tee "$out/ddp-two-ranks.log" | tail -3
else
    echo "(no mpi4py or mpiexec: pip install mpi4py mpich to check minigrad.distributed here)"
fi

echo "== summary (ms per training iteration, median; ratio = minigrad / PyTorch CUDA eager)"
"$py" - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("gpt", "gpt-medium", "lstm", "gpt-no-kernels", "gpt-cuda-graph"):
    path = out / f"{name}.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.startswith("{")] if path.exists() else []
    times = {r["framework"]: r["ms"]["median"] for r in rows if "framework" in r}
    ratio = next((r["ratio"] for r in rows if "ratio" in r), {})
    shown = ", ".join(f"{k} {v:.1f} ms" for k, v in times.items()) or "no result (see the .txt file)"
    print(f"{name:<15} {shown}  {json.dumps(ratio)}")
PY

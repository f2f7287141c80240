#!/usr/bin/env bash
# The GPU check, in one call, for whoever has an NVIDIA GPU at hand (under ten minutes):
#   1. the CUDA test marker (every op, layer and model test parametrised on the cuda device:
#      forward and gradients against the CPU within dtype tolerances),
#   2. the gpt, gpt-medium and lstm benchmarks on the GPU, minigrad (CuPy) against PyTorch
#      CUDA eager when a CUDA build of torch is importable; then the baby gpt again with
#      minigrad's custom kernels off (the xp fallbacks) and with its step as a CUDA graph,
#   3. a short table of the ratios, printed last.
# Never yet run on a GPU (no session had one): expect to fix small things on the first run.
#
#   bash benchmarks/gpu_check.sh            # results also in ${OUT:-gpu-check-out}/
#
# CuPy: the `cuda` extra installs cupy-cuda13x; set CUPY=cupy-cuda12x for a CUDA 12 driver.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
py=${PYTHON:-python3}
if [ ! -x .gpu-venv/bin/python ]; then
    "$py" -m venv --system-site-packages .gpu-venv   # reuse a preinstalled torch/cupy if present
fi
. .gpu-venv/bin/activate
python -m pip install -q -e ".[dev]" >"$out/pip.log" 2>&1
python -c "import cupy" 2>/dev/null || python -m pip install -q "${CUPY:-cupy-cuda13x}" >>"$out/pip.log" 2>&1
python - <<'PY' || { echo "gpu_check: no usable GPU, stopping"; exit 1; }
import minigrad as mg
print("minigrad.cuda.is_available():", mg.cuda.is_available(), mg.cuda.unavailable_reason())
raise SystemExit(0 if mg.cuda.is_available() else 1)
PY

echo "== CUDA tests (pytest -m cuda)"
HYPOTHESIS_PROFILE=ci timeout 200 python -m pytest -q -m cuda -p no:cacheprovider 2>&1 | tee "$out/tests.log" | tail -5

torch_flag=""
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null || {
    echo "(no CUDA build of PyTorch importable: timing minigrad alone)"; torch_flag="--no-torch"; }

echo "== benchmarks on cuda"
timeout 90 python benchmarks/gpt.py --device cuda --repeats 20 $torch_flag >"$out/gpt.jsonl" 2>"$out/gpt.txt"
timeout 150 python benchmarks/gpt.py --device cuda --preset medium --repeats 5 $torch_flag \
    >"$out/gpt-medium.jsonl" 2>"$out/gpt-medium.txt"
timeout 90 python benchmarks/lstm.py --device cuda --repeats 5 $torch_flag >"$out/lstm.jsonl" 2>"$out/lstm.txt"
timeout 60 python benchmarks/gpt.py --device cuda --repeats 20 --no-kernels $torch_flag \
    >"$out/gpt-no-kernels.jsonl" 2>"$out/gpt-no-kernels.txt"
timeout 60 python benchmarks/gpt.py --device cuda --repeats 20 --cuda-graph $torch_flag \
    >"$out/gpt-cuda-graph.jsonl" 2>"$out/gpt-cuda-graph.txt"

echo "== summary (ms per training iteration, median; ratio = minigrad / PyTorch CUDA eager)"
python - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("gpt", "gpt-medium", "lstm", "gpt-no-kernels", "gpt-cuda-graph"):
    rows = [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines() if l.startswith("{")] \
        if (out / f"{name}.jsonl").exists() else []
    times = {r["framework"]: r["ms"]["median"] for r in rows if "framework" in r}
    ratio = next((r["ratio"] for r in rows if "ratio" in r), {})
    shown = ", ".join(f"{k} {v:.1f} ms" for k, v in times.items()) or "no result (see the .txt file)"
    print(f"{name:<15} {shown}  {json.dumps(ratio)}")
PY

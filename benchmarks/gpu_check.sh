#!/usr/bin/env bash
# One prepared run on a GPU machine: install, build the extension with CUDA, run the CUDA
# tests, the penalty benchmark (eager and CUDA-graph timing), the step benchmark with its
# levers, and a short training run.
# Usage (from the repo root): OUT=/some/folder bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gantk-gpu}
mkdir -p "$OUT"
export GANTK_EXT_DIR=/tmp/gantk-ext GANTK_LOAD_PLUGINS="" MPLBACKEND=Agg
PY=python3
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch; print(torch.__version__, torch.version.cuda)"; nproc; } 2>&1 | tee -a "$OUT/summary.txt"
log install
$PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 || tail -5 "$OUT/install.log"
log build
timeout 240 $PY -c "from gantk.ops import _ext; import json; print(json.dumps(_ext.build(verbose=False), default=str, indent=1))" > "$OUT/build.log" 2>&1
tail -30 "$OUT/build.log" | tee -a "$OUT/summary.txt" >/dev/null
log cuda-tests
timeout 200 $PY -m pytest tests/test_ext_parity.py tests/test_amp_layout.py -q -x -p no:cacheprovider > "$OUT/parity.log" 2>&1
tail -15 "$OUT/parity.log" | tee -a "$OUT/summary.txt"
log bench_penalty-graph
timeout 150 $PY benchmarks/bench_penalty.py --device cuda --graph --min-time ${MIN_TIME:-0.25} --out "$OUT" > "$OUT/bench_penalty_graph.log" 2>&1
tail -22 "$OUT/bench_penalty_graph.log" | tee -a "$OUT/summary.txt"
log bench_penalty-eager
timeout 150 $PY benchmarks/bench_penalty.py --device cuda --min-time ${MIN_TIME:-0.25} --out "$OUT" > "$OUT/bench_penalty.log" 2>&1
tail -22 "$OUT/bench_penalty.log" | tee -a "$OUT/summary.txt"
log bench_step
timeout 180 $PY benchmarks/bench_step.py --device cuda --min-time 0.3 --out "$OUT" > "$OUT/bench_step.log" 2>&1
tail -34 "$OUT/bench_step.log" | tee -a "$OUT/summary.txt"
log train
timeout 60 $PY -m gantk train --device cuda --steps 300 --out /tmp/runs --name gpu > "$OUT/train.log" 2>&1
tail -6 "$OUT/train.log" | tee -a "$OUT/summary.txt"
log done

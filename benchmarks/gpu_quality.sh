#!/usr/bin/env bash
# One prepared call on a GPU machine (about 9 minutes): the CUDA tests, and in parallel the
# quality measurements that need bf16 matrix units or more cores than a laptop has:
# bf16 against float32 (benchmarks/quality/amp_quality.py: the toy mixtures and digits,
# 3 seeds each), conditional digits (conditional_digits.py) and DiffAugment on 180 digits
# (diffaugment_digits.py). Every script appends a row per finished run, so a run cut off
# by the time limit keeps what finished. Everything lands in $OUT (results.tgz + logs).
# Usage (from the repo root): OUT=/some/folder bash benchmarks/gpu_quality.sh
set -u
OUT=${OUT:-/tmp/gantk-gpu}
LIMIT=${LIMIT:-420}   # seconds for the quality runs
mkdir -p "$OUT" /tmp/q
export GANTK_EXT_DIR=/tmp/gantk-ext GANTK_LOAD_PLUGINS="" MPLBACKEND=Agg PYTHONUNBUFFERED=1
# TensorBoard for the logger's GPU test, where the machine lacks it: pure-Python copies in
# CARRY_SITE (tensorboard, protobuf with its Python implementation, absl, six)
if [ -n "${CARRY_SITE:-}" ]; then export PYTHONPATH="$CARRY_SITE${PYTHONPATH:+:$PYTHONPATH}" PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python; fi
PY=python3
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_bf16_supported())"; nproc; git log --oneline -1; } 2>&1 | tee -a "$OUT/summary.txt"
log install
$PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 || tail -5 "$OUT/install.log"
log quality-start
export GANTK_EXT_AUTOBUILD=0  # the quality runs use the reference penalty; the tests build the extension
(timeout $LIMIT $PY benchmarks/quality/amp_quality.py --device cuda --jobs 18 --threads 1 --results /tmp/q/amp_quality.jsonl --runs /tmp/q/amp > /tmp/q/amp_quality.log 2>&1) &
(timeout $LIMIT $PY benchmarks/quality/diffaugment_digits.py --device cuda --jobs 6 --threads 1 --seeds ${DA_SEEDS:-0,1,2} --out /tmp/q/diffaugment > /tmp/q/diffaugment.log 2>&1) &
[ "${COND:-1}" = 1 ] && (timeout $LIMIT $PY benchmarks/quality/conditional_digits.py --device cuda --jobs 3 --threads 1 --runs /tmp/q/cond --json /tmp/q/conditional_digits.json > /tmp/q/conditional.log 2>&1) &
log cuda-tests
(export GANTK_EXT_AUTOBUILD=1; timeout 300 $PY -c "from gantk.ops import _ext; import json; print(json.dumps(_ext.build(verbose=False), default=str)[:2000])" > /tmp/q/build.log 2>&1
 timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_ext_parity.py tests/test_amp_layout.py tests/test_tensorboard.py tests/test_amp_fp16.py tests/test_cuda_paths.py > /tmp/q/tests.log 2>&1
 tail -25 /tmp/q/tests.log > "$OUT/tests_tail.txt") &
wait
log quality-done
for f in /tmp/q/*.log; do echo "--- $f"; tail -25 "$f"; done >> "$OUT/summary.txt"
tar czf "$OUT/results.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='checkpoints' -C /tmp q 2>/dev/null
ls -la "$OUT" | tee -a "$OUT/summary.txt"

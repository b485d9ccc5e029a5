#!/usr/bin/env bash
# The checks that need a GPU or TPU, in one run (about 14 minutes on one H100).
#
# Usage: DATA=../shared/data/webtext OUT=accelerator_checks benchmarks/accelerator_checks.sh
#
# DATA is the web text in C4's layout (train/, validation/); on a machine where
# it does not sit beside the checkout, copy it in and point DATA at the copy.
#
# Writes to $OUT: accelerator.txt (the card), exact_devices.json (tables of
# 102,400 contexts on the accelerator and the CPU, every integer compared; the
# optimised programs of each device in hlo/, the compared weights in models/),
# pytest_exact.txt (every exact-M1 test, run on the accelerator), pytest_chunked_loss.txt
# (M2's chunked objective against the whole one, compiled for the accelerator), pytest_verify_device.txt
# (the pipeline's CPU verification and its check before coding, with M1 coding on the
# accelerator), exact_m1_bench.json (exact vs float
# M1 coding symbols/s, and by lane block size), exact_m1_bench_ac.json (the same with contexts that
# grow to 256 symbols), m1_bench.json (M1 coding against matmul speed) and
# m2_bench.json (M2 tokens/s and MFU), m2_step_bench.json (the paper's 25m M2 step at batch
# 256 x 512, v=65k: tokens/s, MFU and device memory). Each step is bounded by `timeout` and a
# failed step does not stop the others; the exit status counts the failures.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
DATA=${DATA:-../shared/data/webtext}
OUT=${OUT:-accelerator_checks}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export EQINFO_WEBTEXT="$DATA"  # where the tests read the web text
failures=0

step() {  # step SECONDS FILE COMMAND...: runs COMMAND with its output in $OUT/FILE
  local seconds=$1 file=$2
  shift 2
  echo "== $file: $*"
  timeout "$seconds" "$@" > "$OUT/$file" 2>"$OUT/$file.log" || {
    echo "   failed (status $?), see $OUT/$file.log"
    failures=$((failures + 1))
  }
}

(nvidia-smi -L || "$PYTHON" -c "import jax; print(jax.devices())") > "$OUT/accelerator.txt" 2>&1
step 150 exact_devices.json "$PYTHON" -m training.m1.exact_devices \
  --text "$DATA/validation/*.jsonl.gz" --sequences 200 --seq_len 512 --hlo "$OUT/hlo" \
  --save "$OUT/models"
step 300 pytest_exact.txt "$PYTHON" -m pytest -m "not slow" tests/training/test_exact.py
step 120 pytest_chunked_loss.txt "$PYTHON" -m pytest tests/training/test_chunked_loss.py
step 120 pytest_verify_device.txt "$PYTHON" -m pytest tests/pipelines/test_verify_device.py
step 180 exact_m1_bench.json "$PYTHON" benchmarks/exact_m1_bench.py --data "$DATA" --lanes 2048 \
  --block_lanes 64,512,2048
step 120 exact_m1_bench_ac.json "$PYTHON" benchmarks/exact_m1_bench.py --data "$DATA" \
  --lanes 1024 --symbols 256 --method 'ac[v=256]'
step 150 m1_bench.json "$PYTHON" benchmarks/m1_bench.py --data "$DATA" --lanes 256,1024,4096
step 120 m2_bench.json "$PYTHON" benchmarks/m2_bench.py --sizes mini,3m --batch_size 64
step 150 m2_step_bench.json "$PYTHON" benchmarks/m2_step_bench.py --size 25m --batch_size 256 \
  --seq_len 512 --token_vocab 65536 --dtype bfloat16
echo "$failures step(s) failed"
exit "$failures"

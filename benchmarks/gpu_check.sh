#!/usr/bin/env bash
# The checks that need a GPU, in one run on a machine that has one (CI has none):
#   1. tests/test_cuda.py: CUDA results against CPU/eager ones, compiled steps, CUDA graphs;
#   2. the rest of the fast suite with CUDA as every Model's default device;
#   3. the benchmarks on the GPU (`run.py --device cuda`, one repeat, W2 first; float32 and bf16-mixed;
#      WORKLOADS=W4 for the transformer's tokens/s and MFU, PRECISIONS=32 to halve the time).
# Each part has its own time limit so that the run ends inside the lease. Logs go to $OUT (or
# ./gpu-out); the benchmark's table is the last thing printed.
#
#     bash benchmarks/gpu_check.sh            # all three
#     PARTS="tests" bash benchmarks/gpu_check.sh
set -u
out=${OUT:-gpu-out}
mkdir -p "$out"
parts=${PARTS:-"cuda suite bench"}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
$python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"

if [[ $parts == *cuda* ]]; then
  timeout "${CUDA_TESTS_S:-200}" $python -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    2>&1 | tee "$out/test_cuda.log" | tail -40
fi
if [[ $parts == *suite* ]]; then
  # the slow, multi-process tests launch CPU jobs (gloo) and are CI's; -n: the machine's many cores
  timeout "${SUITE_S:-150}" $python -m pytest -q -p no:cacheprovider -m "not slow" -n 8 tests \
    --ignore=tests/test_cuda.py 2>&1 | tee "$out/suite.log" | grep -E "^(FAILED|ERROR)|passed|failed" | tail -40
fi
if [[ $parts == *bench* ]]; then
  timeout "${BENCH_S:-330}" $python benchmarks/run.py --device cuda --workloads "${WORKLOADS:-W2,W1,W3}" \
    --precisions "${PRECISIONS:-32,bf16-mixed}" --repeats 1 --import-runs 1 >"$out/bench.md" 2>"$out/bench.log"
  cat "$out/bench.log" | cut -c1-220
  cat "$out/bench.md"
fi

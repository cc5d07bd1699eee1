#!/usr/bin/env bash
# The whole GPU check for a lent H200 (issue 4), one command, well under 8 minutes:
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on the GPU machine
#
# 1. build and install convkit for sm_90 only (pip --no-build-isolation --no-deps: that machine has no
#    internet; its python has pybind11, scikit-build-core, cmake, ninja, torch), with ptxas's register
#    and spill report kept;
# 2. the CUDA tests: every test id that runs on the device (tests/test_cuda_*.py, tests/test_device_array.py
#    and the [cuda] cases of the per-op tests);
# 3. compute-sanitizer memcheck and racecheck on a small subset;
# 4. benchmarks/bench_gpu.py (conv2d vs cuDNN, pooling/LRN vs copy bandwidth, AlexNet fwd+bwd);
# 4b. the CPU kernel tests (GEMM, conv2d, linear) on the host's own instruction set (AVX-512 there), and
#     two CPU route timings there (the narrow edge kernels, the Winograd route);
# 5. last, with what time is left: the custom-op example built with its CUDA kernels and its tests on the
#    device (tests/test_custom_op_example.py; not run on a GPU before 2026-11-28's check was written).
#
# Everything goes to benchmarks/results/gpu-<date>/ and, when $OUT is set (the device tool), to $OUT
# as well, written as it happens so a run cut short still tells something. Each stage has its own
# time limit; a failing stage is logged and the next one runs. Exit status: number of failed stages.
set -uo pipefail
cd "$(dirname "$0")/.."

STAMP=$(date +%Y%m%d-%H%M%S)
RES=benchmarks/results/gpu-$STAMP
mkdir -p "$RES"
DEST=("$RES")
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/gpu-$STAMP" && DEST+=("$OUT/gpu-$STAMP"); fi
LOG_TARGETS=()
for d in "${DEST[@]}"; do LOG_TARGETS+=("$d/log.txt"); done
exec > >(tee -a "${LOG_TARGETS[@]}") 2>&1
export PS4='+ [$(date +%H:%M:%S)] '
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
FAILED=0
T0=$(date +%s)

stage() { echo; echo "=== [$(date +%H:%M:%S), +$(( $(date +%s) - T0 ))s] $*"; }
save() { for d in "${DEST[@]:1}"; do cp -f "$@" "$d/" 2>/dev/null || true; done; }
BUDGET=${GPU_CHECK_BUDGET:-450}  # seconds for everything; stages are cut to what is left
run() {  # run LIMIT_SECONDS NAME CMD...: logs, times, counts failures
  local limit=$1 name=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  if [ "$limit" -lt 15 ]; then stage "$name: SKIPPED (time budget spent)"; FAILED=$((FAILED + 1)); return 0; fi
  stage "$name (limit ${limit}s)"
  set -x
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  { set +x; } 2>/dev/null
  if [ $rc -ne 0 ]; then FAILED=$((FAILED + 1)); echo "!!! $name failed (exit $rc)"; fi
  return 0
}

stage "machine"
set -x
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv || true
nvcc --version | tail -2 || true
grep -m1 "model name" /proc/cpuinfo || true
$PY -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" || true
{ set +x; } 2>/dev/null

# 1. build (ptxas -v output lands in the build log: registers, shared memory, spills per kernel)
run 170 "build" bash -c "$PY -m pip install --no-build-isolation --no-deps -v . \
  -Ccmake.define.CONVKIT_CUDA=ON -Ccmake.define.CONVKIT_CUDA_ARCHITECTURES=90-real \
  -Ccmake.define.CMAKE_CUDA_FLAGS=-Xptxas=-v -Cbuild-dir=build/gpu-check > '$RES/build.log' 2>&1; rc=\$?; \
  tail -n 5 '$RES/build.log'; exit \$rc"
grep -E "ptxas info|spill" "$RES/build.log" | grep -B1 -A2 -E "conv_|dense_gemm|lrn_|max_pool|softmax" \
  > "$RES/ptxas.txt" 2>/dev/null || true
save "$RES/build.log" "$RES/ptxas.txt"
# run from a directory without python/convkit so the installed package is the one imported
cd /tmp || exit 1
REPO=$OLDPWD
$PY -c "import convkit, json; print(json.dumps(convkit.info()))" || FAILED=$((FAILED + 1))
cd "$REPO"

# 2. the CUDA tests (hypothesis examples as in CI)
run 90 "cuda tests" $PY -m pytest -q -p no:cacheprovider -rs -x --junitxml="$RES/tests.xml" \
  tests/test_cuda_ops.py tests/test_device_array.py tests/test_cuda_errors.py
run 50 "per-op tests on cuda" $PY -m pytest -q -p no:cacheprovider -k "cuda" --junitxml="$RES/tests_ops.xml" \
  --ignore=tests/test_cuda_ops.py --ignore=tests/test_device_array.py --ignore=tests/test_cuda_errors.py tests
save "$RES"/tests*.xml

# 3. compute-sanitizer on a small subset (few hypothesis examples; racecheck is slow)
export CONVKIT_FUZZ_EXAMPLES=2
SUBSET="tests/test_cuda_ops.py::test_conv2d_tiles_and_phases tests/test_cuda_ops.py::test_max_pool2d_random_shapes
  tests/test_cuda_ops.py::test_softmax_family_random_shapes tests/test_cuda_ops.py::test_lrn_chunked_channels
  tests/test_cuda_ops.py::test_linear_random_shapes tests/test_device_array.py::test_reductions"
if command -v compute-sanitizer >/dev/null; then
  run 50 "compute-sanitizer memcheck" compute-sanitizer --tool memcheck --error-exitcode 1 --print-limit 20 \
    $PY -m pytest -q -p no:cacheprovider -x $SUBSET
  run 50 "compute-sanitizer racecheck" compute-sanitizer --tool racecheck --error-exitcode 1 --print-limit 20 \
    $PY -m pytest -q -p no:cacheprovider -x \
    "tests/test_cuda_ops.py::test_conv2d_tiles_and_phases[shape0-float32]" \
    "tests/test_cuda_ops.py::test_conv2d_tiles_and_phases[shape3-float64]" \
    tests/test_cuda_ops.py::test_lrn_chunked_channels tests/test_cuda_ops.py::test_cross_entropy_labels_on_device_out_of_range \
    "tests/test_device_array.py::test_reduction_nan_empty_and_threads[cuda]"
else
  echo "compute-sanitizer not found: skipped"
fi
unset CONVKIT_FUZZ_EXAMPLES

# 4. benchmarks
run 110 "bench_gpu" $PY benchmarks/bench_gpu.py --out "$RES"
save "$RES"/results.json "$RES"/results.md

# 4b. the CPU kernels on this host's instruction set: the H200 hosts lent so far have AVX-512, which no
#     other machine here has, so this is where the AVX-512 microkernels run against the float64 references
#     (CONVKIT_ISA=avx512-emulated in CI covers the paths around them, not their own instructions)
run 60 "cpu kernel tests ($($PY -c 'import convkit; print(convkit.info()["cpu_isa"])' 2>/dev/null))" \
  $PY -m pytest -q -p no:cacheprovider -m "not slow" -k "not cuda" --junitxml="$RES/tests_cpu_isa.xml" \
  tests/test_gemm.py tests/test_conv2d.py tests/test_linear.py
save "$RES"/tests_cpu_isa.xml
# and what the narrow kernels (on AVX-512: the half-width tile for AlexNet conv3-conv5's last strip of 9
# pixels) save there, interleaved against the full edge tile
run 45 "cpu narrow kernels" bash -c "cd benchmarks && $PY route_ab.py CONVKIT_GEMM_NARROW 0 1 --layers conv3,conv5 \
  --passes fwd,bwd_data --threads 1 --repeats 5 --batch 8 | tee '$REPO/$RES/cpu_narrow.txt'"
save "$RES"/cpu_narrow.txt
# and the Winograd routes (3 x 3: conv3, conv4; F(2, 5) along the rows: conv2) against the GEMM path
# there (AVX-512's 32-wide tiles cover a 13 x 13 image's 49 tiles less well than AVX2's 16-wide ones: 32 + 17)
run 50 "cpu winograd" bash -c "cd benchmarks && $PY route_ab.py CONVKIT_CONV_WINOGRAD 0 1 --layers conv2,conv3,conv4 \
  --passes fwd,bwd_data,bwd_weight --threads 2 --repeats 3 --batch 16 | tee '$REPO/$RES/cpu_winograd.txt'"
save "$RES"/cpu_winograd.txt

# 5. the custom-op example's CUDA kernels (builds the example: about a minute)
run 150 "custom op example on cuda" $PY -m pytest -q -p no:cacheprovider -rs tests/test_custom_op_example.py

stage "done: $FAILED failed stage(s), $(( $(date +%s) - T0 ))s"
for d in "${DEST[@]:1}"; do cp -rf "$RES"/. "$d/" 2>/dev/null || true; done
exit $FAILED

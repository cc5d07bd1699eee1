#!/usr/bin/env bash
# The sanitizer job (issue 10): build convkit's C++ core with AddressSanitizer + UndefinedBehavior-
# Sanitizer (CMake option CONVKIT_SANITIZE=ON, CPU only) into its own build folder and virtual
# environment, run the CPU test suite (minus @slow) under it, then a LeakSanitizer pass over a
# focused kernel loop (.ci/leak_check.cpp, the kernels linked without Python). Fails on any report.
#
#   .ci/sanitize.sh            # build + tests + leak check
#   SANITIZE_PYTEST_ARGS="tests/test_conv2d.py" .ci/sanitize.sh    # a subset of the tests
#
# Python itself is not instrumented: libasan is LD_PRELOADed (it must come first), leak detection is
# off for the Python run (the interpreter leaks by design at exit) and on for the C++ driver.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${SANITIZE_DIR:-$ROOT/build/sanitize}
PY=${PYTHON:-python3}
CXX=${CXX:-g++}
mkdir -p "$OUT"
t0=$(date +%s)

echo "== sanitizer build (ASan + UBSan, CPU only) into $OUT"
if [ ! -x "$OUT/venv/bin/python" ]; then
  "$PY" -m venv --system-site-packages "$OUT/venv"
fi
VPY="$OUT/venv/bin/python"
# The test suite's own dependencies, pyproject's [test] extra: --system-site-packages shows the base
# interpreter's packages only, not those of an environment this script runs from (a CI venv holding
# matplotlib, scikit-learn, scikit-image), and on a machine whose base Python lacks them the tests that
# draw, train on the digits or read images failed here with ModuleNotFoundError.
test_deps=$("$VPY" - <<'PYEOF'
import re
text = open("pyproject.toml", encoding="utf-8").read()
try:
    import tomllib
    deps = tomllib.loads(text)["project"]["optional-dependencies"]["test"]
except ImportError:  # Python 3.10: no tomllib; the extra is one list of quoted requirements
    deps = re.findall(r'"([^"]+)"', re.search(r"^test = \[(.*?)\]", text, re.S | re.M).group(1))
print("\n".join(deps))
PYEOF
)
# shellcheck disable=SC2086
"$VPY" -m pip install -q $test_deps
# PyTorch too, as .ci/run installs it (the tests' CPU reference): where .ci/run's pip writes into the
# base interpreter this venv already sees it, where it writes into a CI venv it does not, and the
# tests that compare against PyTorch (or time beside it) would silently skip here on one machine and
# run on another.
"$VPY" -m pip install -q "torch==2.13.0"
"$VPY" -m pip install -q --no-build-isolation --no-deps --force-reinstall \
  -Cbuild-dir="$OUT/cmake" -Ccmake.define.CONVKIT_SANITIZE=ON -Ccmake.define.CONVKIT_CUDA=OFF \
  -Ccmake.build-type=RelWithDebInfo .

LIBASAN=$("$CXX" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ] || [ "$LIBASAN" = "libasan.so" ]; then
  echo "error: $CXX -print-file-name=libasan.so found no libasan (install the compiler's ASan runtime)" >&2
  exit 1
fi
# libstdc++ is preloaded with libasan: python does not link it, and ASan's __cxa_throw interceptor
# must find the real one at startup ("CHECK failed: ... real___cxa_throw") or the first C++
# exception convkit throws aborts the process.
LIBSTDCXX=$("$CXX" -print-file-name=libstdc++.so.6)
PRELOAD="$LIBASAN $LIBSTDCXX"
# allocator_may_return_null: a request far beyond memory returns NULL (-> std::bad_alloc / numpy
# MemoryError, which the tests expect) instead of an ASan abort.
ASAN_BASE="allocator_may_return_null=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# Reports go to stderr. pytest runs with --capture=sys so that what the C++ side writes to file
# descriptor 2 reaches the log even when the process aborts mid-test; the log is then searched.
REPORT='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|AddressSanitizer: CHECK failed'


# The tests must import the instrumented build, not another installed convkit.
core=$(cd /tmp && LD_PRELOAD="$PRELOAD" ASAN_OPTIONS="detect_leaks=0:$ASAN_BASE" \
       "$VPY" -c "import convkit._core as c; print(c.__file__)")
case "$core" in
  "$OUT"/venv/*) echo "   instrumented core: $core" ;;
  *) echo "error: the sanitizer venv imports convkit from $core, not from $OUT/venv" >&2; exit 1 ;;
esac
# (the symbol list is read whole first: `nm | grep -q` under pipefail fails when grep exits early and nm
# gets SIGPIPE, which made an instrumented core look uninstrumented)
syms=$(nm -D "$core")
case "$syms" in
  *__asan_init*|*__asan_report*) ;;
  *) echo "error: $core is not instrumented with ASan" >&2; exit 1 ;;
esac
t1=$(date +%s)
echo "   build: $((t1 - t0)) s"

fail=0
echo "== CPU test suite under ASan + UBSan (not slow)"
set +e
# shellcheck disable=SC2086
LD_PRELOAD="$PRELOAD" ASAN_OPTIONS="detect_leaks=0:$ASAN_BASE" CONVKIT_SANITIZED=1 \
  "$VPY" -m pytest -q -p no:cacheprovider --capture=sys -m "not slow" ${SANITIZE_PYTEST_ARGS:-tests} 2>&1 \
  | tee "$OUT/pytest.log"
st=${PIPESTATUS[0]}
set -e
[ "$st" = 0 ] || fail=1
t2=$(date +%s)
echo "   tests: $((t2 - t1)) s"

echo "== LeakSanitizer over a kernel loop (.ci/leak_check.cpp)"
srcs=$(ls csrc/runtime.cpp csrc/ops/*.cpp csrc/gemm/*.cpp)
flags="-std=c++17 -O1 -g -fopenmp -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Icsrc"
objs=()
mkdir -p "$OUT/leak"
for s in $srcs; do
  o="$OUT/leak/$(echo "$s" | tr / _).o"
  extra=""
  case "$s" in
    *_avx512.cpp) extra="-mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma -mavx2" ;;
    *_avx2.cpp) extra="-mavx2 -mfma" ;;
  esac
  if [ ! -e "$o" ] || [ "$s" -nt "$o" ]; then
    # shellcheck disable=SC2086
    "$CXX" $flags $extra -c "$s" -o "$o"
  fi
  objs+=("$o")
done
# shellcheck disable=SC2086
"$CXX" $flags .ci/leak_check.cpp "${objs[@]}" -o "$OUT/leak/leak_check"
set +e
ASAN_OPTIONS="detect_leaks=1:$ASAN_BASE" "$OUT/leak/leak_check" 2>&1 | tee "$OUT/leak.log"
st=${PIPESTATUS[0]}
set -e
[ "$st" = 0 ] || fail=1
t3=$(date +%s)
echo "   leak check: $((t3 - t2)) s"

if grep -En "$REPORT" "$OUT/pytest.log" "$OUT/leak.log" >/dev/null; then
  echo "== sanitizer reports found:" >&2
  grep -En -A3 "$REPORT" "$OUT/pytest.log" "$OUT/leak.log" | head -100 >&2
  fail=1
fi
echo "== sanitizer job: $((t3 - t0)) s in total, $([ $fail = 0 ] && echo 'no reports' || echo FAILED)"
exit $fail

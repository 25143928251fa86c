#!/bin/sh
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz and
# runs each for SECONDS (default 60) on a copy of its committed corpus.
# Exits non-zero on any crash, leak, timeout or sanitizer report, and when
# clang is missing (unless LETHE_FUZZ_OPTIONAL=1, which skips with exit 0).
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (LETHE_MODELS: shared models)
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=${LETHE_FUZZ_BUILD:-$root/build-fuzz}
cc=${CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1 || ! "$cc" --version 2>/dev/null | grep -qi clang; then
  if [ "${LETHE_FUZZ_OPTIONAL:-0}" = 1 ]; then echo "fuzz/run.sh: SKIPPED: clang not found (LETHE_FUZZ_OPTIONAL=1)"; exit 0; fi
  echo "fuzz/run.sh: clang not found (apt-get install clang), or set LETHE_FUZZ_OPTIONAL=1 to skip" >&2
  exit 2
fi
CC=$cc cmake -S "$root" -B "$bdir" -DLETHE_FUZZ=ON -DLETHE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$bdir" -j"${LETHE_FUZZ_JOBS:-2}" --target fuzz_gguf fuzz_llama2c fuzz_tokenize fuzz_detok fuzz_forward >/dev/null
targets=${*:-"fuzz_gguf fuzz_llama2c fuzz_tokenize fuzz_detok fuzz_forward"}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
for t in $targets; do
  work=$bdir/fuzz/corpus-$t
  mkdir -p "$work" "$bdir/fuzz/artifacts"
  cp -f "$root/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
  log=$bdir/fuzz/$t.log
  echo "fuzz/run.sh: $t for ${secs}s (log $log)"
  # -timeout: one input may take at most 10 s (the quadratic cases took more)
  if "$bdir/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=3072 -max_len=8192 -print_final_stats=1 \
       -artifact_prefix="$bdir/fuzz/artifacts/$t-" "$work" >"$log" 2>&1; then
    grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units' "$log" | tr '\n' ' '; echo
  else
    echo "fuzz/run.sh: $t FAILED:" >&2
    tail -40 "$log" >&2
    status=1
  fi
done
exit $status

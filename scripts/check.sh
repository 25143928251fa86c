#!/usr/bin/env bash
# The whole test suite, the one command the README and CI run:
#   0. npm ci in tests/server (the server tests' openai client) when needed
#   1. release build + CTest
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build + CTest
#   3. cmake --install into a temporary prefix; a small program built against
#      it through pkg-config, linked shared and static, run on a model
#   4. aarch64 cross build (gcc-aarch64-linux-gnu) + its tests under qemu
#   5. fuzz/run.sh 20 when the tree has fuzz/run.sh
# With CI set, LETHE_REQUIRE_MODELS=1: a missing shared model or reference
# fails the run instead of being skipped. LETHE_SKIP_CROSS=1 leaves out
# step 4 (for a machine without the cross tools; CI never sets it).
# Build folders: build, build-san, build-aarch64 (reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${LETHE_JOBS:-2}
if [ -n "${CI:-}" ]; then export LETHE_REQUIRE_MODELS=1; fi

start=$(date +%s)
step() { printf '\n==== %s (%ds so far)\n' "$1" $(( $(date +%s) - start )); }

# the server tests' one npm package (the official openai client), pinned by
# tests/server/package-lock.json
if command -v npm >/dev/null 2>&1 && [ ! -d tests/server/node_modules/openai ]; then
    step "npm ci (tests/server)"
    (cd tests/server && npm ci --no-audit --no-fund)
fi

step "release build + tests"
cmake -S . -B build -DLETHE_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

step "ASan/UBSan build + tests"
cmake -S . -B build-san -DLETHE_SANITIZE=ON -DLETHE_WERROR=ON
cmake --build build-san -j"$jobs"
ctest --test-dir build-san --output-on-failure -j"$jobs"

step "install + pkg-config program (shared and static)"
tests/install/run.sh build

if [ "${LETHE_SKIP_CROSS:-0}" = 1 ]; then
    step "aarch64 cross build: left out (LETHE_SKIP_CROSS=1)"
else
    step "aarch64 cross build + tests under qemu"
    for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
        command -v "$tool" >/dev/null || { echo "check.sh: $tool not found (Debian: gcc-aarch64-linux-gnu qemu-user; or LETHE_SKIP_CROSS=1)"; exit 1; }
    done
    cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DLETHE_WERROR=ON
    cmake --build build-aarch64 -j"$jobs"
    ctest --test-dir build-aarch64 --output-on-failure -j"$jobs" -L "${LETHE_CROSS_LABELS:-unit}"
fi

if [ -x fuzz/run.sh ]; then
    step "fuzzing: fuzz/run.sh 20"
    fuzz/run.sh 20
fi

step "all checks passed"

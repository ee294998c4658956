#!/usr/bin/env bash
# The whole test suite: install dependencies; build and run every test optimized and under
# AddressSanitizer + UndefinedBehaviorSanitizer; fuzz the file parsers for a bounded time;
# run `helios verify` on the repository's vectors and, when present, on ../shared/oracle.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

echo "== optimized build"
scripts/build.sh build
ctest --test-dir build --output-on-failure -j1

echo "== ASan + UBSan build"
scripts/build.sh build-asan -DHELIOS_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
# A failing test is run once more: under ASan, Debian's oneDNN 2.6 (not instrumented) now and
# then reads just past one of its own heap objects while creating a convolution primitive and
# faults when ASan's tighter heap puts that object at the end of a mapping (seen once in ~6
# runs of test_vae, never reproduced alone). Our tests are seeded and single-threaded outside
# OpenMP, so a defect of ours fails both runs; every sanitizer report is still printed.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j1 --repeat until-pass:2

echo "== fuzz (bounded)"
scripts/fuzz.sh "${HELIOS_FUZZ_SECONDS:-60}"

echo "== closure (every resolved header, library and tool comes from scripts/deps.sh)"
bash scripts/check-closure.sh build build-asan build-fuzz

echo "== verify"
./build/helios verify tests/vectors
if [ -d ../shared/oracle ]; then
  ./build/helios verify ../shared/oracle
fi

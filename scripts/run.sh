#!/usr/bin/env bash
# The main job: install dependencies, build, check the engine against the reference vectors the
# repository carries, and benchmark it on this machine; ends with a short summary. The full
# outputs go to build/run/ (deps, build and verify logs, bench lines).
#
# usage: scripts/run.sh [--full]     --full: the bench also times the umT5-XXL encode and the
#                                    VAE decode (several minutes more)
set -euo pipefail
cd "$(dirname "$0")/.."
bench_args=()
case ${1:-} in
'') ;;
--full) bench_args+=(--full) ;;
*) echo "usage: scripts/run.sh [--full]" >&2; exit 2 ;;
esac
t0=$(date +%s)
out=build/run
step() { echo "== $*"; }

step "dependencies (scripts/deps.sh)"
deps=$(scripts/deps.sh | tail -n 1)
echo "$deps"

step "build (build/)"
mkdir -p "$out"
tb=$(date +%s)
if ! scripts/build.sh build >"$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    echo "run: build failed (full log: $out/build.log)" >&2
    exit 1
fi
tb=$(($(date +%s) - tb))
echo "built build/helios in ${tb} s"

step "verify (./build/helios verify tests/vectors)"
if ! ./build/helios verify tests/vectors >"$out/verify.txt" 2>&1; then
    grep -E 'FAIL|error' "$out/verify.txt" | head -n 20 >&2 || true
    tail -n 1 "$out/verify.txt" >&2
    echo "run: verification failed (every case: $out/verify.txt)" >&2
    exit 1
fi
verified=$(tail -n 1 "$out/verify.txt")
echo "$verified"

step "bench (./build/helios bench ${bench_args[*]:-})"
./build/helios bench "${bench_args[@]}" 2>&1 | tee "$out/bench.txt"

echo
echo "== summary ($(($(date +%s) - t0)) s)"
echo "deps:    ${deps#deps: }"
echo "build:   build/helios (Release), ${tb} s"
echo "verify:  tests/vectors: $verified"
grep -E '^(cpu|peak|baseline|block|umt5|vae|tiny)' "$out/bench.txt" | grep -v 'memory' | sed 's/^/bench:   /'
echo "outputs: $out/ (build.log, verify.txt, bench.txt)"

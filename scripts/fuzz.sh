#!/usr/bin/env bash
# Fuzzes the readers of untrusted input (safetensors headers, JSON) with libFuzzer under ASan +
# UBSan, SECONDS per target (both run at once). Builds with clang in build-fuzz/. The corpus grows
# in build-fuzz/corpus/ (seeded from fuzz/corpus/); crashing inputs land in build-fuzz/artifacts/.
# Exits non-zero if any target found a crash, leak or failed invariant.
#
# usage: scripts/fuzz.sh [SECONDS]     (default 60)
set -euo pipefail

secs=${1:-60}
case $secs in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
targets=(safetensors json)

CC=clang cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DHELIOS_FUZZ=ON -DHELIOS_NATIVE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

pids=()
for t in "${targets[@]}"; do
    corpus=$build/corpus/$t
    artifacts=$build/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    cp "$root/fuzz/corpus/$t/"* "$corpus/" # the seeds join whatever earlier runs found
    "$build/fuzz/fuzz_$t" -max_total_time="$secs" -dict="$root/fuzz/fuzz.dict" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 "$corpus" >"$build/fuzz_$t.log" 2>&1 &
    pids+=($!)
done

status=0
for i in "${!targets[@]}"; do
    t=${targets[$i]}
    log=$build/fuzz_$t.log
    if wait "${pids[$i]}"; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz_$t: ${secs}s, ${runs:-?} executions, corpus $(ls "$build/corpus/$t" | wc -l) files, no crash"
    else
        status=1
        echo "fuzz_$t: FAILED (see $log; inputs in $build/artifacts/$t/)" >&2
        grep -E 'ERROR|SUMMARY|Test unit written' "$log" >&2 || tail -n 30 "$log" >&2
    fi
done
exit $status

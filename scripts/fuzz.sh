#!/usr/bin/env bash
# Fuzzes every parser of user files with libFuzzer under ASan + UBSan, SECONDS per target, two
# targets at a time (HELIOS_FUZZ_JOBS): six targets x 60 s = about 3 minutes of fuzzing, plus the
# build. Builds with clang in build-fuzz/. Each corpus grows in build-fuzz/corpus/<target>/ (seeded
# from fuzz/corpus/<target>/); crashing inputs land in build-fuzz/artifacts/<target>/. Prints per
# target the executions, the coverage (libFuzzer's final cov: figure) and the corpus size. Exits
# non-zero if any target found a crash, leak, hang or failed invariant.
#
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS defaults to $HELIOS_FUZZ_SECONDS, else 60;
#                                                TARGET: spm, config, ... (default: all)
set -euo pipefail

secs=${1:-${HELIOS_FUZZ_SECONDS:-60}}
case $secs in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
jobs=${HELIOS_FUZZ_JOBS:-2}
# Every parser of user files: safetensors headers, JSON, spiece.model, tokenizer.json, prompt
# cleaning, and (config) the transformer / VAE / UMT5 / scheduler configs, model_index.json and
# the sharded index.
targets=(safetensors json spm tokenizer_json prompt config)
if [ $# -gt 0 ]; then targets=("$@"); fi

CC=clang cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DHELIOS_FUZZ=ON -DHELIOS_NATIVE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

# Runs one target; its exit status goes to build-fuzz/fuzz_T.rc.
run_one() {
    local t=$1 corpus=$build/corpus/$1 artifacts=$build/artifacts/$1 dict=$root/fuzz/$1.dict
    [ -f "$dict" ] || dict=$root/fuzz/fuzz.dict
    mkdir -p "$corpus" "$artifacts"
    cp "$root/fuzz/corpus/$t/"* "$corpus/" # the seeds join whatever earlier runs found
    local rc=0
    # -timeout: an input that runs 10 s is a hang, reported as a failure like a crash
    "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -dict="$dict" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 "$corpus" >"$build/fuzz_$t.log" 2>&1 || rc=$?
    echo $rc >"$build/fuzz_$t.rc"
}

start=$SECONDS
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
wait

status=0
for t in "${targets[@]}"; do
    log=$build/fuzz_$t.log
    if [ "$(cat "$build/fuzz_$t.rc" 2>/dev/null || echo 1)" = 0 ]; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/\1 (ft \2)/p')
        printf 'fuzz_%-15s %ss, %9s executions, cov %s, corpus %s files, no crash\n' "$t" "$secs" \
            "${runs:-?}" "${cov:-?}" "$(ls "$build/corpus/$t" | wc -l)"
    else
        status=1
        echo "fuzz_$t: FAILED (see $log; inputs in $build/artifacts/$t/)" >&2
        grep -E 'ERROR|SUMMARY|Test unit written|runtime error' "$log" >&2 || tail -n 30 "$log" >&2
    fi
done
echo "fuzzing took $((SECONDS - start)) s (${#targets[@]} targets, $jobs at a time)"
exit $status

#!/bin/sh
# helios bench --only e2e on the tiny random model folder (a Distilled folder: sizes in
# multiples of 64): the e2e line with every field of the split and positive numbers, the ops
# line, no temporary MP4 left behind; a missing --model exits 1 naming the folder. Then --only
# pack, --only tiny and --only block.
# usage: test_bench_e2e.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"

TMPDIR=$T $H bench --only e2e --model "$M" --seconds 2 --width 128 --height 64 >"$T/out" 2>"$T/err"
rc=$?
check "e2e: exit 0" "[ $rc = 0 ]"
line=$(grep '^e2e: ' "$T/out")
echo "$line"
check "e2e: one line" "[ \$(grep -c '^e2e: ' $T/out) = 1 ]"
# 2 s at 24 fps = 48 frames: 2 chunks of 33, trimmed to 4k + 1 = 65
check "e2e: model, size and frames" \
    "printf '%s' \"\$line\" | grep -qE '^e2e: tiny-random-model 128x64 65 frames \\(2\\.7 s of video, 2 chunks'"
check "e2e: frames/s and the target" \
    "printf '%s' \"\$line\" | grep -qE ' in [0-9.]+ s = [0-9.]+ frames/s \\(target 24: (met|not met)\\)'"
# every time and count of the split, and both peak RSS readings (the video is under a minute)
for f in 'text [0-9.]+ s \(1 prompt\)' 'transformer [0-9.]+ s \([0-9]+ calls\)' \
    'sampler [0-9.]+ s \([0-9]+ steps\)' 'vae decode [0-9.]+ s \(2 chunks\)' \
    'video encode [0-9.]+ s' 'other -?[0-9.]+ s' 'peak RSS at 1 min - \(the video is shorter\)' \
    'at end [0-9]+ MiB' 'MP4 [0-9]+ KiB'; do
    check "e2e: field '$f'" "printf '%s' \"\$line\" | grep -qE '$f'"
done
# positive: the wall time, frames/s, the transformer, the decode, the encode, the RSS, the MP4
pos() {
    v=$(printf '%s' "$line" | sed -nE "s|.*$1.*|\\1|p")
    [ -n "$v" ] && awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }'
}
for f in ' in ([0-9.]+) s =' '= ([0-9.]+) frames/s' 'transformer ([0-9.]+) s' \
    'transformer [0-9.]+ s \(([0-9]+) calls' 'vae decode ([0-9.]+) s' 'video encode ([0-9.]+) s' \
    'at end ([0-9]+) MiB' 'MP4 ([0-9]+) KiB'; do
    check "e2e: positive '$f'" "pos '$f'"
done
check "e2e ops: the share inside the ops" \
    "grep -qE '^e2e ops: [0-9]+% of the wall time inside the ops \\([0-9.]+ s.*, [0-9]+ op calls' $T/out"
check "e2e ops: the largest ops" "grep -qE '^e2e ops: .*; (linear|conv3d|attention_biased) [0-9.]+ s in [0-9]+' $T/out"
check "e2e: the temporary MP4 is removed" "[ -z \"\$(ls $T | grep helios-bench)\" ]"

fails "e2e: a missing --model names the folder" 1 "$T/no-such-model" \
    $H bench --only e2e --model "$T/no-such-model" --seconds 1
fails "e2e: --width 100 (not a multiple of 64)" 1 "width 100 must be a multiple of 64" \
    $H bench --only e2e --model "$M" --seconds 1 --width 100
fails "e2e: --seconds 0" 2 "--seconds '0' is out of range" $H bench --only e2e --model "$M" --seconds 0

# --only pack: stage 2's four level samples in turn vs packed (a small block, one rep)
$H bench --only pack --dim 64 --heads 2 --ffn 128 --text 8 --reps 1 >"$T/pack" 2>"$T/pack.err"
check "pack: the shape line (64x64: 49, 76, 76, 184 tokens, history 40)" \
    "grep -q '^pack: stage 2 at 64x64 (latent 8x8), .* 4 level samples of 49, 76, 76, 184 tokens (history 40 each), 385 packed' $T/pack"
check "pack: in turn (each sample) and packed in ms" \
    "grep -qE '^pack: in turn [0-9.]+ ms \\(([0-9.]+( \\+ )?){4}\\) \\| packed, variable-length attention [0-9.]+ ms \\([0-9.]+x\\)$' $T/pack"
check "pack: the stage-2 step of the shipped model in turn and packed" \
    "grep -qE '^pack: model .*helios-tiny, stage-2 step \\(4 level samples, 385 tokens, no recomputation\\): in turn [0-9.]+ ms \\([0-9.]+ MiB of activations\\) \\| packed [0-9.]+ ms' $T/pack"
check "pack: a verdict" "grep -qE '^pack: (packing pays|in turn is faster|no difference)' $T/pack"
fails "pack: --width 96 (not 3 levels of 2x2 patches)" 2 "multiples of 64" \
    $H bench --only pack --dim 64 --heads 2 --width 96

# --only tiny: quiet, then beside the second process it starts, then the scheduler's ceiling;
# the spinner does not outlive the bench (the arguments in this order mark its command line)
$H bench --only tiny --reps 1 --tiny-model "$M" >"$T/tiny" 2>"$T/tiny.err"
check "tiny: exit 0" "[ $? = 0 ]"
check "tiny: the quiet run" "grep -qE '^tiny 256x128: 33 frames in 1 chunk: [0-9.]+ s' $T/tiny"
check "tiny: the shared run against the target" \
    "grep -qE '^tiny shared with one busy process: [0-9.]+ s, [0-9.]+ frames/s, [0-9.]+x the quiet run \\(target <= 1.5x\\)$' $T/tiny"
check "tiny: the scheduler's ceiling at four region lengths" \
    "grep -qE '^scheduler ceiling, .*:( [0-9.]+ ms [0-9.]+x,){3} 100 ms [0-9.]+x$' $T/tiny"
check "tiny: one thread beside the busy process" \
    "grep -qE '^tiny shared, one thread: [0-9.]+ s, [0-9.]+ frames/s, [0-9.]+x the quiet run$' $T/tiny"
left=0
for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- '--only tiny --reps 1 --tiny-model' && left=$((left + 1))
done
check "tiny: no second process left running" "[ $left = 0 ]"

# --only block on a small shape: quoted against the peak of the run's start and against the
# peak measured beside each of its runs
$H bench --only block --dim 64 --heads 2 --ffn 128 --text 8 --tokens 64 --gemm 256 --reps 3 \
    >"$T/block" 2>"$T/block.err"
check "block: exit 0" "[ $? = 0 ]"
check "block: against the peak of the run's start" \
    "grep -qE '^block (bf16|f32): [0-9]+ GFLOP/s, [0-9]+% of peak [0-9]+ GFLOP/s \\([a-z0-9-]+\\), [0-9]+% of the library baseline$' $T/block"
check "block: against the peak beside each run" \
    "grep -qE '^block (bf16|f32): [0-9]+% of the peak measured beside each run \\(median of 3, [0-9]+-[0-9]+%\\)$' $T/block"

echo "$((n - fail))/$n passed"
[ $fail -eq 0 ]

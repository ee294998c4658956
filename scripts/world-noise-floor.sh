#!/usr/bin/env bash
# world-noise-floor.sh [HELIOS] [SECONDS] [SIZE] [SEEDS] [FORMAT] — the tiny world's own variation
# for every `helios eval` metric: renders one clip per seed (SECONDS long, SIZE x SIZE, as FORMAT:
# mp4 or y4m) in two settings -- "fixed" (--no-events: one scene, as one prompt should give) and
# "events" (objects enter and leave, the background turns) -- evaluates each against its own
# ground truth, and prints a Markdown table of the mean, standard deviation and maximum over the
# seeds. Defaults: build/helios, 600 s, 64, 8 seeds, mp4. Clips go to a temporary directory.
set -euo pipefail
H=${1:-build/helios} SECONDS_=${2:-600} SIZE=${3:-64} SEEDS=${4:-8} FMT=${5:-mp4}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for mode in fixed events; do
    for ((s = 1; s <= SEEDS; s++)); do
        extra=""
        [ $mode = fixed ] && extra=--no-events
        "$H" world -q --seed "$s" $extra --seconds "$SECONDS_" --width "$SIZE" --height "$SIZE" \
            -o "$T/clip.$FMT" --truth "$T/clip.jsonl"
        "$H" eval "$T/clip.$FMT" --truth "$T/clip.jsonl" --json | sed "s/^/$mode /" >> "$T/results"
        rm -f "$T/clip.$FMT" "$T/clip.jsonl"
    done
done
echo "| metric | fixed: mean | fixed: sd | fixed: max | events: mean | events: sd | events: max |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
awk '
{
    mode = $1; line = substr($0, length(mode) + 2)
    gsub(/[{}]/, "", line); n = split(line, kv, ",")
    for (i = 1; i <= n; i++) {
        split(kv[i], p, ":"); key = p[1]; gsub(/"/, "", key); val = p[2]
        if (key == "video" || key == "width" || key == "height" || key == "chunk" || key == "fps") continue
        if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
        if (val == "null") continue
        c[mode, key]++; s[mode, key] += val; q[mode, key] += val * val
        if (!((mode, key) in mx) || val > mx[mode, key]) mx[mode, key] = val
    }
}
END {
    for (k = 1; k <= nk; k++) {
        key = order[k]; row = "| " key
        split("fixed events", modes, " ")
        for (m = 1; m <= 2; m++) {
            md = modes[m]
            if (c[md, key] == 0) { row = row " | n/a | n/a | n/a"; continue }
            mean = s[md, key] / c[md, key]; v = q[md, key] / c[md, key] - mean * mean
            row = row sprintf(" | %.4g | %.4g | %.4g", mean, v > 0 ? sqrt(v) : 0, mx[md, key])
        }
        print row " |"
    }
}' "$T/results"

#!/bin/sh
# helios generate end to end on the tiny random model folder: T2V, I2V and V2V MP4s that ffprobe
# reads with the right frame count and fps, Y4M and PNG outputs, and clean failures.
# usage: test_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0 n=0
check() { # name, condition (a shell command)
    n=$((n + 1))
    if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=$((fail + 1)); fi
}
frames() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1"; }
fps() { ffprobe -v error -select_streams v:0 -show_entries stream=r_frame_rate -of csv=p=0 "$1"; }
G="$H generate -q -m $M --width 128 --height 64"

$G -p "a red ball bouncing" --frames 99 -o "$T/t2v.mp4" 2>/dev/null
check "t2v: 99 frames asked, 97 written (4k+1)" "[ \"\$(frames $T/t2v.mp4)\" = 97 ]"
check "t2v: 24 fps" "[ \"\$(fps $T/t2v.mp4)\" = 24/1 ]"
check "t2v: no .part left" "[ ! -e $T/t2v.mp4.part ]"
ffmpeg -v error -i "$T/t2v.mp4" -vframes 1 "$T/first.png"
$G -p "the ball rolls away" --image "$T/first.png" --chunks 2 -o "$T/i2v.mp4" 2>/dev/null
check "i2v: 2 chunks = 65 frames" "[ \"\$(frames $T/i2v.mp4)\" = 65 ]"
$G -p "the ball keeps bouncing" --video "$T/t2v.mp4" --chunks 2 -o "$T/v2v.mp4" 2>/dev/null
check "v2v: 2 chunks = 65 frames" "[ \"\$(frames $T/v2v.mp4)\" = 65 ]"
$G -p "a red ball" --chunks 1 -o "$T/out.y4m" 2>/dev/null
check "y4m: header" "head -c 9 $T/out.y4m | grep -q YUV4MPEG2"
$G -p "a red ball" --chunks 1 -o - 2>/dev/null > "$T/stdout.y4m"
check "y4m on stdout" "[ \$(grep -c FRAME $T/stdout.y4m) -ge 33 ]"
$G -p "a red ball" --chunks 1 -o "$T/png/" 2>/dev/null
check "png frames: 33 files" "[ \$(ls $T/png | wc -l) = 33 ]"
$G -p "a red ball" --chunks 1 --sampler euler -o "$T/euler.mp4" 2>/dev/null
check "--sampler euler override: 33 frames" "[ \"\$(frames $T/euler.mp4)\" = 33 ]"
check "bad sampler fails" "! $G -p x --sampler foo -o $T/x.mp4 2>/dev/null"
check "bad size fails" "! $G -p x --width 100 -o $T/x.mp4 2>/dev/null"
check "missing model fails, named" "$H generate -q -m $T/nope -p x -o $T/x.mp4 2>&1 | grep -q nope"
check "unreadable image fails, named" "echo garbage > $T/bad.png; $G -p x --image $T/bad.png -o $T/x.mp4 2>&1 | grep -q bad.png"
check "video shorter than a chunk fails" "$G -p x --video $T/first.png -o $T/x.mp4 2>&1 | grep -q 'fewer than one chunk'"
check "no output file after a failure" "[ ! -e $T/x.mp4 ] && [ ! -e $T/x.mp4.part ]"
check "helios --version" "$H --version | grep -q '^helios [0-9]*\.[0-9]*\.[0-9]*$'"
echo "$((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]

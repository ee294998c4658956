#!/bin/sh
# helios world and helios eval end to end: --help, byte-identical output for a seed, captions and
# truth files, an eval table and JSON, and clean failures naming the file.
# usage: test_world_cli.sh HELIOS_BINARY
set -u
H=$1
. "$(dirname "$0")/cli_lib.sh"
W="$H world -q --width 64 --height 48"

check "world --help" "$H world --help | grep -q 'usage: helios world'"
check "eval --help" "$H eval --help | grep -q 'usage: helios eval'"
$W --seed 4 --frames 70 -o "$T/a.y4m" --truth "$T/a.jsonl" --captions "$T/a.txt"
$W --seed 4 --frames 70 -o "$T/b.y4m" --truth "$T/b.jsonl"
check "same seed, same bytes" "cmp -s $T/a.y4m $T/b.y4m && cmp -s $T/a.jsonl $T/b.jsonl"
check "one truth line per frame" "[ \$(wc -l < $T/a.jsonl) = 70 ]"
check "captions start at frame 0" "head -1 $T/a.txt | grep -q '^0	a '"
check "no .part left" "[ ! -e $T/a.y4m.part ] && [ ! -e $T/a.jsonl.part ]"
$W --seed 4 --seconds 1 -o "$T/png/"
check "png frames: 24 files for 1 s" "[ \$(ls $T/png | wc -l) = 24 ]"
check "eval table" "$H eval $T/a.y4m --truth $T/a.jsonl --reference-seeds 1 | grep -q '^semantic_accuracy'"
check "eval --json and --plot" "$H eval $T/a.y4m --truth $T/a.jsonl --json --plot $T/p.png | grep -q '\"freezing\":' && [ -s $T/p.png ]"
check "eval --sheet: 8 frames spread by default" "$H eval $T/a.y4m --sheet $T/s.png >/dev/null && [ -s $T/s.png ] && [ ! -e $T/s.png.part ]"
$W --seed 4 --frames 70 -o "$T/s.mp4"
check "eval --sheet-at on an MP4" "$H eval $T/s.mp4 --sheet $T/s2.png --sheet-at 0,1,2.5,60 >/dev/null && [ -s $T/s2.png ]"
check "eval --sheet-at: a bad time refused, exit 2" "$H eval $T/a.y4m --sheet $T/s3.png --sheet-at 1,,2 2>$T/err; [ \$? -eq 2 ] && grep -q sheet-at $T/err && [ ! -e $T/s3.png ]"
check "eval --sheet-at without --sheet refused" "! $H eval $T/a.y4m --sheet-at 1 2>/dev/null"
check "eval --sheet unwritable: exit 1, named" "$H eval $T/a.y4m --sheet $T/no/s.png >/dev/null 2>$T/err; [ \$? -eq 1 ] && grep -q no/s.png $T/err"
$H world -q --tokenizer "$T/t1.model" && $H world -q --tokenizer "$T/t2.model"
check "tokenizer: written, same bytes twice" "[ -s $T/t1.model ] && cmp -s $T/t1.model $T/t2.model && [ ! -e $T/t1.model.part ]"
check "tokenizer: summary names the pieces" "$H world --tokenizer $T/t3.model 2>&1 | grep -q 'tokenizer of [0-9]* pieces'"
$W --seed 4 --frames 70 -o "$T/e.y4m" --tokenizer "$T/t4.model"
check "tokenizer with -o: both written" "cmp -s $T/t1.model $T/t4.model && cmp -s $T/a.y4m $T/e.y4m"
check "tokenizer: unwritable path fails, named" "! $H world -q --tokenizer $T/no/t.model 2>$T/err && grep -q 'no/t.model' $T/err"
check "no -o and no --tokenizer refused" "! $H world -q 2>$T/err && grep -q 'tokenizer' $T/err"
check "bad number refused" "! $W --frames 12x -o $T/x.y4m 2>/dev/null"
check "bad output refused" "! $W -o $T/x.avi 2>/dev/null"
echo garbage > "$T/bad.mp4"
check "unreadable video fails, named" "! $H eval $T/bad.mp4 2>$T/err && grep -q bad.mp4 $T/err"
$W --seed 4 --frames 70 -o "$T/m.mp4"
head -c $(($(wc -c < "$T/m.mp4") * 2 / 3)) "$T/m.mp4" > "$T/cut.mp4"
check "video truncated mid-stream fails, named" "! $H eval $T/cut.mp4 2>$T/err && grep -q 'cut.mp4: corrupt or truncated data after' $T/err"
$W --seed 4 --frames 60 -o "$T/c.y4m"
check "truth with another frame count fails" "! $H eval $T/c.y4m --truth $T/a.jsonl 2>$T/err && grep -q 'truth file has 70 frames' $T/err"
$H world -q --width 32 --height 48 --frames 70 -o "$T/d.y4m"
check "truth for another size fails, named" "! $H eval $T/d.y4m --truth $T/a.jsonl 2>$T/err && grep -q a.jsonl $T/err"
$W --frames 5 -o "$T/short.y4m"
check "too few frames fails, named" "! $H eval $T/short.y4m 2>$T/err && grep -q 'short.y4m.*too few' $T/err"
if command -v ffmpeg >/dev/null; then
    ffmpeg -v error -f lavfi -i color=red:s=8x8:d=1 "$T/tiny.y4m"
    check "8x8 video too small, named" "! $H eval $T/tiny.y4m 2>$T/err && grep -q 'tiny.y4m.*too small' $T/err"
fi
echo "$((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]

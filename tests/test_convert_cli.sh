#!/bin/sh
# helios convert: the tiny model's transformer to bf16 and back. Every tensor keeps its name and
# shape, float tensors become BF16, the file halves, bf16 -> f32 -> bf16 is the same file byte for
# byte, a model folder with the converted transformer generates, --prefix takes one group of
# tensors out under shorter names; bad input exits non-zero and leaves no OUT behind.
# usage: test_convert_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
W=$M/transformer/diffusion_pytorch_model.safetensors
$H convert "$W" "$T/b.safetensors"
$H convert "$T/b.safetensors" "$T/f.safetensors" --dtype f32
$H convert "$T/f.safetensors" "$T/b2.safetensors"
$H info "$W" | grep "\[" | awk '{$2 = ""; $NF = ""; print}' | sort >"$T/names.a"
$H info "$T/b.safetensors" | grep "\[" | awk '{$2 = ""; $NF = ""; print}' | sort >"$T/names.b"
check "same names and shapes" "[ -s $T/names.a ] && cmp -s $T/names.a $T/names.b"
check "every tensor BF16" "[ \$($H info $T/b.safetensors | grep -c ' BF16 ') -eq \$($H info $W | grep -c ' F32 ') ]"
check "about half the bytes" "[ \$(wc -c <$T/b.safetensors) -lt \$((\$(wc -c <$W) * 52 / 100)) ]"
check "bf16 -> f32 -> bf16 is the same file" "cmp -s $T/b.safetensors $T/b2.safetensors"
check "bf16 differs from f32 (rounded)" "! cmp -s $T/f.safetensors $W"
mkdir "$T/m" && cp -r "$M"/* "$T/m/" && cp "$T/b.safetensors" "$T/m/transformer/diffusion_pytorch_model.safetensors"
check "the bf16 transformer generates" "$H generate -q -m $T/m --width 128 --height 64 --chunks 1 -p x -o $T/g.mp4 >/dev/null 2>&1 && [ -s $T/g.mp4 ]"
# --prefix: only the tensors under it, renamed without it
$H convert "$W" "$T/p.safetensors" --prefix blocks.0.
check "--prefix keeps that block's tensors, renamed" "[ \$($H info $T/p.safetensors | grep -c '\[') -eq \$($H info $W | grep -c '^blocks\.0\.') ] && $H info $T/p.safetensors | grep -q '^attn1.to_q.weight '"
fails "--prefix matching nothing" 1 "no tensor name starts with 'ema.'" $H convert "$W" "$T/o4.safetensors" --prefix ema.
fails "missing input" 1 "cannot open" $H convert "$T/none.safetensors" "$T/o1.safetensors"
head -c 100 "$W" >"$T/trunc.safetensors"
fails "truncated input names the file" 1 "trunc.safetensors" $H convert "$T/trunc.safetensors" "$T/o2.safetensors"
check "no output left behind" "! ls $T/o1.safetensors* $T/o2.safetensors* $T/o4.safetensors* >/dev/null 2>&1"
fails "bad dtype" 2 "--dtype must be bf16 or f32" $H convert "$W" "$T/o3.safetensors" --dtype f16
fails "one path" 2 "usage" $H convert "$W"
fails "same file" 2 "the same file" $H convert "$W" "$W"
echo "$((n - fail))/$n passed"
[ $fail -eq 0 ]

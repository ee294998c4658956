#!/bin/sh
# What a VAE alone keeps of real world footage (the ceiling of any transformer decoded by it):
# prompts 1..N of eval_prompts.txt rendered by the world (seed = the prompt's line), sent through
# the VAE in the pipelines' 33-frame windows (helios vae-stats --video) and measured by
# helios eval; prints the mean PSNR and the means of semantic accuracy, seam strength and motion.
# usage: sh train/tiny/vae_ceiling.sh VAE OUT [N=8] [SECONDS=30] [SIZE=64]   (repository root)
#   VAE: a model folder with vae/, or a VAE folder (a checkpoint's vae/)
set -eu
H=${H:-./build/helios}
vae=$1 out=$2 n=${3:-8} sec=${4:-30} size=${5:-64}
mkdir -p "$out"
: >"$out/vae.jsonl"
: >"$out/psnr.txt"
i=0
while IFS= read -r p && [ $i -lt "$n" ]; do
    i=$((i + 1))
    real="$out/real-$i-${sec}s-$size.mp4"
    [ -f "$real" ] || "$H" world -q --prompt "$p" --seconds "$sec" --width "$size" \
        --height "$size" --seed $i -o "$real"
    "$H" vae-stats "$vae" --video "$real" --recon "$out/vae-$i.mp4" 2>/dev/null |
        sed -n 's/.*"reconstruction_psnr_db": \([0-9.]*\).*/\1/p' >>"$out/psnr.txt"
    "$H" eval "$out/vae-$i.mp4" --prompt "$p" --json >>"$out/vae.jsonl"
done <train/tiny/eval_prompts.txt
awk '{s += $1; n++} END {printf "psnr %.2f dB (%d prompts)\n", s / n, n}' "$out/psnr.txt"
for k in semantic_accuracy seam_strength motion; do
    sed -n "s/.*\"$k\":\([-0-9.e]*\).*/\1/p" "$out/vae.jsonl" |
        awk -v k=$k '{s += $1; n++} END {printf "%s %.4f\n", k, s / n}'
done

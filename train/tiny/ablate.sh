#!/bin/sh
# The paper's anti-drift pieces in miniature (issue 14 item 5): five Base models trained from
# scratch with one budget (train/tiny/ablate/*.json: stage 1 as train/tiny/stage1.json, but
# 3,000 steps and no validation), each without one piece, then each evaluated by eval.sh on
# SECONDS-long videos of the first N prompts, with the Base sampler at STEPS steps:
#   full         the shipped recipe (Frame-Aware Corrupt, first-frame anchor, guidance attention)
#   no_corrupt   "corrupt_history": false (clean history in training)
#   no_anchor    "keep_first_frame": false in training and in the model folder (a zero anchor)
#   no_guidance  "guidance_cross_attn": false (history tokens read the text too)
#   uncompressed "history": "uncompressed" in training and in the model folder (no multi-term
#                memory: the 19 history frames at the short tier's 1x2x2 patches)
# Each model folder (runs/tiny/ablate/models/NAME) links the shipped Base's VAE, text encoder,
# tokenizer and scheduler. Finished runs are skipped, started ones resumed; the tables go to
# runs/tiny/ablate/NAME.md.
# usage: sh train/tiny/ablate.sh [SECONDS [N [STEPS]]]   (defaults 600, 4, 20; repository root)
set -eu
H=${HELIOS:-./build/helios}
sec=${1:-600} n=${2:-4} sampler_steps=${3:-20}
B=models/helios-tiny-base
A=runs/tiny/ablate
W=diffusion_pytorch_model.safetensors

# folder NAME: the ablation's model folder, the Base folder's other parts linked
folder() {
    d=$A/models/$1
    mkdir -p "$d/transformer"
    for c in scheduler text_encoder tokenizer vae; do ln -sfn "$(realpath "$B/$c")" "$d/$c"; done
    keep=true guid=true hist=""
    [ "$1" != no_anchor ] || keep=false
    [ "$1" != no_guidance ] || guid=false
    [ "$1" != uncompressed ] || hist=',\n "history": "uncompressed"'
    sed "s/^ \"max_sequence_length\": 64$/ \"max_sequence_length\": 64,\n \"keep_first_frame\": $keep$hist/" \
        "$B/model_index.json" >"$d/model_index.json"
    sed "s/\"guidance_cross_attn\": true/\"guidance_cross_attn\": $guid/" \
        "$B/transformer/config.json" >"$d/transformer/config.json"
}

# train NAME: trains train/tiny/ablate/NAME.json unless finished; exports its EMA
train() {
    cfg=train/tiny/ablate/$1.json out=$A/$1
    steps=$(sed -n 's/^ "steps": \([0-9]*\),$/\1/p' "$cfg")
    [ -f "$out/checkpoint-$steps/COMPLETE" ] || "$H" train --resume "$cfg"
    "$H" convert "$out/checkpoint-$steps/optimizer.safetensors" \
        "$A/models/$1/transformer/$W" --prefix ema.
}

for m in full no_corrupt no_anchor no_guidance uncompressed; do
    folder $m
    train $m
done
for m in full no_corrupt no_anchor no_guidance uncompressed; do
    if [ ! -f "$A/$m.md" ]; then
        STEPS=$sampler_steps HELIOS=$H sh train/tiny/eval.sh "$A/eval-$m" "$sec" "$A/models/$m" \
            "$n" >"$A/$m.md.part"
        mv "$A/$m.md.part" "$A/$m.md"
    fi
    echo "ablate: $m"
    cat "$A/$m.md"
done

#!/bin/sh
# Trains the tiny family's transformers in order, each stage from the one before, and exports
# each stage's EMA weights (bf16) into its model folder:
#   stage1.json   (Base, from scratch)          -> models/helios-tiny-base/transformer
#   stage2.json   (Mid, from Base)              -> models/helios-tiny-mid/transformer
#   ode_init.json (Distilled student, from Mid) -> models/helios-tiny/transformer
#   stage3.json   (DMD + GAN, from ode_init)    -> models/helios-tiny/transformer
# A stage whose last checkpoint is complete is skipped; one that has started is resumed (its
# newest complete checkpoint). The tokenizer, text encoder and VAE must be trained first
# (train/tiny/README.md); remove runs/tiny/cache64 after either changes.
# usage: sh train/tiny/family.sh [HELIOS_BINARY]   (from the repository root)
set -eu
H=${1:-./build/helios}
W=diffusion_pytorch_model.safetensors

# run CONFIG MODEL_DIR: trains CONFIG unless finished, then exports its EMA into MODEL_DIR.
run() {
    out=$(sed -n 's/^ "output": "\(.*\)",$/\1/p' "$1")
    steps=$(sed -n 's/^ "steps": \([0-9]*\),$/\1/p' "$1")
    last="$out/checkpoint-$steps"
    if [ ! -f "$last/COMPLETE" ]; then
        if [ -d "$out" ]; then "$H" train --resume "$1"; else "$H" train "$1"; fi
    fi
    "$H" convert "$last/optimizer.safetensors" "$2/transformer/$W" --prefix ema.
    echo "family: $1 -> $2/transformer/$W"
}

# from PREVIOUS_DIR NEXT_DIR CONFIG: the next stage starts from the previous stage's weights
# (only before it has started: a resumed run reads its checkpoint).
from() {
    out=$(sed -n 's/^ "output": "\(.*\)",$/\1/p' "$3")
    [ -d "$out" ] || cp "$1/transformer/$W" "$2/transformer/$W"
}

run train/tiny/stage1.json models/helios-tiny-base
from models/helios-tiny-base models/helios-tiny-mid train/tiny/stage2.json
run train/tiny/stage2.json models/helios-tiny-mid
from models/helios-tiny-mid models/helios-tiny train/tiny/ode_init.json
run train/tiny/ode_init.json models/helios-tiny
run train/tiny/stage3.json models/helios-tiny

#!/bin/sh
# helios train "component": "vae" end to end on the tiny model folder's VAE with world clips of
# 32x32x5: bad keys are named (exit 2), objective and component must agree, the loss is finite and
# falls, 3 steps + --resume to 6 give the same losses.tsv and weights, bit for bit, as 6 straight
# steps, and the checkpoint's vae/ folder loads with the VAE loader (helios generate uses it).
# usage: test_train_vae_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
# cfg NAME OUTPUT STEPS [EXTRA TOP-LEVEL MEMBERS] [EXTRA OBJECTIVE MEMBERS] [DATASET BLOCK]
cfg() {
    ds=${6:-'{"width": 32, "height": 32, "frames": 5, "clips": 4, "seed": 0}'}
    cat >"$T/$1.json" <<EOF
{"model": "$M", "component": "vae", "output": "$T/$2", "steps": $3, "lr": 0.002, "seed": 3,
 "checkpoint_every": 3, "threads": 2, "data": "procedural"${4:-},
 "objective": {"type": "vae", "l1": 1, "l2": 0.5, "kl": 1e-6,
               "dataset": $ds${5:-}}}
EOF
}

check "--help lists the vae objective" "$H train --help | grep -q '^  vae '"
cfg bad1 o 3 '' ', "bogus": 1'
fails "unknown objective key" 2 "'objective.bogus'" $H train "$T/bad1.json"
cfg bad2 o 3 '' ', "kl": -1'
fails "kl range" 2 "'objective.kl'" $H train "$T/bad2.json"
cfg bad7 o 3 '' ', "posterior": "median"'
fails "posterior sample or mode" 2 "'objective.posterior'" $H train "$T/bad7.json"
cfg bad3 o 3 '' '' '{"frames": 4}'
fails "frames 1 + 4k" 2 "'objective.dataset.frames'" $H train "$T/bad3.json"
cfg bad4 o 3 '' '' '{"fps": 4}'
fails "unknown dataset key" 2 "'objective.dataset.fps'" $H train "$T/bad4.json"
printf '{"model": "%s", "component": "vae", "output": "%s/o", "steps": 2, "objective": {"type": "stage1"}}' "$M" "$T" >"$T/bad5.json"
fails "stage1 refuses component vae" 2 "trains the transformer, not 'component' \"vae\"" $H train "$T/bad5.json"
printf '{"model": "%s", "output": "%s/o", "steps": 2, "objective": {"type": "vae"}}' "$M" "$T" >"$T/bad6.json"
fails "vae refuses component transformer" 2 "trains the vae, not 'component' \"transformer\"" $H train "$T/bad6.json"

# from scratch on one clip: 12 steps, the loss is finite and falls (last 3 < first 3 on average)
cfg learn learn 12 ', "init": "random"' '' '{"width": 32, "height": 32, "frames": 5, "clips": 1}'
$H train "$T/learn.json" >/dev/null 2>"$T/learn.err"
# tokens/s of the vae objective: the latent positions of a 32x32x5 clip, 2 x 4 x 4 = 32 per sample
check "tokens/s = 32 x samples/s" "grep 'step 12/12' $T/learn.err | awk '{for (i = 1; i < NF; i++) {if (\$(i + 1) == \"samples/s\") s = \$i; if (\$(i + 1) == \"tokens/s\") t = \$i}; r = t / s} END{exit !(r > 31.5 && r < 32.5)}'"
check "12 steps from scratch run" "[ \$(wc -l <$T/learn/losses.tsv 2>/dev/null || echo 0) -eq 12 ]"
check "losses finite" "! cut -f3 $T/learn/losses.tsv | grep -qiE 'nan|inf'"
check "loss falls" "awk -F'\t' 'NR<=3{a+=\$3} NR>9{b+=\$3} END{exit !(b < a)}' $T/learn/losses.tsv"
# "posterior": "mode" decodes the mean: the first loss does not depend on the noise seed
for m in mode sample; do
    for s in 3 4; do
        cfg $m$s $m$s 1 ', "init": "model"' ', "posterior": "'$m'"'
        sed -i "s/\"seed\": 3,/\"seed\": $s,/" "$T/$m$s.json"
        $H train -q "$T/$m$s.json" >/dev/null 2>&1
    done
done
same_loss() { [ -s "$T/${1}3/losses.tsv" ] && [ "$(cut -f3 "$T/${1}3/losses.tsv")" = "$(cut -f3 "$T/${1}4/losses.tsv")" ]; }
check "mode: the same first loss for two noise seeds" "same_loss mode"
check "sample: two noise seeds, two first losses" "[ -s $T/sample4/losses.tsv ] && ! same_loss sample"

# from the model's VAE: 6 straight steps == 3 + resume to 6
cfg ref ref 6 ', "init": "model"'
cfg res3 res 3 ', "init": "model"'
cfg res6 res 6 ', "init": "model"'
$H train -q "$T/ref.json" >/dev/null 2>&1
$H train -q "$T/res3.json" >/dev/null 2>&1
$H train -q --resume "$T/res6.json" >/dev/null 2>&1
C=$T/ref/checkpoint-6/vae
check "checkpoint has vae/ in the diffusers layout" "[ -f $C/config.json ] && [ -f $C/diffusion_pytorch_model.safetensors ]"
check "checkpoint config is the model's" "cmp -s $M/vae/config.json $C/config.json"
check "3 + resume 3: same losses.tsv" "[ -s $T/ref/losses.tsv ] && cmp -s $T/ref/losses.tsv $T/res/losses.tsv"
check "3 + resume 3: same weights" "cmp -s $C/diffusion_pytorch_model.safetensors $T/res/checkpoint-6/vae/diffusion_pytorch_model.safetensors"
# the same tensor names and shapes as the model's VAE
$H info $M/vae | grep '\[' | awk '{$2 = ""; $NF = ""; print}' | sort >"$T/names.a"
$H info $C | grep '\[' | awk '{$2 = ""; $NF = ""; print}' | sort >"$T/names.b"
check "same tensor names and shapes as the model's vae" "[ -s $T/names.a ] && cmp -s $T/names.a $T/names.b"
# the trained vae/ in a model folder: the pipeline's VAE loader takes it as is
mkdir "$T/m2" && cp -r "$M"/* "$T/m2/" && rm -rf "$T/m2/vae" && cp -r "$C" "$T/m2/vae"
check "trained vae/ loads and decodes (helios generate)" "$H generate -q -m $T/m2 --width 128 --height 64 --chunks 1 -p x -o $T/g.mp4 >/dev/null 2>&1 && [ -s $T/g.mp4 ]"

echo "$((n - fail))/$n passed"
[ $fail -eq 0 ]

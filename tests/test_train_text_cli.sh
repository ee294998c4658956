#!/bin/sh
# helios train "component": "text_encoder" (objective "mlm") end to end on the tiny model folder's
# UMT5 config and tokenizer, captions of the tiny world: bad keys are named (exit 2), objective
# and component must agree, 300 steps from scratch make the loss fall, a run killed with SIGKILL
# and resumed gives the same losses.tsv and weights, bit for bit, as the uninterrupted one, the
# progress line shows tokens/s, and the checkpoint's text_encoder/ loads with the UMT5 loader
# (helios generate with it in place of the model's).
# usage: test_train_text_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
# cfg NAME OUTPUT STEPS [EXTRA TOP-LEVEL MEMBERS] [EXTRA OBJECTIVE MEMBERS] [DATASET BLOCK]
# ("init" is $INIT, default random)
cfg() {
    ds=${6:-'{"clips": 4, "seed": 0}'}
    cat >"$T/$1.json" <<EOF
{"model": "$M", "component": "text_encoder", "init": "${INIT:-random}", "output": "$T/$2", "steps": $3,
 "lr": 0.003, "seed": 3, "checkpoint_every": 25, "threads": 1, "data": "procedural"${4:-},
 "objective": {"type": "mlm", "dataset": $ds${5:-}}}
EOF
}

check "--help lists the mlm objective" "$H train --help | grep -q '^  mlm '"
cfg bad1 o 3 '' ', "bogus": 1'
fails "unknown objective key" 2 "'objective.bogus'" $H train "$T/bad1.json"
cfg bad2 o 3 '' ', "mask_prob": 0'
fails "mask_prob range" 2 "'objective.mask_prob'" $H train "$T/bad2.json"
cfg bad3 o 3 '' ', "mask_token_prob": 0.8, "random_token_prob": 0.5'
fails "mask + random at most 1" 2 "'objective.random_token_prob'" $H train "$T/bad3.json"
cfg bad4 o 3 '' ', "mask_id": 700'
fails "mask_id inside the vocabulary" 2 "'objective.mask_id'" $H train "$T/bad4.json"
cfg bad5 o 3 '' '' '{"width": 32}'
fails "unknown dataset key" 2 "'objective.dataset.width'" $H train "$T/bad5.json"
cfg bad6 o 3 '' ", \"tokenizer\": \"$T/none\""
fails "tokenizer not a folder" 2 "'objective.tokenizer'" $H train "$T/bad6.json"
cfg bad7 o 3 ', "lora": {"rank": 4}'
fails "no LoRA for the text encoder" 2 "'lora' is for the transformer, not the text_encoder" $H train "$T/bad7.json"
sed 's/"procedural"/"synthetic"/' "$T/bad1.json" | sed 's/, "bogus": 1//' >"$T/bad8.json"
fails "synthetic data has no captions" 2 "has no captions" $H train "$T/bad8.json"
printf '{"model": "%s", "component": "text_encoder", "output": "%s/o", "steps": 2, "objective": {"type": "stage1"}}' "$M" "$T" >"$T/bad9.json"
fails "stage1 refuses component text_encoder" 2 "trains the transformer, not 'component' \"text_encoder\"" $H train "$T/bad9.json"
printf '{"model": "%s", "output": "%s/o", "steps": 2, "objective": {"type": "mlm"}}' "$M" "$T" >"$T/bad10.json"
fails "mlm refuses component transformer" 2 "trains the text_encoder, not 'component' \"transformer\"" $H train "$T/bad10.json"
check "no output folder made by failures" "[ ! -e $T/o ]"

# from scratch: 300 steps, the loss is finite and falls (mean of the last 30 < 0.8 x the first 30)
cfg ref ref 300
$H train "$T/ref.json" >/dev/null 2>"$T/ref.err"
rc=$?
check "300 steps from scratch run" "[ $rc -eq 0 ] && [ \$(wc -l <$T/ref/losses.tsv 2>/dev/null || echo 0) -eq 300 ]"
check "losses finite" "! cut -f3 $T/ref/losses.tsv | grep -qiE 'nan|inf'"
check "loss falls" "awk -F'\t' 'NR<=30{a+=\$3} NR>270{b+=\$3} END{print \"first 30:\", a/30, \"last 30:\", b/30; exit !(b < 0.8 * a)}' $T/ref/losses.tsv"
check "mask id: the pad piece (700 pieces for 700 rows, no sentinels)" "grep -q 'mask id 0 (the pad piece)' $T/ref.err"
check "progress shows tokens/s" "grep -qE 'samples/s  [0-9.e+]+ tokens/s  ETA' $T/ref.err"

# from the model's weights ("init": "model"; its file also holds the tied encoder.embed_tokens)
INIT=model cfg init init 2
check "init model runs" "$H train -q $T/init.json >/dev/null 2>&1 && [ \$(wc -l <$T/init/losses.tsv) -eq 2 ]"
check "init model: another first loss than random init" "[ \"\$(head -1 $T/init/losses.tsv | cut -f2)\" != \"\$(head -1 $T/ref/losses.tsv | cut -f2)\" ]"

# the same run killed with SIGKILL mid-way, then resumed: the same bits
cfg kill kill 300
$H train -q --throttle 10 "$T/kill.json" >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 400 ] && [ "$(cat "$T/kill/losses.tsv" 2>/dev/null | wc -l)" -lt 90 ]; do
    sleep 0.05
    i=$((i + 1))
done
kill -KILL $pid
wait $pid 2>/dev/null
k=$(wc -l <"$T/kill/losses.tsv")
check "killed mid-run (at step $k)" "[ $k -ge 90 ] && [ $k -lt 300 ] && [ ! -e $T/kill/checkpoint-300 ]"
$H train -q --resume "$T/kill.json" >/dev/null 2>"$T/kill.err"
check "SIGKILL + resume: same losses.tsv" "[ -s $T/ref/losses.tsv ] && cmp -s $T/ref/losses.tsv $T/kill/losses.tsv"
C=$T/ref/checkpoint-300/text_encoder
check "SIGKILL + resume: same weights" "cmp -s $C/model.safetensors $T/kill/checkpoint-300/text_encoder/model.safetensors"
check "SIGKILL + resume: same optimizer state" "cmp -s $T/ref/checkpoint-300/optimizer.safetensors $T/kill/checkpoint-300/optimizer.safetensors"

# the checkpoint's text_encoder/: the diffusers layout, the model's names and shapes
check "checkpoint has text_encoder/ in the diffusers layout" "[ -f $C/config.json ] && [ -f $C/model.safetensors ]"
check "checkpoint config is the model's" "cmp -s $M/text_encoder/config.json $C/config.json"
# (the model's file also holds the tied copy encoder.embed_tokens.weight, which the loader ignores)
$H info $M/text_encoder | grep '\[' | grep -v embed_tokens | awk '{$NF = ""; print}' | sort >"$T/names.a"
$H info $C | grep '\[' | awk '{$NF = ""; print}' | sort >"$T/names.b"
check "same tensor names and shapes as the model's text encoder" "[ -s $T/names.a ] && cmp -s $T/names.a $T/names.b"
# in a model folder: the pipeline's UMT5 loader takes it as is, and it changes the video
mkdir "$T/m2" && cp -r "$M"/* "$T/m2/" && rm -rf "$T/m2/text_encoder" && cp -r "$C" "$T/m2/text_encoder"
gen() { $H generate -q -m "$1" --width 128 --height 64 --chunks 1 --seed 1 -p "a red ball" -o "$2" >/dev/null 2>&1; }
check "trained text_encoder/ loads (helios generate)" "gen $T/m2 $T/g2.mp4 && [ -s $T/g2.mp4 ]"
check "and is the one used (another video than the model's)" "gen $M $T/g1.mp4 && [ -s $T/g1.mp4 ] && ! cmp -s $T/g1.mp4 $T/g2.mp4"

echo "$((n - fail))/$n passed"
[ $fail -eq 0 ]

#!/bin/sh
# helios train end to end on the tiny model folder with the toy ("quadratic") objective:
# configuration errors name the key and exit 2; a run writes complete checkpoints whose transformer
# folder is the model's diffusers folder; 4 steps + --resume to 8 gives the same losses.tsv, bit for
# bit, as 8 uninterrupted steps; Ctrl-C (SIGINT) mid-run writes a checkpoint, exits 0, and a resume
# again reproduces the uninterrupted losses.
# usage: test_train_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
# name, exit status wanted, text the message must hold, command...
# cfg NAME OUTPUT STEPS [EXTRA JSON MEMBERS]: writes $T/NAME.json
cfg() {
    cat >"$T/$1.json" <<EOF
{"model": "$M", "output": "$T/$2", "steps": $3, "lr": 0.01, "warmup": 2, "ema": 0.9,
 "accumulation": 2, "batch": 1, "checkpoint_every": 4, "keep": 1, "seed": 5,
 "validation_every": 4, "objective": {"type": "quadratic", "noise": 0.5}${4:-}}
EOF
}

check "--help lists the toy objective" "$H train --help | grep -q quadratic"
fails "no config" 2 "usage: helios train" $H train
fails "unknown option" 2 "--bogus" $H train --bogus x.json
fails "missing config file" 2 "nope.json" $H train "$T/nope.json"

# configuration errors: the key, exit 2
cfg bad1 o 4 ', "bogus": 1'
fails "unknown key" 2 "'bogus' is not a key" $H train "$T/bad1.json"
cfg bad2 o '"ten"'
fails "wrong type" 2 "'steps' must be an integer" $H train "$T/bad2.json"
cfg bad3 o 4 ', "clip": -1'
fails "out of range" 2 "'clip' must be in" $H train "$T/bad3.json"
cfg bad4 o 4 ', "betas": [0.9, 1.5]'
fails "betas range" 2 "'betas[1]' must be in [0, 1)" $H train "$T/bad4.json"
cfg bad5 o 4 ', "component": "bogus"'
fails "unknown component" 2 "'component'" $H train "$T/bad5.json"
cfg bad6 o 4 ', "schedule": "linear"'
fails "bad enum" 2 "expected one of \"constant\", \"cosine\"" $H train "$T/bad6.json"
printf '{"model": "%s", "output": "%s/o", "steps": 2, "objective": {"type": "stage3", "synthetic": {}, "dataset": {}}}' "$M" "$T" >"$T/bad7.json"
fails "stage3: synthetic and dataset blocks both" 2 "'objective.dataset' give" $H train "$T/bad7.json"
printf '{"model": "%s", "output": "%s/o", "steps": 2, "data": "%s/nope", "objective": {"type": "stage1"}}' "$M" "$T" "$T" >"$T/bad7b.json"
fails "data: not a folder" 2 "'data' \"$T/nope\" is not" $H train "$T/bad7b.json"
printf '{"model": "%s", "output": "%s/o", "steps": 2, "data": "synthetic", "objective": {"type": "stage1", "p_t2v": 2}}' "$M" "$T" >"$T/bad7c.json"
fails "stage1: a bad setting names its key" 2 "'objective.p_t2v' must be a number in [0, 1]" $H train "$T/bad7c.json"
printf '{"model": "%s", "output": "%s/o", "steps": 2, "objective": {"type": "quadratic", "nois": 1}}' "$M" "$T" >"$T/bad8.json"
fails "objective key" 2 "'objective.nois' is not a setting" $H train "$T/bad8.json"
printf '{"model": "%s", "output": "%s/o", "objective": {"type": "quadratic"}}' "$M" "$T" >"$T/bad9.json"
fails "missing steps" 2 "'steps' is required" $H train "$T/bad9.json"
check "no output folder made by failures" "[ ! -e $T/o ]"

# the uninterrupted reference
cfg ref ref 8
$H train -q "$T/ref.json" 2>"$T/ref.err"
rc=$?
check "8 steps run" "[ $rc -eq 0 ] && [ \$(wc -l <$T/ref/losses.tsv) -eq 8 ]"
check "keep 1: only checkpoint-8 kept" "[ -f $T/ref/checkpoint-8/COMPLETE ] && [ ! -e $T/ref/checkpoint-4 ]"
check "loss falls" "awk 'NR==1{a=\$3} END{exit !(\$3 < a)}' $T/ref/losses.tsv"
fails "fresh run into a used folder" 2 "already holds checkpoints" $H train -q "$T/ref.json"

# the checkpoint's transformer folder is a diffusers one (test_train_ckpt loads it with
# hl_dit_load; `helios generate -m` with it in place of tiny-random-model/transformer works too,
# too slow for this test)
check "checkpoint weights readable" "$H info $T/ref/checkpoint-8/transformer/diffusion_pytorch_model.safetensors | grep -q 'blocks.1.ffn.net.2.weight'"
check "checkpoint config is the model's" "cmp -s $M/transformer/config.json $T/ref/checkpoint-8/transformer/config.json"

# 4 steps, then --resume to 8
cfg half res 4
cfg full res 8
$H train -q "$T/half.json" && $H train -q --resume "$T/full.json" 2>"$T/res.err"
check "4 + resume 4: same losses.tsv" "cmp -s $T/ref/losses.tsv $T/res/losses.tsv"
check "4 + resume 4: same weights" "cmp -s $T/ref/checkpoint-8/transformer/diffusion_pytorch_model.safetensors $T/res/checkpoint-8/transformer/diffusion_pytorch_model.safetensors"
check "4 + resume 4: same optimizer state" "cmp -s $T/ref/checkpoint-8/optimizer.safetensors $T/res/checkpoint-8/optimizer.safetensors"

# Ctrl-C mid-run: a checkpoint, exit 0; the resume continues the same run
cfg int int 8
$H train --throttle 250 "$T/int.json" 2>"$T/int.err" &
pid=$!
i=0
while [ $i -lt 100 ] && [ "$(cat "$T/int/losses.tsv" 2>/dev/null | wc -l)" -lt 2 ]; do
    sleep 0.05
    i=$((i + 1))
done
kill -INT $pid
wait $pid
check "SIGINT exits 0" "[ $? -eq 0 ]"
k=$(wc -l <"$T/int/losses.tsv")
check "stopped early, checkpoint at step $k" "[ $k -lt 8 ] && [ -f $T/int/checkpoint-$k/COMPLETE ] && grep -q 'stopped at step' $T/int.err"
$H train -q --resume "$T/int.json" 2>>"$T/int.err"
check "SIGINT + resume: same losses.tsv" "cmp -s $T/ref/losses.tsv $T/int/losses.tsv"

# a resume with a configuration that changes the numbers is refused
cfg other res 8 ', "weight_decay": 0.5'
fails "resume with another config" 2 "another configuration" $H train -q --resume "$T/other.json"

# the stage-1 objective (synthetic latent clips): 6 steps, and 3 + resume 3, the same bits
s1() { # NAME OUTPUT STEPS [STAGE]
    cat >"$T/$1.json" <<EOF
{"model": "$M", "output": "$T/$2", "steps": $3, "lr": 0.001, "seed": 3, "checkpoint_every": 3,
 "data": "synthetic", "objective": {"type": "stage${4:-1}", "chunk_frames": 3,
 "synthetic": {"clips": 4, "chunks": 2, "height": 8, "width": 8, "text_len": 8}}}
EOF
}
s1 s1ref s1ref 6
# with_key FROM TO SETTING: $T/TO.json is $T/FROM.json with SETTING ('"key": value') added to its
# objective and its output folder renamed TO
with_key() {
    sed 's/\("type": "stage[0-9]"\)/\1, '"$3/; s#$1#$2#" "$T/$1.json" >"$T/$2.json"
}
$H train -q "$T/s1ref.json" 2>"$T/s1.err"
rc=$?
check "stage1: 6 steps run" "[ $rc -eq 0 ] && [ \$(wc -l <$T/s1ref/losses.tsv) -eq 6 ]"
# tokens/s of the flow objective: per sample the history (long 16 frames -> 4 tokens, mid 2 -> 4,
# short 1 + the first-frame anchor -> 2 x 16) plus the current chunk's 3 x 4 x 4 patch tokens = 88
s1 s1tok s1tok 2
$H train "$T/s1tok.json" 2>"$T/s1tok.err"
check "stage1: tokens/s = 88 x samples/s" "tail -n 2 $T/s1tok.err | awk '/tokens\/s/{for (i = 1; i < NF; i++) {if (\$(i + 1) == \"samples/s\") s = \$i; if (\$(i + 1) == \"tokens/s\") t = \$i}; r = t / s} END{exit !(r > 87 && r < 89)}'"
# the GEMM route is ours by default (a timed choice could differ in a resumed process); the
# environment may choose another
s1 s1dnn s1dnn 1
HELIOS_GEMM=onednn $H train "$T/s1dnn.json" 2>"$T/s1dnn.err"
check "stage1: HELIOS_GEMM from the environment wins" "grep -q 'HELIOS_GEMM: every GEMM of the linear ops runs on oneDNN' $T/s1dnn.err"
# "history": "uncompressed" (no multi-term memory): the 19 history frames and the anchor at the
# short tier's patches, 20 x 16, plus the 48 current tokens = 368; other losses than compressed
with_key s1tok s1flat '"history": "uncompressed"'
$H train "$T/s1flat.json" 2>"$T/s1flat.err"
rc=$?
check "stage1 uncompressed: 2 steps run, other losses" "[ $rc -eq 0 ] && [ \$(wc -l <$T/s1flat/losses.tsv) -eq 2 ] && ! cmp -s $T/s1tok/losses.tsv $T/s1flat/losses.tsv"
check "stage1 uncompressed: tokens/s = 368 x samples/s" "tail -n 2 $T/s1flat.err | awk '/tokens\/s/{for (i = 1; i < NF; i++) {if (\$(i + 1) == \"samples/s\") s = \$i; if (\$(i + 1) == \"tokens/s\") t = \$i}; r = t / s} END{exit !(r > 367 && r < 369)}'"
sed 's/"history": "uncompressed"/"history": "flat"/; s#s1flat#o#' "$T/s1flat.json" >"$T/bad_hist.json"
fails "stage1: a bad history layout names its key" 2 "'objective.history' must be \"compressed\" or \"uncompressed\"" $H train "$T/bad_hist.json"
sed 's/"type": "stage1"/"type": "stage2"/; s/"flat"/"uncompressed"/' "$T/bad_hist.json" >"$T/bad_hist2.json"
fails "stage2: no uncompressed history" 2 "'objective.history' \"uncompressed\" is a stage-1 setting" $H train "$T/bad_hist2.json"
s1 s1half s1res 3
s1 s1full s1res 6
$H train -q "$T/s1half.json" 2>>"$T/s1.err" && $H train -q --resume "$T/s1full.json" 2>>"$T/s1.err"
check "stage1: 3 + resume 3: same losses.tsv" "cmp -s $T/s1ref/losses.tsv $T/s1res/losses.tsv"
check "stage1: 3 + resume 3: same weights" "cmp -s $T/s1ref/checkpoint-6/transformer/diffusion_pytorch_model.safetensors $T/s1res/checkpoint-6/transformer/diffusion_pytorch_model.safetensors"
# bf16 compute on the f32 master weights: runs, and its losses differ from f32's (rounded GEMMs)
with_key s1ref s1bf '"precision": "bf16"'
$H train -q "$T/s1bf.json" 2>>"$T/s1.err"
rc=$?
check "stage1 bf16: 6 steps run, other losses" "[ $rc -eq 0 ] && [ \$(wc -l <$T/s1bf/losses.tsv) -eq 6 ] && ! cmp -s $T/s1ref/losses.tsv $T/s1bf/losses.tsv"
# ... and resumes bit for bit too (bf16 attention backward: our GEMM inside its head tasks)
s1 s1bfh s1bfr 3
s1 s1bff s1bfr 6
sed -i 's/\("type": "stage1"\)/\1, "precision": "bf16"/' "$T/s1bfh.json" "$T/s1bff.json"
$H train -q "$T/s1bfh.json" 2>>"$T/s1.err" && $H train -q --resume "$T/s1bff.json" 2>>"$T/s1.err"
check "stage1 bf16: 3 + resume 3: same losses.tsv" "cmp -s $T/s1bf/losses.tsv $T/s1bfr/losses.tsv"
# the stage-2 (pyramid) objective: the same
s1 s2ref s2ref 4 2
$H train -q "$T/s2ref.json" 2>"$T/s2.err"
rc=$?
check "stage2: 4 steps run" "[ $rc -eq 0 ] && [ \$(wc -l <$T/s2ref/losses.tsv) -eq 4 ]"
s1 s2half s2res 3 2
s1 s2full s2res 4 2
$H train -q "$T/s2half.json" 2>>"$T/s2.err" && $H train -q --resume "$T/s2full.json" 2>>"$T/s2.err"
check "stage2: 3 + resume 1: same losses.tsv" "cmp -s $T/s2ref/losses.tsv $T/s2res/losses.tsv"
# the level samples in turn ("pack_levels": false) instead of packed (the default): the same
# losses up to the rounding of the GEMMs over other row counts, not the same bits
with_key s2ref s2turn '"pack_levels": false'
$H train -q "$T/s2turn.json" 2>>"$T/s2.err"
rc=$?
check "stage2 in turn: 4 steps, the packed losses to 1e-5" "[ $rc -eq 0 ] && paste $T/s2ref/losses.tsv $T/s2turn/losses.tsv | awk -F'\t' '{n++; a = \$3; b = \$(NF / 2 + 3); d = a - b; if (d < 0) d = -d; if (!(d <= 1e-5 * (a < 0 ? -a : a))) bad++} END{exit !(n == 4 && !bad)}'"
check "stage2 in turn: not the packed run's bits" "! cmp -s $T/s2ref/checkpoint-4/transformer/diffusion_pytorch_model.safetensors $T/s2turn/checkpoint-4/transformer/diffusion_pytorch_model.safetensors"
with_key s2ref s2bad '"pack_levels": "yes"'
fails "stage2: pack_levels not a boolean" 2 "'objective.pack_levels' must be true or false" $H train "$T/s2bad.json"
with_key s1ref s1pk '"pack_levels": true'
fails "stage1: pack_levels is stage 2's" 2 "'objective.pack_levels' is not a setting" $H train "$T/s1pk.json"
# the pyramid is the model folder's (scheduler_config.json "stages", "stage_range", "gamma"): a
# folder sampled in two stages trains two levels, "ratios" takes one number per level, and a Base
# folder (stages 1) is refused
pyramid_folder m2 "$M" 2 '0, 0.5, 1'
pyramid_folder m1 "$M" 1 '0, 1'
sed "s#\"model\": \"$M\"#\"model\": \"$T/m2\"#; s#s2ref#s2two#" "$T/s2ref.json" >"$T/s2two.json"
with_key s2two s2tworat '"ratios": [2, 1]'
$H train -q "$T/s2tworat.json" 2>"$T/s2two.err"
rc=$?
check "stage2, two levels: 4 steps run" "[ $rc -eq 0 ] && [ \$(wc -l <$T/s2tworat/losses.tsv) -eq 4 ]"
check "stage2, two levels: other losses than three" "! cmp -s $T/s2ref/losses.tsv $T/s2tworat/losses.tsv"
with_key s2two s2twobad '"ratios": [1, 2, 1]'
fails "stage2, two levels: three ratios" 2 "'objective.ratios' must be 2 integers (the model's 2 pyramid levels)" $H train "$T/s2twobad.json"
sed "s#\"model\": \"$M\"#\"model\": \"$T/m1\"#; s#s2ref#s2one#" "$T/s2ref.json" >"$T/s2one.json"
fails "stage2: a Base folder" 2 "stage 2 trains a pyramid" $H train "$T/s2one.json"
# a micro-batch of several samples: packed into one forward (the default, "pack_batch") or in
# turn; the same losses and gradient norms up to the GEMMs' rounding, not the same bits; a packed
# run resumes bit for bit; stage 2 packs every sample's levels together
close_runs() { # A B STEPS: losses.tsv of runs A and B, loss and gradient norm to 1e-5
    paste "$T/$1/losses.tsv" "$T/$2/losses.tsv" | awk -F'\t' '{n++; for (c = 3; c <= 5; c += 2) {a = $c; b = $(NF / 2 + c); d = a - b; if (d < 0) d = -d; if (!(d <= 1e-5 * (a < 0 ? -a : a))) bad++}} END{exit !(n == '"$3"' && !bad)}'
}
for st in 1 2; do
    s1 b${st}p b${st}p 4 $st
    sed -i 's/"steps": 4,/"steps": 4, "batch": 3,/' "$T/b${st}p.json"
    with_key b${st}p b${st}t '"pack_batch": false'
    $H train -q "$T/b${st}p.json" 2>>"$T/s1.err" && $H train -q "$T/b${st}t.json" 2>>"$T/s1.err"
    rc=$?
    check "stage$st batch 3: packed and in turn, 4 steps, losses and norms to 1e-5" "[ $rc -eq 0 ] && close_runs b${st}p b${st}t 4"
    check "stage$st batch 3: packed is not the bits of in turn" "! cmp -s $T/b${st}p/checkpoint-4/transformer/diffusion_pytorch_model.safetensors $T/b${st}t/checkpoint-4/transformer/diffusion_pytorch_model.safetensors"
done
sed 's/"steps": 4,/"steps": 2,/; s#b1p#b1r#' "$T/b1p.json" >"$T/b1h.json"
sed 's#b1p#b1r#' "$T/b1p.json" >"$T/b1f.json"
$H train -q "$T/b1h.json" 2>>"$T/s1.err" && $H train -q --resume "$T/b1f.json" 2>>"$T/s1.err"
check "stage1 batch 3 packed: 2 + resume 2: same losses.tsv" "cmp -s $T/b1p/losses.tsv $T/b1r/losses.tsv"
with_key b2p b2l '"pack_levels": false'
with_key b2l b2lt '"pack_batch": false'
$H train -q "$T/b2l.json" 2>>"$T/s2.err" && $H train -q "$T/b2lt.json" 2>>"$T/s2.err"
rc=$?
check "stage2 batch 3, levels in turn: nothing packed, pack_batch or not" "[ $rc -eq 0 ] && cmp -s $T/b2l/losses.tsv $T/b2lt/losses.tsv && ! cmp -s $T/b2l/losses.tsv $T/b2p/losses.tsv"
with_key s1ref s1pbad '"pack_batch": 1'
fails "stage1: pack_batch not a boolean" 2 "'objective.pack_batch' must be true or false" $H train "$T/s1pbad.json"
# --gan-memory: both peaks printed, the one with Cache Grad the smaller; nothing trained
$H train "$T/s1ref.json" --gan-memory >"$T/gm.out" 2>>"$T/s1.err"
rc=$?
check "gan-memory: runs" "[ $rc -eq 0 ] && grep -q 'peak without Cache Grad' $T/gm.out"
with=$(awk '/peak with Cache Grad/ {sub(/\(/, "", $(NF-1)); print $(NF-1)}' "$T/gm.out")
without=$(awk '/peak without Cache Grad/ {sub(/\(/, "", $(NF-1)); print $(NF-1)}' "$T/gm.out")
check "gan-memory: with < without ($with < $without)" "[ -n '$with' ] && [ -n '$without' ] && [ $with -lt $without ]"

# LoRA: adapters trained, checkpointed and resumed bit for bit; adapters and merged weights written
lora() { # NAME OUTPUT STEPS
    cat >"$T/$1.json" <<EOF
{"model": "$M", "init": "model", "output": "$T/$2", "steps": $3, "lr": 0.01, "seed": 3,
 "checkpoint_every": 3, "data": "synthetic", "lora": {"rank": 4, "alpha": 8},
 "objective": {"type": "stage1", "chunk_frames": 3,
 "synthetic": {"clips": 4, "chunks": 2, "height": 8, "width": 8, "text_len": 8}}}
EOF
}
lora loraref loraref 6
$H train -q "$T/loraref.json" 2>"$T/lora.err"
rc=$?
check "lora: 6 steps, adapters and merged weights written" "[ $rc -eq 0 ] && [ -f $T/loraref/lora/pytorch_lora_weights.safetensors ] && [ -f $T/loraref/merged/transformer/config.json ] && [ -f $T/loraref/checkpoint-6/transformer_lora/pytorch_lora_weights.safetensors ]"
lora lorahalf lorares 3
lora lorafull lorares 6
$H train -q "$T/lorahalf.json" 2>>"$T/lora.err" && $H train -q --resume "$T/lorafull.json" 2>>"$T/lora.err"
check "lora: 3 + resume 3: same losses.tsv" "cmp -s $T/loraref/losses.tsv $T/lorares/losses.tsv"
check "lora: 3 + resume 3: same merged weights" "cmp -s $T/loraref/merged/transformer/diffusion_pytorch_model.safetensors $T/lorares/merged/transformer/diffusion_pytorch_model.safetensors"
sed 's/"rank": 4/"rank": 4, "targets": ["nothing.*"]/' "$T/loraref.json" | sed "s#loraref#lorabad#" >"$T/lorabad.json"
fails "lora: a target pattern that matches nothing" 2 "target 'nothing.*' matches no" $H train -q "$T/lorabad.json"

# stage 1 on the tiny world: clips rendered, encoded once into the latent cache, trained on
cat >"$T/world.json" <<EOF
{"model": "$M", "output": "$T/world", "steps": 2, "lr": 0.001, "seed": 3, "data": "procedural",
 "objective": {"type": "stage1", "chunk_frames": 9, "dataset": {"width": 32, "height": 32,
 "frames": 33, "clips": 2, "text_len": 16}}}
EOF
$H train -q "$T/world.json" 2>"$T/world.err"
rc=$?
check "stage1 on the world: 2 steps, 2 cached clips" "[ $rc -eq 0 ] && [ \$(wc -l <$T/world/losses.tsv) -eq 2 ] && [ -f $T/world/cache/1.safetensors ]"

echo "test_train_cli: $n checks, $fail failed"
[ $fail -eq 0 ]

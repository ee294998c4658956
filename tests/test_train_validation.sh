#!/bin/sh
# helios train's validation on the stage-1 objective (synthetic clips, the tiny model folder; the
# loss alone on stage 2 too):
# every validation_every steps the flow loss of fixed held-out samples is reported and
# OUTPUT/validation/step-N.mp4 is made by the inference pipeline from the weights being trained
# (an MP4 ffprobe reads, no .part and no model folder left); validation changes nothing in the
# training run (losses.tsv and the weights equal, bit for bit, a run without it); the same
# weights give the same validation loss; bad validation settings name their key; a model that is
# not a full model folder gets the loss and a one-line warning instead of a video, and a video the
# pipeline refuses is a warning too (the run goes on).
# usage: test_train_validation.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
# name, exit status wanted, text the message must hold, command...
frames() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1"; }

# cfg NAME MODEL VALIDATION_EVERY [EXTRA OBJECTIVE MEMBERS]: writes $T/NAME.json, output $T/NAME
cfg() {
    cat >"$T/$1.json" <<EOF
{"model": "$2", "output": "$T/$1", "steps": 4, "lr": 0.001, "seed": 3, "ema": 0.9,
 "checkpoint_every": 4, "validation_every": $3, "data": "synthetic",
 "objective": {"type": "stage1", "chunk_frames": 3,
 "synthetic": {"clips": 4, "chunks": 2, "height": 8, "width": 8, "text_len": 8}${4:-}}}
EOF
}
VAL=', "validation": {"prompts": ["a red ball bouncing"], "seed": 7, "width": 64, "height": 64, "chunks": 1, "steps": 2, "samples": 2}'

# configuration errors name objective.validation.KEY (exit 2, nothing trained)
cfg bad1 "$M" 2 ', "validation": {"prompt": ["x"]}'
fails "unknown key" 2 "'objective.validation.prompt' is not a setting" $H train -q "$T/bad1.json"
cfg bad2 "$M" 2 ', "validation": {"width": 70}'
fails "width not a multiple of 16" 2 "'objective.validation.width' must be a multiple of 16" $H train -q "$T/bad2.json"
cfg bad3 "$M" 2 ', "validation": {"prompts": [1]}'
fails "prompts not strings" 2 "'objective.validation.prompts' must be a list" $H train -q "$T/bad3.json"
cfg bad4 "$M" 2 ', "validation": {"frames": 33, "chunks": 1}'
fails "frames and chunks" 2 "'objective.validation.frames' give frames or chunks" $H train -q "$T/bad4.json"
cfg bad5 "$M" 2 ', "validation": {"samples": 0}'
fails "samples >= 1" 2 "'objective.validation.samples' must be an integer" $H train -q "$T/bad5.json"
cfg bad6 "$M" 2 ', "validation": 3'
fails "not an object" 2 "'objective.validation' must be an object" $H train -q "$T/bad6.json"

# the reference: no validation
cfg ref "$M" 0 "$VAL"
$H train -q "$T/ref.json" 2>"$T/ref.err"; rc=$?
check "reference: 4 steps" "[ $rc -eq 0 ] && [ \$(wc -l <$T/ref/losses.tsv) -eq 4 ]"
check "reference: no validation folder" "[ ! -e $T/ref/validation ]"

# validation every 2 steps, with a 64x64 one-chunk video of 2 steps per stage
cfg val "$M" 2 "$VAL"
$H train "$T/val.json" 2>"$T/val.err"; rc=$?
check "validated run: exit 0" "[ $rc -eq 0 ]"
check "step-2.mp4 and step-4.mp4 written" "[ -f $T/val/validation/step-2.mp4 ] && [ -f $T/val/validation/step-4.mp4 ]"
check "step-2.mp4 is an MP4 of 33 frames" "[ \"\$(frames $T/val/validation/step-2.mp4)\" = 33 ]"
check "no .part, no model folder left" "[ -z \"\$(ls $T/val/validation | grep -v '^step-[24]\.mp4\$')\" ]"
check "validation line with loss and video" "grep -qE '^validation: step 2 loss [0-9.e+-]+ -> $T/val/validation/step-2.mp4\$' $T/val.err"
check "validation.tsv: step, loss, video" "[ \$(wc -l <$T/val/validation.tsv) -eq 2 ] && grep -qE '^4	0x[^	]+	[0-9.e+-]+	$T/val/validation/step-4.mp4\$' $T/val/validation.tsv"
check "progress line shows the validation loss" "grep -qE 'step 2/4 .* val [0-9]' $T/val.err"
check "losses.tsv equals the run without validation" "cmp -s $T/ref/losses.tsv $T/val/losses.tsv"
check "weights equal the run without validation" "cmp -s $T/ref/checkpoint-4/transformer/diffusion_pytorch_model.safetensors $T/val/checkpoint-4/transformer/diffusion_pytorch_model.safetensors"

# the loss alone (video false): the same losses as the video run (same held-out samples)
cfg noviz "$M" 2 ', "validation": {"samples": 2, "seed": 7, "video": false}'
$H train "$T/noviz.json" 2>"$T/noviz.err"; rc=$?
check "video false: no video, same validation losses" "[ $rc -eq 0 ] && [ ! -e $T/noviz/validation ] && [ \$(grep -c '^validation: step' $T/noviz.err) -eq 2 ] && [ \"\$(grep '^validation' $T/noviz.err | cut -d' ' -f1-5)\" = \"\$(grep '^validation' $T/val.err | cut -d' ' -f1-5)\" ]"

# 2 steps, then --resume to 4: the same validation losses as the uninterrupted run (the EMA is
# restored; validation.tsv is appended to)
sed 's/"steps": 4/"steps": 2/; s#/noviz"#/nvres"#' "$T/noviz.json" >"$T/nvhalf.json"
sed 's#/noviz"#/nvres"#' "$T/noviz.json" >"$T/nvfull.json"
$H train -q "$T/nvhalf.json" 2>"$T/nvres.err" && $H train -q --resume "$T/nvfull.json" 2>>"$T/nvres.err"
check "2 + resume 2: same validation.tsv" "cmp -s $T/noviz/validation.tsv $T/nvres/validation.tsv && cmp -s $T/noviz/losses.tsv $T/nvres/losses.tsv"

# stage 2 (pyramid): the validation loss each step, the same losses.tsv as without
sed 's/"stage1"/"stage2"/; s#/noviz"#/s2ref"#; s/"validation_every": 2/"validation_every": 0/' "$T/noviz.json" >"$T/s2ref.json"
sed 's/"stage1"/"stage2"/; s#/noviz"#/s2val"#; s/"validation_every": 2/"validation_every": 1/' "$T/noviz.json" >"$T/s2val.json"
$H train -q "$T/s2ref.json" 2>"$T/s2.err" && $H train -q "$T/s2val.json" 2>>"$T/s2.err"; rc=$?
check "stage2: validation every step, same losses.tsv" "[ $rc -eq 0 ] && [ \$(wc -l <$T/s2val/validation.tsv) -eq 4 ] && [ ! -e $T/s2ref/validation.tsv ] && cmp -s $T/s2ref/losses.tsv $T/s2val/losses.tsv"

# a transformer folder, not a full model folder: the loss and one warning, no video
cfg bare "$M/transformer" 2 "$VAL"
$H train "$T/bare.json" 2>"$T/bare.err"; rc=$?
check "bare transformer: loss, one warning, no video" "[ $rc -eq 0 ] && [ \$(grep -c '^validation: step' $T/bare.err) -eq 2 ] && [ \$(grep -c 'not a full model folder' $T/bare.err) -eq 1 ] && [ ! -e $T/bare/validation ] && [ \$(cut -f4 $T/bare/validation.tsv | sort -u) = - ]"

# a video the pipeline refuses (64 is this pyramid model's size rule): a warning naming the
# reason at each validation, the loss still reported, the run goes on
cfg wide "$M" 2 ', "validation": {"width": 80, "height": 64, "chunks": 1, "steps": 2, "samples": 2}'
$H train "$T/wide.json" 2>"$T/wide.err"; rc=$?
check "refused video: warnings, loss, run done" "[ $rc -eq 0 ] && [ \$(grep -c '^validation: step [24] loss [0-9]' $T/wide.err) -eq 2 ] && [ \$(grep -c 'no video: .*width' $T/wide.err) -eq 2 ] && [ \$(wc -l <$T/wide/losses.tsv) -eq 4 ] && [ ! -e $T/wide/validation/step-2.mp4 ] && [ ! -e $T/wide/validation/step-2.model ]"

# the objective's helios keys reach the validation model folder's model_index.json: a run with
# "history": "uncompressed" makes the video `helios generate` makes from its checkpoint with that
# key (and not the one without it). MP4s of 64-wide frames are not bit-reproducible (x264 reads
# uninitialised padding, src/io/video_mp4.c): frames compare by PSNR, measured 61 dB between two
# runs of one command and 38 dB between the two keys.
cfg unc "$M" 4 ', "history": "uncompressed"'"$VAL"
sed -i 's/"ema": 0.9/"ema": 0/' "$T/unc.json"
$H train -q "$T/unc.json" 2>"$T/unc.err"
mkdir -p "$T/um" && cp -r "$M"/* "$T/um/" && rm -rf "$T/um/transformer" &&
    cp -r "$T/unc/checkpoint-4/transformer" "$T/um/transformer"
gen() { $H generate -q -m "$T/um" -p "a red ball bouncing" --seed 7 --width 64 --height 64 --chunks 1 --steps 2 -o "$1" >/dev/null 2>&1; }
# near A B: the decoded frames of A and B agree to 50 dB PSNR or more
near() {
    db=$(ffmpeg -v info -i "$1" -i "$2" -lavfi psnr -f null - 2>&1 | grep -o 'average:[^ ]*' | cut -d: -f2)
    [ "$db" = inf ] || awk -v d="${db:-0}" 'BEGIN { exit !(d >= 50) }'
}
gen "$T/plain.mp4"
sed -i 's/^{/{"history": "uncompressed",/' "$T/um/model_index.json"
gen "$T/keyed.mp4"
check "uncompressed: the video is made with the objective's key" "[ -f $T/unc/validation/step-4.mp4 ] && [ -s $T/keyed.mp4 ] && near $T/unc/validation/step-4.mp4 $T/keyed.mp4"
check "uncompressed: not the one without it" "[ -s $T/plain.mp4 ] && ! near $T/unc/validation/step-4.mp4 $T/plain.mp4"

echo "test_train_validation: $n checks, $fail failed"
[ $fail -eq 0 ]

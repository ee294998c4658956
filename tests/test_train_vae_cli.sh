#!/bin/sh
# helios train "component": "vae" end to end on the tiny model folder's VAE with world clips of
# 32x32x5: bad keys are named (exit 2), objective and component must agree, the loss is finite and
# falls, 3 steps + --resume to 6 give the same losses.tsv and weights, bit for bit, as 6 straight
# steps, and the checkpoint's vae/ folder loads with the VAE loader (helios generate uses it);
# clips of two windows with the difference terms likewise.
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

# "train": "decoder": the encoder side (encoder.*, quant_conv.*) stays bit for bit the model's,
# weights and EMA, while the decoder side learns; resumable like "all"; a bad value is named
cfg bad8 o 3 '' ', "train": "encoder"'
fails "train all or decoder" 2 "'objective.train'" $H train "$T/bad8.json"
cfg dec dec 6 ', "init": "model", "ema": 0.9' ', "train": "decoder"'
cfg dec3 dec3 3 ', "init": "model", "ema": 0.9' ', "train": "decoder"'
cfg dec6 dec3 6 ', "init": "model", "ema": 0.9' ', "train": "decoder"'
$H train -q "$T/dec.json" >/dev/null 2>"$T/dec.err"
$H train -q "$T/dec3.json" >/dev/null 2>&1
$H train -q --resume "$T/dec6.json" >/dev/null 2>&1
# the model's weights as a checkpoint (lr 0: every step leaves them), in the writer's tensor order
cfg zero zero 1 ', "init": "model"'
sed -i 's/"lr": 0.002/"lr": 0/' "$T/zero.json"
$H train -q "$T/zero.json" >/dev/null 2>&1
Z=$T/zero/checkpoint-1/vae/diffusion_pytorch_model.safetensors D=$T/dec/checkpoint-6
# part PREFIX FILE OUT: the tensors under PREFIX of FILE, in f32, without the header (metadata)
part() {
    $H convert "$2" "$3.st" --dtype f32 --prefix "$1" >/dev/null 2>&1 &&
        tail -c +$(($(od -An -t u8 -N8 "$3.st" | tr -d ' ') + 9)) "$3.st" >"$3"
}
part encoder. "$Z" "$T/enc.m"
part encoder. "$D/vae/diffusion_pytorch_model.safetensors" "$T/enc.d"
part quant_conv. "$Z" "$T/qc.m"
part quant_conv. "$D/vae/diffusion_pytorch_model.safetensors" "$T/qc.d"
part ema.encoder. "$D/optimizer.safetensors" "$T/enc.e"
part decoder. "$Z" "$T/dec.m"
part decoder. "$D/vae/diffusion_pytorch_model.safetensors" "$T/dec.d"
part post_quant_conv. "$Z" "$T/pq.m"
part post_quant_conv. "$D/vae/diffusion_pytorch_model.safetensors" "$T/pq.d"
check "decoder: 6 steps run, losses finite" "[ \$(wc -l <$T/dec/losses.tsv 2>/dev/null || echo 0) -eq 6 ] && ! cut -f3 $T/dec/losses.tsv | grep -qiE 'nan|inf'"
check "decoder: encoder weights unchanged" "[ -s $T/enc.m ] && cmp -s $T/enc.m $T/enc.d"
check "decoder: quant_conv unchanged" "[ -s $T/qc.m ] && cmp -s $T/qc.m $T/qc.d"
check "decoder: the encoder's EMA unchanged" "[ -s $T/enc.e ] && cmp -s $T/enc.m $T/enc.e"
check "decoder: the decoder learns" "[ -s $T/dec.d ] && ! cmp -s $T/dec.m $T/dec.d"
check "decoder: post_quant_conv learns" "[ -s $T/pq.d ] && ! cmp -s $T/pq.m $T/pq.d"
check "decoder: 3 + resume 3 = 6" "[ -s $T/dec/losses.tsv ] && cmp -s $T/dec/losses.tsv $T/dec3/losses.tsv && cmp -s $D/vae/diffusion_pytorch_model.safetensors $T/dec3/checkpoint-6/vae/diffusion_pytorch_model.safetensors"

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
# "precision": "bf16": the convolutions compute in bf16 on a copy of the f32 weights (where the
# CPU has bf16 kernels: then other losses than f32's, else the same); resumes bit for bit
cfg bad12 o 3 '' ', "precision": "f16"'
fails "precision f32 or bf16" 2 "'objective.precision'" $H train "$T/bad12.json"
cfg bf bf 4 ', "init": "model"' ', "precision": "bf16"'
cfg bfa bfr 2 ', "init": "model"' ', "precision": "bf16"'
cfg bfb bfr 4 ', "init": "model"' ', "precision": "bf16"'
$H train -q "$T/bf.json" >/dev/null 2>&1
$H train -q "$T/bfa.json" >/dev/null 2>&1
$H train -q --resume "$T/bfb.json" >/dev/null 2>&1
check "bf16: 4 steps run, losses finite" "[ \$(wc -l <$T/bf/losses.tsv 2>/dev/null || echo 0) -eq 4 ] && ! cut -f3 $T/bf/losses.tsv | grep -qiE 'nan|inf'"
check "bf16: first loss within 1% of f32's" "[ -s $T/bf/losses.tsv ] && awk -v a=\$(head -1 $T/ref/losses.tsv | cut -f3) -v b=\$(head -1 $T/bf/losses.tsv | cut -f3) 'BEGIN{d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * a)}'"
check "bf16: 2 + resume 2 = 4" "[ -s $T/bf/losses.tsv ] && cmp -s $T/bf/losses.tsv $T/bfr/losses.tsv && cmp -s $T/bf/checkpoint-4/vae/diffusion_pytorch_model.safetensors $T/bfr/checkpoint-4/vae/diffusion_pytorch_model.safetensors"
# "window": clips of several windows, each encoded and decoded apart; "temporal" and "seam" weigh
# the frame differences inside the windows and across their boundaries, "edges" the spatial ones
cfg bad9 o 3 '' ', "window": 4'
fails "window 1 + 4k" 2 "'objective.window'" $H train "$T/bad9.json"
cfg bad10 o 3 '' ', "window": 5' '{"frames": 9}'
fails "frames a multiple of the window" 2 "'objective.dataset.frames'" $H train "$T/bad10.json"
cfg bad11 o 3 '' ', "seam": 1'
fails "seam needs two windows" 2 "'objective.seam'" $H train "$T/bad11.json"
W2='{"width": 32, "height": 32, "frames": 10, "clips": 4, "seed": 0}'
cfg win1 win1 6 ', "init": "model"' ', "window": 5'
cfg tmp1 tmp1 1 ', "init": "model"' ', "temporal": 1'
cfg edg1 edg1 1 ', "init": "model"' ', "edges": 1'
cfg w0 w0 1 ', "init": "model"' ', "window": 5' "$W2"
cfg w2 w2 4 ', "init": "model"' ', "window": 5, "temporal": 1, "seam": 1' "$W2"
cfg w2a w2a 2 ', "init": "model"' ', "window": 5, "temporal": 1, "seam": 1' "$W2"
cfg w2b w2a 4 ', "init": "model"' ', "window": 5, "temporal": 1, "seam": 1' "$W2"
$H train -q "$T/win1.json" >/dev/null 2>&1
$H train -q "$T/tmp1.json" >/dev/null 2>&1
$H train -q "$T/edg1.json" >/dev/null 2>&1
$H train -q "$T/w0.json" >/dev/null 2>&1
$H train "$T/w2.json" >/dev/null 2>"$T/w2.err"
$H train -q "$T/w2a.json" >/dev/null 2>&1
$H train -q --resume "$T/w2b.json" >/dev/null 2>&1
first() { head -1 "$T/$1/losses.tsv" | cut -f3; }
check "window = frames: the losses of no window key" "[ -s $T/win1/losses.tsv ] && [ \"\$(cut -f3 $T/win1/losses.tsv)\" = \"\$(cut -f3 $T/ref/losses.tsv 2>/dev/null)\" ]"
check "temporal: the frame-difference term adds to the first loss" "[ -s $T/tmp1/losses.tsv ] && [ -s $T/ref/losses.tsv ] && awk -v a=\$(first ref) -v b=\$(first tmp1) 'BEGIN{exit !(b > a)}'"
check "edges: the spatial-difference term adds to the first loss" "[ -s $T/edg1/losses.tsv ] && [ -s $T/ref/losses.tsv ] && awk -v a=\$(first ref) -v b=\$(first edg1) 'BEGIN{exit !(b > a)}'"
check "two windows: 4 steps, losses finite" "[ \$(wc -l <$T/w2/losses.tsv 2>/dev/null || echo 0) -eq 4 ] && ! cut -f3 $T/w2/losses.tsv | grep -qiE 'nan|inf'"
check "two windows: the seam term adds to the first loss" "[ -s $T/w0/losses.tsv ] && [ -s $T/w2/losses.tsv ] && awk -v a=\$(first w0) -v b=\$(first w2) 'BEGIN{exit !(b > a)}'"
check "two windows: tokens/s = 64 x samples/s" "grep 'step 4/4' $T/w2.err | awk '{for (i = 1; i < NF; i++) {if (\$(i + 1) == \"samples/s\") s = \$i; if (\$(i + 1) == \"tokens/s\") t = \$i}; r = t / s} END{exit !(r > 63 && r < 65)}'"
check "two windows: 2 + resume 2 = 4" "[ -s $T/w2/losses.tsv ] && cmp -s $T/w2/losses.tsv $T/w2a/losses.tsv && cmp -s $T/w2/checkpoint-4/vae/diffusion_pytorch_model.safetensors $T/w2a/checkpoint-4/vae/diffusion_pytorch_model.safetensors"

# "train": "decoder" runs the same forward: the same first loss as "all"
check "decoder: first loss = train all's" "[ -s $T/dec/losses.tsv ] && [ \"\$(head -1 $T/dec/losses.tsv | cut -f3)\" = \"\$(head -1 $T/ref/losses.tsv | cut -f3)\" ]"
# the same tensor names and shapes as the model's VAE
$H info $M/vae | grep '\[' | awk '{$2 = ""; $NF = ""; print}' | sort >"$T/names.a"
$H info $C | grep '\[' | awk '{$2 = ""; $NF = ""; print}' | sort >"$T/names.b"
check "same tensor names and shapes as the model's vae" "[ -s $T/names.a ] && cmp -s $T/names.a $T/names.b"
# the trained vae/ in a model folder: the pipeline's VAE loader takes it as is
mkdir "$T/m2" && cp -r "$M"/* "$T/m2/" && rm -rf "$T/m2/vae" && cp -r "$C" "$T/m2/vae"
check "trained vae/ loads and decodes (helios generate)" "$H generate -q -m $T/m2 --width 128 --height 64 --chunks 1 -p x -o $T/g.mp4 >/dev/null 2>&1 && [ -s $T/g.mp4 ]"

# helios vae-stats: the latent tables and the reconstruction of world clips, as JSON
$H vae-stats "$M" --clips 2 --width 32 --height 32 --frames 5 >"$T/stats.json" 2>/dev/null
check "vae-stats: PSNR and 16 latent means" "grep -q '\"reconstruction_psnr_db\": [0-9]' $T/stats.json && [ \$(grep '\"latents_mean\"' $T/stats.json | tr ',' '\n' | grep -c '[0-9]') -eq 16 ]"
# --video: 12 frames in windows of 5 -> 2 windows, 10 frames (the partial one dropped); each
# window on its own (fresh caches): frames 5-9 alone reconstruct to the second window's frames
$H world -q --seed 4 --frames 12 --width 32 --height 32 -o "$T/w.y4m"
$H vae-stats "$M" --video "$T/w.y4m" --recon "$T/r.y4m" --frames 5 >"$T/v.json" 2>/dev/null
fb=$((32 * 32 * 3 / 2 + 6)) # a Y4M frame: "FRAME\n" + 4:2:0 planes
{ head -n 1 "$T/w.y4m" && tail -c $((7 * fb)) "$T/w.y4m" | head -c $((5 * fb)); } >"$T/w2.y4m"
$H vae-stats "$M" --video "$T/w2.y4m" --recon "$T/r2.y4m" --frames 5 >/dev/null 2>&1
check "--video: 2 windows, 10 frames" "grep -q '\"windows\": 2' $T/v.json && grep -q '\"frames\": 10' $T/v.json && [ \$(grep -ao FRAME $T/r.y4m | wc -l) -eq 10 ]"
check "--video: PSNR printed" "grep -q '\"reconstruction_psnr_db\": [0-9]' $T/v.json"
tail -c $((5 * fb)) "$T/r.y4m" >"$T/r.b"
tail -c $((5 * fb)) "$T/r2.y4m" >"$T/r2.b"
tail -c $((10 * fb)) "$T/r.y4m" | head -c $((5 * fb)) >"$T/r.a"
check "--video: each window with fresh caches" "[ -s $T/r2.b ] && cmp -s $T/r.b $T/r2.b"
check "--video: the two windows differ" "[ -s $T/r.a ] && ! cmp -s $T/r.a $T/r.b"
fails "--video needs --recon" 2 "--video needs --recon" $H vae-stats "$M" --video "$T/w.y4m"
fails "--video: a missing file named" 1 "$T/none.y4m" $H vae-stats "$M" --video "$T/none.y4m" --recon "$T/x.y4m"
$H world -q --frames 3 --width 32 --height 32 -o "$T/short.y4m"
fails "--video: shorter than a window" 1 "fewer than 5 frames" $H vae-stats "$M" --video "$T/short.y4m" --recon "$T/x.y4m" --frames 5
check "--video: no output left after a failure" "[ ! -e $T/x.y4m ] && [ ! -e $T/x.y4m.part ]"

echo "$((n - fail))/$n passed"
[ $fail -eq 0 ]

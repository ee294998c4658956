#!/bin/sh
# helios train with the stage-3 objectives on the tiny model folder (teacher = the same folder):
# bad settings name the key and exit 2; "stage3" for 4 steps equals 2 steps + --resume to 4, bit
# for bit (losses.tsv, stage3.tsv with every loss term, distance.tsv, the critic and the student);
# the checkpoint is a model folder `helios generate -m` runs with the Distilled recipe; "ode_init"
# caches its teacher trajectories, reuses them on a resume, and resumes bit for bit too. With the
# GAN on: 2 + resume 2 = 4 bit for bit (heads' gan.safetensors included), non-zero GAN columns,
# cache_grad false gives the same bits with a larger generator-step peak (gen_peak_bytes); the GAN
# starting at step 1 (gan_start) leaves step 0 as without it. Each checkpoint's ema/ is a second
# model folder holding the EMA, which `helios generate -m` runs as Distilled too.
# Histories (the default: stage 1's target chunk, history and task mix on 3-chunk clips): the runs
# above draw later chunks with a history (tasks.tsv), resume bit for bit with them (tasks.tsv too),
# and differ from p_t2v 1 (every sample a first chunk, nothing drawn), which gives the same bits
# whatever the clip length (clip_chunks 1 = the data of the runs before histories); ode_init's
# trajectories continue histories and their cache is reused on a resume. Two samples per step:
# batch 2 == accumulation 2, bit for bit. With LoRA a critic-only step leaves the adapters.
# usage: test_train_stage3_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
# cfg NAME OUTPUT STEPS TYPE [EXTRA OBJECTIVE MEMBERS] [EXTRA TOP MEMBERS]
cfg() {
    x=''
    [ "$4" = stage3 ] && x='"gen_every": 2, "critic_lr": 1e-4, '
    cat >"$T/$1.json" <<EOF
{"model": "$M", "init": "model", "output": "$T/$2", "steps": $3, "lr": 1e-4,
 "betas": [0.0, 0.999], "weight_decay": 0.001, "clip": 10, "ema": 0.9, "seed": 3,
 "data": "synthetic", "checkpoint_every": 2, "keep": 2, "validation_every": 2, "threads": 2${6:-},
 "objective": {"type": "$4", $x"teacher_steps": 2,
   "eval_prompts": 1, "steps": [1, 1, 1]${5:-},
   "synthetic": {"clips": 2, "frames": 2, "height": 16, "width": 16, "text_len": 8}}}
EOF
}
same() { cmp -s "$T/$1/$3" "$T/$2/$3"; }

cfg bad o 2 stage3 ', "bogus": 1'
fails "unknown key" 2 "objective.bogus" "$H" train -q "$T/bad.json"
cfg gan o 2 stage3 ', "gan_g_weight": -1'
fails "negative GAN weight" 2 "objective.gan_g_weight" "$H" train -q "$T/gan.json"
cfg gan o 2 stage3 ', "cache_grad": 1'
fails "cache_grad not a boolean" 2 "objective.cache_grad" "$H" train -q "$T/gan.json"
cfg pt o 2 stage3 ', "p_t2v": 1.5'
fails "p_t2v above 1" 2 "objective.p_t2v" "$H" train -q "$T/pt.json"
cfg pt o 2 ode_init ', "clip_chunks": 0'
fails "clip_chunks 0" 2 "objective.clip_chunks" "$H" train -q "$T/pt.json"
cfg gan o 2 stage3 ', "gan_start": -1'
fails "negative GAN start" 2 "objective.gan_start" "$H" train -q "$T/gan.json"
cfg gan o 2 stage3 ', "gan_crop": 0'
fails "GAN crop 0" 2 "objective.gan_crop" "$H" train -q "$T/gan.json"
cfg gan o 2 stage3 ', "gan_crop": 1.5'
fails "GAN crop above 1" 2 "objective.gan_crop" "$H" train -q "$T/gan.json"
cfg gan o 2 stage3 ', "gan_g_weight": 0.05, "gan_head": "conv3d"'
fails "Conv3d heads on a 2-frame window" 2 "objective.gan_head" "$H" train -q "$T/gan.json"
cfg gan o 2 stage3 ', "gan_head": "conv"'
fails "unknown GAN head" 2 "objective.gan_head" "$H" train -q "$T/gan.json"

# stage3: 4 straight vs 2 + resume to 4
cfg s4 s4 4 stage3
cfg s2 s2 2 stage3
sed "s#$T/s2\"#$T/s2\"#; s#\"steps\": 2,#\"steps\": 4,#" "$T/s2.json" >"$T/s2r.json"
"$H" train -q "$T/s4.json" 2>"$T/s4.log"
check "stage3 runs" "[ -f '$T/s4/checkpoint-4/COMPLETE' ]"
"$H" train -q "$T/s2.json" 2>/dev/null
"$H" train -q --resume "$T/s2r.json" 2>/dev/null
check "stage3 resume: losses.tsv" "same s4 s2 losses.tsv"
check "stage3 resume: stage3.tsv (every term)" "same s4 s2 stage3.tsv"
check "stage3 resume: distance.tsv" "same s4 s2 distance.tsv"
check "stage3 resume: critic" "same s4 s2 checkpoint-4/critic.safetensors"
check "stage3 resume: student" \
    "same s4 s2 checkpoint-4/transformer/diffusion_pytorch_model.safetensors"
check "stage3 resume: moments and EMA" "same s4 s2 checkpoint-4/optimizer.safetensors"
check "stage3 resume: tasks.tsv" "same s4 s2 tasks.tsv"
check "stage3: tasks.tsv has 4 steps, some a later chunk with a history" \
    "[ \$(wc -l <'$T/s4/tasks.tsv') -eq 5 ] && awk 'NR>1 && \$2!=\"t2v\" && \$3>0{ok=1} END{exit !ok}' '$T/s4/tasks.tsv'"
check "stage3.tsv: header + 4 steps, generator on steps 1 and 3" \
    "[ \$(wc -l <'$T/s4/stage3.tsv') -eq 5 ] && [ \$(awk 'NR>1{printf \"%s\", \$2}' '$T/s4/stage3.tsv') = 1010 ]"
check "distance.tsv: steps 0, 2, 4" "[ \$(cut -f1 '$T/s4/distance.tsv' | tr -d '\n') = 024 ]"
check "model folder: DMD scheduler, is_distilled" \
    "grep -q '\"is_distilled\": true' '$T/s4/checkpoint-4/model_index.json' && grep -q HeliosDMDScheduler '$T/s4/checkpoint-4/scheduler/scheduler_config.json'"
"$H" generate -m "$T/s4/checkpoint-4" -p "a red ball" --width 128 --height 128 --chunks 1 \
    -o "$T/g.safetensors" --threads 2 >"$T/gen.log" 2>&1
check "generate runs the student with the Distilled recipe" \
    "[ -s '$T/g.safetensors' ] && grep -q 'Distilled' '$T/gen.log'"
check "EMA model folder: DMD scheduler, is_distilled, EMA weights" \
    "grep -q '\"is_distilled\": true' '$T/s4/checkpoint-4/ema/model_index.json' && grep -q HeliosDMDScheduler '$T/s4/checkpoint-4/ema/scheduler/scheduler_config.json' && [ -s '$T/s4/checkpoint-4/ema/transformer/diffusion_pytorch_model.safetensors' ] && same s4 s4 checkpoint-4/transformer/config.json && cmp -s '$T/s4/checkpoint-4/transformer/config.json' '$T/s4/checkpoint-4/ema/transformer/config.json'"
check "EMA weights differ from the student's" \
    "! cmp -s '$T/s4/checkpoint-4/transformer/diffusion_pytorch_model.safetensors' '$T/s4/checkpoint-4/ema/transformer/diffusion_pytorch_model.safetensors'"
check "EMA resume: the same EMA folder" \
    "same s4 s2 checkpoint-4/ema/transformer/diffusion_pytorch_model.safetensors"
"$H" generate -m "$T/s4/checkpoint-4/ema" -p "a red ball" --width 128 --height 128 --chunks 1 \
    -o "$T/ge.safetensors" --threads 2 >"$T/gene.log" 2>&1
check "generate runs the EMA folder with the Distilled recipe" \
    "[ -s '$T/ge.safetensors' ] && grep -q 'Distilled' '$T/gene.log' && ! cmp -s '$T/g.safetensors' '$T/ge.safetensors'"

# stage3 with the GAN (heads on the critic, R1, Cache Grad): 4 straight vs 2 + resume to 4, and
# the same 4 steps without Cache Grad: the same bits, a larger generator-step peak
G=', "gan_g_weight": 0.05, "gan_d_weight": 0.01, "gan_r1_weight": 100, "gan_r1_sigma": 0.1, "gan_start": 1'
cfg g4 g4 4 stage3 "$G"
cfg g2 g2 2 stage3 "$G"
cfg gn gn 4 stage3 "$G"', "cache_grad": false'
sed "s#\"steps\": 2,#\"steps\": 4,#" "$T/g2.json" >"$T/g2r.json"
"$H" train -q "$T/g4.json" 2>/dev/null
"$H" train -q "$T/g2.json" 2>/dev/null
"$H" train -q --resume "$T/g2r.json" 2>/dev/null
"$H" train -q "$T/gn.json" 2>/dev/null
check "GAN runs, heads in the checkpoint" "[ -f '$T/g4/checkpoint-4/gan.safetensors' ]"
check "GAN resume: losses.tsv" "same g4 g2 losses.tsv"
check "GAN resume: stage3.tsv" "same g4 g2 stage3.tsv"
check "GAN resume: critic" "same g4 g2 checkpoint-4/critic.safetensors"
check "GAN resume: heads and their moments" "same g4 g2 checkpoint-4/gan.safetensors"
check "GAN resume: student" \
    "same g4 g2 checkpoint-4/transformer/diffusion_pytorch_model.safetensors"
check "GAN from gan_start 1: step 1 as without the GAN (GAN columns 0, the same loss)" \
    "awk -F'\t' 'NR==2 && (\$4+0!=0 || \$6+0!=0 || \$11+0!=0){bad=1} END{exit bad}' '$T/g4/stage3.tsv' && [ \"\$(sed -n 1p '$T/g4/losses.tsv')\" = \"\$(sed -n 1p '$T/s4/losses.tsv')\" ]"
check "GAN loss columns non-zero from step 2 (generator steps: gan_g; every step: gan_d, heads norm)" \
    "awk -F'\t' 'NR>2 && ((\$2==1 && \$4+0==0) || \$6+0==0 || \$11+0==0){bad=1} END{exit bad}' '$T/g4/stage3.tsv'"
check "GAN changes the losses from step 2" \
    "[ \"\$(sed -n 2,4p '$T/g4/losses.tsv')\" != \"\$(sed -n 2,4p '$T/s4/losses.tsv')\" ]"
check "Cache Grad off: the same losses" "same g4 gn losses.tsv"
check "Cache Grad off: the same terms" \
    "[ \"\$(cut -f1-11 '$T/g4/stage3.tsv')\" = \"\$(cut -f1-11 '$T/gn/stage3.tsv')\" ]"
check "Cache Grad off: the same student, critic, heads" \
    "same g4 gn checkpoint-4/transformer/diffusion_pytorch_model.safetensors && same g4 gn checkpoint-4/critic.safetensors && same g4 gn checkpoint-4/gan.safetensors"
check "Cache Grad: lower generator-step peak (step 3, the first generator step with the GAN)" \
    "[ \$(awk 'NR==4{print \$12}' '$T/g4/stage3.tsv') -lt \$(awk 'NR==4{print \$12}' '$T/gn/stage3.tsv') ]"
awk 'NR==4{printf "generator-step peak: %s bytes with Cache Grad, ", $12}' "$T/g4/stage3.tsv"
awk 'NR==4{printf "%s without\n", $12}' "$T/gn/stage3.tsv"
check "no GAN: generator-step peak = the student's tape (also before gan_start)" \
    "[ \$(awk 'NR==4{print \$12}' '$T/s4/stage3.tsv') -gt 0 ] && [ \$(awk 'NR==4{print \$12}' '$T/s4/stage3.tsv') -lt \$(awk 'NR==4{print \$12}' '$T/g4/stage3.tsv') ] && [ \$(awk 'NR==2{print \$12}' '$T/s4/stage3.tsv') -eq \$(awk 'NR==2{print \$12}' '$T/g4/stage3.tsv') ]"

# two samples per step: batch 2 == accumulation 2, bit for bit (the critic and the heads update
# once per step with the mean of the samples' gradients; the student's gradient sums whole
# samples); tasks.tsv holds both samples of each step, stage3.tsv one line per step
cfg b2 b2 4 stage3 "$G" ', "batch": 2'
cfg a2 a2 4 stage3 "$G" ', "accumulation": 2'
"$H" train -q "$T/b2.json" 2>/dev/null
"$H" train -q "$T/a2.json" 2>/dev/null
check "batch 2: runs, 2 tasks per step, 1 line per step" \
    "[ -f '$T/b2/checkpoint-4/COMPLETE' ] && [ \$(wc -l <'$T/b2/tasks.tsv') -eq 9 ] && [ \$(wc -l <'$T/b2/stage3.tsv') -eq 5 ]"
check "batch 2 == accumulation 2: losses, terms, tasks, critic, heads, student, moments" \
    "same b2 a2 losses.tsv && same b2 a2 stage3.tsv && same b2 a2 tasks.tsv && same b2 a2 distance.tsv && same b2 a2 checkpoint-4/critic.safetensors && same b2 a2 checkpoint-4/gan.safetensors && same b2 a2 checkpoint-4/transformer/diffusion_pytorch_model.safetensors && same b2 a2 checkpoint-4/optimizer.safetensors"
check "2 samples per step: another run than 1 (the same first sample)" \
    "! same b2 g4 stage3.tsv && [ \"\$(sed -n 2p '$T/b2/tasks.tsv')\" = \"\$(sed -n 2p '$T/g4/tasks.tsv')\" ]"

# LoRA: the loop trains the adapters and the TTUR filter still reads the stage-3 objective (the
# loop's hook_user), so a critic-only step leaves the adapters as they were
cfg lo lo 3 stage3 '' ', "lora": {"rank": 4}'
sed 's/"checkpoint_every": 2, "keep": 2/"checkpoint_every": 1, "keep": 0/' "$T/lo.json" >"$T/lo.tmp" &&
    mv "$T/lo.tmp" "$T/lo.json"
"$H" train -q "$T/lo.json" 2>/dev/null
A=transformer_lora/pytorch_lora_weights.safetensors
check "LoRA: the critic-only step 2 leaves the adapters, generator steps 1 and 3 move them" \
    "[ -f '$T/lo/checkpoint-3/COMPLETE' ] && same lo lo checkpoint-1/$A && cmp -s '$T/lo/checkpoint-1/$A' '$T/lo/checkpoint-2/$A' && ! cmp -s '$T/lo/checkpoint-2/$A' '$T/lo/checkpoint-3/$A'"

# the reference's Conv3d heads (gan_head "conv3d") on 4 latent frames (a 4x4x4 token window):
# 4 straight vs 2 + resume to 4, the heads' Conv3d parameters in gan.safetensors, GAN terms > 0
cf() { # NAME STEPS
    cfg "$1" "$1" "$2" stage3 "$G"', "gan_head": "conv3d"'
    sed 's#"frames": 2#"frames": 4#' "$T/$1.json" >"$T/$1.tmp" && mv "$T/$1.tmp" "$T/$1.json"
}
cf c4 4
cf c2 2
sed "s#\"steps\": 2,#\"steps\": 4,#" "$T/c2.json" >"$T/c2r.json"
"$H" train -q "$T/c4.json" 2>/dev/null
"$H" train -q "$T/c2.json" 2>/dev/null
"$H" train -q --resume "$T/c2r.json" 2>/dev/null
check "Conv3d heads: run, Conv3d parameters saved" \
    "[ -f '$T/c4/checkpoint-4/COMPLETE' ] && grep -qa 'heads.disc.heads.0.conv.5.weight' '$T/c4/checkpoint-4/gan.safetensors'"
check "Conv3d heads: GAN columns non-zero from step 2" \
    "awk -F'\t' 'NR>2 && ((\$2==1 && \$4+0==0) || \$6+0==0 || \$11+0==0){bad=1} END{exit bad}' '$T/c4/stage3.tsv'"
check "Conv3d heads resume: losses, terms, heads, critic, student" \
    "same c4 c2 losses.tsv && same c4 c2 stage3.tsv && same c4 c2 checkpoint-4/gan.safetensors && same c4 c2 checkpoint-4/critic.safetensors && same c4 c2 checkpoint-4/transformer/diffusion_pytorch_model.safetensors"

# p_t2v 1: first chunks only, the same bits on 3-chunk and 1-chunk clips, not those of histories
cfg p3 p3 4 stage3 "$G"', "p_t2v": 1'
cfg p1 p1 4 stage3 "$G"', "p_t2v": 1, "clip_chunks": 1'
"$H" train -q "$T/p3.json" 2>/dev/null
"$H" train -q "$T/p1.json" 2>/dev/null
check "p_t2v 1: every step a first chunk" \
    "[ \$(awk 'NR>1 && \$2==\"t2v\" && \$3==0' '$T/p3/tasks.tsv' | wc -l) -eq 4 ]"
check "p_t2v 1: the clip's length changes nothing" \
    "same p3 p1 losses.tsv && same p3 p1 stage3.tsv && same p3 p1 checkpoint-4/critic.safetensors && same p3 p1 checkpoint-4/gan.safetensors && same p3 p1 checkpoint-4/transformer/diffusion_pytorch_model.safetensors"
check "histories change the run" "! same g4 p3 stage3.tsv"

# ode_init: 4 straight vs 2 + resume to 4; the resume reads the cached trajectories
cfg o4 o4 4 ode_init ', "trajectories": 3'
cfg o2 o2 2 ode_init ', "trajectories": 3'
sed "s#\"steps\": 2,#\"steps\": 4,#" "$T/o2.json" >"$T/o2r.json"
"$H" train -q "$T/o4.json" 2>/dev/null
"$H" train -q "$T/o2.json" 2>/dev/null
"$H" train --resume "$T/o2r.json" 2>"$T/o2r.log"
check "ode_init: trajectories cached" "[ -f '$T/o4/ode_cache/traj-0001.safetensors' ]"
check "ode_init resume: cache reused" "grep -q '0 computed, 3 from the cache' '$T/o2r.log'"
check "ode_init resume: losses.tsv" "same o4 o2 losses.tsv"
check "ode_init: trajectories continue histories" "grep -q '[1-9][0-9]* continue a history' '$T/o2r.log'"
check "ode_init resume: tasks.tsv" "same o4 o2 tasks.tsv"
check "ode_init resume: student" \
    "same o4 o2 checkpoint-4/transformer/diffusion_pytorch_model.safetensors"
check "ode_init: model folder" "[ -f '$T/o4/checkpoint-4/scheduler/scheduler_config.json' ]"

# a student folder sampled in two pyramid stages: ode_init and stage3 train two levels ("steps"
# one number per level), the checkpoint's scheduler keeps them, and generate runs it
pyramid_folder m2 "$M" 2 '0, 0.5, 1'
for ty in ode_init stage3; do
    cfg ${ty}2 ${ty}2 2 $ty
    sed -i "s#\"model\": \"$M\"#\"model\": \"$T/m2\"#; s#\"steps\": \[1, 1, 1\]#\"steps\": [1, 2]#" "$T/${ty}2.json"
    "$H" train -q "$T/${ty}2.json" 2>"$T/${ty}2.log"
    check "$ty, two levels: runs, the checkpoint's scheduler has 2 stages over [0, 0.5, 1]" \
        "[ -f '$T/${ty}2/checkpoint-2/COMPLETE' ] && tr -d ' \n' <'$T/${ty}2/checkpoint-2/scheduler/scheduler_config.json' | grep -q '\"stages\":2,\"stage_range\":\[0,0.5,1\]'"
done
check "ode_init, two levels: other losses than three" "! same o2 ode_init2 losses.tsv"
"$H" generate -m "$T/stage32/checkpoint-2" -p "a red ball" --width 128 --height 128 --chunks 1 \
    -o "$T/g2.safetensors" --threads 2 >"$T/gen2.log" 2>&1
check "generate runs the two-level student" "[ -s '$T/g2.safetensors' ] && grep -q 'Distilled' '$T/gen2.log'"
sed 's#"steps": \[1, 2\]#"steps": [1, 1, 1]#' "$T/stage32.json" >"$T/stage32bad.json"
fails "two levels: three steps" 2 "'objective.steps' must be an array of 2 numbers" "$H" train "$T/stage32bad.json"

echo "test_train_stage3_cli: $n checks, $fail failed"
[ $fail -eq 0 ]

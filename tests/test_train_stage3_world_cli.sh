#!/bin/sh
# helios train with the stage-3 objectives on the tiny world ("data": "procedural") and the tiny
# model folder (VAE, text encoder and tokenizer encode the clips into the latent cache; teacher =
# the same folder): "ode_init" and "stage3" run 2 steps on 2 cached clips of 66 frames (2 chunks of
# 9 latent frames, 8x8 latents), writing their losses and the cache (OUTPUT/cache by default, a
# given folder reused; ode_init's trajectories reused on the same clips only); "synthetic" with "dataset", a block with the wrong "data" and a
# clip_chunks the clips contradict exit 2 naming the key; stage3 resumes bit for bit; stage3 runs
# on a folder of 2 captioned videos (made with ffmpeg, skipped without it).
# usage: test_train_stage3_world_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
# cfg NAME OUTPUT TYPE DATA [EXTRA OBJECTIVE MEMBERS] [DATASET MEMBERS]
cfg() {
    x=''
    [ "$3" = stage3 ] && x='"gen_every": 2, "critic_lr": 1e-4, '
    [ "$3" = ode_init ] && x='"trajectories": 2, '
    cat >"$T/$1.json" <<JSON
{"model": "$M", "init": "model", "output": "$T/$2", "steps": 2, "lr": 1e-4,
 "betas": [0.0, 0.999], "seed": 3, "data": "$4", "threads": 2,
 "objective": {"type": "$3", $x"teacher_steps": 2, "eval_prompts": 1, "steps": [1, 1, 1]${5:-},
   "dataset": {"width": 64, "height": 64, "frames": 66, "clips": 2, "text_len": 8${6:-}}}}
JSON
}

same() { cmp -s "$T/$1/$3" "$T/$2/$3"; }

cfg both o stage3 procedural ', "synthetic": {"clips": 2}'
fails "synthetic and dataset both given" 2 "objective.dataset" "$H" train -q "$T/both.json"
cfg syn o ode_init synthetic
fails "dataset with synthetic data" 2 "objective.dataset" "$H" train -q "$T/syn.json"
cfg cc o ode_init procedural ', "clip_chunks": 3'
fails "clip_chunks the clips contradict" 2 "objective.clip_chunks" "$H" train -q "$T/cc.json"
cfg fr o stage3 procedural '' ', "frames": 40'
fails "dataset frames not a multiple of 33" 2 "objective.dataset.frames" "$H" train -q "$T/fr.json"

cfg ode ode ode_init procedural ', "clip_chunks": 2'
"$H" train -q "$T/ode.json" 2>"$T/ode.err"
rc=$?
check "ode_init on the world: exit 0" "[ $rc -eq 0 ] || { cat '$T/ode.err'; false; }"
check "ode_init on the world: 2 losses, 2 trajectories" \
    "[ \$(wc -l <'$T/ode/losses.tsv') -eq 2 ] && [ -f '$T/ode/ode_cache/traj-0001.safetensors' ]"
check "ode_init on the world: latent cache in OUTPUT/cache" \
    "[ -f '$T/ode/cache/cache.json' ] && [ -f '$T/ode/cache/1.safetensors' ]"

# the trajectories' keys hold the clip: the same clips reuse them, another world seed recomputes
cfg od2 od2 ode_init procedural ", \"cache\": \"$T/ode/ode_cache\"" ", \"cache\": \"$T/ode/cache\""
"$H" train "$T/od2.json" 2>"$T/od2.err"
check "ode_init on the same clips: trajectories reused" "grep -q '0 computed, 2 from the cache' '$T/od2.err'"
cfg od3 od3 ode_init procedural ", \"cache\": \"$T/ode/ode_cache\"" ', "seed": 1'
"$H" train "$T/od3.json" 2>"$T/od3.err"
check "ode_init on other clips: trajectories recomputed" "grep -q '2 computed, 0 from the cache' '$T/od3.err'"

cfg s3 s3 stage3 procedural '' ", \"cache\": \"$T/ode/cache\""
"$H" train "$T/s3.json" 2>"$T/s3.err"
rc=$?
check "stage3 on the world: exit 0" "[ $rc -eq 0 ] || { cat '$T/s3.err'; false; }"
check "stage3 on the world: 2 losses, 2 steps of terms, distance before training" \
    "[ \$(wc -l <'$T/s3/losses.tsv') -eq 2 ] && [ \$(wc -l <'$T/s3/stage3.tsv') -eq 3 ] && [ -s '$T/s3/distance.tsv' ]"
check "stage3 on the world: the given cache folder, no OUTPUT/cache" \
    "grep -q 'latent cache $T/ode/cache' '$T/s3.err' && [ ! -e '$T/s3/cache' ]"

# stage3 on the world: 4 straight vs 2 + resume to 4, bit for bit (the cache reused)
cfg s4 s4 stage3 procedural '' ", \"cache\": \"$T/ode/cache\""
sed 's#"steps": 2,#"steps": 4,#' "$T/s4.json" >"$T/s4.tmp" && mv "$T/s4.tmp" "$T/s4.json"
sed 's#"steps": 2,#"steps": 4,#' "$T/s3.json" >"$T/s3r.json"
"$H" train -q "$T/s4.json" 2>/dev/null
"$H" train -q --resume "$T/s3r.json" 2>/dev/null
check "stage3 on the world: resume bit for bit (losses, terms, tasks, student)" \
    "same s4 s3 losses.tsv && same s4 s3 stage3.tsv && same s4 s3 tasks.tsv && same s4 s3 checkpoint-4/transformer/diffusion_pytorch_model.safetensors"

# a folder of 2 captioned videos (made with ffmpeg when it is there): stage3 for 2 steps
if command -v ffmpeg >/dev/null 2>&1; then
    mkdir -p "$T/vids"
    for v in a b; do
        ffmpeg -loglevel error -f lavfi -i testsrc=size=96x80:rate=16 -frames:v 40 \
            -pix_fmt yuv420p "$T/vids/$v.mp4" && echo "a test pattern $v" >"$T/vids/$v.txt"
    done
    cfg fold fold stage3 "$T/vids" '' ', "frames": 33'
    "$H" train -q "$T/fold.json" 2>"$T/fold.err"
    rc=$?
    check "stage3 on a folder of videos: exit 0, 2 losses, 2 cached clips" \
        "[ $rc -eq 0 ] && [ \$(wc -l <'$T/fold/losses.tsv') -eq 2 ] && [ -f '$T/fold/cache/1.safetensors' ] || { cat '$T/fold.err'; false; }"
else
    echo "skip stage3 on a folder of videos (no ffmpeg)"
fi

echo "test_train_stage3_world_cli: $n checks, $fail failed"
[ $fail -eq 0 ]

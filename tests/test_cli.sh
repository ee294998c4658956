#!/bin/sh
# helios generate end to end on the tiny random model folder: T2V, I2V and V2V MP4s that ffprobe
# reads with the right frame count and fps, Y4M and PNG outputs, and clean failures.
# usage: test_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0 n=0
check() { # name, condition (a shell command)
    n=$((n + 1))
    if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=$((fail + 1)); fi
}
frames() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1"; }
fps() { ffprobe -v error -select_streams v:0 -show_entries stream=r_frame_rate -of csv=p=0 "$1"; }
G="$H generate -q -m $M --width 128 --height 64"

$G -p "a red ball bouncing" --frames 99 -o "$T/t2v.mp4" 2>/dev/null
check "t2v: 99 frames asked, 97 written (4k+1)" "[ \"\$(frames $T/t2v.mp4)\" = 97 ]"
check "t2v: 24 fps" "[ \"\$(fps $T/t2v.mp4)\" = 24/1 ]"
check "t2v: no .part left" "[ ! -e $T/t2v.mp4.part ]"
ffmpeg -v error -i "$T/t2v.mp4" -vframes 1 "$T/first.png"
$G -p "the ball rolls away" --image "$T/first.png" --chunks 2 -o "$T/i2v.mp4" 2>/dev/null
check "i2v: 2 chunks = 65 frames" "[ \"\$(frames $T/i2v.mp4)\" = 65 ]"
$G -p "the ball keeps bouncing" --video "$T/t2v.mp4" --chunks 2 -o "$T/v2v.mp4" 2>/dev/null
check "v2v: 2 chunks = 65 frames" "[ \"\$(frames $T/v2v.mp4)\" = 65 ]"
$G -p "a red ball" --chunks 1 -o "$T/out.y4m" 2>/dev/null
check "y4m: header" "head -c 9 $T/out.y4m | grep -q YUV4MPEG2"
$G -p "a red ball" --chunks 1 -o - 2>/dev/null > "$T/stdout.y4m"
check "y4m on stdout" "[ \$(grep -c FRAME $T/stdout.y4m) -ge 33 ]"
$G -p "a red ball" --chunks 1 -o "$T/png/" 2>/dev/null
check "png frames: 33 files" "[ \$(ls $T/png | wc -l) = 33 ]"
$G -p "a red ball" --chunks 1 --sampler euler -o "$T/euler.mp4" 2>/dev/null
check "--sampler euler override: 33 frames" "[ \"\$(frames $T/euler.mp4)\" = 33 ]"
check "bad sampler fails" "! $G -p x --sampler foo -o $T/x.mp4 2>/dev/null"
check "bad size fails" "! $G -p x --width 100 -o $T/x.mp4 2>/dev/null"
check "missing model fails, named" "$H generate -q -m $T/nope -p x -o $T/x.mp4 2>&1 | grep -q nope"
check "unreadable image fails, named" "echo garbage > $T/bad.png; $G -p x --image $T/bad.png -o $T/x.mp4 2>&1 | grep -q bad.png"
check "video shorter than a chunk fails" "$G -p x --video $T/first.png -o $T/x.mp4 2>&1 | grep -q 'fewer than one chunk'"
check "no output file after a failure" "[ ! -e $T/x.mp4 ] && [ ! -e $T/x.mp4.part ]"
# A broken model folder fails at load, before anything is computed or any output created, and the
# message names the file and the key. model NAME FILE SED-SCRIPT: the tiny model with FILE edited.
model() {
    rm -rf "$T/$1" && cp -r "$M" "$T/$1" && { [ -z "$2" ] || sed -i "$3" "$T/$1/$2"; }
}
bad_model() { # name, file named, key named, output (default $T/bad.mp4)
    out=${4:-$T/bad.mp4} want_file=$2 want_key=$3
    msg=$($H generate -q -m "$T/$1" --width 128 --height 64 --chunks 1 -p x -o "$out" 2>&1)
    rc=$?
    f0=$fail
    check "$1: exit $rc, names $2 and $3, no output" \
        '[ $rc -ne 0 ] && printf "%s" "$msg" | grep -qF -- "$want_file" && printf "%s" "$msg" | grep -qF -- "$want_key" &&
         [ ! -e "$out" ] && [ ! -e "$out.part" ]'
    [ $fail -eq $f0 ] || printf '%s\n' "$msg" | tail -n 3
    rm -rf "$T/$1"
}
model no_vae "" && rm -r "$T/no_vae/vae"
bad_model no_vae vae/config.json "'vae'" "$T/frames_novae/"
model no_vae_latents "" && rm -r "$T/no_vae_latents/vae"
bad_model no_vae_latents vae/config.json "'vae'" "$T/lat.safetensors"
model latents_mean_15 vae/config.json '/"latents_mean"/{n;d}'
bad_model latents_mean_15 vae/config.json "'latents_mean'"
model base_dmd model_index.json 's/HeliosPyramidPipeline/HeliosPipeline/'
bad_model base_dmd model_index.json DMD
model umt5_eps0 text_encoder/config.json 's/"layer_norm_epsilon": 1e-06/"layer_norm_epsilon": 0/'
bad_model umt5_eps0 text_encoder/config.json "'layer_norm_epsilon'"
model umt5_eps_neg text_encoder/config.json 's/"layer_norm_epsilon": 1e-06/"layer_norm_epsilon": -1e-06/'
bad_model umt5_eps_neg text_encoder/config.json "'layer_norm_epsilon'"
model distilled_yes model_index.json 's/"is_distilled": true/"is_distilled": "yes"/'
bad_model distilled_yes model_index.json "'is_distilled'"
model autoencoderkl model_index.json 's/"AutoencoderKLWan"/"AutoencoderKL"/'
bad_model autoencoderkl model_index.json "'vae'"
model ddim model_index.json 's/"HeliosDMDScheduler"/"DDIMScheduler"/'
bad_model ddim model_index.json "'scheduler'"
model distilled_unipc scheduler/scheduler_config.json 's/"dmd"/"unipc"/'
bad_model distilled_unipc model_index.json "'is_distilled'"
model train_steps scheduler/scheduler_config.json 's/"num_train_timesteps": 1000/"num_train_timesteps": 100000000/'
bad_model train_steps scheduler_config.json "'num_train_timesteps'"
model umt5_layers0 text_encoder/config.json 's/"num_layers": 2/"num_layers": 0/'
bad_model umt5_layers0 text_encoder/config.json "'num_layers'"
model text_dim transformer/config.json 's/"text_dim": 32/"text_dim": 48/'
bad_model text_dim text_encoder/config.json "'d_model'"
# a folder meant for latents says "vae": [null, null]: latents are written, frames refused
model latents_only "" && rm -r "$T/latents_only/vae" &&
    sed -i '/"vae": \[/,/\]/c\ "vae": [null, null]' "$T/latents_only/model_index.json"
L="$H generate -q -m $T/latents_only --width 128 --height 64 --chunks 1 -p x"
$L -o "$T/lat.safetensors" 2>/dev/null
check "latents-only folder: latents written" "[ -s $T/lat.safetensors ]"
msg=$($L -o "$T/lo.mp4" 2>&1)
rc=$?
check "latents-only folder: frames refused (exit $rc), nothing created" \
    '[ $rc -ne 0 ] && printf "%s" "$msg" | grep -q vae && [ ! -e $T/lo.mp4 ] && [ ! -e $T/lo.mp4.part ]'
check "helios --version" "$H --version | grep -q '^helios [0-9]*\.[0-9]*\.[0-9]*$'"
echo "$((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]

#!/bin/sh
# helios generate end to end on the tiny random model folder: T2V, I2V and V2V MP4s that ffprobe
# reads with the right frame count and fps, Y4M and PNG outputs, and clean failures: each bad
# command line of issue 15 exits 2 with a message naming the option and the reason.
# usage: test_cli.sh HELIOS_BINARY MODEL_DIR
set -u
H=$1 M=$2
. "$(dirname "$0")/cli_lib.sh"
# name, exit status wanted, text the message must hold, command...: the run must fail with that
# status and say why (stderr), with no sanitizer report
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
# the output kind is the path's ending: ".safetensors" inside the name does not make latents
$G -p "a red ball" --chunks 1 --sampler euler -o "$T/euler.safetensors.mp4" 2>/dev/null
check "--sampler euler override: 33 frames" "[ \"\$(frames $T/euler.safetensors.mp4)\" = 33 ]"
check "-o foo.safetensors.mp4 is an MP4" \
    "ffprobe -v error -show_entries format=format_name -of csv=p=0 $T/euler.safetensors.mp4 | grep -q mp4"

# --switch-prompt may be given once per chunk: two switches in a three-chunk video
$G -p "a red ball" --chunks 3 --switch-prompt 2:"a blue cube" --switch-prompt 1:"a green cone" --interp 1 \
    -o "$T/switch.y4m" 2>/dev/null
check "two --switch-prompt: 3 chunks = 97 frames" "[ \"\$(frames $T/switch.y4m)\" = 97 ]"

# bad command lines: exit 2 and a message naming the option and the reason (issue 15)
G1="$G -p x --chunks 1"
fails "bad sampler" 2 "--sampler 'foo' is not one of unipc, euler or dmd" $G1 --sampler foo -o $T/x.mp4
fails "--width 100: the rule in pixels, per recipe" 2 "width 100 must be a multiple of 64 for the Distilled recipe" \
    $G1 --width 100 -o $T/x.mp4
fails "--threads 100000 (crashed in libgomp)" 2 "--threads '100000' is out of range (0..512)" $G1 --threads 100000 -o $T/x.mp4
fails "--threads -4 (exited 1, silent)" 2 "--threads '-4' is out of range" $G1 --threads -4 -o $T/x.mp4
fails "--frames 2147483647 (overflowed)" 2 "--frames '2147483647' is out of range (1..1048576)" \
    $G -p x --frames 2147483647 -o $T/x.mp4
fails "--seconds 1e300" 2 "--seconds '1e300' is out of range" $G -p x --seconds 1e300 -o $T/x.mp4
fails "--seconds nan" 2 "--seconds 'nan' is not a number" $G -p x --seconds nan -o $T/x.mp4
fails "--seconds -3" 2 "--seconds '-3' is out of range" $G -p x --seconds -3 -o $T/x.mp4
fails "--frames 0" 2 "--frames '0' is out of range" $G -p x --frames 0 -o $T/x.mp4
fails "--frames -5" 2 "--frames '-5' is out of range" $G -p x --frames -5 -o $T/x.mp4
fails "--frames with --chunks" 2 "give one of --frames, --seconds and --chunks" $G1 --frames 9 -o $T/x.mp4
fails "--steps 0 (ran 50)" 2 "--steps '0' is out of range (1..1000)" $G1 --steps 0 -o $T/x.mp4
fails "--width 128px" 2 "--width '128px' is not an integer" $G1 --width 128px -o $T/x.mp4
fails "--width 4294967424 (was 128)" 2 "--width '4294967424' is out of range" $G1 --width 4294967424 -o $T/x.mp4
fails "--seed abc (was 0)" 2 "--seed 'abc' is not a non-negative integer" $G1 --seed abc -o $T/x.mp4
fails "--seed -1" 2 "--seed '-1' is not a non-negative integer" $G1 --seed -1 -o $T/x.mp4
fails "--backend gpu (ran on the cpu)" 2 "--backend 'gpu' is not one of cpu or ref" $G1 --backend gpu -o $T/x.mp4
fails "--pyramid-steps 1,1,1,1" 2 "--pyramid-steps '1,1,1,1': wants 1 to 3" $G1 --pyramid-steps 1,1,1,1 -o $T/x.mp4
fails "--pyramid-steps 1,0,1" 2 "item 2 '0' is out of range" $G1 --pyramid-steps 1,0,1 -o $T/x.mp4
# one number per pyramid stage of the model: three for a model sampled in two stages fail, two run
pyramid_folder m2 "$M" 2 '0, 0.5, 1'
fails "--pyramid-steps 1,1,1 for two stages" 2 "pyramid_steps[2] = 1, but the model's scheduler has 2 pyramid stages" $H generate -m "$T/m2" -p x --chunks 1 --width 128 --height 128 --pyramid-steps 1,1,1 -o $T/x.mp4
$H generate -q -m "$T/m2" -p x --chunks 1 --width 128 --height 128 --pyramid-steps 1,2 -o $T/p2.y4m 2>"$T/p2.err"
check "--pyramid-steps 1,2 for two stages runs" "[ -s $T/p2.y4m ]"
$H generate -q -m "$T/m2" -p x --chunks 1 --width 128 --height 128 --pyramid-steps 1,1,1 --pyramid-steps 1,2 -o $T/p2b.y4m 2>"$T/p2b.err"
check "--pyramid-steps given twice: the last, whole (not 1,2 over 1,1,1)" "cmp -s $T/p2.y4m $T/p2b.y4m"
fails "--width without a value" 2 "--width needs a value" $G1 -o $T/x.mp4 --width
fails "unknown option" 2 "unknown option '--bogus'" $G1 --bogus -o $T/x.mp4
fails "stray argument" 2 "unexpected argument 'stray'" $G1 stray -o $T/x.mp4
fails "--switch-prompt past the last chunk" 2 "--switch-prompt 1: past the last chunk (the video has 1 chunk" \
    $G1 --switch-prompt 1:y -o $T/x.mp4
fails "--switch-prompt twice for one chunk" 2 "chunk 2 is given twice" \
    $G -p x --chunks 3 --switch-prompt 2:a --switch-prompt 2:b -o $T/x.mp4
fails "--switch-prompt 1x:TEXT" 2 "the chunk '1x' is not an integer" $G1 --switch-prompt 1x:y -o $T/x.mp4
fails "--switch-prompt 0:TEXT" 2 "the chunk '0' is out of range" $G1 --switch-prompt 0:y -o $T/x.mp4
fails "--guidance 1e39 (a uniform video, exit 0)" 2 "--guidance '1e39' is out of range (0..100)" \
    $G1 --sampler euler --guidance 1e39 -o $T/x.mp4
fails "--interp -1" 2 "--interp '-1' is out of range" $G1 --interp -1 -o $T/x.mp4
fails "bench --only bogus (ran nothing, exit 0)" 2 "--only 'bogus' is not one of block, umt5, vae, tiny, linear, train, gemm, e2e or pack" $H bench --only bogus
fails "bench --reps -1 (blamed the heads)" 2 "--reps '-1' is out of range (1..64)" $H bench --reps -1
fails "bench --dim/--heads" 2 "--dim 100 does not split into --heads 12" $H bench --dim 100
fails "verify --threads x" 2 "--threads 'x' is not an integer" $H verify --threads x "$T"
fails "verify --backend gpu" 2 "--backend 'gpu' is not one of cpu or ref" $H verify --backend gpu "$T"
fails "info with two paths" 2 "one PATH only" $H info a b
# without -m: $HELIOS_MODEL, else models/helios-tiny beside the binary
check "no -m: \$HELIOS_MODEL is the model" "HELIOS_MODEL=$M $H generate -q --width 128 --height 64 --chunks 1 -p x -o $T/env.mp4 >/dev/null 2>&1 && [ -s $T/env.mp4 ]"
fails "no -m, \$HELIOS_MODEL not a model folder" 1 "$T/nothere/model_index.json" env HELIOS_MODEL=$T/nothere $H generate -q -p x -o $T/x.mp4
# HELIOS_LOG: debug reaches the library's debug lines, warn silences its info lines
check "HELIOS_LOG=debug: the memory plan is logged" \
    "HELIOS_LOG=debug $G -p x --chunks 1 -o $T/log.mp4 2>&1 | grep -q '^helios debug: memory: '"
check "HELIOS_LOG=warn: no info lines" \
    "! HELIOS_LOG=warn $G -p x --chunks 1 -o $T/logw.mp4 2>&1 | grep -q '^helios info:' && [ -s $T/logw.mp4 ]"
check "HELIOS_LOG=loud: said, and info" \
    "HELIOS_LOG=loud $H version 2>&1 | grep -q \"HELIOS_LOG='loud' is not error, warn, info or debug\""
fails "-p is required" 2 "-p PROMPT is required" $H generate -q -m $M -o $T/x.mp4
# a ~4 KB model path: the message keeps what is wrong, not the path alone (a 1 KB cut)
long=$T/$(printf '%0200d/' 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 | tr 0 d)
fails "4 KB model path keeps the reason" 1 "model_index.json: cannot open: " $H generate -q -m "$long" -p x -o $T/x.mp4
# a second run writing the same output finds the first one's .part locked and leaves it alone
# (flock(1) holds the same kind of lock a writing run holds); a .part nobody holds, left by a
# killed run, is taken over
echo first > "$T/busy.mp4.part"
flock "$T/busy.mp4.part" sleep 60 &
locker=$!
sleep 0.5
fails "same output twice: .part in use" 1 "busy.mp4.part is being written by another run" \
    $G1 -o $T/busy.mp4
check "the other run's .part untouched, no output" "[ \"\$(cat $T/busy.mp4.part)\" = first ] && [ ! -e $T/busy.mp4 ]"
kill $locker 2>/dev/null
wait $locker 2>/dev/null
echo stale > "$T/stale.mp4.part"
$G1 -o "$T/stale.mp4" 2>/dev/null
check "a killed run's .part is taken over" "[ \"\$(frames $T/stale.mp4)\" = 33 ] && [ ! -e $T/stale.mp4.part ]"
# --chunks -1: no end; SIGINT once the output exists ends the video after the chunk in progress
$G -p x --chunks -1 -o "$T/stream.mp4" 2>"$T/stream.err" &
streamer=$!
for i in $(seq 1 600); do [ -e "$T/stream.mp4.part" ] && break; sleep 0.1; done
kill -INT $streamer
wait $streamer
rc=$?
check "--chunks -1 stopped by SIGINT: exit 0, whole chunks, no .part" \
    "[ $rc -eq 0 ] && grep -q 'stopped after' $T/stream.err && [ \$((\$(frames $T/stream.mp4) % 33)) -eq 0 ] && [ ! -e $T/stream.mp4.part ]"
fails "--chunks -1 into latents" 2 "cannot hold a video without an end" $G1 --chunks -1 -o $T/x.safetensors
fails "--chunks 0" 2 "--chunks 0: give 1..65536, or -1" $G1 --chunks 0 -o $T/x.mp4
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
model size_str model_index.json 's/"is_distilled": true/"is_distilled": true, "default_width": "64"/'
bad_model size_str model_index.json "'default_width'"
model size_odd model_index.json 's/"is_distilled": true/"is_distilled": true, "default_height": 8/'
bad_model size_odd model_index.json "'default_height'"
model msl_0 model_index.json 's/"is_distilled": true/"is_distilled": true, "max_sequence_length": 0/'
bad_model msl_0 model_index.json "'max_sequence_length'"
model hist_flat model_index.json 's/"is_distilled": true/"is_distilled": true, "history": "flat"/'
bad_model hist_flat model_index.json "'history'"
# "history": "uncompressed" (a model trained without the multi-term memory): generates, and other
# frames than the compressed history (every chunk: test_generate)
model hist_unc model_index.json 's/"is_distilled": true/"is_distilled": true, "history": "uncompressed"/'
$H generate -q -m "$T/hist_unc" --width 128 --height 64 --chunks 2 -p x -o "$T/hist_unc.y4m" 2>/dev/null
rc=$?
$H generate -q -m "$M" --width 128 --height 64 --chunks 2 -p x -o "$T/hist_comp.y4m" 2>/dev/null
check "history uncompressed: generates, other frames" "[ $rc -eq 0 ] && [ -s $T/hist_unc.y4m ] && [ -s $T/hist_comp.y4m ] && ! cmp -s $T/hist_unc.y4m $T/hist_comp.y4m"
rm -rf "$T/hist_unc" "$T/hist_unc.y4m" "$T/hist_comp.y4m"
# a size not given is the model's: default_width / default_height, else 640x384
model native model_index.json 's/"is_distilled": true/"is_distilled": true, "default_width": 192, "default_height": 64/'
$H generate -q -m "$T/native" --chunks 1 -p x -o "$T/native.y4m" 2>/dev/null
check "no --width/--height: the model's default_width x default_height" "head -c 64 $T/native.y4m | grep -q 'W192 H64'"
$H generate -q -m "$T/native" --width 128 --chunks 1 -p x -o "$T/native2.y4m" 2>/dev/null
check "--width given, height the model's" "head -c 64 $T/native2.y4m | grep -q 'W128 H64'"
rm -rf "$T/native"
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
# a Base folder asked for the DMD sampler: refused before any compute (it failed at the first
# step, inside set_timesteps)
cp -r "$M" "$T/base_model"
sed -i 's/HeliosPyramidPipeline/HeliosPipeline/; s/"is_distilled": true/"is_distilled": false/; s/HeliosDMDScheduler/HeliosScheduler/' "$T/base_model/model_index.json"
sed -i 's/HeliosDMDScheduler/HeliosScheduler/; s/"scheduler_type": "dmd"/"scheduler_type": "unipc"/' "$T/base_model/scheduler/scheduler_config.json"
fails "DMD sampler on a Base folder" 2 "the DMD sampler needs a pyramid model" \
    $H generate -q -m "$T/base_model" --width 128 --height 64 --chunks 1 -p x --sampler dmd -o $T/x.mp4
check "helios --version" "$H --version | grep -q '^helios [0-9]*\.[0-9]*\.[0-9]*$'"

# ---- bad input (issue 15): non-finite values, damaged media, memory limits, long V2V ----
# poison FILE TENSOR [BYTES]: the first elements of an F32 tensor of a .safetensors file become
# BYTES (printf escapes; default one NaN), in place
poison() {
    hlen=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    off=$(head -c $((8 + hlen)) "$1" | grep -a -o "\"$2\":{[^}]*}" | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
    printf "${3:-\\000\\000\\300\\177}" | dd of="$1" bs=1 seek=$((8 + hlen + off)) conv=notrunc 2>/dev/null
}
# peak_kb CMD...: runs CMD, prints its peak RSS (VmHWM) in kB, sampled until it exits
peak_kb() {
    "$@" 2>/dev/null &
    pid=$! peak=0
    while kill -0 $pid 2>/dev/null; do
        v=$(awk '/^VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null)
        [ -n "$v" ] && peak=$v
        sleep 0.1
    done
    wait $pid
    echo $peak
}
cp -r "$M" "$T/nan_model"
poison "$T/nan_model/transformer/diffusion_pytorch_model.safetensors" blocks.1.ffn.net.0.proj.weight
$H generate -q -m "$T/nan_model" --width 128 --height 64 --chunks 1 -p x -o "$T/nan.mp4" 2>"$T/nan.err"; rc=$?
check "NaN weight: fails naming the tensor" "[ $rc -ne 0 ] && grep -q 'blocks.1.ffn.net.0.proj.weight holds a non-finite value' $T/nan.err"
check "NaN weight: no output" "[ ! -e $T/nan.mp4 ] && [ ! -e $T/nan.mp4.part ]"
# finite weights whose values overflow during sampling (two FLT_MAX in the output bias): the
# first non-finite latents stop the run, naming where (--guidance 1e39 did this before the
# option parser refused it)
cp -r "$M" "$T/big_model"
poison "$T/big_model/transformer/diffusion_pytorch_model.safetensors" proj_out.bias '\377\377\177\177\377\377\177\177'
$H generate -q -m "$T/big_model" --width 128 --height 64 --chunks 1 -p x -o "$T/inf.mp4" 2>"$T/inf.err"; rc=$?
check "overflowing weights: fails naming chunk and step" "[ $rc -ne 0 ] && grep -q 'non-finite values.*at chunk 1, stage 2/3, step 1/' $T/inf.err"
check "overflowing weights: no output" "[ ! -e $T/inf.mp4 ] && [ ! -e $T/inf.mp4.part ]"
ffmpeg -v error -y -i "$T/first.png" "$T/first.jpg"
head -c $(($(wc -c < "$T/first.jpg") / 2)) "$T/first.jpg" > "$T/half.jpg"
$G -p x --chunks 1 --image "$T/half.jpg" -o "$T/half.mp4" 2>"$T/half.err"; rc=$?
check "truncated JPEG: fails naming the file" "[ $rc -ne 0 ] && grep -q 'half.jpg: corrupt' $T/half.err && [ ! -e $T/half.mp4 ]"
head -c $(($(wc -c < "$T/t2v.mp4") / 2)) "$T/t2v.mp4" > "$T/half_video.mp4"
$G -p x --chunks 1 --video "$T/half_video.mp4" -o "$T/hv.mp4" 2>"$T/hv.err"; rc=$?
check "truncated video: fails naming the file" "[ $rc -ne 0 ] && grep -q 'half_video.mp4: corrupt or truncated' $T/hv.err && [ ! -e $T/hv.mp4 ]"
# damage in the first frames, which V2V drops after decoding: still an error (before, the H.264
# decoder concealed it); the same clip undamaged is fine
ffmpeg -v error -y -f lavfi -i testsrc=size=128x64:rate=24 -t 9 "$T/clip9.mp4"
cp "$T/clip9.mp4" "$T/damaged.mp4"
printf '\377\377\377\377\377\377\377\377' | dd of="$T/damaged.mp4" bs=1 seek=1000 conv=notrunc 2>/dev/null
$G -p x --chunks 1 --video "$T/damaged.mp4" -o "$T/dv.mp4" 2>"$T/dv.err"; rc=$?
check "damaged video frames: fail naming the file" "[ $rc -ne 0 ] && grep -q 'damaged.mp4: corrupt' $T/dv.err && [ ! -e $T/dv.mp4 ]"
# memory: under ulimit -v the estimate refuses before anything runs (it used to segfault inside
# oneDNN and leave o.mp4.part). ASan reserves terabytes of shadow address space, so ulimit -v
# cannot work there: the check is skipped under the sanitizers.
if nm "$H" 2>/dev/null | grep -q __asan_init || ldd "$H" 2>/dev/null | grep -q libasan; then
    echo "skip memory-limit checks (ASan build: ulimit -v cannot apply)"
else
    (ulimit -v 350000; exec $G -p x --chunks 1 --threads 2 -o "$T/lim.mp4") 2>"$T/lim.err"; rc=$?
    check "ulimit -v 350000: refused with the numbers" "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'not enough memory: needs about [0-9]* MiB more, but the address-space limit' $T/lim.err"
    check "ulimit -v 350000: no output, no .part" "[ ! -e $T/lim.mp4 ] && [ ! -e $T/lim.mp4.part ]"
    # V2V of a 60 s clip in bounded memory: peak RSS within 64 MB of a T2V chunk's (decoding
    # the whole clip to floats took ~150 MB more, and grows with the clip)
    ffmpeg -v error -y -f lavfi -i testsrc=size=128x64:rate=24 -t 60 "$T/clip60.mp4"
    t2v_kb=$(peak_kb $G -p x --chunks 1 --threads 2 -o "$T/short.mp4")
    v2v_kb=$(peak_kb $G -p x --chunks 1 --threads 2 --video "$T/clip60.mp4" -o "$T/long.mp4")
    echo "     peak RSS: T2V chunk $t2v_kb kB, V2V of a 60 s clip $v2v_kb kB"
    check "v2v of a 60 s clip: 33 frames" "[ \"\$(frames $T/long.mp4)\" = 33 ]"
    check "v2v of a 60 s clip: peak RSS within 64 MB of T2V" "[ $v2v_kb -gt 0 ] && [ $v2v_kb -lt $((t2v_kb + 65536)) ]"
fi
echo "$((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]

#!/bin/sh
# Data-parallel helios train over MPI on loopback: `mpirun -np 2` with accumulation a gives the same
# losses.tsv, weights and optimizer state, bit for bit, as one process with accumulation 2a, for
# the toy ("quadratic") and the stage-1 objective (synthetic latent clips, and the tiny world
# through the latent cache); a 2-rank run resumed by one process continues the same run. Stage 3
# (with the GAN) likewise, its critic, heads and logs included, and as one process with batch 2
# (and 2 ranks x 2 micro-batches of 2 == 1 x 4 of 2); a 2-rank stage-3 run stopped, or killed
# with SIGKILL, and resumed on 2 ranks continues the same run; ode_init on 2 ranks = 1 x 2.
# Exits 77 (ctest: skipped) without MPI in the build or without the launcher.
# usage: test_train_mpi.sh HELIOS_BINARY MODEL_DIR MPIEXEC|""
set -u
H=$1 M=$2 MPIEXEC=${3:-}
if [ -z "$MPIEXEC" ]; then
    echo "SKIP: helios was built without MPI (install Debian's libopenmpi-dev and openmpi-bin," \
        "then reconfigure: CMake HELIOS_MPI=AUTO finds them)"
    exit 77
fi
if ! command -v "$MPIEXEC" >/dev/null 2>&1; then
    echo "SKIP: the MPI launcher $MPIEXEC is missing (Debian's openmpi-bin)"
    exit 77
fi
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0 n=0
check() { # name, condition (a shell command)
    n=$((n + 1))
    if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=$((fail + 1)); return 1; fi
}
# Two ranks on this machine over TCP on loopback (the transport a run across machines uses):
# --mca plm isolated launches locally without ssh (a bare root has none), --oversubscribe allows
# more ranks than cores, --allow-run-as-root because CI runs as root. OpenMPI's own allocations
# at exit are not ours: no leak report from them under ASan.
root=""
[ "$(id -u)" -eq 0 ] && root=--allow-run-as-root
MPI2="--oversubscribe --mca plm isolated --mca btl self,tcp --mca btl_tcp_if_include lo
    --mca oob_tcp_if_include lo -np 2"
mpi2() {
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" timeout 300 "$MPIEXEC" $root $MPI2 "$@"
}
# mpi2_bg ARGS... &: mpirun itself becomes the background job ($! is its pid: signals reach it)
mpi2_bg() {
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" exec "$MPIEXEC" $root --timeout 300 $MPI2 "$@"
}
# wait_lines FILE N TRIES: until FILE has N lines, polling every 50 ms at most TRIES times
wait_lines() {
    i=0
    while [ $i -lt "$3" ] && [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ]; do
        sleep 0.05
        i=$((i + 1))
    done
}
# same RUN_A RUN_B STEP: losses.tsv, weights and optimizer state identical
same() {
    a=$T/$1 b=$T/$2
    check "$1 == $2: losses.tsv" "[ -s $a/losses.tsv ] && cmp -s $a/losses.tsv $b/losses.tsv"
    check "$1 == $2: weights" "cmp -s $a/checkpoint-$3/transformer/diffusion_pytorch_model.safetensors $b/checkpoint-$3/transformer/diffusion_pytorch_model.safetensors"
    check "$1 == $2: optimizer state" "cmp -s $a/checkpoint-$3/optimizer.safetensors $b/checkpoint-$3/optimizer.safetensors"
}
# quad NAME STEPS ACCUMULATION BATCH
quad() {
    cat >"$T/$1.json" <<EOF
{"model": "$M", "output": "$T/$1", "steps": $2, "lr": 0.01, "warmup": 2, "ema": 0.9,
 "accumulation": $3, "batch": $4, "checkpoint_every": 3, "keep": 1, "seed": 5, "threads": 1,
 "objective": {"type": "quadratic", "noise": 0.5}}
EOF
}

# the toy objective: 2 ranks x 1 micro-batch == 1 process x 2
quad q1 6 2 1
quad q2 6 1 1
$H train -q "$T/q1.json" 2>"$T/q1.err"
check "quadratic: one process, accumulation 2" "[ \$? -eq 0 ] && [ \$(wc -l <$T/q1/losses.tsv) -eq 6 ]"
mpi2 $H train -q "$T/q2.json" >"$T/q2.err" 2>&1
check "quadratic: mpirun -np 2, accumulation 1" "[ \$? -eq 0 ]" || cat "$T/q2.err"
same q1 q2 6
check "rank 0 alone wrote (one losses.tsv, one checkpoint)" "[ \$(ls $T/q2 | wc -l) -eq 2 ]"

# 2 ranks x 2 micro-batches of 2 samples == 1 process x 4 (rank r runs micro-batches r, r + 2)
quad q3 4 4 2
quad q4 4 2 2
$H train -q "$T/q3.json" 2>"$T/q3.err"
mpi2 $H train -q "$T/q4.json" >"$T/q4.err" 2>&1
check "quadratic: mpirun -np 2, accumulation 2, batch 2" "[ \$? -eq 0 ]" || cat "$T/q4.err"
same q3 q4 4

# a 2-rank run stopped at step 3 and resumed by one process with accumulation 2: the same run
quad q5 3 1 1
mpi2 $H train -q "$T/q5.json" >"$T/q5.err" 2>&1
sed "s/\"steps\": 3/\"steps\": 6/; s/\"accumulation\": 1/\"accumulation\": 2/" "$T/q5.json" >"$T/q5b.json"
$H train -q --resume "$T/q5b.json" 2>>"$T/q5.err"
check "quadratic: 3 steps on 2 ranks + resume on 1 process" "[ \$? -eq 0 ]" || cat "$T/q5.err"
same q1 q5 6

# SIGUSR1 on mpirun, which forwards it to every rank (Ctrl-C would make mpirun send SIGTERM, then
# SIGKILL 1 s later, too soon for a checkpoint on a loaded machine): rank 0 writes a checkpoint,
# every rank stops after the same step, mpirun exits 0; one process with accumulation 2 resumes it
# into the same run
quad q6 6 1 1
mpi2_bg $H train -q --throttle 400 "$T/q6.json" >"$T/q6.err" 2>&1 &
pid=$!
wait_lines "$T/q6/losses.tsv" 2 600
kill -USR1 $pid
wait $pid
rc=$?
k=$(wc -l <"$T/q6/losses.tsv")
check "SIGUSR1 to mpirun: exit 0" "[ $rc -eq 0 ]"
check "SIGUSR1 to mpirun: stopped at step $k with its checkpoint" "[ $k -lt 6 ] && [ -f $T/q6/checkpoint-$k/COMPLETE ] && grep -q 'stopped at step' $T/q6.err"
sed "s/\"accumulation\": 1/\"accumulation\": 2/" "$T/q6.json" >"$T/q6b.json"
$H train -q --resume "$T/q6b.json" 2>>"$T/q6.err"
same q1 q6 6

# the stage-1 objective: the transformer's forward and backward on synthetic clips
s1() { # NAME ACCUMULATION
    cat >"$T/$1.json" <<EOF
{"model": "$M", "output": "$T/$1", "steps": 3, "lr": 0.001, "seed": 3, "threads": 1,
 "accumulation": $2, "data": "synthetic", "objective": {"type": "stage1", "chunk_frames": 3,
 "synthetic": {"clips": 4, "chunks": 2, "height": 8, "width": 8, "text_len": 8}}}
EOF
}
s1 s1 2
s1 s2 1
$H train -q "$T/s1.json" 2>"$T/s1.err"
check "stage1: one process, accumulation 2" "[ \$? -eq 0 ] && [ \$(wc -l <$T/s1/losses.tsv) -eq 3 ]"
mpi2 $H train -q "$T/s2.json" >"$T/s2.err" 2>&1
check "stage1: mpirun -np 2, accumulation 1" "[ \$? -eq 0 ]" || cat "$T/s2.err"
same s1 s2 3

# stage 1 on the tiny world through the latent cache: rank 0 fills OUTPUT/cache, rank 1 reads it
w() { # NAME ACCUMULATION
    cat >"$T/$1.json" <<EOF
{"model": "$M", "output": "$T/$1", "steps": 2, "lr": 0.001, "seed": 3, "threads": 1,
 "accumulation": $2, "data": "procedural", "objective": {"type": "stage1", "chunk_frames": 9,
 "dataset": {"width": 32, "height": 32, "frames": 33, "clips": 2, "text_len": 16}}}
EOF
}
w w1 2
w w2 1
$H train -q "$T/w1.json" 2>"$T/w1.err"
check "world: one process, accumulation 2" "[ \$? -eq 0 ] && [ -f $T/w1/cache/1.safetensors ]"
mpi2 $H train -q "$T/w2.json" >"$T/w2.err" 2>&1
check "world: mpirun -np 2, accumulation 1" "[ \$? -eq 0 ] && [ -f $T/w2/cache/1.safetensors ]" ||
    cat "$T/w2.err"
same w1 w2 2

# Stage 3 (DMD with the GAN from step 1): the critic and the GAN heads, which the objective trains
# itself, are updated once per step with the mean of the step's sample gradients, added in sample
# order over the ranks, so 2 ranks x batch 1 == 1 process x accumulation 2 == 1 process x batch 2:
# losses.tsv, stage3.tsv (every term, the step's mean), tasks.tsv (every sample, in order),
# distance.tsv, the student, its moments and EMA, critic.safetensors and gan.safetensors.
s3() { # NAME STEPS ACCUMULATION BATCH
    cat >"$T/$1.json" <<EOF
{"model": "$M", "init": "model", "output": "$T/$1", "steps": $2, "lr": 1e-4,
 "betas": [0.0, 0.999], "weight_decay": 0.001, "clip": 10, "ema": 0.9, "seed": 3,
 "accumulation": $3, "batch": $4, "data": "synthetic", "checkpoint_every": 2, "keep": 2,
 "validation_every": 2, "threads": 1, "objective": {"type": "stage3", "gen_every": 2,
 "critic_lr": 1e-4, "teacher_steps": 2, "eval_prompts": 1, "steps": [1, 1, 1],
 "gan_g_weight": 0.05, "gan_d_weight": 0.01, "gan_start": 1,
 "synthetic": {"clips": 3, "frames": 2, "height": 16, "width": 16, "text_len": 8}}}
EOF
}
same3() { # RUN_A RUN_B STEP: what same checks, and stage 3's logs, critic, heads and EMA folder
    same "$1" "$2" "$3"
    a=$T/$1 b=$T/$2 c=checkpoint-$3
    for f in stage3.tsv tasks.tsv distance.tsv $c/critic.safetensors $c/gan.safetensors \
        $c/ema/transformer/diffusion_pytorch_model.safetensors; do
        check "$1 == $2: $f" "[ -s $a/$f ] && cmp -s $a/$f $b/$f"
    done
}
s3 t1 6 2 1
s3 t2 6 1 1
s3 t3 6 1 2
$H train -q "$T/t1.json" 2>"$T/t1.err"
check "stage3: one process, accumulation 2" "[ \$? -eq 0 ] && [ \$(wc -l <$T/t1/losses.tsv) -eq 6 ]" ||
    cat "$T/t1.err"
check "stage3: tasks.tsv holds both samples of every step, stage3.tsv one line per step" \
    "[ \$(wc -l <$T/t1/tasks.tsv) -eq 13 ] && [ \$(wc -l <$T/t1/stage3.tsv) -eq 7 ] && [ \$(cut -f1 $T/t1/distance.tsv | tr -d '\n') = 0246 ]"
check "stage3: GAN terms from step 2" "awk -F'\t' 'NR>2 && (\$6+0==0 || \$11+0==0){bad=1} END{exit bad}' $T/t1/stage3.tsv"
mpi2 $H train -q "$T/t2.json" >"$T/t2.err" 2>&1
check "stage3: mpirun -np 2, accumulation 1" "[ \$? -eq 0 ]" || cat "$T/t2.err"
same3 t1 t2 6
$H train -q "$T/t3.json" 2>"$T/t3.err"
check "stage3: one process, batch 2" "[ \$? -eq 0 ]" || cat "$T/t3.err"
same3 t1 t3 6

# 2 ranks x 2 micro-batches of 2 samples == 1 process x 4 of 2: the micro-batches' critic and
# heads gradients are added in global micro-batch order (rank order; with one micro-batch per
# rank the order of two would not show, x0 + x1 = x1 + x0)
s3 t6 4 4 2
s3 t7 4 2 2
$H train -q "$T/t6.json" 2>"$T/t6.err"
check "stage3: one process, accumulation 4, batch 2" "[ \$? -eq 0 ]" || cat "$T/t6.err"
mpi2 $H train -q "$T/t7.json" >"$T/t7.err" 2>&1
check "stage3: mpirun -np 2, accumulation 2, batch 2" "[ \$? -eq 0 ]" || cat "$T/t7.err"
same3 t6 t7 4

# a 2-rank stage-3 run stopped at step 3 (its checkpoint), resumed on 2 ranks: rank 0 reads the
# critic and heads and sends them to rank 1; the same run
s3 t4 3 1 1
mpi2 $H train -q "$T/t4.json" >"$T/t4.err" 2>&1
sed "s/\"steps\": 3,/\"steps\": 6,/" "$T/t4.json" >"$T/t4b.json"
mpi2 $H train -q --resume "$T/t4b.json" >>"$T/t4.err" 2>&1
check "stage3: 3 steps on 2 ranks + resume on 2 ranks" "[ \$? -eq 0 ]" || cat "$T/t4.err"
same3 t1 t4 6

# SIGKILL to both ranks of a 2-rank stage-3 run after its step-2 checkpoint (the logs may run
# ahead of it), resumed on 2 ranks: the logs are cut back to the checkpoint, the same run
s3 t5 6 1 1
mpi2_bg $H train -q --throttle 300 "$T/t5.json" >"$T/t5.err" 2>&1 &
pid=$!
wait_lines "$T/t5/losses.tsv" 3 1200
for c in $(pgrep -P $pid); do kill -KILL "$c"; done # the ranks (mpirun's children)
wait $pid 2>/dev/null
k=$(wc -l <"$T/t5/losses.tsv")
check "stage3: both ranks killed at step $k" "[ $k -ge 3 ] && [ $k -lt 6 ] && [ ! -e $T/t5/checkpoint-6 ]"
mpi2 $H train -q --resume "$T/t5.json" >>"$T/t5.err" 2>&1
check "stage3: SIGKILL + resume on 2 ranks" "[ \$? -eq 0 ]" || cat "$T/t5.err"
same3 t1 t5 6

# ode_init (trajectories cached by rank 0, read by rank 1): tasks.tsv in sample order
o() { # NAME ACCUMULATION
    cat >"$T/$1.json" <<EOF
{"model": "$M", "init": "model", "output": "$T/$1", "steps": 3, "lr": 1e-4, "seed": 3,
 "accumulation": $2, "data": "synthetic", "threads": 1, "objective": {"type": "ode_init",
 "teacher_steps": 2, "trajectories": 3, "eval_prompts": 1, "steps": [1, 1, 1],
 "synthetic": {"clips": 2, "frames": 2, "height": 16, "width": 16, "text_len": 8}}}
EOF
}
o o1 2
o o2 1
$H train -q "$T/o1.json" 2>"$T/o1.err"
check "ode_init: one process, accumulation 2" "[ \$? -eq 0 ]" || cat "$T/o1.err"
mpi2 $H train -q "$T/o2.json" >"$T/o2.err" 2>&1
check "ode_init: mpirun -np 2, accumulation 1" "[ \$? -eq 0 ]" || cat "$T/o2.err"
same o1 o2 3
check "o1 == o2: tasks.tsv" "[ \$(wc -l <$T/o1/tasks.tsv) -eq 7 ] && cmp -s $T/o1/tasks.tsv $T/o2/tasks.tsv"

echo "test_train_mpi: $n checks, $fail failed"
[ $fail -eq 0 ]

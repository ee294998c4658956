#!/bin/sh
# helios verify on bad input and on a held-out set's seeds: an empty or missing directory fails
# with a message, a pipeline file beside a manifest.json runs with the manifest's seed and a
# wrong manifest seed fails clearly.
# usage: test_verify_cli.sh HELIOS_BINARY VECTORS_DIR
set -u
H=$1 V=$(cd "$2" && pwd) || exit 1
. "$(dirname "$0")/cli_lib.sh"
mkdir "$T/empty" "$T/set"
$H verify "$T/empty" > "$T/out" 2>&1; rc=$?
check "empty dir: non-zero exit" "[ $rc -ne 0 ]"
check "empty dir: says so" "grep -q 'no reference vectors found in $T/empty' $T/out"
$H verify "$T/nope" > "$T/out" 2>&1; rc=$?
check "missing dir: non-zero exit" "[ $rc -ne 0 ]"
check "missing dir: names it" "grep -q '$T/nope: No such file or directory' $T/out"
for f in pipeline_base.safetensors transformer_config.json transformer_weights_f32.safetensors; do
    ln -s "$V/$f" "$T/set/$f"
done
echo '{"seed": 0}' > "$T/set/manifest.json"
$H verify "$T/set" > "$T/out" 2>&1; rc=$?
check "manifest seed 0: passes" "[ $rc -eq 0 ] && grep -q 'rng.seed = 72 max_abs=0 tol=0 PASS' $T/out"
echo '{"seed": 5}' > "$T/set/manifest.json"
$H verify "$T/set" > "$T/out" 2>&1; rc=$?
check "wrong manifest seed: fails" "[ $rc -eq 1 ]"
check "wrong manifest seed: says so" "grep -q 'rng.seed = 5000087 (from manifest.json) does not reproduce the draws' $T/out"
check "wrong manifest seed: the pipeline run says so" "grep -q 'generator seed 5000087 (from manifest.json) does not reproduce' $T/out"
[ $fail -eq 0 ] || cat "$T/out"
echo "$((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]

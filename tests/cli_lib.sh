# Shared by the shell tests of the command line: sourced after the script has read its arguments.
# Sets T (a temporary folder removed at exit) and the counters n (checks) and fail (failures).
#   check NAME CONDITION            CONDITION is a shell command (eval'ed): ok when it succeeds
#   fails NAME STATUS TEXT CMD...   ok when CMD exits with STATUS and its stderr holds TEXT,
#                                   with no sanitizer report in it
#   pyramid_folder NAME MODEL STAGES RANGE
#                                   $T/NAME: MODEL's folder (links) with its scheduler's "stages"
#                                   and "stage_range" ("0, 0.5, 1") replaced
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0 n=0
check() {
    n=$((n + 1))
    if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=$((fail + 1)); fi
}
fails() {
    name=$1 want=$2 msg=$3
    shift 3
    n=$((n + 1))
    out=$("$@" 2>&1 >/dev/null)
    rc=$?
    if [ $rc -eq "$want" ] && printf '%s\n' "$out" | grep -qF -- "$msg" &&
        ! printf '%s\n' "$out" | grep -qE 'Sanitizer|runtime error'; then
        echo "ok   $name"
    else
        echo "FAIL $name: exit $rc (want $want), message: $out"
        fail=$((fail + 1))
    fi
}
pyramid_folder() {
    mkdir -p "$T/$1/scheduler"
    for c in model_index.json transformer text_encoder tokenizer vae; do
        ln -s "$(cd "$2" && pwd)/$c" "$T/$1/$c"
    done
    sed "s/\"stages\": [0-9]*/\"stages\": $3/; /stage_range/,/]/d" "$2/scheduler/scheduler_config.json" |
        sed "s/^{/{\"stage_range\": [$4],/" >"$T/$1/scheduler/scheduler_config.json"
}

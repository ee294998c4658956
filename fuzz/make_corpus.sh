#!/usr/bin/env bash
# Regenerates the seed corpus under fuzz/corpus/: a few tiny inputs, valid and invalid, that give
# libFuzzer a head start on the formats (the committed files are this script's output).
set -euo pipefail
export LC_ALL=C # ${#s} must count bytes
here=$(cd "$(dirname "$0")" && pwd)
st_dir=$here/corpus/safetensors
js_dir=$here/corpus/json
mkdir -p "$st_dir" "$js_dir"

# Writes n as 8 little-endian bytes.
le64() {
    local n=$1 i
    for i in 0 1 2 3 4 5 6 7; do
        printf "\\$(printf %03o $(((n >> (8 * i)) & 255)))"
    done
}

# st NAME HEADER NBYTES [LENGTH]: length field (default: the header's), header, NBYTES of data.
st() {
    local name=$1 header=$2 n=$3 len=${4:-${#2}}
    {
        le64 "$len"
        printf '%s' "$header"
        head -c "$n" /dev/zero | tr '\0' '\077'
    } >"$st_dir/$name"
}

t() { printf '"%s": {"dtype": "%s", "shape": [%s], "data_offsets": [%s, %s]}' "$@"; }

st valid_f32.safetensors "{$(t w F32 '2, 2' 0 16), $(t b F32 2 16 24), \"__metadata__\": {\"format\": \"pt\"}}" 24
st valid_dtypes.safetensors "{$(t a BF16 3 0 6), $(t b F16 '' 6 8), $(t c F64 1 8 16), $(t d I64 2 16 32), \
$(t e I32 1 32 36), $(t f I16 1 36 38), $(t g I8 1 38 39), $(t h U8 1 39 40), $(t i BOOL 2 40 42), \
$(t j U64 1 42 50), $(t k U32 1 50 54), $(t l U16 1 54 56), $(t m F8_E4M3 1 56 57), $(t n F8_E5M2 1 57 58), \
$(t z F32 '0, 3' 58 58)}" 58
st empty.safetensors '{}' 0
st padded.safetensors "{$(t x BF16 '1, 1, 1, 1' 0 2)}      " 2
st metadata_only.safetensors '{"__metadata__": {"a": "b", "c": "\u00e9"}}' 0
st bad_overlap.safetensors "{$(t a F32 2 0 8), $(t b F32 2 4 12)}" 12
st bad_mismatch.safetensors "{$(t a F32 '2, 3' 0 16)}" 16
st bad_dtype.safetensors "{$(t a F31 1 0 4)}" 4
st bad_length.safetensors '{}' 0 4096
st bad_json.safetensors '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]' 4
printf 'abc' >"$st_dir/bad_short.safetensors"

printf '%s' '{"_class_name": "HeliosTransformer3DModel", "num_layers": 2, "patch_size": [1, 2, 2],
 "rope_theta": 10000.0, "qk_norm": "rms_norm_across_heads", "eps": 1e-06, "cross_attn_norm": true,
 "image_dim": null, "added_kv_proj_dim": null, "rope_max_seq_len": 1024}' >"$js_dir/config.json"
printf '%s' '{"metadata": {"total_size": 123}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}' \
    >"$js_dir/index.json"
printf '%s' '["\u0041\ud83d\ude00\n\t\"\\\/", "\u00e9", "", -0, 9223372036854775807, -9223372036854775808, 1.5e-3, 2E+10]' \
    >"$js_dir/strings_numbers.json"
printf '%s' '[[[[[[[[{"a": [{}, [], true, false, null]}]]]]]]]]' >"$js_dir/nested.json"
printf '%s' '{"a": 01}' >"$js_dir/bad_leading_zero.json"
printf '%s' '"\ud800"' >"$js_dir/bad_surrogate.json"
printf '%s' '{"a": [1, 2,]}' >"$js_dir/bad_trailing_comma.json"

/* safetensors reader: valid files of every common dtype read back exactly, and hostile files
 * (written to a temporary folder) each rejected with the right status and a message naming the
 * file and, where there is one, the tensor. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test_util.h"

static char g_dir[] = "/tmp/helios_st_XXXXXX";
static int g_files; /* distinct files written, to check the cleanup */

static const char *tmp_path(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", g_dir, name);
    return buf;
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    CHECK(fwrite(p, 1, n, f) == n, "write %s", path);
    fclose(f);
    g_files++;
}

/* A file with the given 8-byte length field, header text and data section. */
static void write_st_len(const char *path, uint64_t hlen, const char *header, const void *data,
                         size_t ndata) {
    size_t nh = strlen(header);
    unsigned char *buf = calloc(8 + nh + ndata + 1, 1);
    CHECK(buf != NULL, "calloc");
    if (!buf) return;
    put_le64(buf, hlen);
    memcpy(buf + 8, header, nh);
    if (ndata) memcpy(buf + 8 + nh, data, ndata);
    write_bytes(path, buf, 8 + nh + ndata);
    free(buf);
}

static void write_st(const char *path, const char *header, const void *data, size_t ndata) {
    write_st_len(path, strlen(header), header, data, ndata);
}

/* ---- valid files ---------------------------------------------------------------------------- */

/* Data of the main valid file; offsets chosen so I64 and F32 data sit unaligned. */
static size_t build_good_data(unsigned char *d) {
    size_t k = 0;
    for (int i = 0; i < 6; i++) { /* f32 [2,3]: 0, 0.5, ..., 2.5 */
        float v = 0.5f * (float)i;
        memcpy(d + k, &v, 4);
        k += 4;
    }
    const uint16_t bf16[2] = {0x3f80, 0xc000}; /* 1, -2 */
    memcpy(d + k, bf16, 4);
    k += 4;
    const uint16_t f16[3] = {0x3c00, 0x3800, 0xc000}; /* 1, 0.5, -2 */
    memcpy(d + k, f16, 6);
    k += 6;
    const int64_t i64[2] = {-5, (int64_t)1 << 40};
    memcpy(d + k, i64, 16); /* at offset 34: unaligned */
    k += 16;
    const uint8_t u8[3] = {0, 7, 255};
    memcpy(d + k, u8, 3);
    k += 3;
    const uint8_t b[2] = {0, 1};
    memcpy(d + k, b, 2);
    k += 2;
    const float scalar = 3.25f;
    memcpy(d + k, &scalar, 4);
    k += 4;
    const uint64_t big = (uint64_t)1 << 63;
    memcpy(d + k, &big, 8);
    k += 8;
    const int32_t i32[2] = {-7, INT32_MAX};
    memcpy(d + k, i32, 8);
    k += 8;
    d[k++] = 0x80; /* i8: -128 */
    return k;      /* 76 */
}

static const char k_good_header[] =
    "{\"f32\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
    " \"bf16\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [24, 28]},"
    " \"f16\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [28, 34]},"
    " \"i64\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [34, 50]},"
    " \"u8\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [50, 53]},"
    " \"bool\": {\"dtype\": \"BOOL\", \"shape\": [2], \"data_offsets\": [53, 55]},"
    " \"scalar\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [55, 59]},"
    " \"__metadata__\": {\"format\": \"pt\", \"note\": \"h\\u00e9llo\"},"
    " \"u64big\": {\"dtype\": \"U64\", \"shape\": [1], \"data_offsets\": [59, 67]},"
    " \"empty\": {\"dtype\": \"F32\", \"shape\": [0, 4], \"data_offsets\": [4, 4]},"
    " \"empty_i\": {\"dtype\": \"I64\", \"shape\": [3, 0], \"data_offsets\": [67, 67]},"
    " \"i32\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [67, 75]},"
    " \"i8\": {\"dtype\": \"I8\", \"shape\": [1, 1], \"data_offsets\": [75, 76]}}     ";

static void check_good_reads(const hl_safetensors *st, const char *path) {
    hl_error err;
    float *f = NULL;
    int64_t *iv = NULL;

    CHECK(hl_st_read_f32(st, "f32", 6, &f, &err) == HL_OK && f && f[0] == 0.0f && f[5] == 2.5f,
          "f32 values");
    free(f);
    CHECK(hl_st_read_f32(st, "bf16", -1, &f, &err) == HL_OK && f && f[0] == 1.0f && f[1] == -2.0f,
          "bf16 values");
    free(f);
    CHECK(hl_st_read_f32(st, "f16", 3, &f, &err) == HL_OK && f && f[1] == 0.5f && f[2] == -2.0f,
          "f16 values");
    free(f);
    CHECK(hl_st_read_f32(st, "scalar", 1, &f, &err) == HL_OK && f && f[0] == 3.25f, "0-d tensor");
    free(f);
    f = NULL;
    CHECK(hl_st_read_f32(st, "empty", 0, &f, &err) == HL_OK && f != NULL, "empty f32 tensor");
    free(f);

    CHECK(hl_st_read_i64(st, "i64", 2, &iv, &err) == HL_OK && iv && iv[0] == -5 &&
              iv[1] == (int64_t)1 << 40,
          "i64 values (unaligned)");
    free(iv);
    CHECK(hl_st_read_i64(st, "u8", 3, &iv, &err) == HL_OK && iv && iv[0] == 0 && iv[1] == 7 &&
              iv[2] == 255,
          "u8 values");
    free(iv);
    CHECK(hl_st_read_i64(st, "bool", 2, &iv, &err) == HL_OK && iv && iv[0] == 0 && iv[1] == 1,
          "bool values");
    free(iv);
    CHECK(hl_st_read_i64(st, "empty_i", 0, &iv, &err) == HL_OK, "empty i64 tensor");
    free(iv);
    CHECK(hl_st_read_i64(st, "i32", 2, &iv, &err) == HL_OK && iv && iv[0] == -7 &&
              iv[1] == INT32_MAX,
          "i32 values, sign-extended");
    free(iv);
    CHECK(hl_st_read_i64(st, "i8", 1, &iv, &err) == HL_OK && iv && iv[0] == -128, "i8 value");
    free(iv);

    /* Wrong kind of dtype, wrong size, absent: each names file and tensor. */
    f = (float *)1;
    hl_status s = hl_st_read_f32(st, "i64", 2, &f, &err);
    CHECK(s == HELIOS_ERR_DTYPE && f == NULL, "i64 as f32 refused");
    CHECK(strstr(err.msg, path) && strstr(err.msg, "'i64'") && strstr(err.msg, "I64"), "msg: %s",
          err.msg);
    s = hl_st_read_i64(st, "bf16", -1, &iv, &err);
    CHECK(s == HELIOS_ERR_DTYPE && strstr(err.msg, "'bf16'"), "bf16 as i64 refused: %s", err.msg);
    s = hl_st_read_f32(st, "f32", 5, &f, &err);
    CHECK(s == HELIOS_ERR_SHAPE && strstr(err.msg, path) && strstr(err.msg, "'f32'") &&
              strstr(err.msg, "[2, 3]"),
          "numel mismatch: %s", err.msg);
    s = hl_st_read_i64(st, "i64", 3, &iv, &err);
    CHECK(s == HELIOS_ERR_SHAPE, "i64 numel mismatch");
    s = hl_st_read_f32(st, "nope", -1, &f, &err);
    CHECK(s == HELIOS_ERR_MISSING && strstr(err.msg, path) && strstr(err.msg, "'nope'"),
          "absent: %s", err.msg);
    s = hl_st_read_i64(st, "nope", -1, &iv, &err);
    CHECK(s == HELIOS_ERR_MISSING, "absent (i64)");
    s = hl_st_read_i64(st, "u64big", 1, &iv, &err);
    CHECK(s == HELIOS_ERR_DTYPE && strstr(err.msg, "'u64big'") && iv == NULL,
          "U64 past int64 refused: %s", err.msg);
}

static void test_valid(void) {
    char path[256];
    unsigned char data[128];
    size_t nd = build_good_data(data);
    tmp_path("good.safetensors", path, sizeof path);
    write_st(path, k_good_header, data, nd);

    hl_safetensors *st = NULL;
    hl_error err;
    hl_error_clear(&err);
    hl_status s = hl_st_open(path, &st, &err);
    CHECK(s == HL_OK && st, "open good file: %s", err.msg);
    if (!st) return;
    CHECK(st->mapped == 1 && st->n == 12, "12 tensors (metadata is not one): %zu", st->n);
    static const char *order[] = {"f32",    "bf16",   "f16",   "i64",     "u8",  "bool",
                                  "scalar", "u64big", "empty", "empty_i", "i32", "i8"};
    for (size_t i = 0; i < 12 && i < st->n; i++)
        CHECK(!strcmp(st->tensors[i].name, order[i]), "header order %zu", i);
    CHECK(!strcmp(st->path, path), "path kept");

    const hl_st_tensor *t = hl_st_find(st, "f32");
    CHECK(t && t->dtype == HL_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
              t->nbytes == 24,
          "f32 entry");
    hl_tensor v = hl_st_view(t);
    CHECK(v.data == t->data && v.stride[0] == 3 && v.stride[1] == 1 && hl_tensor_numel(&v) == 6,
          "view");
    t = hl_st_find(st, "scalar");
    CHECK(t && t->ndim == 0 && t->nbytes == 4, "0-d entry");
    t = hl_st_find(st, "empty");
    CHECK(t && t->ndim == 2 && t->nbytes == 0, "empty entry (inside another tensor's bytes)");
    t = hl_st_find(st, "bool");
    CHECK(t && t->dtype == HL_BOOL, "bool dtype");
    CHECK(hl_st_find(st, "__metadata__") == NULL, "metadata is not a tensor");
    CHECK(hl_st_find(st, "missing") == NULL, "find absent");

    CHECK(hl_st_meta(st, "format") && !strcmp(hl_st_meta(st, "format"), "pt"), "metadata format");
    CHECK(hl_st_meta(st, "note") && !strcmp(hl_st_meta(st, "note"), "h\xc3\xa9llo"),
          "metadata note");
    CHECK(hl_st_meta(st, "absent") == NULL, "metadata absent key");

    check_good_reads(st, path);
    hl_st_close(st);
    hl_st_close(NULL);
}

static void test_valid_small(void) {
    char path[256];
    hl_safetensors *st = NULL;
    hl_error err;

    tmp_path("empty_header.safetensors", path, sizeof path);
    write_st(path, "{}", NULL, 0);
    CHECK(hl_st_open(path, &st, &err) == HL_OK && st && st->n == 0 && !st->metadata,
          "no tensors, no data: %s", err.msg);
    CHECK(hl_st_meta(st, "x") == NULL, "no metadata");
    hl_st_close(st);

    tmp_path("meta_only.safetensors", path, sizeof path);
    write_st(path, "{\"__metadata__\": {}}", NULL, 0);
    CHECK(hl_st_open(path, &st, &err) == HL_OK && st && st->n == 0 && st->metadata,
          "metadata only: %s", err.msg);
    hl_st_close(st);

    /* Parsing from memory, at an odd address, with extra unknown keys the format allows. */
    const char *h =
        "{\"t\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2], \"x\": 1}}";
    size_t nh = strlen(h);
    unsigned char *buf = malloc(1 + 8 + nh + 2);
    if (buf) {
        put_le64(buf + 1, nh);
        memcpy(buf + 9, h, nh);
        buf[9 + nh] = 0x00;
        buf[10 + nh] = 0x3c;
        CHECK(hl_st_parse(buf + 1, 8 + nh + 2, "mem", &st, &err) == HL_OK && st && st->mapped == 0,
              "parse from memory: %s", err.msg);
        float *f = NULL;
        CHECK(st && hl_st_read_f32(st, "t", 1, &f, &err) == HL_OK && f && f[0] == 1.0f, "read");
        free(f);
        hl_st_close(st);
        free(buf);
    }
}

/* ---- hostile files -------------------------------------------------------------------------- */

/* Opens path and expects HELIOS_ERR_FORMAT with a message starting with the path and containing
 * `tensor` ("tensor 'x'", if not NULL) and `want`. */
static void expect_bad_file(const char *path, const char *tensor, const char *want) {
    hl_safetensors *st = (hl_safetensors *)1;
    hl_error err;
    hl_error_clear(&err);
    hl_status s = hl_st_open(path, &st, &err);
    CHECK(s == HELIOS_ERR_FORMAT, "%s: status %d (%s)", path, (int)s, err.msg);
    CHECK(st == NULL, "%s: out is NULL", path);
    CHECK(strncmp(err.msg, path, strlen(path)) == 0, "message names the file: %s", err.msg);
    if (tensor) {
        char t[128];
        snprintf(t, sizeof t, "tensor '%s'", tensor);
        CHECK(strstr(err.msg, t) != NULL, "message names %s: %s", t, err.msg);
    }
    CHECK(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    if (s == HL_OK) hl_st_close(st);
}

/* A file of `header` followed by ndata zero bytes, which must be rejected. */
static void expect_bad(const char *name, const char *header, size_t ndata, const char *tensor,
                       const char *want) {
    char path[256];
    unsigned char zeros[64] = {0};
    tmp_path(name, path, sizeof path);
    write_st(path, header, zeros, ndata < sizeof zeros ? ndata : sizeof zeros);
    expect_bad_file(path, tensor, want);
}

static void test_framing(void) {
    char path[256];
    tmp_path("short.safetensors", path, sizeof path);
    write_bytes(path, "\x02\0\0\0\0", 5);
    expect_bad_file(path, NULL, "too short");
    tmp_path("zero.safetensors", path, sizeof path);
    write_bytes(path, "", 0);
    expect_bad_file(path, NULL, "0 bytes, too short");

    tmp_path("past_eof.safetensors", path, sizeof path);
    write_st_len(path, 1000, "{}", NULL, 0);
    expect_bad_file(path, NULL, "header length 1000 runs past the end");
    tmp_path("huge_len.safetensors", path, sizeof path);
    write_st_len(path, (uint64_t)1 << 63, "{}", NULL, 0);
    expect_bad_file(path, NULL, "header length 9223372036854775808 runs past");
    tmp_path("all_ones.safetensors", path, sizeof path);
    write_st_len(path, UINT64_MAX, "{}", NULL, 0);
    expect_bad_file(path, NULL, "runs past");

    /* A header length that fits the file but is absurd: a sparse file, so it costs no disk. */
    tmp_path("absurd.safetensors", path, sizeof path);
    write_st_len(path, 200000000ull, "{", NULL, 0);
    CHECK(truncate(path, 8 + 200000000ll) == 0, "truncate");
    expect_bad_file(path, NULL, "exceeds the limit");

    expect_bad("not_json.safetensors", "{\"a\": ", 0, NULL, "header is not valid JSON: line 1");
    expect_bad("garbage.safetensors", "\x01\x02\x03\x04", 0, NULL, "header is not valid JSON");
    expect_bad("empty_hdr.safetensors", "", 0, NULL, "header is not valid JSON");
    expect_bad("array.safetensors", "[1, 2]", 0, NULL, "header is not a JSON object");
    expect_bad("string.safetensors", "\"x\"", 0, NULL, "header is not a JSON object");
}

static void test_entries(void) {
    expect_bad("dtype.safetensors",
               "{\"t\": {\"dtype\": \"F17\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "t",
               "unknown dtype 'F17'");
    expect_bad("dtype_lower.safetensors",
               "{\"t\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "t",
               "unknown dtype");
    expect_bad("no_dtype.safetensors", "{\"t\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               "t", "\"dtype\" missing");
    expect_bad("dtype_num.safetensors",
               "{\"t\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "t",
               "\"dtype\" missing or not a string");
    expect_bad("neg_shape.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4,
               "t", "shape[1] is not a non-negative integer");
    expect_bad("float_shape.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}", 4, "t",
               "shape[0] is not a non-negative integer");
    expect_bad("shape_obj.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": {}, \"data_offsets\": [0, 4]}}", 4, "t",
               "\"shape\" missing or not an array");
    expect_bad("overflow.safetensors",
               "{\"t\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296], \"data_offsets\": "
               "[0, 0]}}",
               0, "t", "overflows int64");
    expect_bad("overflow0.safetensors",
               "{\"t\": {\"dtype\": \"U8\", \"shape\": [0, 4611686018427387904, 4], "
               "\"data_offsets\": [0, 0]}}",
               0, "t", "overflows int64");
    expect_bad(
        "overflow_bytes.safetensors",
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 0]}}",
        0, "t", "F32 [4611686018427387904] is too large");
    expect_bad("huge_dim.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [18446744073709551616], \"data_offsets\": "
               "[0, 0]}}",
               0, "t", "shape[0] is not a non-negative integer");
    expect_bad(
        "dims.safetensors",
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
        4, "t", "shape has 9 dimensions, at most 8");
    expect_bad("oob.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4, "t",
               "run past the data section (4 bytes)");
    expect_bad("oob_far.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": "
               "[9223372036854775803, 9223372036854775807]}}",
               4, "t", "run past the data section");
    expect_bad("reversed.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 8, "t",
               "not 0 <= begin <= end");
    expect_bad("neg_off.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8, "t",
               "not 0 <= begin <= end");
    expect_bad("off_arity.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8, "t",
               "\"data_offsets\" must be [begin, end]");
    expect_bad("off_float.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4.0]}}", 8, "t",
               "\"data_offsets\" must be [begin, end]");
    expect_bad("no_off.safetensors", "{\"t\": {\"dtype\": \"F32\", \"shape\": [1]}}", 8, "t",
               "\"data_offsets\" must be");
    expect_bad("mismatch.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 8, "t",
               "hold 4 bytes, but F32 [2] needs 8");
    expect_bad("mismatch_bf16.safetensors",
               "{\"t\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 16,
               "t", "needs 8");
    expect_bad("entry_array.safetensors", "{\"t\": [\"F32\", [1], [0, 4]]}", 4, "t",
               "entry is not a JSON object");
    expect_bad("entry_null.safetensors", "{\"t\": null}", 0, "t", "entry is not a JSON object");
    expect_bad("dup_key.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"dtype\": "
               "\"I32\"}}",
               4, "t", "key 'dtype' appears twice");
}

static void test_set(void) {
    expect_bad("overlap.safetensors",
               "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
               " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
               12, "b", "overlap tensor 'a'");
    expect_bad("inside.safetensors",
               "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
               " \"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [16, 20]},"
               " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
               20, "b", "overlap tensor 'a'");
    expect_bad("same_range.safetensors",
               "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
               " \"b\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
               4, NULL, "overlap tensor");
    expect_bad("dup_name.safetensors",
               "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               " \"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
               8, "t", "name appears twice");
    expect_bad("meta_num.safetensors", "{\"__metadata__\": {\"format\": \"pt\", \"n\": 1}}", 0,
               NULL, "\"__metadata__\": value of 'n' is not a string");
    expect_bad("meta_arr.safetensors", "{\"__metadata__\": [\"pt\"]}", 0, NULL,
               "\"__metadata__\" is not a JSON object");
    expect_bad("meta_twice.safetensors", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, NULL,
               "\"__metadata__\" appears twice");

    /* Adjacent and zero-size tensors do not overlap. */
    char path[256];
    unsigned char zeros[16] = {0};
    tmp_path("adjacent.safetensors", path, sizeof path);
    write_st(path,
             "{\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]},"
             " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
             " \"y\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}",
             zeros, 16);
    hl_safetensors *st = NULL;
    hl_error err;
    CHECK(hl_st_open(path, &st, &err) == HL_OK && st && st->n == 4, "adjacent: %s", err.msg);
    hl_st_close(st);
}

static void test_open_errors(void) {
    hl_safetensors *st = NULL;
    hl_error err;
    char path[256];
    tmp_path("does_not_exist.safetensors", path, sizeof path);
    hl_status s = hl_st_open(path, &st, &err);
    CHECK(s == HELIOS_ERR_IO && !st && strstr(err.msg, path) && strstr(err.msg, "No such file"),
          "absent file: %s", err.msg);
    s = hl_st_open(g_dir, &st, &err);
    CHECK(s == HELIOS_ERR_IO && strstr(err.msg, "not a regular file"), "folder: %s", err.msg);
    s = hl_st_parse(NULL, 0, "nothing", &st, &err);
    CHECK(s == HELIOS_ERR_FORMAT && strstr(err.msg, "nothing: "), "empty buffer: %s", err.msg);
}

/* Every strict prefix of a valid file, parsed from an exact-size heap copy, fails cleanly
 * (ASan would flag any read past the end). */
static void test_truncations(void) {
    unsigned char data[128];
    size_t nd = build_good_data(data), nh = strlen(k_good_header), total = 8 + nh + nd;
    unsigned char *full = malloc(total);
    if (!full) return;
    put_le64(full, nh);
    memcpy(full + 8, k_good_header, nh);
    memcpy(full + 8 + nh, data, nd);
    int all_rejected = 1;
    for (size_t cut = 0; cut < total; cut++) {
        unsigned char *b = malloc(cut ? cut : 1);
        if (!b) continue;
        memcpy(b, full, cut);
        hl_safetensors *st = NULL;
        hl_error err;
        if (hl_st_parse(b, cut, "cut", &st, &err) != HELIOS_ERR_FORMAT) all_rejected = 0;
        hl_st_close(st);
        free(b);
    }
    CHECK(all_rejected, "every truncation rejected");
    hl_safetensors *st = NULL;
    hl_error err;
    CHECK(hl_st_parse(full, total, "full", &st, &err) == HL_OK, "untruncated parses: %s", err.msg);
    hl_st_close(st);
    free(full);
}

static void cleanup(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    int removed = 0;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        removed += unlink(path) == 0;
    }
    closedir(d);
    CHECK(removed == g_files && rmdir(g_dir) == 0, "cleanup: %d of %d files", removed, g_files);
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_valid();
    test_valid_small();
    test_framing();
    test_entries();
    test_set();
    test_open_errors();
    test_truncations();
    cleanup();
    return test_done("test_safetensors");
}

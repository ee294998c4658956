/* Core: dtype conversions, tensor views, arena, errors. */
#include <math.h>
#include <string.h>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "test_util.h"

static void test_bf16(void) {
    CHECK(hl_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(hl_f32_to_bf16(1.0f) == 0x3f80, "to bf16 1.0");
    /* 1 + 2^-8 is exactly half way between two bf16 values: ties to even (down). */
    CHECK(hl_f32_to_bf16(1.00390625f) == 0x3f80, "tie to even, down");
    /* 1 + 3·2^-8 is half way: ties to even (up). */
    CHECK(hl_f32_to_bf16(1.01171875f) == 0x3f82, "tie to even, up");
    CHECK(hl_f32_to_bf16(1.0f + 1.0f / 128 + 1e-6f) == 0x3f81, "above half rounds up");
    CHECK(isnan(hl_bf16_to_f32(hl_f32_to_bf16(NAN))), "NaN stays NaN");
    CHECK(hl_f32_to_bf16(INFINITY) == 0x7f80, "inf");
}

static void test_f16(void) {
    CHECK(hl_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(hl_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 smallest subnormal");
    CHECK(hl_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    CHECK(hl_f32_to_f16(65504.0f) == 0x7bff, "to f16 max");
    CHECK(hl_f32_to_f16(1e6f) == 0x7c00, "overflow to inf");
    CHECK(hl_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001, "to f16 subnormal");
    int roundtrip_ok = 1;
    for (uint32_t h = 0; h < 0x7c00; h++)
        if (hl_f32_to_f16(hl_f16_to_f32((hl_f16)h)) != h) roundtrip_ok = 0;
    CHECK(roundtrip_ok, "every finite positive f16 round-trips");
}

static void test_dtype_names(void) {
    hl_dtype t;
    CHECK(hl_dtype_parse("BF16", 4, &t) == 0 && t == HL_BF16, "parse BF16");
    CHECK(hl_dtype_parse("F3", 2, &t) == -1, "reject F3");
    CHECK(hl_dtype_size(HL_I64) == 8 && hl_dtype_size(HL_BOOL) == 1, "sizes");
}

static void test_tensor(void) {
    float buf[24];
    int64_t shape[3] = {2, 3, 4};
    hl_tensor t = hl_tensor_make(buf, HL_F32, 3, shape);
    CHECK(hl_tensor_numel(&t) == 24 && t.stride[0] == 12 && t.stride[2] == 1, "strides");
    CHECK(hl_tensor_is_contiguous(&t), "contiguous");
    t.stride[1] = 8;
    CHECK(!hl_tensor_is_contiguous(&t), "strided view is not contiguous");
    char s[64];
    CHECK(strcmp(hl_shape_str(3, shape, s, sizeof s), "[2, 3, 4]") == 0, "shape str %s", s);
    int64_t out;
    CHECK(!hl_mul_ok(INT64_MAX / 2, 3, &out), "overflow detected");
    CHECK(hl_mul_ok(1 << 20, 1 << 20, &out) && out == (int64_t)1 << 40, "no overflow");
}

static void test_arena(void) {
    hl_arena a;
    CHECK(hl_arena_init(&a, 1000) == 0, "init");
    void *p = hl_arena_alloc(&a, 10), *q = hl_arena_alloc(&a, 10);
    CHECK(p && q && ((uintptr_t)q & 63) == 0 && (char *)q - (char *)p == 64, "aligned bump");
    size_t m = hl_arena_mark(&a);
    CHECK(hl_arena_alloc(&a, 5000) == NULL, "exhaustion returns NULL");
    CHECK(hl_arena_alloc(&a, (size_t)-1) == NULL, "huge request returns NULL");
    hl_arena_reset(&a, m);
    CHECK(a.used == m, "reset");
    hl_arena_free(&a);
}

static void test_error(void) {
    hl_error e;
    hl_error_clear(&e);
    CHECK(hl_fail(&e, HELIOS_ERR_FORMAT, "tensor '%s'", "x") == HELIOS_ERR_FORMAT, "status");
    hl_error_prefix(&e, "%s", "file.safetensors");
    CHECK(strcmp(e.msg, "file.safetensors: tensor 'x'") == 0, "prefix: %s", e.msg);
    CHECK(hl_fail(NULL, HELIOS_ERR_IO, "x") == HELIOS_ERR_IO, "NULL err ok");
    /* a ~4 KB path: the message keeps its start and the end that says what is wrong (it once
     * held the first 1023 bytes of the path alone) */
    char path[4097];
    memset(path, 'd', sizeof path - 1);
    path[0] = '/', path[sizeof path - 1] = '\0';
    hl_fail(&e, HELIOS_ERR_IO, "%s/model_index.json: cannot open: %s", path,
            "No such file or directory");
    size_t n = strlen(e.msg);
    CHECK(n == HL_ERR_MSG_MAX - 1, "long message fills the buffer (%zu)", n);
    static const char tail[] = "dd/model_index.json: cannot open: No such file or directory";
    CHECK(e.msg[0] == '/' && strstr(e.msg, " ... ") &&
              strcmp(e.msg + n - (sizeof tail - 1), tail) == 0,
          "long message keeps its end: ...%s", e.msg + n - 60);
    hl_error_prefix(&e, "%s", path);
    n = strlen(e.msg);
    CHECK(n == HL_ERR_MSG_MAX - 1 &&
              strstr(e.msg, "model_index.json: cannot open: No such file or directory"),
          "long prefix keeps the end: ...%s", e.msg + n - 60);
}

int main(void) {
    test_bf16();
    test_f16();
    test_dtype_names();
    test_tensor();
    test_arena();
    test_error();
    return test_done("test_core");
}

/* The Wan VAE against its reference vectors (tests/vectors/vae_*, oracle README §5), plus what the
 * vectors cannot show:
 *   - every vae_case check through hl_vae_verify (the `helios verify` path, cpu backend), each
 *     within 1e-4 · max(1, max|ref|) (README §7);
 *   - the ref backend on the image and the random-latent decode;
 *   - streaming: chunked decodes equal the whole decode (bit for bit with one latent frame per
 *     pass, to rounding with larger passes), and the stream's memory does not grow with the
 *     clip length;
 *   - the bf16 path (bf16 caches and conv inputs) against ref on the same bf16 weights;
 *   - latent normalisation round trip, argument and file errors.
 * test_vae -v prints every comparison. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/vae_bench.h"
#include "core/parallel.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "vae/vae.h"
#include "verify/vae_vectors.h"

static int g_verbose;
static hl_error g_err;
static hl_ctx g_cpu; /* test_ctx, in main */
static hl_ctx g_ref;

static float *xalloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!p) {
        fprintf(stderr, "test_vae: out of memory\n");
        exit(2);
    }
    return p;
}

static double tol_of(const float *ref, int64_t n) {
    double m = max_abs(ref, n);
    return 1e-4 * (m > 1.0 ? m : 1.0);
}

/* ---- every vector through hl_vae_verify ------------------------------------------------------ */

static int g_cases;

static void on_case(void *user, const char *file, const char *name, double max_abs_err, double tol,
                    long total) {
    g_cases++;
    if (g_verbose || !(max_abs_err <= tol))
        printf("  %-26s %-56s max err %.3g (tol %.3g)\n", file, name, max_abs_err, tol);
    CHECK(max_abs_err <= tol, "%s: %s: max err %.3g > tol %.3g", file, name, max_abs_err, tol);
}

static void test_verify(void) {
    hl_status st = hl_vae_verify(HELIOS_VECTORS, on_case, NULL, &g_err);
    CHECK(st == HL_OK, "hl_vae_verify: %s", g_err.msg);
    CHECK(g_cases >= 18, "only %d comparisons ran", g_cases);
}

/* ---- helpers over the case file --------------------------------------------------------------- */

typedef struct fixture {
    hl_vae *vae;
    hl_safetensors *st;
} fixture;

static int fixture_open(fixture *f) {
    char cfg[4096], w[4096];
    snprintf(cfg, sizeof cfg, "%s", vector_path("vae_config.json"));
    snprintf(w, sizeof w, "%s", vector_path("vae_weights_f32.safetensors"));
    memset(f, 0, sizeof *f);
    if (hl_vae_load(NULL, cfg, w, &f->vae, &g_err) != HL_OK ||
        hl_st_open(vector_path("vae_case.safetensors"), &f->st, &g_err) != HL_OK) {
        CHECK(0, "vectors: %s", g_err.msg);
        return 0;
    }
    return 1;
}

static void fixture_close(fixture *f) {
    hl_st_close(f->st);
    hl_vae_free(f->vae);
}

/* A tensor as float32 with its dims (5D). */
static float *tensor(const fixture *f, const char *name, int64_t d[5]) {
    const hl_st_tensor *t = hl_st_find(f->st, name);
    float *x = NULL;
    if (!t || t->ndim != 5 || hl_st_read_f32(f->st, name, -1, &x, &g_err) != HL_OK) {
        CHECK(0, "tensor %s", name);
        exit(1);
    }
    memcpy(d, t->shape, 5 * sizeof *d);
    return x;
}

static void compare(const char *what, const float *got, const float *want, int64_t n) {
    double e = max_abs_diff(got, want, n), tol = tol_of(want, n);
    if (g_verbose || !(e <= tol)) printf("  %-60s max err %.3g (tol %.3g)\n", what, e, tol);
    CHECK(e <= tol, "%s: max err %.3g > %.3g", what, e, tol);
}

/* ---- the ref backend ------------------------------------------------------------------------- */

static void test_ref_backend(void) {
    fixture f;
    if (!fixture_open(&f)) return;
    int64_t d[5], dm[5], dz[5], dr[5];
    float *image = tensor(&f, "image", d), *moments = tensor(&f, "image_enc_moments", dm);
    int64_t n = dm[0] * dm[1] * dm[2] * dm[3] * dm[4];
    float *m = xalloc(n);
    CHECK(hl_vae_encode(&g_ref, f.vae, d[0], d[2], d[3], d[4], image, m) == HL_OK, "ref encode: %s",
          g_err.msg);
    compare("ref backend: image_enc_moments", m, moments, n);
    float *z = tensor(&f, "z_random", dz), *want = tensor(&f, "decoded_random", dr);
    int64_t ny = dr[0] * dr[1] * dr[2] * dr[3] * dr[4];
    float *y = xalloc(ny);
    CHECK(hl_vae_decode(&g_ref, f.vae, dz[0], dz[2], dz[3], dz[4], z, y) == HL_OK, "ref decode: %s",
          g_err.msg);
    compare("ref backend: decoded_random", y, want, ny);
    free(image), free(moments), free(m), free(z), free(want), free(y);
    fixture_close(&f);
}

/* ---- streaming ------------------------------------------------------------------------------- */

/* Decodes z (1, Z, T, h, w) as a stream in chunks of `chunk` latent frames, `step` per pass,
 * into y (1, O, F, H, W). Returns the stream's peak bytes. */
static size_t stream_decode(const hl_ctx *ctx, hl_vae *v, const float *z, int64_t T, int64_t h,
                            int64_t w, int chunk, int step, float *y) {
    int64_t Z = v->cfg.z_dim, hw = h * w, r = v->cfg.spatial_ratio, HW = hw * r * r;
    int64_t O = v->decoder.conv_out.w.shape[0], F = hl_vae_decoded_frames(&v->cfg, T);
    float *zc = xalloc(Z * chunk * hw), *fr = xalloc(O * (1 + 4 * (int64_t)chunk) * HW);
    hl_vae_stream *s = NULL;
    CHECK(hl_vae_decode_begin(ctx, v, h, w, step, &s) == HL_OK, "begin: %s", g_err.msg);
    int64_t f0 = 0;
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t k = T - t0 < chunk ? T - t0 : chunk, nf = hl_vae_stream_out_frames(s, k);
        for (int64_t c = 0; c < Z; c++)
            memcpy(zc + c * k * hw, z + (c * T + t0) * hw, (size_t)(k * hw) * 4);
        CHECK(hl_vae_decode_chunk(s, k, zc, fr) == HL_OK, "chunk: %s", g_err.msg);
        for (int64_t c = 0; c < O; c++)
            memcpy(y + (c * F + f0) * HW, fr + c * nf * HW, (size_t)(nf * HW) * 4);
        f0 += nf;
    }
    CHECK(f0 == F, "stream gave %lld frames, expected %lld", (long long)f0, (long long)F);
    size_t bytes = hl_vae_stream_bytes(s);
    hl_vae_decode_end(s);
    free(zc), free(fr);
    return bytes;
}

static void test_streaming(const hl_ctx *ctx, hl_vae *v, const char *tag, double tol_step) {
    /* random latents, 9 frames (the size of one Helios chunk) */
    int64_t T = 9, h = 4, w = 6, Z = v->cfg.z_dim, r = v->cfg.spatial_ratio;
    int64_t F = hl_vae_decoded_frames(&v->cfg, T),
            n = v->decoder.conv_out.w.shape[0] * F * h * r * w * r;
    float *z = xalloc(Z * T * h * w), *whole = xalloc(n), *y = xalloc(n);
    fill_random(z, Z * T * h * w, 77);
    for (int64_t i = 0; i < Z * T * h * w; i++) z[i] *= 2.0f;
    CHECK(hl_vae_decode(ctx, v, 1, T, h, w, z, whole) == HL_OK, "whole decode: %s", g_err.msg);
    const struct {
        int chunk, step;
    } plans[] = {{1, 1}, {2, 1}, {4, 1}, {9, 1}, {3, 2}, {9, 4}, {5, 8}};
    for (size_t p = 0; p < sizeof plans / sizeof *plans; p++) {
        stream_decode(ctx, v, z, T, h, w, plans[p].chunk, plans[p].step, y);
        double e = max_abs_diff(y, whole, n);
        /* one latent frame per pass is the whole decode's own order: identical bits */
        double allowed = plans[p].step == 1 ? 0.0 : tol_step;
        if (g_verbose || !(e <= allowed))
            printf("  %s stream, chunks of %d, %d per pass: max |stream - whole| = %.3g\n", tag,
                   plans[p].chunk, plans[p].step, e);
        CHECK(e <= allowed, "%s stream chunk %d step %d differs from whole by %.3g", tag,
              plans[p].chunk, plans[p].step, e);
    }
    /* memory: a 3-frame and a 9-frame stream peak at the same size */
    int64_t n3 = v->decoder.conv_out.w.shape[0] * hl_vae_decoded_frames(&v->cfg, 3) * h * r * w * r;
    float *y3 = xalloc(n3);
    size_t b3 = stream_decode(ctx, v, z, 3, h, w, 1, 1, y3);
    size_t b9 = stream_decode(ctx, v, z, 9, h, w, 1, 1, y);
    if (g_verbose) printf("  %s stream peak bytes: 3 frames %zu, 9 frames %zu\n", tag, b3, b9);
    CHECK(b3 == b9 && b3 > 0, "%s stream memory grows with the clip: %zu vs %zu", tag, b3, b9);
    free(z), free(whole), free(y), free(y3);
}

static void test_streaming_f32(void) {
    fixture f;
    if (!fixture_open(&f)) return;
    test_streaming(&g_cpu, f.vae, "f32", 2e-5);
    fixture_close(&f);
}

/* ---- bf16 ------------------------------------------------------------------------------------ */

/* A tiny random model in bf16: the cpu path (bf16 conv inputs and caches, AMX convs) against ref
 * on the same bf16 weights (float32 activations). bf16 rounding of every conv input: a relative
 * 2^-8 per layer through ~30 layers of a random (not trained) network, so the bound is
 * statistical: measured max 3.0e-2 (mean 3.4e-3) of max|ref| for the decode, about what rounding
 * the weights alone does (2.98e-2); allowed 6e-2. */
static void test_bf16(void) {
    hl_vae_config c;
    hl_vae_config_wan21(&c);
    c.base_dim = c.decoder_base_dim = 8;
    c.num_res_blocks = 1;
    hl_vae *v = NULL;
    CHECK(hl_vae_create_random(&c, HL_BF16, 5, true, &v, &g_err) == HL_OK, "random bf16: %s",
          g_err.msg);
    if (!v) return;
    int64_t T = 5, h = 4, w = 6, F = hl_vae_decoded_frames(&c, T), n = 3 * F * 32 * 48;
    float *z = xalloc(16 * T * h * w), *a = xalloc(n), *b = xalloc(n);
    fill_random(z, 16 * T * h * w, 3);
    CHECK(hl_vae_decode(&g_cpu, v, 1, T, h, w, z, a) == HL_OK, "bf16 cpu decode: %s", g_err.msg);
    CHECK(hl_vae_decode(&g_ref, v, 1, T, h, w, z, b) == HL_OK, "bf16 ref decode: %s", g_err.msg);
    double e = max_abs_diff(a, b, n), m = max_abs(b, n);
    if (g_verbose) printf("  bf16 decode cpu vs ref: max err %.3g, max|ref| %.3g\n", e, m);
    CHECK(e <= 6e-2 * (m > 0.1 ? m : 0.1), "bf16 decode: cpu vs ref %.3g (max|ref| %.3g)", e, m);
    /* encode: video (1, 3, 9, 32, 32) */
    int64_t Tv = 9, nv = 3 * Tv * 32 * 32, nm = 32 * 3 * 4 * 4;
    float *video = xalloc(nv), *ma = xalloc(nm), *mb = xalloc(nm);
    fill_random(video, nv, 4);
    CHECK(hl_vae_encode(&g_cpu, v, 1, Tv, 32, 32, video, ma) == HL_OK, "bf16 cpu encode: %s",
          g_err.msg);
    CHECK(hl_vae_encode(&g_ref, v, 1, Tv, 32, 32, video, mb) == HL_OK, "bf16 ref encode: %s",
          g_err.msg);
    e = max_abs_diff(ma, mb, nm), m = max_abs(mb, nm);
    if (g_verbose) printf("  bf16 encode cpu vs ref: max err %.3g, max|ref| %.3g\n", e, m);
    CHECK(e <= 6e-2 * (m > 0.1 ? m : 0.1), "bf16 encode: cpu vs ref %.3g (max|ref| %.3g)", e, m);
    test_streaming(&g_cpu, v, "bf16", 1e-2);
    free(z), free(a), free(b), free(video), free(ma), free(mb);
    hl_vae_free(v);
}

/* The f32 checkpoint cast to bf16 (the fast path for the real VAE): the reference's decode and
 * encode within the bf16 bound above. */
static void test_cast_bf16(void) {
    fixture f;
    if (!fixture_open(&f)) return;
    CHECK(hl_vae_cast_weights(f.vae, HL_BF16, &g_err) == HL_OK, "cast: %s", g_err.msg);
    CHECK(f.vae->decoder.conv_in.w.dtype == HL_BF16 &&
              f.vae->decoder.mid.attn.proj_w.dtype == HL_BF16 &&
              f.vae->decoder.conv_in.b.dtype == HL_F32,
          "weights cast, biases kept");
    CHECK(hl_vae_cast_weights(f.vae, HL_F16, &g_err) == HELIOS_ERR_DTYPE, "f16 rejected");
    int64_t dz[5], dr[5], dv[5], dm[5];
    float *z = tensor(&f, "z_random", dz), *want = tensor(&f, "decoded_random", dr);
    int64_t n = dr[0] * dr[1] * dr[2] * dr[3] * dr[4];
    float *y = xalloc(n);
    CHECK(hl_vae_decode(&g_cpu, f.vae, dz[0], dz[2], dz[3], dz[4], z, y) == HL_OK, "decode: %s",
          g_err.msg);
    double e = max_abs_diff(y, want, n);
    if (g_verbose) printf("  f32 checkpoint cast to bf16: decoded_random max err %.3g\n", e);
    CHECK(e <= 6e-2 * (max_abs(want, n) > 0.1 ? max_abs(want, n) : 0.1), "bf16 cast decode: %.3g",
          e);
    float *video = tensor(&f, "video", dv), *mw = tensor(&f, "enc_moments", dm);
    int64_t nm = dm[0] * dm[1] * dm[2] * dm[3] * dm[4];
    float *m = xalloc(nm);
    CHECK(hl_vae_encode(&g_cpu, f.vae, dv[0], dv[2], dv[3], dv[4], video, m) == HL_OK, "encode: %s",
          g_err.msg);
    e = max_abs_diff(m, mw, nm);
    if (g_verbose) printf("  f32 checkpoint cast to bf16: enc_moments max err %.3g\n", e);
    CHECK(e <= 6e-2 * (max_abs(mw, nm) > 0.1 ? max_abs(mw, nm) : 0.1), "bf16 cast encode: %.3g", e);
    free(z), free(want), free(y), free(video), free(mw), free(m);
    fixture_close(&f);
}

/* ---- latents, errors ------------------------------------------------------------------------- */

static void test_latents(void) {
    hl_vae_config c;
    hl_vae_config_wan21(&c);
    int64_t B = 2, n = 37;
    float *z = xalloc(B * 16 * n), *z0 = xalloc(B * 16 * n);
    fill_random(z, B * 16 * n, 9);
    memcpy(z0, z, (size_t)(B * 16 * n) * 4);
    CHECK(hl_vae_normalize_latents(&c, B, n, z, &g_err) == HL_OK, "normalize");
    CHECK(fabsf(z[n] - (z0[n] - c.latents_mean[1]) * (1.0f / c.latents_std[1])) == 0.0f,
          "normalize formula");
    CHECK(hl_vae_denormalize_latents(&c, B, n, z, &g_err) == HL_OK, "denormalize");
    CHECK(max_abs_diff(z, z0, B * 16 * n) <= 1e-5, "round trip %.3g",
          max_abs_diff(z, z0, B * 16 * n));
    c.latents_n = 0;
    CHECK(hl_vae_normalize_latents(&c, B, n, z, &g_err) == HELIOS_ERR_UNSUPPORTED,
          "tables missing");
    /* posterior: clamp of logvar */
    float mom[4] = {0.5f, -1.0f, -40.0f, 25.0f}, mean[2], lv[2], sd[2];
    hl_vae_posterior(1, 1, 2, mom, mean, lv, sd);
    CHECK(mean[0] == 0.5f && lv[0] == -30.0f && lv[1] == 20.0f && sd[1] == expf(10.0f),
          "posterior clamp");
    free(z), free(z0);
}

static void test_errors(void) {
    hl_vae *v = NULL;
    CHECK(hl_vae_load("/nonexistent/vae", NULL, NULL, &v, &g_err) == HELIOS_ERR_IO && !v,
          "missing folder");
    CHECK(strstr(g_err.msg, "/nonexistent/vae") != NULL, "message names the path: %s", g_err.msg);
    /* weights of another model: the table reports missing tensors by name */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s", vector_path("vae_config.json"));
    hl_status st = hl_vae_load(NULL, cfg, vector_path("umt5_weights_f32.safetensors"), &v, &g_err);
    CHECK(st == HELIOS_ERR_MISSING && !v, "wrong weights: %d %s", st, g_err.msg);
    CHECK(strstr(g_err.msg, "encoder.conv_in.weight") != NULL, "message names a tensor: %.200s",
          g_err.msg);
    /* configs */
    const char *bad[] = {
        "{\"is_residual\": true}",
        "{\"dim_mult\": [1, 2], \"temperal_downsample\": [true, false]}",
        "{\"attn_scales\": [0.5]}",
        "{\"patch_size\": 2}",
        "[1]",
        "{\"z_dim\": 0}",
        "{\"dim_mult\": [1, 2, 4, 4], \"temperal_downsample\": [true, \"no\", true]}"};
    hl_status want[] = {HELIOS_ERR_UNSUPPORTED, HELIOS_ERR_FORMAT, HELIOS_ERR_UNSUPPORTED,
                        HELIOS_ERR_UNSUPPORTED, HELIOS_ERR_FORMAT, HELIOS_ERR_FORMAT,
                        HELIOS_ERR_FORMAT};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        hl_json *j = NULL;
        hl_vae_config c;
        CHECK(hl_json_parse(bad[i], strlen(bad[i]), &j, &g_err) == HL_OK, "json");
        st = hl_vae_config_parse(j, &c, &g_err);
        CHECK(st == want[i], "config %s: status %d, want %d (%s)", bad[i], st, want[i], g_err.msg);
        hl_json_free(j);
    }
    /* a config read from the vectors keeps every field */
    hl_json *j = NULL;
    hl_vae_config c;
    CHECK(hl_json_load_file(cfg, &j, &g_err) == HL_OK &&
              hl_vae_config_parse(j, &c, &g_err) == HL_OK,
          "vae_config.json");
    CHECK(c.base_dim == 8 && c.z_dim == 16 && c.n_levels == 4 && c.num_res_blocks == 1 &&
              c.temperal_downsample[1] && !c.temperal_downsample[0] && c.spatial_ratio == 8 &&
              c.temporal_ratio == 4 && c.latents_n == 16,
          "config fields");
    hl_json_free(j);
    /* bad call arguments */
    fixture f;
    if (!fixture_open(&f)) return;
    float x[3 * 8 * 8] = {0}, m[64];
    CHECK(hl_vae_encode(&g_cpu, f.vae, 1, 1, 4, 4, x, m) == HELIOS_ERR_INVALID_ARG,
          "too small to encode");
    CHECK(hl_vae_encode(&g_cpu, f.vae, 1, 0, 8, 8, x, m) == HELIOS_ERR_INVALID_ARG, "no frames");
    hl_vae_stream *s = NULL;
    CHECK(hl_vae_decode_begin(&g_cpu, f.vae, 0, 4, 1, &s) == HELIOS_ERR_INVALID_ARG && !s,
          "empty latent");
    CHECK(hl_vae_decode_begin(&g_cpu, f.vae, 4, 4, 0, &s) == HELIOS_ERR_INVALID_ARG && !s,
          "step 0");
    hl_vae_tiling tl = {4, 16, 8, 8};
    int64_t a, b2, c2;
    CHECK(hl_vae_encode_tiled(&g_cpu, f.vae, &tl, 1, 8, 8, x, m, &a, &b2, &c2) ==
              HELIOS_ERR_INVALID_ARG,
          "tile smaller than the ratio");
    fixture_close(&f);
}

int main(int argc, char **argv) {
    g_verbose = argc > 1 && !strcmp(argv[1], "-v");
    g_cpu = test_ctx(HELIOS_BACKEND_CPU, &g_err), g_ref = test_ctx(HELIOS_BACKEND_REF, &g_err);
    struct {
        const char *name;
        void (*fn)(void);
    } parts[] = {{"vectors", test_verify},
                 {"ref backend", test_ref_backend},
                 {"streaming", test_streaming_f32},
                 {"bf16", test_bf16},
                 {"bf16 cast", test_cast_bf16},
                 {"latents", test_latents},
                 {"errors", test_errors}};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        double t0 = hl_time();
        parts[i].fn();
        if (g_verbose) printf("%s: %.2f s\n", parts[i].name, hl_time() - t0);
    }
    return test_done("test_vae");
}

/* VAE training (vae.h "training") on a random model with the oracle's tiny configuration
 * (base_dim 8, z_dim 16, dim_mult [1, 2, 4, 4], 1 res block, time downsampling at levels 2 and
 * 3), without the gradient vectors (`helios verify` checks those: grads_vae_*):
 *   - the whole-clip training forwards equal the streaming inference forwards (hl_vae_decode:
 *     one latent frame per pass; hl_vae_encode: frame 0 then groups of 4) on clips longer than
 *     the vectors' (3 latent frames, 9 video frames: two groups, the caches carried across), ref
 *     backend, within 1e-5 · max|out|;
 *   - the backward against central finite differences of the float32 forward (on the first backend
 *     of test_backends, for speed: its forward is ~60x faster than ref's), L = Σ out ⊙ R, for
 *     a few inputs and one entry of each kind of parameter (conv weight and bias, norm gain,
 *     attention, time convs of both resample kinds). Decode: R is zeroed where |out| > 0.9, so
 *     no output that matters crosses the clamp. Float32 differences with h = 1e-2 carry ~1e-4
 *     of noise: pass when |analytic - fd| <= 1e-2 · max(|fd|, 0.1 · max|analytic|);
 *   - the unclamped decode (the objective's): its output clamped to [-1, 1] is the decode's, bit
 *     for bit, some of it lies outside, and a gradient only on those pixels reaches z through it
 *     and not through the clamped decode;
 *   - the rules: dz / dvideo overwritten, parameter gradients accumulated over two backwards,
 *     a tape runs one backward;
 *   - the decode forward + backward at the vector shape (z (1, 16, 2, 4, 4)) timed on each
 *     backend, with the tape's peak bytes and the process's peak RSS.
 * test_vae_train -v prints every comparison. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/vae_bench.h"
#include "core/parallel.h"
#include "ops/ops_backends.h"
#include "test_util.h"
#include "vae/vae.h"

static int g_verbose;
static hl_error g_err;
static hl_ctx g_ref;
static hl_ctx g_fd; /* the finite differences' forwards: the first of test_backends (fast) */

static float *xalloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!p) {
        fprintf(stderr, "test_vae_train: out of memory\n");
        exit(2);
    }
    return p;
}

static hl_vae *tiny_model(void) {
    hl_vae_config c;
    hl_vae_config_wan21(&c);
    c.base_dim = c.decoder_base_dim = 8;
    c.num_res_blocks = 1;
    hl_vae *v = NULL;
    CHECK(hl_vae_create_random(&c, HL_F32, 17, true, &v, &g_err) == HL_OK, "model: %s", g_err.msg);
    return v;
}

static float *param_data(hl_vae *v, const char *name) {
    for (int i = 0; i < v->n_params; i++)
        if (!strcmp(v->params[i].name, name))
            return v->params[i].gain ? *(float *const *)v->params[i].field
                                     : ((const hl_tensor *)v->params[i].field)->data;
    CHECK(0, "no parameter %s", name);
    return NULL;
}

/* ---- forward equals the streaming forward -------------------------------------------------- */

static void test_forward_matches(hl_vae *v) {
    int64_t T = 3, h = 2, w = 4, Z = 16, F = hl_vae_decoded_frames(&v->cfg, T);
    int64_t nz = Z * T * h * w, ny = 3 * F * 16 * 32;
    float *z = xalloc(nz), *a = xalloc(ny), *b = xalloc(ny);
    fill_random(z, nz, 5);
    hl_vae_tape *tape = NULL;
    CHECK(hl_vae_decode(&g_ref, v, 1, T, h, w, z, a) == HL_OK, "decode: %s", g_err.msg);
    CHECK(hl_vae_decode_forward_save(&g_ref, v, T, h, w, z, b, &tape) == HL_OK, "train: %s",
          g_err.msg);
    double e = max_abs_diff(a, b, ny), m = max_abs(a, ny);
    if (g_verbose)
        printf("  decode: training vs streaming forward max err %.3g (max %.3g)\n", e, m);
    CHECK(e <= 1e-5 * m, "decode: training forward differs from streaming by %.3g", e);
    hl_vae_tape_free(tape);
    free(z), free(a), free(b);

    int64_t Tv = 9, H = 16, W = 24, T_lat, hh, ww;
    hl_vae_latent_shape(&v->cfg, Tv, H, W, &T_lat, &hh, &ww);
    int64_t nx = 3 * Tv * H * W, nm = 2 * Z * T_lat * hh * ww;
    float *x = xalloc(nx), *m0 = xalloc(nm), *m1 = xalloc(nm);
    fill_random(x, nx, 6);
    CHECK(hl_vae_encode(&g_ref, v, 1, Tv, H, W, x, m0) == HL_OK, "encode: %s", g_err.msg);
    CHECK(hl_vae_encode_forward_save(&g_ref, v, Tv, H, W, x, m1, &tape) == HL_OK, "train: %s",
          g_err.msg);
    e = max_abs_diff(m0, m1, nm), m = max_abs(m0, nm);
    if (g_verbose)
        printf("  encode: training vs streaming forward max err %.3g (max %.3g)\n", e, m);
    CHECK(e <= 1e-5 * m, "encode: training forward differs from streaming by %.3g", e);
    hl_vae_tape_free(tape);
    CHECK(hl_vae_encode_forward_save(&g_ref, v, 8, H, W, x, m1, &tape) == HELIOS_ERR_INVALID_ARG &&
              !tape,
          "T = 8 (not 1 + 4k) rejected");
    free(x), free(m0), free(m1);
}

/* ---- finite differences -------------------------------------------------------------------- */

typedef struct fd_case {
    hl_vae *v;
    int decode;
    int64_t T, H, W, n_in, n_out;
    float *in, *out, *R;
} fd_case;

static double loss(fd_case *c) {
    hl_vae_tape *tape = NULL;
    hl_status st =
        c->decode ? hl_vae_decode_forward_save(&g_fd, c->v, c->T, c->H, c->W, c->in, c->out, &tape)
                  : hl_vae_encode_forward_save(&g_fd, c->v, c->T, c->H, c->W, c->in, c->out, &tape);
    CHECK(st == HL_OK, "forward: %s", g_err.msg);
    hl_vae_tape_free(tape);
    double L = 0;
    for (int64_t i = 0; i < c->n_out; i++) L += (double)c->out[i] * c->R[i];
    return L;
}

static double g_worst;

static void fd_one(fd_case *c, const char *what, float *p, int64_t i, float ana, double scale) {
    const float h = 1e-2f;
    float v0 = p[i];
    p[i] = v0 + h;
    double lp = loss(c);
    p[i] = v0 - h;
    double lm = loss(c);
    p[i] = v0;
    double fd = (lp - lm) / (2.0 * (double)h), d = fabs(ana - fd);
    double allowed = 1e-2 * fmax(fabs(fd), 0.1 * scale), q = d / allowed;
    if (q > g_worst) g_worst = q;
    if (g_verbose || q > 1)
        printf("  %s %-56s[%lld] analytic %+.6g fd %+.6g ratio %.3g\n",
               c->decode ? "decode" : "encode", what, (long long)i, ana, fd, q);
    CHECK(q <= 1, "%s %s[%lld]: analytic %.6g vs fd %.6g", c->decode ? "decode" : "encode", what,
          (long long)i, ana, fd);
}

static double max_absf(const float *x, int64_t n) { return n > 0 ? max_abs(x, n) : 0.0; }

static void test_fd(hl_vae *v, int decode) {
    fd_case c = {.v = v, .decode = decode};
    if (decode) {
        c.T = 2, c.H = 4, c.W = 4, c.n_in = 16 * 2 * 16, c.n_out = 3 * 5 * 32 * 32;
    } else {
        c.T = 5, c.H = 32, c.W = 32, c.n_in = 3 * 5 * 32 * 32, c.n_out = 32 * 2 * 16;
    }
    c.in = xalloc(c.n_in), c.out = xalloc(c.n_out), c.R = xalloc(c.n_out);
    fill_random(c.in, c.n_in, decode ? 21 : 22);
    fill_random(c.R, c.n_out, 23);
    hl_vae_tape *tape = NULL;
    hl_vae_grads *g = NULL;
    float *din = xalloc(c.n_in);
    for (int64_t i = 0; i < c.n_in; i++) din[i] = NAN; /* overwritten */
    CHECK(hl_vae_grads_new(v, &g, &g_err) == HL_OK, "grads");
    hl_status st = decode ? hl_vae_decode_forward_save(&g_fd, v, c.T, c.H, c.W, c.in, c.out, &tape)
                          : hl_vae_encode_forward_save(&g_fd, v, c.T, c.H, c.W, c.in, c.out, &tape);
    CHECK(st == HL_OK, "forward: %s", g_err.msg);
    if (decode) /* outputs near or past the clamp do not count */
        for (int64_t i = 0; i < c.n_out; i++)
            if (fabsf(c.out[i]) > 0.9f) c.R[i] = 0.0f;
    st = decode ? hl_vae_decode_backward(tape, c.R, din, g)
                : hl_vae_encode_backward(tape, c.R, din, g);
    CHECK(st == HL_OK, "backward: %s", g_err.msg);
    st = decode ? hl_vae_decode_backward(tape, c.R, din, g)
                : hl_vae_encode_backward(tape, c.R, din, g);
    CHECK(st == HELIOS_ERR_INVALID_ARG, "a second backward on one tape is refused");
    hl_vae_tape_free(tape);
    double s_in = max_absf(din, c.n_in);
    for (int k = 0; k < 2; k++) {
        int64_t i = (int64_t)k * (c.n_in / 2) + 7 * k + 3;
        fd_one(&c, decode ? "z" : "video", c.in, i, din[i], s_in);
    }
    static const char *const dec[] = {"decoder.conv_in.weight",
                                      "decoder.mid_block.attentions.0.to_qkv.weight",
                                      "decoder.mid_block.attentions.0.norm.gamma",
                                      "decoder.mid_block.resnets.1.conv2.bias",
                                      "decoder.up_blocks.0.upsamplers.0.time_conv.weight",
                                      "decoder.up_blocks.1.upsamplers.0.time_conv.bias",
                                      "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
                                      "decoder.up_blocks.2.upsamplers.0.resample.1.weight",
                                      "decoder.norm_out.gamma",
                                      "post_quant_conv.weight",
                                      NULL};
    static const char *const enc[] = {"encoder.conv_in.weight",
                                      "encoder.down_blocks.0.norm1.gamma",
                                      "encoder.down_blocks.1.resample.1.bias",
                                      "encoder.down_blocks.3.time_conv.weight",
                                      "encoder.down_blocks.5.time_conv.bias",
                                      "encoder.mid_block.attentions.0.proj.weight",
                                      "encoder.mid_block.attentions.0.to_qkv.bias",
                                      "encoder.conv_out.weight",
                                      "quant_conv.bias",
                                      NULL};
    for (const char *const *name = decode ? dec : enc; *name; name++) {
        int64_t n = 0;
        float *ana = hl_vae_grad_by_name(g, *name, &n), *p = param_data(v, *name);
        CHECK(ana && p, "%s has a gradient", *name);
        if (!ana || !p) continue;
        int64_t best = 0; /* the largest entry: a clear signal */
        for (int64_t i = 0; i < n; i++)
            if (fabsf(ana[i]) > fabsf(ana[best])) best = i;
        fd_one(&c, *name, p, best, ana[best], max_absf(ana, n));
    }
    /* a second forward + backward accumulates: every gradient doubles */
    int64_t n0 = 0;
    const char *pname = decode ? dec[1] : enc[1];
    float *g0 = hl_vae_grad_by_name(g, pname, &n0), *keep = xalloc(n0);
    memcpy(keep, g0, (size_t)n0 * sizeof *keep);
    st = decode ? hl_vae_decode_forward_save(&g_fd, v, c.T, c.H, c.W, c.in, c.out, &tape)
                : hl_vae_encode_forward_save(&g_fd, v, c.T, c.H, c.W, c.in, c.out, &tape);
    if (st == HL_OK)
        st = decode ? hl_vae_decode_backward(tape, c.R, din, g)
                    : hl_vae_encode_backward(tape, c.R, din, g);
    hl_vae_tape_free(tape);
    int doubled = st == HL_OK;
    for (int64_t i = 0; i < n0; i++)
        doubled &= fabsf(g0[i] - 2 * keep[i]) <= 1e-6f * fabsf(keep[i]) + 1e-12f;
    CHECK(doubled, "%s: parameter gradients accumulate over two backwards", pname);
    hl_vae_grads_zero(g);
    CHECK(g0[0] == 0.0f, "hl_vae_grads_zero");
    hl_vae_grads_free(g);
    free(c.in), free(c.out), free(c.R), free(din), free(keep);
}

/* ---- time and memory at the vector shape ----------------------------------------------------- */

/* user + system CPU seconds of the process (a shared machine's load inflates wall times) */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void test_unclamped(hl_vae *v) {
    int64_t nz = 16 * 2 * 4 * 4, ny = 3 * 5 * 32 * 32;
    float *z = xalloc(nz), *yc = xalloc(ny), *yu = xalloc(ny), *R = xalloc(ny);
    float *dzc = xalloc(nz), *dzu = xalloc(nz);
    fill_random(z, nz, 41);
    for (int64_t i = 0; i < nz; i++) z[i] *= 30.0f; /* outputs past ±1 */
    hl_vae_tape *tc = NULL, *tu = NULL;
    CHECK(hl_vae_decode_forward_save(&g_fd, v, 2, 4, 4, z, yc, &tc) == HL_OK, "clamped");
    CHECK(hl_vae_decode_forward_save_unclamped(&g_fd, v, 2, 4, 4, z, yu, &tu) == HL_OK, "raw");
    int64_t outside = 0, differ = 0;
    for (int64_t i = 0; i < ny; i++) {
        float c = fminf(fmaxf(yu[i], -1.0f), 1.0f);
        differ += c != yc[i];
        outside += fabsf(yu[i]) > 1.0f;
        R[i] = fabsf(yu[i]) > 1.0f ? 1.0f : 0.0f;
    }
    CHECK(differ == 0, "unclamped decode, clamped, differs from the decode at %lld",
          (long long)differ);
    CHECK(outside > 0, "no output past ±1: the test shows nothing");
    if (tc && tu) {
        CHECK(hl_vae_decode_backward(tc, R, dzc, NULL) == HL_OK, "clamped backward");
        CHECK(hl_vae_decode_backward(tu, R, dzu, NULL) == HL_OK, "raw backward");
        double nc = 0, nu = 0;
        for (int64_t i = 0; i < nz; i++) nc += fabsf(dzc[i]), nu += fabsf(dzu[i]);
        CHECK(nc == 0 && nu > 0, "gradient on clamped pixels: clamped |dz| %g, unclamped %g", nc,
              nu);
    }
    hl_vae_tape_free(tc);
    hl_vae_tape_free(tu);
    free(z), free(yc), free(yu), free(R), free(dzc), free(dzu);
}

static void time_decode(hl_vae *v, helios_backend kind, int reps) {
    hl_ctx ctx = test_ctx(kind, &g_err);
    int64_t nz = 16 * 2 * 4 * 4, ny = 3 * 5 * 32 * 32;
    float *z = xalloc(nz), *y = xalloc(ny), *R = xalloc(ny), *dz = xalloc(nz);
    fill_random(z, nz, 31);
    fill_random(R, ny, 32);
    hl_vae_grads *g = NULL;
    hl_vae_tape *tape = NULL;
    CHECK(hl_vae_grads_new(v, &g, &g_err) == HL_OK, "grads");
    double best = 1e30, fwd = 0, cpu_best = 1e30;
    size_t peak = 0;
    for (int rep = 0; rep < reps; rep++) {
        double c0 = cpu_seconds(), t0 = hl_time();
        CHECK(hl_vae_decode_forward_save(&ctx, v, 2, 4, 4, z, y, &tape) == HL_OK, "fwd");
        double t1 = hl_time();
        CHECK(hl_vae_decode_backward(tape, R, dz, g) == HL_OK, "bwd");
        double t2 = hl_time();
        peak = hl_vae_tape_peak_bytes(tape);
        hl_vae_tape_free(tape);
        if (t2 - t0 < best) best = t2 - t0, fwd = t1 - t0;
        if (cpu_seconds() - c0 < cpu_best) cpu_best = cpu_seconds() - c0;
    }
    if (g_verbose) { /* where one more forward + backward spends its time, per op */
        hl_op_timing_set(1);
        hl_vae_decode_forward_save(&ctx, v, 2, 4, 4, z, y, &tape);
        hl_vae_decode_backward(tape, R, dz, g);
        hl_vae_tape_free(tape);
        const hl_op_times *ot = hl_op_times_get();
        for (int i = 0; i < HL_OP_COUNT; i++)
            if (ot->seconds[i] > 0.002)
                printf("    %-26s %7.3f s  %5lld calls\n", hl_op_name((hl_op_id)i), ot->seconds[i],
                       (long long)ot->calls[i]);
        hl_op_timing_set(0);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("  decode z (1,16,2,4,4) -> (1,3,5,32,32), %s backend: forward+backward %.3f s "
           "(forward %.3f s; process CPU time %.3f s), tape peak %.2f MB, process max RSS %.1f "
           "MB\n",
           hl_backend_name(ctx.backend), best, fwd, cpu_best, (double)peak / 1e6,
           (double)ru.ru_maxrss / 1e3);
    hl_vae_grads_free(g);
    free(z), free(y), free(R), free(dz);
}

int main(int argc, char **argv) {
    g_verbose = argc > 1 && !strcmp(argv[1], "-v");
    g_ref = test_ctx(HELIOS_BACKEND_REF, &g_err);
    g_fd = test_n_backends ? test_ctx(test_backends[0], &g_err) : g_ref;
    hl_vae *v = tiny_model();
    if (!v) return test_done("test_vae_train");
    test_forward_matches(v);
    test_fd(v, 1);
    test_fd(v, 0);
    printf("  worst finite-difference ratio %.3g (limit 1)\n", g_worst);
    test_unclamped(v);
    time_decode(v, HELIOS_BACKEND_REF, 1);
    for (int b = 0; b < test_n_backends; b++) time_decode(v, test_backends[b], 3);
    hl_vae_free(v);
    return test_done("test_vae_train");
}

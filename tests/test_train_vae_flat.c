/* The VAE over flat buffers (train/vae_flat.h) on a random tiny model (base_dim 8, z_dim 16,
 * dim_mult [1, 2, 4, 4], 1 res block):
 *   - the layout is the model's parameter table (names, the checkpoint's shapes, offsets back to
 *     back, total = Σ numel);
 *   - hl_vae_params_from_model copies the weights; a model bound to the flat copy runs the same
 *     encode and decode forwards and backwards, bit for bit, as the loaded one, and its parameter
 *     gradients land in the flat gradient buffer equal to hl_vae_grads' own buffers;
 *   - rebinding to other buffers moves both the weights read and the gradients written;
 *   - the random init: gains 1, biases 0, weights He uniform in ±sqrt(6/fan_in) (filling the
 *     range), the same for a seed;
 *   - the "vae" objective's whole step (encode, posterior sample, decode, loss, and back) against
 *     central differences of its loss along entries of encoder, bottleneck and decoder weights
 *     (the temporal taps that see the frame, not the causal padding), same sample and noise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/vae_bench.h"
#include "test_util.h"
#include "io/json.h"
#include "train/objective.h"
#include "train/vae_flat.h"

static hl_error g_err;

static float *xalloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!p) exit(2);
    return p;
}

static void fill_randn(float *x, int64_t n, uint64_t seed) {
    hl_rng g;
    g.path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed(&g, seed);
    hl_rng_randn_f32(&g, x, n);
}

/* encode + decode forwards and backwards of model v with gradients gr; out: moments, video,
 * dvideo_in, dz concatenated. */
static void run(const hl_ctx *ctx, hl_vae *v, hl_vae_grads *gr, float *out) {
    const int64_t T = 5, H = 16, W = 16;
    int64_t Tl, h, w;
    hl_vae_latent_shape(&v->cfg, T, H, W, &Tl, &h, &w);
    int64_t n_pix = 3 * T * H * W, n_mom = 2 * 16 * Tl * h * w, n_z = n_mom / 2;
    float *x = xalloc(n_pix), *dm = xalloc(n_mom), *dv = xalloc(n_pix), *z = xalloc(n_z);
    fill_randn(x, n_pix, 1);
    for (int64_t i = 0; i < n_pix; i++) x[i] = tanhf(x[i]);
    fill_randn(dm, n_mom, 2);
    fill_randn(dv, n_pix, 3);
    fill_randn(z, n_z, 4);
    hl_vae_tape *t = NULL;
    CHECK(hl_vae_encode_forward_save(ctx, v, T, H, W, x, out, &t) == HL_OK, "encode: %s",
          g_err.msg);
    CHECK(hl_vae_encode_backward(t, dm, out + n_mom, gr) == HL_OK, "encode backward");
    hl_vae_tape_free(t);
    t = NULL;
    float *o2 = out + n_mom + n_pix;
    CHECK(hl_vae_decode_forward_save(ctx, v, Tl, h, w, z, o2, &t) == HL_OK, "decode: %s",
          g_err.msg);
    CHECK(hl_vae_decode_backward(t, dv, o2 + n_pix, gr) == HL_OK, "decode backward");
    hl_vae_tape_free(t);
    free(x), free(dm), free(dv), free(z);
}

/* Central differences of the whole objective step (its loss) along a few weights of each tensor
 * in names, on 2 world clips of 16x16x1 (loss MSE: smooth, so a tight bound holds). */
static void test_objective_fd(const hl_vae_config *c, hl_vae_flat *f) {
    const char *s =
        "{\"type\": \"vae\", \"l1\": 0, \"l2\": 1, \"kl\": 1e-3, \"dataset\": {\"width\": 16, "
        "\"height\": 16, \"frames\": 1, \"clips\": 2, \"seed\": 1}}";
    hl_json *js = NULL;
    CHECK(hl_json_parse(s, strlen(s), &js, &g_err) == HL_OK, "%s", g_err.msg);
    hl_train_env env = {0};
    env.config_path = "test.json", env.layout = &f->layout, env.data = "procedural";
    env.vae = c, env.samples_per_step = 1;
    void *o = NULL;
    CHECK(hl_vae_objective_create(js, &env, &o, &g_err) == HL_OK, "%s", g_err.msg);
    hl_json_free(js);
    if (!o) return;
    int64_t N = f->layout.total;
    float *w = malloc((size_t)N * sizeof *w), *g = calloc((size_t)N, sizeof *g),
          *g2 = calloc((size_t)N, sizeof *g2);
    hl_rng r = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed(&r, 1);
    hl_vae_params_init_random(&f->layout, w, &r);
    double loss, lp, lm, worst = 0;
    hl_rng_seed(&r, 5);
    CHECK(hl_vae_objective_step(o, &r, 1, w, g, &loss, &g_err) == HL_OK, "%s", g_err.msg);
    static const char *const names[] = {"encoder.conv_in.weight",  "encoder.conv_out.weight",
                                        "quant_conv.weight",       "quant_conv.bias",
                                        "post_quant_conv.weight",  "decoder.conv_in.weight",
                                        "decoder.conv_out.weight", "decoder.conv_out.bias"};
    for (int t = 0; t < 8; t++) {
        const hl_param *p = hl_params_find(&f->layout, names[t]);
        CHECK(p != NULL, "no %s", names[t]);
        if (!p) continue;
        int64_t taps = p->numel % 27 == 0 ? 27 : 1; /* 3x3x3: kt = 2 sees a single frame */
        for (int k = 0; k < 3; k++) {
            int64_t i = p->offset + (taps == 27 ? ((k * 7919) % (p->numel / 27)) * 27 + 22
                                                : (k * 7919) % p->numel);
            float h = 5e-2f * fmaxf(fabsf(w[i]), 2e-2f), w0 = w[i];
            w[i] = w0 + h;
            hl_rng_seed(&r, 5);
            hl_vae_objective_step(o, &r, 1, w, g2, &lp, &g_err);
            w[i] = w0 - h;
            hl_rng_seed(&r, 5);
            hl_vae_objective_step(o, &r, 1, w, g2, &lm, &g_err);
            w[i] = w0;
            double fd = (lp - lm) / (2.0 * (double)h);
            double err = fabs(fd - g[i]) / (fabs(fd) + fabs(g[i]) + 1e-4);
            worst = fmax(worst, err);
            CHECK(err < 0.05, "%s[%lld]: analytic %.6e, central difference %.6e", names[t],
                  (long long)(i - p->offset), (double)g[i], fd);
        }
    }
    printf("  vae objective vs central differences: worst relative gap %.3g (limit 0.05)\n", worst);
    free(w), free(g), free(g2);
    hl_vae_objective_destroy(o);
}

int main(void) {
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_CPU, &g_err);
    hl_vae_config c;
    hl_vae_config_wan21(&c);
    c.base_dim = c.decoder_base_dim = 8;
    c.num_res_blocks = 1;
    hl_vae *v = NULL;
    CHECK(hl_vae_create_random(&c, HL_F32, 17, true, &v, &g_err) == HL_OK, "model: %s", g_err.msg);
    hl_vae_flat f;
    CHECK(hl_vae_flat_new(&c, &f, &g_err) == HL_OK, "flat: %s", g_err.msg);
    if (!v || !f.m) return test_done("test_train_vae_flat");

    /* the layout */
    CHECK(f.layout.n == (size_t)v->n_params, "%zu rows for %d parameters", f.layout.n, v->n_params);
    int64_t off = 0;
    for (size_t i = 0; i < f.layout.n; i++) {
        const hl_param *p = &f.layout.p[i];
        CHECK(!strcmp(p->name, v->params[i].name) && p->offset == off &&
                  p->numel == v->params[i].numel,
              "row %zu %s", i, p->name);
        off += p->numel;
    }
    CHECK(off == f.layout.total, "total %lld, rows %lld", (long long)f.layout.total,
          (long long)off);
    const hl_param *g1 = hl_params_find(&f.layout, "encoder.down_blocks.0.norm1.gamma");
    CHECK(g1 && g1->ndim == 4 && g1->shape[0] == 8 && g1->shape[1] == 1 && g1->shape[3] == 1,
          "gain shape [C, 1, 1, 1]");
    const hl_param *ci = hl_params_find(&f.layout, "decoder.conv_in.weight");
    CHECK(ci && ci->ndim == 5, "conv weight [O, C, kt, kh, kw]");

    /* bound model == loaded model, gradients into the flat buffer */
    int64_t N = f.layout.total, n_out = 2 * (2 * 16 * 2 * 2 * 2) + 4 * 3 * 5 * 16 * 16;
    float *w = xalloc(N), *g = xalloc(N), *out_a = xalloc(n_out), *out_b = xalloc(n_out);
    CHECK(hl_vae_params_from_model(v, &f.layout, w, &g_err) == HL_OK, "copy: %s", g_err.msg);
    CHECK(hl_vae_flat_bind(&f, w, g, &g_err) == HL_OK, "bind: %s", g_err.msg);
    hl_vae_grads *ref;
    CHECK(hl_vae_grads_new(v, &ref, &g_err) == HL_OK, "grads");
    run(&ctx, v, ref, out_a);
    run(&ctx, f.m, f.grads, out_b);
    CHECK(!memcmp(out_a, out_b, (size_t)n_out * sizeof *out_a), "outputs differ");
    int bad = 0, nonzero = 0;
    for (size_t i = 0; i < f.layout.n; i++) {
        const hl_param *p = &f.layout.p[i];
        const float *r = hl_vae_grad_by_name(ref, p->name, NULL);
        if (memcmp(r, g + p->offset, (size_t)p->numel * sizeof *r)) bad++;
        for (int64_t k = 0; k < p->numel; k++) nonzero += g[p->offset + k] != 0;
    }
    CHECK(bad == 0, "%d parameters' flat gradients differ", bad);
    CHECK(nonzero > N / 2, "only %d of %lld gradients non-zero", nonzero, (long long)N);

    /* rebinding: other weights (scaled) give other outputs; gradients go to the new buffer */
    float *w2 = xalloc(N), *g2 = xalloc(N);
    for (int64_t i = 0; i < N; i++) w2[i] = 0.5f * w[i];
    memcpy(out_a, out_b, (size_t)n_out * sizeof *out_a);
    float *g_before = xalloc(N);
    memcpy(g_before, g, (size_t)N * sizeof *g);
    CHECK(hl_vae_flat_bind(&f, w2, g2, &g_err) == HL_OK, "rebind: %s", g_err.msg);
    run(&ctx, f.m, f.grads, out_b);
    CHECK(memcmp(out_a, out_b, (size_t)n_out * sizeof *out_a), "rebinding changed nothing");
    CHECK(!memcmp(g, g_before, (size_t)N * sizeof *g), "old gradient buffer written");
    int nz2 = 0;
    for (int64_t i = 0; i < N; i++) nz2 += g2[i] != 0;
    CHECK(nz2 > N / 2, "new gradient buffer not written");

    /* random init */
    hl_rng r1, r2;
    r1.path = r2.path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed(&r1, 9);
    hl_rng_seed(&r2, 9);
    hl_vae_params_init_random(&f.layout, w, &r1);
    hl_vae_params_init_random(&f.layout, w2, &r2);
    CHECK(!memcmp(w, w2, (size_t)N * sizeof *w), "init not reproducible");
    int wrong = 0;
    for (size_t i = 0; i < f.layout.n; i++) {
        const hl_param *p = &f.layout.p[i];
        const float *d = w + p->offset;
        size_t L = strlen(p->name);
        float bound = sqrtf(6.0f / (float)(p->numel / p->shape[0])), peak = 0.0f;
        bool weight = !(L > 6 && !strcmp(p->name + L - 6, ".gamma")) &&
                      !(L > 5 && !strcmp(p->name + L - 5, ".bias"));
        for (int64_t k = 0; k < p->numel; k++) {
            if (L > 6 && !strcmp(p->name + L - 6, ".gamma")) wrong += d[k] != 1.0f;
            else if (L > 5 && !strcmp(p->name + L - 5, ".bias")) wrong += d[k] != 0.0f;
            else wrong += !(fabsf(d[k]) <= bound) || (k > 0 && d[k] == d[k - 1]);
            peak = fmaxf(peak, fabsf(d[k]));
        }
        wrong += weight && p->numel >= 256 && peak < 0.9f * bound; /* the whole range is used */
    }
    CHECK(wrong == 0, "%d initial values out of rule", wrong);

    test_objective_fd(&c, &f);
    hl_vae_grads_free(ref);
    free(w), free(g), free(w2), free(g2), free(g_before), free(out_a), free(out_b);
    hl_vae_flat_free(&f);
    hl_vae_free(v);
    return test_done("test_train_vae_flat");
}

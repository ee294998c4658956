/* The optimizer (train/adamw.h) against torch.optim.AdamW's update written out in double, with and
 * without weight decay over several steps; clip_grad_norm_, the LR schedules and the EMA against
 * hand-computed values; the same bits whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "test_util.h"
#include "train/adamw.h"

/* torch.optim.AdamW (single tensor), in double. */
static void adamw_ref(double *p, double *m, double *v, const double *g, int n, int step, double lr,
                      const hl_adamw_config *c) {
    double bc1 = 1 - pow(c->beta1, step), bc2 = 1 - pow(c->beta2, step);
    for (int i = 0; i < n; i++) {
        p[i] *= 1 - lr * c->weight_decay;
        m[i] = c->beta1 * m[i] + (1 - c->beta1) * g[i];
        v[i] = c->beta2 * v[i] + (1 - c->beta2) * g[i] * g[i];
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + c->eps);
    }
}

static void test_adamw(double wd, double beta1) {
    enum { N = 37, STEPS = 6 };
    hl_adamw_config c = {beta1, 0.999, 1e-8, wd};
    hl_adamw s;
    hl_error e = {0};
    CHECK(hl_adamw_init(&s, N, &e) == HL_OK, "%s", e.msg);
    float p[N], g[N];
    double pd[N], md[N] = {0}, vd[N] = {0}, gd[N];
    fill_random(p, N, 1);
    for (int i = 0; i < N; i++) pd[i] = p[i];
    double worst = 0;
    for (int k = 1; k <= STEPS; k++) {
        fill_random(g, N, 100 + (uint64_t)k);
        g[0] = 0;                     /* a parameter with no gradient still decays */
        g[1] = 1e-3f * (float)k;      /* tiny gradients: eps matters */
        for (int i = 0; i < N; i++) { /* torch sees the float32 gradient */
            gd[i] = g[i];
        }
        double lr = 1e-2 * k;
        hl_adamw_step(&s, &c, lr, p, g);
        adamw_ref(pd, md, vd, gd, N, k, lr, &c);
        for (int i = 0; i < N; i++) {
            double d = fabs(p[i] - pd[i]) / fmax(1e-3, fabs(pd[i]));
            worst = fmax(worst, d);
            worst = fmax(worst, fabs(s.m[i] - md[i]) / fmax(1e-6, fabs(md[i])));
        }
    }
    printf("  adamw wd %g beta1 %g: %d steps, max rel diff vs double %.3g\n", wd, beta1, STEPS,
           worst);
    CHECK(worst < 2e-6, "adamw wd %g: rel diff %.3g", wd, worst);
    CHECK(s.step == STEPS, "step count");
    hl_adamw_free(&s);
}

/* The first step by hand: m = 0.1 g, v = 0.001 g^2, bias-corrected to g and g^2, so the update is
 * lr * g / (|g| + eps) = lr * sign(g) (up to eps), after p *= 1 - lr wd. */
static void test_adamw_first_step(void) {
    hl_adamw_config c = {0.9, 0.999, 1e-8, 0.1};
    hl_adamw s;
    hl_error e = {0};
    CHECK(hl_adamw_init(&s, 3, &e) == HL_OK, "%s", e.msg);
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.5f, -4.0f, 0.0f};
    hl_adamw_step(&s, &c, 0.1, p, g);
    CHECK(fabs(p[0] - (1.0 * 0.99 - 0.1)) < 1e-6, "p0 %.9g", p[0]);
    CHECK(fabs(p[1] - (-2.0 * 0.99 + 0.1)) < 1e-6, "p1 %.9g", p[1]);
    CHECK(p[2] == (float)(0.5 * 0.99), "p2 %.9g (no gradient: decay only)", p[2]);
    hl_adamw_free(&s);
}

/* The update written out in float, operation by operation, as adamw.c's scalar loop: the vector
 * loop (16 lanes on AVX-512) must give its bits exactly, over steps, both lerp forms, and a length
 * that leaves a tail. */
static void test_vector_same_bits(double beta1) {
    enum { N = 1003, STEPS = 3 };
    hl_adamw_config c = {beta1, 0.95, 1e-8, 0.01};
    hl_adamw s;
    hl_error e = {0};
    CHECK(hl_adamw_init(&s, N, &e) == HL_OK, "%s", e.msg);
    float p[N], g[N], pr[N], mr[N] = {0}, vr[N] = {0};
    fill_random(p, N, 7);
    memcpy(pr, p, sizeof p);
    int64_t bad = 0;
    for (int k = 1; k <= STEPS; k++) {
        fill_random(g, N, 200 + (uint64_t)k);
        const double lr = 3e-3 * k, bc1 = 1.0 - pow(c.beta1, k), bc2 = 1.0 - pow(c.beta2, k);
        const float decay = (float)(1.0 - lr * c.weight_decay), omb1 = (float)(1.0 - c.beta1),
                    b1 = (float)(1.0 - (double)(float)(1.0 - c.beta1)), b2 = (float)c.beta2,
                    omb2 = (float)(1.0 - c.beta2), bc2s = (float)sqrt(bc2), eps = (float)c.eps,
                    st = (float)(lr / bc1);
        for (int i = 0; i < N; i++) {
            float pp = pr[i] * decay, gg = g[i];
            float m = omb1 < 0.5f ? mr[i] + omb1 * (gg - mr[i]) : gg - (gg - mr[i]) * b1;
            float v = vr[i] * b2 + omb2 * gg * gg;
            float denom = sqrtf(v) / bc2s + eps;
            pr[i] = pp - st * (m / denom);
            mr[i] = m;
            vr[i] = v;
        }
        hl_adamw_step(&s, &c, lr, p, g);
        for (int i = 0; i < N; i++)
            bad += memcmp(&p[i], &pr[i], 4) || memcmp(&s.m[i], &mr[i], 4) ||
                   memcmp(&s.v[i], &vr[i], 4);
    }
    CHECK(bad == 0, "adamw beta1 %g: %lld values differ from the scalar formula's bits", beta1,
          (long long)bad);
    hl_adamw_free(&s);
}

static void test_threads_same_bits(void) {
    enum { N = 200003 };
    float *p1 = malloc(N * sizeof *p1), *p2 = malloc(N * sizeof *p2), *g = malloc(N * sizeof *g);
    fill_random(p1, N, 5);
    memcpy(p2, p1, N * sizeof *p1);
    fill_random(g, N, 6);
    hl_adamw_config c = {0.9, 0.95, 1e-8, 0.01};
    hl_adamw a, b;
    hl_error e = {0};
    CHECK(hl_adamw_init(&a, N, &e) == HL_OK && hl_adamw_init(&b, N, &e) == HL_OK, "%s", e.msg);
    int saved = hl_get_threads();
    hl_set_threads(1);
    double n1 = hl_grad_norm(g, N);
    for (int k = 0; k < 3; k++) hl_adamw_step(&a, &c, 1e-3, p1, g);
    hl_set_threads(2);
    double n2 = hl_grad_norm(g, N);
    for (int k = 0; k < 3; k++) hl_adamw_step(&b, &c, 1e-3, p2, g);
    hl_set_threads(saved);
    CHECK(n1 == n2, "grad norm differs across thread counts: %a vs %a", n1, n2);
    CHECK(!memcmp(p1, p2, N * sizeof *p1) && !memcmp(a.v, b.v, N * sizeof *p1),
          "adamw differs across thread counts");
    hl_adamw_free(&a);
    hl_adamw_free(&b);
    free(p1);
    free(p2);
    free(g);
}

/* A step on [begin, end): those parameters and moments as a full step gives them (its elements
 * do not depend on each other), every other one untouched although its gradient is not zero. */
static void test_range(void) {
    enum { N = 1000, B = 137, E = 901 };
    float p1[N], p2[N], p0[N], g[N];
    fill_random(p1, N, 7);
    memcpy(p2, p1, sizeof p1);
    memcpy(p0, p1, sizeof p1);
    fill_random(g, N, 8);
    hl_adamw_config c = {0.9, 0.99, 1e-8, 0.05};
    hl_adamw a, b;
    hl_error e = {0};
    CHECK(hl_adamw_init(&a, N, &e) == HL_OK && hl_adamw_init(&b, N, &e) == HL_OK, "%s", e.msg);
    for (int k = 0; k < 3; k++) {
        hl_adamw_step(&a, &c, 1e-2, p1, g);
        hl_adamw_step_range(&b, &c, 1e-2, p2, g, B, E);
    }
    CHECK(b.step == 3, "range: step count %lld", (long long)b.step);
    CHECK(!memcmp(p1 + B, p2 + B, (E - B) * sizeof *p1) && !memcmp(a.m + B, b.m + B, (E - B) * 4) &&
              !memcmp(a.v + B, b.v + B, (E - B) * 4),
          "range: the trained slice differs from a full step's");
    CHECK(!memcmp(p0, p2, B * sizeof *p0) && !memcmp(p0 + E, p2 + E, (N - E) * sizeof *p0),
          "range: a parameter outside the slice moved");
    int zero = 1;
    for (int i = 0; i < N; i++) zero &= (i >= B && i < E) || (b.m[i] == 0 && b.v[i] == 0);
    CHECK(zero, "range: moments outside the slice moved");
    hl_adamw_free(&a);
    hl_adamw_free(&b);
}

static void test_clip(void) {
    float g[4] = {3, 0, 4, 0};
    CHECK(hl_grad_norm(g, 4) == 5.0, "norm");
    double n = hl_clip_grad_norm(g, 4, 10.0);
    CHECK(n == 5.0 && g[0] == 3 && g[2] == 4, "no clip under max");
    n = hl_clip_grad_norm(g, 4, 1.0);
    float k = (float)(1.0 / (5.0 + 1e-6));
    CHECK(n == 5.0 && g[0] == 3 * k && g[2] == 4 * k && g[1] == 0, "clip to 1: %g %g", g[0], g[2]);
    CHECK(fabs(hl_grad_norm(g, 4) - 1.0) < 1e-6, "clipped norm %g", hl_grad_norm(g, 4));
    float h[2] = {3, 4};
    n = hl_clip_grad_norm(h, 2, 0);
    CHECK(n == 5.0 && h[0] == 3, "max_norm 0 only measures");
    /* a long buffer: block sums in double */
    enum { M = 3 * HL_NORM_BLOCK + 17 };
    float *x = malloc(M * sizeof *x);
    for (int i = 0; i < M; i++) x[i] = 0.5f;
    CHECK(fabs(hl_grad_norm(x, M) - 0.5 * sqrt((double)M)) < 1e-9, "long norm");
    free(x);
}

static void test_schedule(void) {
    hl_lr_schedule s = {HL_LR_CONSTANT, 1e-4, 0, 10, 100};
    CHECK(hl_lr_at(&s, 0) == 0, "warm-up starts at 0");
    CHECK(fabs(hl_lr_at(&s, 5) - 5e-5) < 1e-18, "half warm-up");
    CHECK(hl_lr_at(&s, 10) == 1e-4 && hl_lr_at(&s, 99) == 1e-4 && hl_lr_at(&s, 1000) == 1e-4,
          "constant");
    s.warmup = 0;
    CHECK(hl_lr_at(&s, 0) == 1e-4, "no warm-up");
    hl_lr_schedule c = {HL_LR_COSINE, 1e-3, 1e-5, 10, 110};
    CHECK(fabs(hl_lr_at(&c, 10) - 1e-3) < 1e-15, "cosine start");
    CHECK(fabs(hl_lr_at(&c, 60) - (1e-5 + (1e-3 - 1e-5) * 0.5)) < 1e-15, "cosine middle %g",
          hl_lr_at(&c, 60));
    CHECK(fabs(hl_lr_at(&c, 35) - (1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + cos(M_PI / 4)))) < 1e-15,
          "cosine quarter");
    CHECK(fabs(hl_lr_at(&c, 110) - 1e-5) < 1e-15 && fabs(hl_lr_at(&c, 500) - 1e-5) < 1e-15,
          "cosine end at min_lr");
    CHECK(fabs(hl_lr_at(&c, 3) - 3e-4) < 1e-15, "cosine warm-up");
}

static void test_ema(void) {
    float e[2] = {1, 2}, p[2] = {3, 2};
    hl_ema_update(e, p, 2, 0.75);
    CHECK(e[0] == 1.5f && e[1] == 2, "ema %g %g", e[0], e[1]);
    hl_ema_update(e, p, 2, 0.75);
    CHECK(e[0] == 1.875f, "ema twice %g", e[0]);
    hl_ema_update(e, p, 2, 0.0);
    CHECK(e[0] == 3, "decay 0 copies");
}

int main(void) {
    test_adamw(0.0, 0.9);
    test_adamw(0.05, 0.9);
    test_adamw(0.01, 0.3); /* the other form of torch's lerp */
    test_adamw_first_step();
    test_vector_same_bits(0.9);
    test_vector_same_bits(0.3); /* 1 - beta1 >= 0.5: the other lerp form */
    test_threads_same_bits();
    test_range();
    test_clip();
    test_schedule();
    test_ema();
    return test_done("test_train_adamw");
}

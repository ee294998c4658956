#include "train/corrupt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void hl_corrupt_params_default(hl_corrupt_params *p) {
    memset(p, 0, sizeof *p);
    p->p_clean_history = 0.1f;
    p->per_sample_kind = false;
    p->p_noise = 1.0f;
    p->p_blur = 0.0f;
    p->p_exposure = 0.0f;
    p->noise_sigma_max = 1.0f / 3.0f;
    p->blur_ratio_min = 0.9f;
    p->blur_ratio_max = 1.0f;
    p->exposure_min = 0.3f;
    p->exposure_max = 1.7f;
    p->anchor_exposure = false;
}

void hl_corrupt_params_paper(hl_corrupt_params *p, int stage) {
    hl_corrupt_params_default(p);
    p->p_clean_history = 0.0f;
    if (stage == 3) {
        p->p_noise = 0.4f, p->p_blur = 0.4f, p->p_exposure = 0.0f;
    } else {
        p->p_noise = 0.0f, p->p_blur = 0.8f, p->p_exposure = 0.1f;
    }
}

static bool prob(float x) { return x >= 0.0f && x <= 1.0f; }

hl_status hl_corrupt_params_check(const hl_corrupt_params *p, hl_error *err) {
    float sum = p->p_noise + p->p_blur + p->p_exposure;
    if (!prob(p->p_clean_history) || !prob(p->p_noise) || !prob(p->p_blur) ||
        !prob(p->p_exposure) || !(sum <= 1.0f + 1e-6f))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "corrupt: probabilities clean %g, noise %g, blur %g, exposure %g (each in "
                       "[0, 1], the last three summing to <= 1)",
                       (double)p->p_clean_history, (double)p->p_noise, (double)p->p_blur,
                       (double)p->p_exposure);
    if (!(p->noise_sigma_max >= 0.0f && p->noise_sigma_max <= 1.0f) ||
        !(p->blur_ratio_min > 0.0f && p->blur_ratio_min <= p->blur_ratio_max &&
          p->blur_ratio_max <= 16.0f) ||
        !(p->exposure_min >= 0.0f && p->exposure_min <= 1.0f && p->exposure_max >= 1.0f &&
          isfinite(p->exposure_max)))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "corrupt: ranges noise sigma [0, %g], blur ratio [%g, %g], exposure [%g, "
                       "%g] (sigma <= 1, 0 < ratio min <= max, exposure min <= 1 <= max)",
                       (double)p->noise_sigma_max, (double)p->blur_ratio_min,
                       (double)p->blur_ratio_max, (double)p->exposure_min, (double)p->exposure_max);
    return HL_OK;
}

/* ---- single operations ------------------------------------------------------------------- */

void hl_corrupt_noise(float *x, int C, int T, int t, int H, int W, float sigma, const float *eps) {
    size_t plane = (size_t)H * (size_t)W;
    float keep = 1.0f - sigma;
    for (int c = 0; c < C; c++) {
        float *f = x + ((size_t)c * (size_t)T + (size_t)t) * plane;
        const float *e = eps + (size_t)c * plane;
        for (size_t i = 0; i < plane; i++) {
            float a = sigma * e[i]; /* separate statements: no fused multiply-add */
            float b = keep * f[i];
            f[i] = a + b;
        }
    }
}

void hl_corrupt_exposure(float *x, int C, int T, int t, int H, int W, float s) {
    size_t plane = (size_t)H * (size_t)W, cs = (size_t)T * plane;
    float *f = x + (size_t)t * plane;
    for (size_t i = 0; i < plane; i++) {
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += f[(size_t)c * cs + i];
        float m = (float)(sum / C);
        for (int c = 0; c < C; c++) {
            float d = (f[(size_t)c * cs + i] - m) * s;
            f[(size_t)c * cs + i] = d + m;
        }
    }
}

/* Antialiased bilinear weights along one axis (aten UpSample.h _compute_indices_weights_aa):
 * output i reads in[first[i] .. first[i] + count[i]) with weights w[i·taps ..]. */
typedef struct aa_axis {
    int taps;
    int *first, *count;
    float *w;
} aa_axis;

static void aa_free(aa_axis *a) {
    free(a->first), free(a->count), free(a->w);
    memset(a, 0, sizeof *a);
}

static hl_status aa_init(aa_axis *a, int in, int out, hl_error *err) {
    memset(a, 0, sizeof *a);
    float scale = (float)in / (float)out;
    float support = scale >= 1.0f ? scale : 1.0f; /* interp_size / 2 = 1 for bilinear */
    float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    a->taps = (int)ceilf(support) * 2 + 1;
    a->first = malloc((size_t)out * sizeof(int));
    a->count = malloc((size_t)out * sizeof(int));
    a->w = calloc((size_t)out * (size_t)a->taps, sizeof(float));
    if (!a->first || !a->count || !a->w) {
        aa_free(a);
        return hl_fail(err, HELIOS_ERR_OOM, "resize: out of memory");
    }
    for (int i = 0; i < out; i++) {
        float center = scale * ((float)i + 0.5f);
        int lo = (int)(center - support + 0.5f);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5f);
        if (hi > in) hi = in;
        int n = hi - lo;
        if (n > a->taps) n = a->taps;
        float *w = a->w + (size_t)i * (size_t)a->taps, total = 0.0f;
        for (int j = 0; j < n; j++) {
            float d = fabsf(((float)(j + lo) - center + 0.5f) * invscale);
            w[j] = d < 1.0f ? 1.0f - d : 0.0f;
            total += w[j];
        }
        for (int j = 0; j < n && total != 0.0f; j++) w[j] /= total;
        a->first[i] = lo, a->count[i] = n;
    }
    return HL_OK;
}

hl_status hl_resize_bilinear_aa(const float *in, int h0, int w0, float *out, int h1, int w1,
                                hl_error *err) {
    if (h0 < 1 || w0 < 1 || h1 < 1 || w1 < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "resize: %dx%d -> %dx%d", h0, w0, h1, w1);
    aa_axis ax, ay;
    HL_TRY(aa_init(&ax, w0, w1, err));
    hl_status st = aa_init(&ay, h0, h1, err);
    float *tmp = st == HL_OK ? malloc((size_t)h0 * (size_t)w1 * sizeof *tmp) : NULL;
    if (st == HL_OK && !tmp) st = hl_fail(err, HELIOS_ERR_OOM, "resize: out of memory");
    if (st == HL_OK) {
        for (int y = 0; y < h0; y++) /* width pass: (h0, w0) -> (h0, w1) */
            for (int i = 0; i < w1; i++) {
                const float *src = in + (size_t)y * (size_t)w0 + ax.first[i];
                const float *w = ax.w + (size_t)i * (size_t)ax.taps;
                float acc = 0.0f;
                for (int j = 0; j < ax.count[i]; j++) acc += w[j] * src[j];
                tmp[(size_t)y * (size_t)w1 + i] = acc;
            }
        for (int i = 0; i < h1; i++) /* height pass: (h0, w1) -> (h1, w1) */
            for (int x = 0; x < w1; x++) {
                const float *w = ay.w + (size_t)i * (size_t)ay.taps;
                float acc = 0.0f;
                for (int j = 0; j < ay.count[i]; j++)
                    acc += w[j] * tmp[(size_t)(ay.first[i] + j) * (size_t)w1 + x];
                out[(size_t)i * (size_t)w1 + x] = acc;
            }
    }
    free(tmp);
    aa_free(&ax), aa_free(&ay);
    return st;
}

/* Python's round() of h·ratio in double (ties to even), at least 1. */
static int scaled_size(int n, float ratio) {
    double v = nearbyint((double)n * (double)ratio);
    if (!(v >= 1.0)) return 1; /* also NaN */
    return v > 65536.0 ? 65536 : (int)v;
}

hl_status hl_corrupt_blur(float *x, int C, int T, int t, int H, int W, float ratio, hl_error *err) {
    int h1 = scaled_size(H, ratio), w1 = scaled_size(W, ratio);
    size_t plane = (size_t)H * (size_t)W;
    float *small = malloc((size_t)h1 * (size_t)w1 * sizeof *small);
    if (!small) return hl_fail(err, HELIOS_ERR_OOM, "blur: out of memory");
    hl_status st = HL_OK;
    for (int c = 0; c < C && st == HL_OK; c++) {
        float *f = x + ((size_t)c * (size_t)T + (size_t)t) * plane;
        st = hl_resize_bilinear_aa(f, H, W, small, h1, w1, err);
        if (st == HL_OK) st = hl_resize_bilinear_aa(small, h1, w1, f, H, W, err);
    }
    free(small);
    return st;
}

/* ---- the history pass -------------------------------------------------------------------- */

static float uniform(hl_rng *g) {
    float u;
    hl_rng_rand_f32(g, &u, 1);
    return u;
}

static hl_corrupt_kind draw_kind(const hl_corrupt_params *p, hl_rng *g) {
    float u = uniform(g);
    if (u < p->p_noise) return HL_CORRUPT_NOISE;
    if (u < p->p_noise + p->p_blur) return HL_CORRUPT_BLUR;
    if (u < p->p_noise + p->p_blur + p->p_exposure) return HL_CORRUPT_EXPOSURE;
    return HL_CORRUPT_CLEAN;
}

static bool frame_is_zero(const float *x, int C, int T, int t, size_t plane) {
    for (int c = 0; c < C; c++) {
        const float *f = x + ((size_t)c * (size_t)T + (size_t)t) * plane;
        for (size_t i = 0; i < plane; i++)
            if (f[i] != 0.0f) return false;
    }
    return true;
}

/* Applies kind to frame t of x, drawing its strength; eps is scratch of C·H·W floats. */
static hl_status apply(const hl_corrupt_params *p, hl_rng *g, hl_corrupt_kind kind, float *x, int C,
                       int T, int t, int H, int W, float *eps, float *strength, hl_error *err) {
    *strength = 0.0f;
    switch (kind) {
    case HL_CORRUPT_NOISE: {
        float sigma = uniform(g) * p->noise_sigma_max;
        hl_rng_randn_f32(g, eps, (int64_t)C * H * W);
        hl_corrupt_noise(x, C, T, t, H, W, sigma, eps);
        *strength = sigma;
        return HL_OK;
    }
    case HL_CORRUPT_BLUR: {
        float r = p->blur_ratio_min + uniform(g) * (p->blur_ratio_max - p->blur_ratio_min);
        *strength = r;
        return hl_corrupt_blur(x, C, T, t, H, W, r, err);
    }
    case HL_CORRUPT_EXPOSURE: {
        bool darker = uniform(g) < 0.5f;
        float v = uniform(g);
        float s = darker ? p->exposure_min + v * (1.0f - p->exposure_min)
                         : 1.0f + v * (p->exposure_max - 1.0f);
        hl_corrupt_exposure(x, C, T, t, H, W, s);
        *strength = s;
        return HL_OK;
    }
    default: return HL_OK;
    }
}

hl_status hl_corrupt_history(const hl_corrupt_params *p, hl_rng *g, hl_history_inputs *in, int C,
                             int H, int W, int n_long, int n_mid, hl_corrupt_report *rep,
                             hl_error *err) {
    return hl_corrupt_history_tiers(p, g, in, C, H, W, n_long, n_mid, 2, rep, err);
}

hl_status hl_corrupt_history_tiers(const hl_corrupt_params *p, hl_rng *g, hl_history_inputs *in,
                                   int C, int H, int W, int n_long, int n_mid, int n_short,
                                   hl_corrupt_report *rep, hl_error *err) {
    HL_TRY(hl_corrupt_params_check(p, err));
    int n = n_long + n_mid + n_short;
    if (C < 1 || H < 1 || W < 1 || n_long < 0 || n_mid < 0 || n_short < 2 ||
        n > HL_CORRUPT_MAX_FRAMES)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "corrupt: C %d, %dx%d, history tiers %d/%d/%d (short >= 2: the anchor and "
                       "the newest frame; at most %d frames)",
                       C, H, W, n_long, n_mid, n_short, HL_CORRUPT_MAX_FRAMES);
    hl_corrupt_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    rep->n = n;
    /* frame i (RoPE order) lives at (tensor, T, t) */
    float *base[HL_CORRUPT_MAX_FRAMES];
    int T[HL_CORRUPT_MAX_FRAMES], tt[HL_CORRUPT_MAX_FRAMES];
    for (int i = 0; i < n; i++)
        base[i] = hl_history_inputs_frame(in, n_long, n_mid, n_short, i, &T[i], &tt[i]);

    size_t plane = (size_t)H * (size_t)W;
    bool clean = uniform(g) < p->p_clean_history;
    rep->history_clean = clean;
    hl_corrupt_kind all = HL_CORRUPT_CLEAN;
    if (!clean && p->per_sample_kind) all = draw_kind(p, g);
    float *eps = malloc((size_t)C * plane * sizeof *eps);
    if (!eps) return hl_fail(err, HELIOS_ERR_OOM, "corrupt: out of memory");
    hl_status st = HL_OK;
    for (int i = 0; i < n && st == HL_OK; i++) {
        if (frame_is_zero(base[i], C, T[i], tt[i], plane)) {
            rep->kind[i] = HL_CORRUPT_ZERO;
            continue;
        }
        if (clean) {
            rep->kind[i] = HL_CORRUPT_CLEAN;
            continue;
        }
        hl_corrupt_kind k = p->per_sample_kind ? all : draw_kind(p, g);
        if (i == 0 && k == HL_CORRUPT_EXPOSURE && !p->anchor_exposure) k = HL_CORRUPT_CLEAN;
        rep->kind[i] = k;
        st = apply(p, g, k, base[i], C, T[i], tt[i], H, W, eps, &rep->strength[i], err);
    }
    free(eps);
    return st;
}

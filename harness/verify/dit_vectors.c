#include "verify/dit_vectors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double hl_max_abs_diff(const float *a, const float *b, int64_t n, double *ref_max) {
    double m = 0.0, r = 0.0;
    int nan = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) nan = 1;
        else if (d > m) m = d;
        if (fabs(b[i]) > r) r = fabs(b[i]);
    }
    if (ref_max) *ref_max = r;
    return nan ? (double)INFINITY : m; /* a NaN anywhere fails every tolerance */
}

static void *keep(hl_dit_case *c, void *p) {
    if (p) c->owned[c->n_owned++] = p;
    return p;
}

static hl_status read_f32(const hl_safetensors *st, hl_dit_case *c, const char *name, float **out,
                          hl_error *err) {
    HL_TRY(hl_st_read_f32(st, name, -1, out, err));
    keep(c, *out);
    return HL_OK;
}

/* Optional int64 tensor (indices): absent leaves *out NULL; *n receives its numel. */
static hl_status read_i64_opt(const hl_safetensors *st, hl_dit_case *c, const char *name,
                              int64_t **out, int64_t *n, hl_error *err) {
    const hl_st_tensor *t = hl_st_find(st, name);
    *out = NULL;
    if (!t) return HL_OK;
    hl_tensor v = hl_st_view(t);
    if (n) *n = hl_tensor_numel(&v);
    HL_TRY(hl_st_read_i64(st, name, -1, out, err));
    keep(c, *out);
    return HL_OK;
}

/* timestep: int64 (pyramid pipeline) or float; one value per batch element or one for all. */
static hl_status read_timesteps(const hl_safetensors *st, hl_dit_case *c, const char *name, int B,
                                hl_error *err) {
    const hl_st_tensor *t = hl_st_find(st, name);
    hl_tensor v = hl_st_view(t);
    int64_t n = hl_tensor_numel(&v);
    if (n != 1 && n != B)
        return hl_fail(err, HELIOS_ERR_SHAPE, "%s: tensor '%s': %lld values for batch %d", st->path,
                       name, (long long)n, B);
    double *ts = keep(c, malloc((size_t)B * sizeof *ts));
    if (!ts) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    if (t->dtype == HL_F32 || t->dtype == HL_F64 || t->dtype == HL_BF16 || t->dtype == HL_F16) {
        float *f;
        HL_TRY(hl_st_read_f32(st, name, n, &f, err));
        for (int b = 0; b < B; b++) ts[b] = f[n == 1 ? 0 : b];
        free(f);
    } else {
        int64_t *iv;
        HL_TRY(hl_st_read_i64(st, name, n, &iv, err));
        for (int b = 0; b < B; b++) ts[b] = (double)iv[n == 1 ? 0 : b];
        free(iv);
    }
    c->in.timestep = ts;
    return HL_OK;
}

/* One history part: latents (B, C, T, H, W) and indices (1, T); absent if either is missing. */
static hl_status read_history(const hl_safetensors *st, hl_dit_case *c, const char *part,
                              const float **lat, const int64_t **idx, int *frames, hl_error *err) {
    char name[64], iname[96];
    snprintf(name, sizeof name, "latents_history_%s", part);
    snprintf(iname, sizeof iname, "indices_latents_history_%s", part);
    const hl_st_tensor *t = hl_st_find(st, name);
    if (!t || !hl_st_find(st, iname)) return HL_OK;
    if (t->ndim != 5 || t->shape[0] != c->in.batch)
        return hl_fail(err, HELIOS_ERR_SHAPE, "%s: tensor '%s' must be (B, C, T, H, W)", st->path,
                       name);
    if ((c->in.hist_height && c->in.hist_height != t->shape[3]) ||
        (c->in.hist_width && c->in.hist_width != t->shape[4]))
        return hl_fail(err, HELIOS_ERR_SHAPE, "%s: tensor '%s': history parts differ in size",
                       st->path, name);
    c->in.hist_height = (int)t->shape[3];
    c->in.hist_width = (int)t->shape[4];
    float *l;
    int64_t *ix, n = 0;
    HL_TRY(read_f32(st, c, name, &l, err));
    HL_TRY(read_i64_opt(st, c, iname, &ix, &n, err));
    if (n != t->shape[2])
        return hl_fail(err, HELIOS_ERR_SHAPE, "%s: tensor '%s' has %lld indices for %lld frames",
                       st->path, iname, (long long)n, (long long)t->shape[2]);
    *lat = l;
    *idx = ix;
    *frames = (int)t->shape[2];
    return HL_OK;
}

hl_status hl_dit_case_read(const hl_safetensors *st, hl_dit_case *c, hl_error *err) {
    return hl_dit_case_read_named(st, "hidden_states", "timestep", c, err);
}

hl_status hl_dit_case_read_named(const hl_safetensors *st, const char *hidden, const char *timestep,
                                 hl_dit_case *c, hl_error *err) {
    memset(c, 0, sizeof *c);
    helios_dit_input *in = &c->in;
    helios_dit_input_init(in);
    const hl_st_tensor *h = hl_st_find(st, hidden), *e = hl_st_find(st, "encoder_hidden_states");
    if (!h || !e || !hl_st_find(st, timestep))
        return hl_fail(err, HELIOS_ERR_MISSING, "%s: %s, %s or encoder_hidden_states missing",
                       st->path, hidden, timestep);
    if (h->ndim != 5 || e->ndim != 3 || e->shape[0] != h->shape[0])
        return hl_fail(
            err, HELIOS_ERR_SHAPE,
            "%s: hidden_states must be (B, C, T, H, W) and encoder_hidden_states (B, L, E)",
            st->path);
    in->batch = (int)h->shape[0];
    in->frames = (int)h->shape[2];
    in->height = (int)h->shape[3];
    in->width = (int)h->shape[4];
    in->text_len = (int)e->shape[1];
    float *hs, *txt;
    int64_t *idx, n_idx = 0;
    HL_TRY(read_f32(st, c, hidden, &hs, err));
    HL_TRY(read_f32(st, c, "encoder_hidden_states", &txt, err));
    HL_TRY(read_timesteps(st, c, timestep, in->batch, err));
    HL_TRY(read_i64_opt(st, c, "indices_hidden_states", &idx, &n_idx, err));
    in->hidden_states = hs;
    in->encoder_hidden_states = txt;
    in->indices_hidden_states = idx;
    HL_TRY(read_history(st, c, "short", &in->latents_history_short,
                        &in->indices_latents_history_short, &in->short_frames, err));
    HL_TRY(read_history(st, c, "mid", &in->latents_history_mid, &in->indices_latents_history_mid,
                        &in->mid_frames, err));
    HL_TRY(read_history(st, c, "long", &in->latents_history_long, &in->indices_latents_history_long,
                        &in->long_frames, err));
    return HL_OK;
}

void hl_dit_case_free(hl_dit_case *c) {
    for (int i = 0; i < c->n_owned; i++) free(c->owned[i]);
    c->n_owned = 0;
}

int64_t hl_dit_case_out_numel(const hl_dit_case *c, const hl_dit *m) {
    return (int64_t)c->in.batch * m->cfg.out_channels * c->in.frames * c->in.height * c->in.width;
}

/* ---- intermediates ---------------------------------------------------------------------- */

/* The reference layout of a probed activation (token-major [rows, cols] here):
 *   patch_*.out0  Conv3d output (1, D, T, H, W): channels first;
 *   rope          blocks.0.in3 (1, S, 2·hd): cos[hd] | sin[hd], each pair's value twice
 *                 (repeat_interleave), where a row here is cos[hd/2] | sin[hd/2];
 *   otherwise     the same layout. Returns a converted copy and its width. */
static float *to_reference_layout(const char *name, const float *x, int64_t rows, int64_t cols,
                                  int64_t *ref_cols) {
    int is_conv = strncmp(name, "patch_", 6) == 0, is_rope = !strcmp(name, "rope");
    int64_t w = is_rope ? 2 * cols : cols, half = cols / 2;
    float *y = malloc((size_t)(rows * w) * sizeof *y);
    if (!y) return NULL;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < w; k++) {
            if (is_rope)
                y[r * w + k] = k < cols ? x[r * cols + k / 2] : x[r * cols + half + (k - cols) / 2];
            else if (is_conv) y[k * rows + r] = x[r * cols + k];
            else y[r * w + k] = x[r * cols + k];
        }
    *ref_cols = w;
    return y;
}

typedef struct probe_state {
    const hl_safetensors *st;
    hl_dit_compare_fn fn;
    void *user;
    int compared;
} probe_state;

static void on_probe(void *user, const char *name, const float *x, int64_t rows, int64_t cols) {
    probe_state *p = user;
    const char *ref_name = !strcmp(name, "rope") ? "blocks.0.in3" : name;
    const hl_st_tensor *t = hl_st_find(p->st, ref_name);
    if (!t || rows == 0) return;
    int64_t w;
    float *mine = to_reference_layout(name, x, rows, cols, &w), *ref = NULL;
    hl_tensor v = hl_st_view(t);
    double err = INFINITY, ref_max = 0.0;
    if (mine && hl_tensor_numel(&v) == rows * w &&
        hl_st_read_f32(p->st, ref_name, rows * w, &ref, NULL) == HL_OK)
        err = hl_max_abs_diff(mine, ref, rows * w, &ref_max);
    p->fn(p->user, name, err, ref_max); /* a size mismatch reports an infinite error */
    p->compared++;
    free(mine);
    free(ref);
}

hl_status hl_dit_check_intermediates(const hl_ctx *ctx, const hl_dit *m, const hl_dit_case *c,
                                     const hl_safetensors *st, hl_dit_compare_fn fn, void *user,
                                     int *n_compared) {
    probe_state p = {st, fn, user, 0};
    hl_probe probe = {on_probe, &p};
    float *out = malloc((size_t)hl_dit_case_out_numel(c, m) * sizeof *out);
    if (!out) return hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory");
    hl_status s = hl_dit_forward(ctx, m, &c->in, &probe, out);
    free(out);
    *n_compared = p.compared;
    return s;
}

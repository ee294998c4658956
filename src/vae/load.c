/* Building the VAE: the module tree from the config (diffusers' constructor loops), an explicit
 * name -> field table with the checkpoint's tensor names, then either binding a checkpoint
 * (io/weights.h) or filling synthetic weights (hl_vae_create_filled). Cache slots are numbered while the tree
 * is built, in forward order. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "vae/vae.h"

/* A norm gain: bound as a view, copied to float32. */
typedef struct small_vec {
    hl_tensor view;
    const float **dst;
} small_vec;

typedef struct binder {
    hl_bind *rows;
    size_t n, cap;
    small_vec *small;
    size_t n_small, cap_small;
    int oom;
    int slot; /* next cache slot of the network being built */
} binder;

#define SHAPE(...) \
    (const int64_t[]) { __VA_ARGS__ }

/* Rows live in arrays sized once from the config (binder_init): a row of a gain points into
 * b->small, so neither array may move while the table is built. */
static hl_bind *new_row(binder *b) {
    if (b->n == b->cap) {
        b->oom = 1;
        return NULL;
    }
    hl_bind *r = &b->rows[b->n++];
    memset(r, 0, sizeof *r);
    r->dtypes = HL_DT_FLOAT;
    return r;
}

static hl_status binder_init(binder *b, const hl_vae_config *c, hl_error *err) {
    memset(b, 0, sizeof *b);
    /* residual blocks of both networks (each at most 9 rows, 2 of them gains), plus resamples,
     * attentions and the top-level convs */
    size_t n_res = (size_t)c->n_levels * (size_t)(2 * c->num_res_blocks + 1) + 4;
    b->cap = 9 * n_res + 4 * (size_t)c->n_levels * 2 + 64;
    b->cap_small = 2 * n_res + 16;
    b->rows = calloc(b->cap, sizeof *b->rows);
    b->small = calloc(b->cap_small, sizeof *b->small);
    if (!b->rows || !b->small)
        return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for the weight table");
    return HL_OK;
}

static void row(binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt,
                va_list ap) {
    hl_bind *r = new_row(b);
    if (!r) return;
    vsnprintf(r->name, sizeof r->name, fmt, ap);
    r->dst = dst;
    r->ndim = ndim;
    memcpy(r->shape, shape, (size_t)ndim * sizeof *shape);
}

static void bind(binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void bind(binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    row(b, dst, ndim, shape, fmt, ap);
    va_end(ap);
}

static void bind_gain(binder *b, const float **dst, int ndim, const int64_t *shape, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
static void bind_gain(binder *b, const float **dst, int ndim, const int64_t *shape, const char *fmt,
                      ...) {
    if (b->n_small == b->cap_small) {
        b->oom = 1;
        return;
    }
    small_vec *sv = &b->small[b->n_small++];
    memset(sv, 0, sizeof *sv);
    sv->dst = dst;
    va_list ap;
    va_start(ap, fmt);
    row(b, &sv->view, ndim, shape, fmt, ap);
    va_end(ap);
}

/* A Conv3d/Conv2d "prefix.weight" [O, C, k...] and "prefix.bias" [O]; causal convs take a slot. */
static void bind_conv(binder *b, hl_vae_conv *c, int64_t O, int64_t C, int kt, int kh, int kw,
                      bool is_2d, bool causal, const char *prefix) {
    c->slot = causal ? b->slot++ : -1;
    if (is_2d) bind(b, &c->w, 4, SHAPE(O, C, kh, kw), "%s.weight", prefix);
    else bind(b, &c->w, 5, SHAPE(O, C, kt, kh, kw), "%s.weight", prefix);
    bind(b, &c->b, 1, SHAPE(O), "%s.bias", prefix);
}

static void bind_res(binder *b, hl_vae_res *r, int in, int out, const char *prefix) {
    char p[128];
    r->in = in;
    r->out = out;
    bind_gain(b, &r->norm1, 4, SHAPE(in, 1, 1, 1), "%s.norm1.gamma", prefix);
    snprintf(p, sizeof p, "%s.conv1", prefix);
    bind_conv(b, &r->conv1, out, in, 3, 3, 3, false, true, p);
    bind_gain(b, &r->norm2, 4, SHAPE(out, 1, 1, 1), "%s.norm2.gamma", prefix);
    snprintf(p, sizeof p, "%s.conv2", prefix);
    bind_conv(b, &r->conv2, out, out, 3, 3, 3, false, true, p);
    if (in != out) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix);
        bind_conv(b, &r->conv_shortcut, out, in, 1, 1, 1, false, false, p);
    } else {
        r->conv_shortcut.slot = -1;
    }
}

static void bind_attn(binder *b, hl_vae_attn *a, int dim, const char *prefix) {
    a->dim = dim;
    bind_gain(b, &a->norm, 3, SHAPE(dim, 1, 1), "%s.norm.gamma", prefix);
    bind(b, &a->to_qkv_w, 4, SHAPE(3 * dim, dim, 1, 1), "%s.to_qkv.weight", prefix);
    bind(b, &a->to_qkv_b, 1, SHAPE(3 * dim), "%s.to_qkv.bias", prefix);
    bind(b, &a->proj_w, 4, SHAPE(dim, dim, 1, 1), "%s.proj.weight", prefix);
    bind(b, &a->proj_b, 1, SHAPE(dim), "%s.proj.bias", prefix);
}

static void bind_mid(binder *b, hl_vae_mid *m, int dim, const char *net) {
    char p[128];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", net);
    bind_res(b, &m->res0, dim, dim, p);
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", net);
    bind_attn(b, &m->attn, dim, p);
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", net);
    bind_res(b, &m->res1, dim, dim, p);
}

/* WanResample: resample.1 (Conv2d 3x3) and, in the 3d modes, time_conv. */
static void bind_resample(binder *b, hl_vae_resample *r, hl_vae_resample_mode mode, int dim,
                          const char *prefix) {
    char p[128];
    bool up = mode == HL_VAE_UPSAMPLE2D || mode == HL_VAE_UPSAMPLE3D;
    r->mode = mode;
    r->dim = dim;
    r->out_dim = up ? dim / 2 : dim;
    r->time_conv.slot = -1;
    if (mode == HL_VAE_UPSAMPLE3D) { /* time_conv runs before the spatial part */
        snprintf(p, sizeof p, "%s.time_conv", prefix);
        bind_conv(b, &r->time_conv, 2 * (int64_t)dim, dim, 3, 1, 1, false, true, p);
    }
    snprintf(p, sizeof p, "%s.resample.1", prefix);
    bind_conv(b, &r->resample, r->out_dim, dim, 1, 3, 3, true, false, p);
    if (mode == HL_VAE_DOWNSAMPLE3D) {
        snprintf(p, sizeof p, "%s.time_conv", prefix);
        bind_conv(b, &r->time_conv, dim, dim, 3, 1, 1, false, true, p);
    }
}

/* WanEncoder3d (is_residual = false). */
static hl_status build_encoder(binder *b, hl_vae *v) {
    const hl_vae_config *c = &v->cfg;
    hl_vae_encoder *e = &v->encoder;
    int dims[HL_VAE_MAX_LEVELS + 1];
    dims[0] = c->base_dim;
    for (int i = 0; i < c->n_levels; i++) dims[i + 1] = c->base_dim * c->dim_mult[i];
    int n_down = c->n_levels * c->num_res_blocks + (c->n_levels - 1);
    e->down = calloc((size_t)n_down, sizeof *e->down);
    if (!e->down) return HELIOS_ERR_OOM;
    b->slot = 0;
    bind_conv(b, &e->conv_in, dims[0], c->in_channels, 3, 3, 3, false, true, "encoder.conv_in");
    char p[128];
    int k = 0;
    for (int i = 0; i < c->n_levels; i++) {
        int in = dims[i], out = dims[i + 1];
        for (int r = 0; r < c->num_res_blocks; r++, k++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d", k);
            bind_res(b, &e->down[k].res, in, out, p);
            in = out;
        }
        if (i != c->n_levels - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d", k);
            e->down[k].is_resample = true;
            bind_resample(b, &e->down[k].resample,
                          c->temperal_downsample[i] ? HL_VAE_DOWNSAMPLE3D : HL_VAE_DOWNSAMPLE2D,
                          out, p);
            k++;
        }
    }
    e->n_down = k;
    int top = dims[c->n_levels];
    bind_mid(b, &e->mid, top, "encoder");
    bind_gain(b, &e->norm_out, 4, SHAPE(top, 1, 1, 1), "encoder.norm_out.gamma");
    bind_conv(b, &e->conv_out, 2 * (int64_t)c->z_dim, top, 3, 3, 3, false, true,
              "encoder.conv_out");
    e->n_slots = b->slot;
    int64_t Z2 = 2 * (int64_t)c->z_dim;
    bind_conv(b, &v->quant_conv, Z2, Z2, 1, 1, 1, false, false, "quant_conv");
    return HL_OK;
}

/* WanDecoder3d (is_residual = false). */
static hl_status build_decoder(binder *b, hl_vae *v) {
    const hl_vae_config *c = &v->cfg;
    hl_vae_decoder *d = &v->decoder;
    int L = c->n_levels, dims[HL_VAE_MAX_LEVELS + 1];
    dims[0] = c->decoder_base_dim * c->dim_mult[L - 1];
    for (int i = 0; i < L; i++) dims[i + 1] = c->decoder_base_dim * c->dim_mult[L - 1 - i];
    d->up = calloc((size_t)L, sizeof *d->up);
    if (!d->up) return HELIOS_ERR_OOM;
    int64_t Z = c->z_dim;
    bind_conv(b, &v->post_quant_conv, Z, Z, 1, 1, 1, false, false, "post_quant_conv");
    b->slot = 0;
    bind_conv(b, &d->conv_in, dims[0], Z, 3, 3, 3, false, true, "decoder.conv_in");
    bind_mid(b, &d->mid, dims[0], "decoder");
    char p[128];
    for (int i = 0; i < L; i++) {
        hl_vae_up *u = &d->up[i];
        int in = i > 0 ? dims[i] / 2 : dims[i], out = dims[i + 1];
        u->n_res = c->num_res_blocks + 1;
        if (!(u->res = calloc((size_t)u->n_res, sizeof *u->res))) return HELIOS_ERR_OOM;
        for (int r = 0; r < u->n_res; r++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, r);
            bind_res(b, &u->res[r], r ? out : in, out, p);
        }
        if (i != L - 1) { /* temperal_upsample = temperal_downsample reversed */
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0", i);
            bind_resample(b, &u->up,
                          c->temperal_downsample[L - 2 - i] ? HL_VAE_UPSAMPLE3D : HL_VAE_UPSAMPLE2D,
                          out, p);
        } else {
            u->up.mode = HL_VAE_NONE;
            u->up.time_conv.slot = u->up.resample.slot = -1;
        }
    }
    d->n_up = L;
    int last = dims[L];
    bind_gain(b, &d->norm_out, 4, SHAPE(last, 1, 1, 1), "decoder.norm_out.gamma");
    bind_conv(b, &d->conv_out, c->out_channels, last, 3, 3, 3, false, true, "decoder.conv_out");
    d->n_slots = b->slot;
    return HL_OK;
}

/* Copies the bound gains to float32 in one allocation owned by the model. */
static hl_status copy_small(hl_vae *v, const binder *b, hl_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < b->n_small; i++) total += (size_t)hl_tensor_numel(&b->small[i].view);
    v->small = malloc((total ? total : 1) * sizeof(float));
    if (!v->small) return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for norm gains");
    float *p = v->small;
    for (size_t i = 0; i < b->n_small; i++) {
        size_t k = (size_t)hl_tensor_numel(&b->small[i].view);
        hl_convert_to_f32(b->small[i].view.dtype, b->small[i].view.data, p, k);
        *b->small[i].dst = p;
        p += k;
    }
    return HL_OK;
}

/* The name -> field table of every parameter (hl_vae_param), from the bind rows. */
static hl_status record_params(hl_vae *v, const binder *b, hl_error *err) {
    v->params = calloc(b->n ? b->n : 1, sizeof *v->params);
    if (!v->params) return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for the parameters");
    for (size_t i = 0; i < b->n; i++) {
        const hl_bind *r = &b->rows[i];
        hl_vae_param *p = &v->params[i];
        snprintf(p->name, sizeof p->name, "%s", r->name);
        p->field = r->dst;
        for (size_t k = 0; k < b->n_small; k++)
            if (r->dst == &b->small[k].view) p->field = b->small[k].dst, p->gain = true;
        p->ndim = r->ndim;
        p->numel = 1;
        for (int d = 0; d < r->ndim; d++) p->numel *= (p->shape[d] = r->shape[d]);
    }
    v->n_params = (int)b->n;
    return HL_OK;
}

static hl_status build(hl_vae *v, binder *b, bool with_encoder, hl_error *err) {
    hl_status st = HL_OK;
    if (with_encoder) st = build_encoder(b, v);
    if (st == HL_OK) st = build_decoder(b, v);
    if (st != HL_OK || b->oom)
        return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for the module tree");
    v->has_encoder = with_encoder;
    return HL_OK;
}

static void binder_free(binder *b) {
    free(b->rows);
    free(b->small);
}

/* ---- walking the tree ---------------------------------------------------------------------- */

typedef void (*conv_fn)(hl_vae_conv *c, void *user);

static void each_res_conv(hl_vae_res *r, conv_fn fn, void *user) {
    fn(&r->conv1, user);
    fn(&r->conv2, user);
    fn(&r->conv_shortcut, user);
}

static void each_resample_conv(hl_vae_resample *r, conv_fn fn, void *user) {
    fn(&r->resample, user);
    fn(&r->time_conv, user);
}

/* Every conv of the model (absent ones have no weight data). */
static void each_conv(hl_vae *v, conv_fn fn, void *user) {
    hl_vae_encoder *e = &v->encoder;
    hl_vae_decoder *d = &v->decoder;
    fn(&v->quant_conv, user);
    fn(&v->post_quant_conv, user);
    fn(&e->conv_in, user);
    fn(&e->conv_out, user);
    for (int i = 0; e->down && i < e->n_down; i++) {
        each_res_conv(&e->down[i].res, fn, user);
        each_resample_conv(&e->down[i].resample, fn, user);
    }
    each_res_conv(&e->mid.res0, fn, user);
    each_res_conv(&e->mid.res1, fn, user);
    fn(&d->conv_in, user);
    fn(&d->conv_out, user);
    each_res_conv(&d->mid.res0, fn, user);
    each_res_conv(&d->mid.res1, fn, user);
    for (int i = 0; d->up && i < d->n_up; i++) {
        for (int r = 0; d->up[i].res && r < d->up[i].n_res; r++)
            each_res_conv(&d->up[i].res[r], fn, user);
        each_resample_conv(&d->up[i].up, fn, user);
    }
}

static void free_pack(hl_vae_conv *c, void *user) {
    hl_conv_pack_free(c->pack);
    c->pack = NULL;
}

void hl_vae_free(hl_vae *v) {
    if (!v) return;
    each_conv(v, free_pack, NULL);
    for (int i = 0; v->decoder.up && i < v->decoder.n_up; i++) free(v->decoder.up[i].res);
    free(v->encoder.down);
    free(v->decoder.up);
    free(v->small);
    free(v->params);
    for (size_t i = 0; i < v->n_owned; i++) free(v->owned[i]);
    free(v->owned);
    hl_weights_close(v->weights);
    free(v);
}

/* ---- casting the weights ------------------------------------------------------------------ */

typedef struct cast_job {
    hl_vae *v;
    hl_dtype dt;
    hl_status st;
    hl_error *err;
} cast_job;

/* t <- t converted to j->dt, in memory the model owns. */
static void cast_tensor(hl_tensor *t, cast_job *j) {
    if (j->st != HL_OK || !t->data || t->dtype == j->dt) return;
    int64_t n = hl_tensor_numel(t);
    void *data = malloc((size_t)(n ? n : 1) * hl_dtype_size(j->dt));
    void **owned = realloc(j->v->owned, (j->v->n_owned + 1) * sizeof *owned);
    if (owned) j->v->owned = owned;
    if (!data || !owned) {
        free(data);
        j->st = hl_fail(j->err, HELIOS_ERR_OOM, "VAE: out of memory casting the weights");
        return;
    }
    j->v->owned[j->v->n_owned++] = data;
    float buf[4096];
    const char *src = t->data;
    size_t es = hl_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        hl_convert_to_f32(t->dtype, src + (size_t)i * es, buf, (size_t)k);
        for (int64_t q = 0; q < k; q++) {
            if (j->dt == HL_BF16) ((hl_bf16 *)data)[i + q] = hl_f32_to_bf16(buf[q]);
            else ((float *)data)[i + q] = buf[q];
        }
    }
    t->data = data;
    t->dtype = j->dt;
}

static void cast_conv(hl_vae_conv *c, void *user) {
    free_pack(c, NULL);
    cast_tensor(&c->w, user);
}

hl_status hl_vae_cast_weights(hl_vae *v, hl_dtype dt, hl_error *err) {
    if (dt != HL_F32 && dt != HL_BF16)
        return hl_fail(err, HELIOS_ERR_DTYPE, "VAE: weights can be cast to F32 or BF16, not %s",
                       hl_dtype_name(dt));
    cast_job j = {v, dt, HL_OK, err};
    each_conv(v, cast_conv, &j);
    hl_vae_attn *attns[2] = {&v->encoder.mid.attn, &v->decoder.mid.attn};
    for (int i = 0; i < 2; i++) {
        cast_tensor(&attns[i]->to_qkv_w, &j);
        cast_tensor(&attns[i]->proj_w, &j);
    }
    return j.st;
}

/* ---- loading ---------------------------------------------------------------------------------- */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

hl_status hl_vae_load(const char *path, const char *config_path, const char *weights_path,
                      hl_vae **out, hl_error *err) {
    *out = NULL;
    if (!path && !(config_path && weights_path))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "VAE: no path given");
    char *cfg = config_path ? NULL : join(path, "config.json");
    const char *cfg_path = config_path ? config_path : cfg;
    hl_vae *v = calloc(1, sizeof *v);
    if (!v || !cfg_path) {
        free(cfg);
        free(v);
        return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory");
    }
    hl_json *j = NULL;
    hl_status st = hl_json_load_file(cfg_path, &j, err);
    if (st == HL_OK) {
        st = hl_vae_config_parse(j, &v->cfg, err);
        if (st != HL_OK) hl_error_prefix(err, "%s", cfg_path);
    }
    hl_json_free(j);
    free(cfg);
    if (st == HL_OK) st = hl_weights_open(weights_path ? weights_path : path, &v->weights, err);
    binder b = {0};
    if (st == HL_OK) st = binder_init(&b, &v->cfg, err);
    if (st == HL_OK) st = build(v, &b, true, err);
    if (st == HL_OK) st = hl_weights_bind(v->weights, b.rows, b.n, NULL, NULL, err);
    if (st == HL_OK) st = copy_small(v, &b, err);
    if (st == HL_OK) st = record_params(v, &b, err);
    binder_free(&b);
    if (st != HL_OK) {
        hl_vae_free(v);
        return st;
    }
    HL_INFO("VAE: base_dim %d, z_dim %d, %d levels x %d res blocks, weights %s", v->cfg.base_dim,
            v->cfg.z_dim, v->cfg.n_levels, v->cfg.num_res_blocks,
            hl_dtype_name(v->decoder.conv_in.w.dtype));
    *out = v;
    return HL_OK;
}

/* ---- synthetic weights ------------------------------------------------------------------------- */

/* Allocates one row's tensor in memory the model owns (dt, or float32 for a gain) and has fill
 * write its values. */
static hl_status fill_row(hl_vae *v, const hl_bind *r, bool gain, hl_dtype dt, hl_vae_fill_fn fill,
                          void *user, hl_error *err) {
    hl_dtype t = gain ? HL_F32 : dt;
    hl_tensor *dst = r->dst;
    *dst = hl_tensor_make(NULL, t, r->ndim, r->shape);
    int64_t n = hl_tensor_numel(dst);
    void *data = malloc((size_t)(n ? n : 1) * hl_dtype_size(t));
    void **owned = realloc(v->owned, (v->n_owned + 1) * sizeof *owned);
    if (!data || !owned) {
        free(data);
        if (owned) v->owned = owned;
        return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for synthetic weight '%s'",
                       r->name);
    }
    v->owned = owned;
    v->owned[v->n_owned++] = data;
    dst->data = data;
    fill(user, r->name, gain, dst);
    return HL_OK;
}

hl_status hl_vae_create_filled(const hl_vae_config *cfg, hl_dtype dt, bool with_encoder,
                               hl_vae_fill_fn fill, void *user, hl_vae **out, hl_error *err) {
    *out = NULL;
    if (dt != HL_F32 && dt != HL_BF16)
        return hl_fail(err, HELIOS_ERR_DTYPE, "VAE: synthetic weights in %s (F32 or BF16)",
                       hl_dtype_name(dt));
    hl_vae *v = calloc(1, sizeof *v);
    if (!v) return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory");
    v->cfg = *cfg;
    binder b = {0};
    hl_status st = binder_init(&b, &v->cfg, err);
    if (st == HL_OK) st = build(v, &b, with_encoder, err);
    for (size_t i = 0; st == HL_OK && i < b.n; i++) {
        bool gain = false;
        for (size_t k = 0; k < b.n_small; k++)
            if (b.rows[i].dst == &b.small[k].view) gain = true;
        st = fill_row(v, &b.rows[i], gain, dt, fill, user, err);
    }
    if (st == HL_OK) st = copy_small(v, &b, err);
    if (st == HL_OK) st = record_params(v, &b, err);
    binder_free(&b);
    if (st != HL_OK) {
        hl_vae_free(v);
        return st;
    }
    *out = v;
    return HL_OK;
}

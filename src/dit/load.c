/* Loading the transformer: config.json, then an explicit name -> field table checked for shape
 * and dtype (io/weights.h), then float32 copies of the small vectors. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dit/dit.h"
#include "session.h"

/* Small vectors (norm gains, modulation tables) are bound as views, then copied to float32. */
typedef struct small_vec {
    hl_tensor view;
    const float **dst;
} small_vec;

/* The table under construction. */
typedef struct binder {
    hl_bind *rows;
    size_t n;
    small_vec *small;
    size_t n_small;
} binder;

static hl_bind *bind_row(binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt,
                         va_list ap) {
    hl_bind *r = &b->rows[b->n++];
    memset(r, 0, sizeof *r);
    vsnprintf(r->name, sizeof r->name, fmt, ap);
    r->dst = dst;
    r->ndim = ndim;
    memcpy(r->shape, shape, (size_t)ndim * sizeof *shape);
    r->dtypes = HL_DT_FLOAT;
    return r;
}

/* A weight used in place (GEMM operand). */
static void bind(binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void bind(binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    bind_row(b, dst, ndim, shape, fmt, ap);
    va_end(ap);
}

/* A small vector the model reads as float32. */
static void bind_f32(binder *b, const float **dst, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void bind_f32(binder *b, const float **dst, int ndim, const int64_t *shape, const char *fmt, ...) {
    small_vec *sv = &b->small[b->n_small++];
    sv->dst = dst;
    va_list ap;
    va_start(ap, fmt);
    bind_row(b, &sv->view, ndim, shape, fmt, ap);
    va_end(ap);
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}

static void bind_attn(binder *b, const hl_dit_config *c, hl_dit_attn *a, int i, const char *name,
                      bool self) {
    int64_t D = c->dim;
    bind(b, &a->to_q_w, 2, SHAPE(D, D), "blocks.%d.%s.to_q.weight", i, name);
    bind(b, &a->to_q_b, 1, SHAPE(D), "blocks.%d.%s.to_q.bias", i, name);
    bind(b, &a->to_k_w, 2, SHAPE(D, D), "blocks.%d.%s.to_k.weight", i, name);
    bind(b, &a->to_k_b, 1, SHAPE(D), "blocks.%d.%s.to_k.bias", i, name);
    bind(b, &a->to_v_w, 2, SHAPE(D, D), "blocks.%d.%s.to_v.weight", i, name);
    bind(b, &a->to_v_b, 1, SHAPE(D), "blocks.%d.%s.to_v.bias", i, name);
    bind(b, &a->to_out_w, 2, SHAPE(D, D), "blocks.%d.%s.to_out.0.weight", i, name);
    bind(b, &a->to_out_b, 1, SHAPE(D), "blocks.%d.%s.to_out.0.bias", i, name);
    bind_f32(b, &a->norm_q, 1, SHAPE(D), "blocks.%d.%s.norm_q.weight", i, name);
    bind_f32(b, &a->norm_k, 1, SHAPE(D), "blocks.%d.%s.norm_k.weight", i, name);
    if (self && c->is_amplify_history)
        bind_f32(b, &a->history_key_scale, 1, SHAPE(c->history_scale_per_head ? c->heads : 1),
                 "blocks.%d.%s.history_key_scale", i, name);
}

static void bind_block(binder *b, const hl_dit_config *c, hl_dit_block *blk, int i) {
    int64_t D = c->dim, F = c->ffn_dim;
    bind_f32(b, &blk->scale_shift_table, 3, SHAPE(1, 6, D), "blocks.%d.scale_shift_table", i);
    bind_attn(b, c, &blk->attn1, i, "attn1", true);
    bind_attn(b, c, &blk->attn2, i, "attn2", false);
    if (c->cross_attn_norm) {
        bind_f32(b, &blk->norm2_w, 1, SHAPE(D), "blocks.%d.norm2.weight", i);
        bind_f32(b, &blk->norm2_b, 1, SHAPE(D), "blocks.%d.norm2.bias", i);
    }
    bind(b, &blk->ffn0_w, 2, SHAPE(F, D), "blocks.%d.ffn.net.0.proj.weight", i);
    bind(b, &blk->ffn0_b, 1, SHAPE(F), "blocks.%d.ffn.net.0.proj.bias", i);
    bind(b, &blk->ffn2_w, 2, SHAPE(D, F), "blocks.%d.ffn.net.2.weight", i);
    bind(b, &blk->ffn2_b, 1, SHAPE(D), "blocks.%d.ffn.net.2.bias", i);
}

static void bind_globals(binder *b, hl_dit *m) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim, Ci = c->in_channels, P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    bind(b, &m->patch_embedding_w, 5, SHAPE(D, Ci, c->patch[0], c->patch[1], c->patch[2]), "patch_embedding.weight");
    bind(b, &m->patch_embedding_b, 1, SHAPE(D), "patch_embedding.bias");
    if (c->has_multi_term_memory_patch) {
        bind(b, &m->patch_short_w, 5, SHAPE(D, Ci, 1, 2, 2), "patch_short.weight");
        bind(b, &m->patch_short_b, 1, SHAPE(D), "patch_short.bias");
        bind(b, &m->patch_mid_w, 5, SHAPE(D, Ci, 2, 4, 4), "patch_mid.weight");
        bind(b, &m->patch_mid_b, 1, SHAPE(D), "patch_mid.bias");
        bind(b, &m->patch_long_w, 5, SHAPE(D, Ci, 4, 8, 8), "patch_long.weight");
        bind(b, &m->patch_long_b, 1, SHAPE(D), "patch_long.bias");
    }
    bind(b, &m->time_linear_1_w, 2, SHAPE(D, c->freq_dim), "condition_embedder.time_embedder.linear_1.weight");
    bind(b, &m->time_linear_1_b, 1, SHAPE(D), "condition_embedder.time_embedder.linear_1.bias");
    bind(b, &m->time_linear_2_w, 2, SHAPE(D, D), "condition_embedder.time_embedder.linear_2.weight");
    bind(b, &m->time_linear_2_b, 1, SHAPE(D), "condition_embedder.time_embedder.linear_2.bias");
    bind(b, &m->time_proj_w, 2, SHAPE(6 * D, D), "condition_embedder.time_proj.weight");
    bind(b, &m->time_proj_b, 1, SHAPE(6 * D), "condition_embedder.time_proj.bias");
    bind(b, &m->text_linear_1_w, 2, SHAPE(D, c->text_dim), "condition_embedder.text_embedder.linear_1.weight");
    bind(b, &m->text_linear_1_b, 1, SHAPE(D), "condition_embedder.text_embedder.linear_1.bias");
    bind(b, &m->text_linear_2_w, 2, SHAPE(D, D), "condition_embedder.text_embedder.linear_2.weight");
    bind(b, &m->text_linear_2_b, 1, SHAPE(D), "condition_embedder.text_embedder.linear_2.bias");
    bind_f32(b, &m->norm_out_table, 3, SHAPE(1, 2, D), "norm_out.scale_shift_table");
    bind(b, &m->proj_out_w, 2, SHAPE(c->out_channels * P, D), "proj_out.weight");
    bind(b, &m->proj_out_b, 1, SHAPE(c->out_channels * P), "proj_out.bias");
}

/* Copies the bound small vectors to float32 in one allocation owned by the model. */
static hl_status copy_small(hl_dit *m, small_vec *sv, size_t n, hl_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += (size_t)hl_tensor_numel(&sv[i].view);
    m->small = malloc((total ? total : 1) * sizeof(float));
    if (!m->small) return hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory for norm vectors");
    float *p = m->small;
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)hl_tensor_numel(&sv[i].view);
        hl_convert_to_f32(sv[i].view.dtype, sv[i].view.data, p, k);
        *sv[i].dst = p;
        p += k;
    }
    return HL_OK;
}

hl_status hl_dit_bind(hl_dit *m, hl_weights *w, hl_error *err) {
    const hl_dit_config *c = &m->cfg;
    size_t per_block = 32, max_rows = 32 + (size_t)c->num_layers * per_block;
    binder b = {calloc(max_rows, sizeof(hl_bind)), 0, calloc(max_rows, sizeof(small_vec)), 0};
    m->blocks = calloc((size_t)c->num_layers + 1, sizeof *m->blocks);
    hl_status st = HL_OK;
    if (!b.rows || !b.small || !m->blocks) {
        st = hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory for the weight table");
        goto done;
    }
    bind_globals(&b, m);
    for (int i = 0; i < c->num_layers; i++) bind_block(&b, c, &m->blocks[i], i);
    static const char *const ignore[] = {"norm_added_q", NULL};
    st = hl_weights_bind(w, b.rows, b.n, ignore, NULL, err);
    if (st == HL_OK) st = copy_small(m, b.small, b.n_small, err);
done:
    free(b.rows);
    free(b.small);
    return st;
}

void hl_dit_release(hl_dit *m) {
    free(m->blocks);
    free(m->small);
    m->blocks = NULL;
    m->small = NULL;
}

void helios_model_params_init(helios_model_params *p) { memset(p, 0, sizeof *p); }

helios_status helios_transformer_load(helios_session *s, const helios_model_params *p,
                                      helios_transformer **out) {
    hl_error *err = &s->err;
    *out = NULL;
    if (!p->path && !(p->config_path && p->weights_path))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "transformer: no path given");
    char cfg_path[4096];
    if (p->config_path) snprintf(cfg_path, sizeof cfg_path, "%s", p->config_path);
    else snprintf(cfg_path, sizeof cfg_path, "%s/config.json", p->path);

    hl_dit *m = calloc(1, sizeof *m);
    if (!m) return hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory");
    hl_json *j = NULL;
    hl_status st = hl_json_load_file(cfg_path, &j, err);
    if (st == HL_OK) {
        st = hl_dit_config_parse(j, &m->cfg, err);
        if (st != HL_OK) hl_error_prefix(err, "%s", cfg_path);
    }
    hl_json_free(j);
    if (st == HL_OK) st = hl_weights_open(p->weights_path ? p->weights_path : p->path, &m->weights, err);
    if (st == HL_OK) st = hl_dit_bind(m, m->weights, err);
    if (st != HL_OK) {
        helios_transformer_free(m);
        return st;
    }
    HL_INFO("transformer: %d layers, D %d (%d heads x %d), ffn %d, weights %s", m->cfg.num_layers,
            m->cfg.dim, m->cfg.heads, m->cfg.head_dim, m->cfg.ffn_dim,
            hl_dtype_name(m->blocks && m->cfg.num_layers ? m->blocks[0].attn1.to_q_w.dtype
                                                         : m->proj_out_w.dtype));
    *out = m;
    return HL_OK;
}

void helios_transformer_free(helios_transformer *t) {
    if (!t) return;
    hl_dit_release(t);
    hl_weights_close(t->weights);
    free(t);
}

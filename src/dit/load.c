/* Loading the transformer: config.json, then an explicit name -> field table checked for shape
 * and dtype (io/weights.h), then float32 copies of the small vectors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dit/dit.h"
#include "io/binder.h"

#define SHAPE(...) \
    (const int64_t[]) { __VA_ARGS__ }

static void bind_attn(hl_binder *b, const hl_dit_config *c, hl_dit_attn *a, int i, const char *name,
                      bool self) {
    int64_t D = c->dim;
    hl_binder_tensor(b, &a->to_q_w, 2, SHAPE(D, D), "blocks.%d.%s.to_q.weight", i, name);
    hl_binder_tensor(b, &a->to_q_b, 1, SHAPE(D), "blocks.%d.%s.to_q.bias", i, name);
    hl_binder_tensor(b, &a->to_k_w, 2, SHAPE(D, D), "blocks.%d.%s.to_k.weight", i, name);
    hl_binder_tensor(b, &a->to_k_b, 1, SHAPE(D), "blocks.%d.%s.to_k.bias", i, name);
    hl_binder_tensor(b, &a->to_v_w, 2, SHAPE(D, D), "blocks.%d.%s.to_v.weight", i, name);
    hl_binder_tensor(b, &a->to_v_b, 1, SHAPE(D), "blocks.%d.%s.to_v.bias", i, name);
    hl_binder_tensor(b, &a->to_out_w, 2, SHAPE(D, D), "blocks.%d.%s.to_out.0.weight", i, name);
    hl_binder_tensor(b, &a->to_out_b, 1, SHAPE(D), "blocks.%d.%s.to_out.0.bias", i, name);
    hl_binder_f32(b, &a->norm_q, 1, SHAPE(D), "blocks.%d.%s.norm_q.weight", i, name);
    hl_binder_f32(b, &a->norm_k, 1, SHAPE(D), "blocks.%d.%s.norm_k.weight", i, name);
    if (self && c->is_amplify_history)
        hl_binder_f32(b, &a->history_key_scale, 1, SHAPE(c->history_scale_per_head ? c->heads : 1),
                      "blocks.%d.%s.history_key_scale", i, name);
}

static void bind_block(hl_binder *b, const hl_dit_config *c, hl_dit_block *blk, int i) {
    int64_t D = c->dim, F = c->ffn_dim;
    hl_binder_f32(b, &blk->scale_shift_table, 3, SHAPE(1, 6, D), "blocks.%d.scale_shift_table", i);
    bind_attn(b, c, &blk->attn1, i, "attn1", true);
    bind_attn(b, c, &blk->attn2, i, "attn2", false);
    if (c->cross_attn_norm) {
        hl_binder_f32(b, &blk->norm2_w, 1, SHAPE(D), "blocks.%d.norm2.weight", i);
        hl_binder_f32(b, &blk->norm2_b, 1, SHAPE(D), "blocks.%d.norm2.bias", i);
    }
    hl_binder_tensor(b, &blk->ffn0_w, 2, SHAPE(F, D), "blocks.%d.ffn.net.0.proj.weight", i);
    hl_binder_tensor(b, &blk->ffn0_b, 1, SHAPE(F), "blocks.%d.ffn.net.0.proj.bias", i);
    hl_binder_tensor(b, &blk->ffn2_w, 2, SHAPE(D, F), "blocks.%d.ffn.net.2.weight", i);
    hl_binder_tensor(b, &blk->ffn2_b, 1, SHAPE(D), "blocks.%d.ffn.net.2.bias", i);
}

static void bind_globals(hl_binder *b, hl_dit *m) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim, Ci = c->in_channels, P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    hl_binder_tensor(b, &m->patch_embedding_w, 5,
                     SHAPE(D, Ci, c->patch[0], c->patch[1], c->patch[2]), "patch_embedding.weight");
    hl_binder_tensor(b, &m->patch_embedding_b, 1, SHAPE(D), "patch_embedding.bias");
    if (c->has_multi_term_memory_patch) {
        hl_binder_tensor(b, &m->patch_short_w, 5, SHAPE(D, Ci, 1, 2, 2), "patch_short.weight");
        hl_binder_tensor(b, &m->patch_short_b, 1, SHAPE(D), "patch_short.bias");
        hl_binder_tensor(b, &m->patch_mid_w, 5, SHAPE(D, Ci, 2, 4, 4), "patch_mid.weight");
        hl_binder_tensor(b, &m->patch_mid_b, 1, SHAPE(D), "patch_mid.bias");
        hl_binder_tensor(b, &m->patch_long_w, 5, SHAPE(D, Ci, 4, 8, 8), "patch_long.weight");
        hl_binder_tensor(b, &m->patch_long_b, 1, SHAPE(D), "patch_long.bias");
    }
    hl_binder_tensor(b, &m->time_linear_1_w, 2, SHAPE(D, c->freq_dim),
                     "condition_embedder.time_embedder.linear_1.weight");
    hl_binder_tensor(b, &m->time_linear_1_b, 1, SHAPE(D),
                     "condition_embedder.time_embedder.linear_1.bias");
    hl_binder_tensor(b, &m->time_linear_2_w, 2, SHAPE(D, D),
                     "condition_embedder.time_embedder.linear_2.weight");
    hl_binder_tensor(b, &m->time_linear_2_b, 1, SHAPE(D),
                     "condition_embedder.time_embedder.linear_2.bias");
    hl_binder_tensor(b, &m->time_proj_w, 2, SHAPE(6 * D, D), "condition_embedder.time_proj.weight");
    hl_binder_tensor(b, &m->time_proj_b, 1, SHAPE(6 * D), "condition_embedder.time_proj.bias");
    hl_binder_tensor(b, &m->text_linear_1_w, 2, SHAPE(D, c->text_dim),
                     "condition_embedder.text_embedder.linear_1.weight");
    hl_binder_tensor(b, &m->text_linear_1_b, 1, SHAPE(D),
                     "condition_embedder.text_embedder.linear_1.bias");
    hl_binder_tensor(b, &m->text_linear_2_w, 2, SHAPE(D, D),
                     "condition_embedder.text_embedder.linear_2.weight");
    hl_binder_tensor(b, &m->text_linear_2_b, 1, SHAPE(D),
                     "condition_embedder.text_embedder.linear_2.bias");
    hl_binder_f32(b, &m->norm_out_table, 3, SHAPE(1, 2, D), "norm_out.scale_shift_table");
    hl_binder_tensor(b, &m->proj_out_w, 2, SHAPE(c->out_channels * P, D), "proj_out.weight");
    hl_binder_tensor(b, &m->proj_out_b, 1, SHAPE(c->out_channels * P), "proj_out.bias");
}

void hl_dit_binder_rows(hl_binder *b, hl_dit *m) {
    bind_globals(b, m);
    for (int i = 0; i < m->cfg.num_layers; i++) bind_block(b, &m->cfg, &m->blocks[i], i);
}

hl_status hl_dit_bind(hl_dit *m, hl_weights *w, hl_error *err) {
    const hl_dit_config *c = &m->cfg;
    m->blocks = calloc((size_t)c->num_layers + 1, sizeof *m->blocks);
    if (!m->blocks) return hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory");
    hl_binder b;
    HL_TRY(hl_binder_init(&b, hl_dit_binder_capacity(c), err));
    hl_dit_binder_rows(&b, m);
    static const char *const ignore[] = {"norm_added_q", NULL};
    hl_status st = hl_binder_bind(&b, w, ignore, &m->small, err);
    hl_binder_free(&b);
    return st;
}

void hl_dit_release(hl_dit *m) {
    free(m->blocks);
    free(m->small);
    m->blocks = NULL;
    m->small = NULL;
}

hl_status hl_dit_load(const char *config_path, const char *weights_path, hl_dit **out,
                      hl_error *err) {
    *out = NULL;
    hl_dit *m = calloc(1, sizeof *m);
    if (!m) return hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory");
    hl_json *j = NULL;
    hl_status st = hl_json_load_file(config_path, &j, err);
    if (st == HL_OK && (st = hl_dit_config_parse(j, &m->cfg, err)) != HL_OK)
        hl_error_prefix(err, "%s", config_path);
    hl_json_free(j);
    if (st == HL_OK) st = hl_weights_open(weights_path, &m->weights, err);
    if (st == HL_OK) st = hl_dit_bind(m, m->weights, err);
    if (st != HL_OK) {
        hl_dit_free(m);
        return st;
    }
    HL_DEBUG(
        "transformer: %d layers, D %d (%d heads x %d), ffn %d, weights %s", m->cfg.num_layers,
        m->cfg.dim, m->cfg.heads, m->cfg.head_dim, m->cfg.ffn_dim,
        hl_dtype_name(m->cfg.num_layers ? m->blocks[0].attn1.to_q_w.dtype : m->proj_out_w.dtype));
    *out = m;
    return HL_OK;
}

void hl_dit_free(hl_dit *t) {
    if (!t) return;
    hl_dit_release(t);
    hl_weights_close(t->weights);
    free(t);
}

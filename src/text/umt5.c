#include "text/umt5.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/binder.h"

static hl_status cfg_int(const hl_json *j, const char *key, int64_t def, int64_t lo, int64_t hi,
                         int *out, hl_error *err) {
    int64_t v = def;
    const hl_json *m = hl_json_get(j, key);
    if (m && m->type != HL_JSON_NULL && hl_json_get_int(j, key, &v) != 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be an integer", key);
    if (v < lo || v > hi)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' = %lld is out of range [%lld, %lld]", key,
                       (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return HL_OK;
}

hl_status hl_umt5_config_parse(const hl_json *j, hl_umt5_config *c, hl_error *err) {
    memset(c, 0, sizeof *c);
    if (!j || j->type != HL_JSON_OBJECT)
        return hl_fail(err, HELIOS_ERR_FORMAT, "not a JSON object");
    const int big = 1 << 24;
    HL_TRY(cfg_int(j, "vocab_size", 256384, 1, big, &c->vocab_size, err));
    HL_TRY(cfg_int(j, "d_model", 4096, 1, big, &c->d_model, err));
    HL_TRY(cfg_int(j, "d_kv", 64, 1, 65536, &c->d_kv, err));
    HL_TRY(cfg_int(j, "d_ff", 10240, 1, big, &c->d_ff, err));
    HL_TRY(cfg_int(j, "num_layers", 24, 1, 4096, &c->num_layers, err));
    HL_TRY(cfg_int(j, "num_heads", 64, 1, 4096, &c->num_heads, err));
    HL_TRY(cfg_int(j, "relative_attention_num_buckets", 32, 2, 65536, &c->num_buckets, err));
    HL_TRY(cfg_int(j, "relative_attention_max_distance", 128, 1, big, &c->max_distance, err));
    double eps = 1e-6;
    const hl_json *m = hl_json_get(j, "layer_norm_epsilon");
    if (m && m->type != HL_JSON_NULL && hl_json_get_double(j, "layer_norm_epsilon", &eps) != 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'layer_norm_epsilon' must be a number");
    /* RMSNorm divides by sqrt(mean(x^2) + eps): eps <= 0 lets a zero row give inf/NaN, and an
     * eps that rounds to 0 in float32 is the same thing */
    if (!(eps > 0 && eps < 1) || (float)eps == 0.0f)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'layer_norm_epsilon' = %g must be in (0, 1)", eps);
    c->eps = (float)eps;
    /* strings of another type are errors, not the default */
    static const char *const strs[] = {"feed_forward_proj", "dense_act_fn"};
    for (int i = 0; i < 2; i++)
        if ((m = hl_json_get(j, strs[i])) && m->type != HL_JSON_NULL && m->type != HL_JSON_STRING)
            return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be a string", strs[i]);
    const char *ff = hl_json_get_string(j, "feed_forward_proj");
    if (ff && strcmp(ff, "gated-gelu"))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "'feed_forward_proj' \"%s\": only \"gated-gelu\" is supported", ff);
    const char *act = hl_json_get_string(j, "dense_act_fn");
    if (act && strcmp(act, "gelu_new") && strcmp(act, "gelu_pytorch_tanh"))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "'dense_act_fn' \"%s\": only the tanh GELU is supported", act);
    if (c->num_buckets % 2)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'relative_attention_num_buckets' must be even");
    return HL_OK;
}

#define SHAPE(...) \
    (const int64_t[]) { __VA_ARGS__ }

hl_status hl_umt5_binder(hl_umt5 *m, hl_binder *b, hl_error *err) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
    if (!m->layers && !(m->layers = calloc((size_t)c->num_layers + 1, sizeof *m->layers)))
        return hl_fail(err, HELIOS_ERR_OOM, "umt5: out of memory");
    HL_TRY(hl_binder_init(b, 4 + (size_t)c->num_layers * 12, err));
    hl_binder_tensor(b, &m->shared, 2, SHAPE(c->vocab_size, D), "shared.weight");
    for (int i = 0; i < c->num_layers; i++) {
        hl_umt5_layer *l = &m->layers[i];
        hl_binder_f32(b, &l->ln_attn, 1, SHAPE(D), "encoder.block.%d.layer.0.layer_norm.weight", i);
        hl_binder_tensor(b, &l->q, 2, SHAPE(I, D),
                         "encoder.block.%d.layer.0.SelfAttention.q.weight", i);
        hl_binder_tensor(b, &l->k, 2, SHAPE(I, D),
                         "encoder.block.%d.layer.0.SelfAttention.k.weight", i);
        hl_binder_tensor(b, &l->v, 2, SHAPE(I, D),
                         "encoder.block.%d.layer.0.SelfAttention.v.weight", i);
        hl_binder_tensor(b, &l->o, 2, SHAPE(D, I),
                         "encoder.block.%d.layer.0.SelfAttention.o.weight", i);
        hl_binder_f32(b, &l->rel_bias, 2, SHAPE(c->num_buckets, c->num_heads),
                      "encoder.block.%d.layer.0.SelfAttention.relative_attention_bias.weight", i);
        hl_binder_f32(b, &l->ln_ffn, 1, SHAPE(D), "encoder.block.%d.layer.1.layer_norm.weight", i);
        hl_binder_tensor(b, &l->wi_0, 2, SHAPE(F, D),
                         "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", i);
        hl_binder_tensor(b, &l->wi_1, 2, SHAPE(F, D),
                         "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", i);
        hl_binder_tensor(b, &l->wo, 2, SHAPE(D, F),
                         "encoder.block.%d.layer.1.DenseReluDense.wo.weight", i);
    }
    hl_binder_f32(b, &m->final_ln, 1, SHAPE(D), "encoder.final_layer_norm.weight");
    return HL_OK;
}

static hl_status bind(hl_umt5 *m, hl_weights *w, hl_error *err) {
    hl_binder b;
    HL_TRY(hl_umt5_binder(m, &b, err));
    /* the tied copy of shared.weight that some exports carry */
    static const char *const ignore[] = {"encoder.embed_tokens.weight", NULL};
    hl_status st = hl_binder_bind(&b, w, ignore, &m->small, err);
    hl_binder_free(&b);
    return st;
}

hl_status hl_umt5_load(const char *config_path, const char *weights_path, hl_umt5 **out,
                       hl_error *err) {
    *out = NULL;
    hl_umt5 *m = calloc(1, sizeof *m);
    if (!m) return hl_fail(err, HELIOS_ERR_OOM, "umt5: out of memory");
    hl_json *j = NULL;
    hl_status st = hl_json_load_file(config_path, &j, err);
    if (st == HL_OK && (st = hl_umt5_config_parse(j, &m->cfg, err)) != HL_OK)
        hl_error_prefix(err, "%s", config_path);
    hl_json_free(j);
    if (st == HL_OK) st = hl_weights_open(weights_path, &m->weights, err);
    if (st == HL_OK) st = bind(m, m->weights, err);
    if (st != HL_OK) {
        hl_umt5_free(m);
        return st;
    }
    *out = m;
    return HL_OK;
}

void hl_umt5_free(hl_umt5 *m) {
    if (!m) return;
    hl_weights_close(m->weights);
    free(m->layers);
    free(m->small);
    free(m);
}

int hl_umt5_bucket(int64_t n, int num_buckets, int max_distance) {
    int half = num_buckets / 2, max_exact = half / 2;
    int bucket = n > 0 ? half : 0;
    int64_t a = n < 0 ? -n : n;
    if (a < max_exact) return bucket + (int)a;
    /* float32 throughout: log(a / max_exact) / log(max_distance / max_exact) * (half - max_exact) */
    float r = logf((float)a / (float)max_exact) / (float)log((double)max_distance / max_exact) *
              (float)(half - max_exact);
    int64_t large = max_exact + (int64_t)r;
    return bucket + (int)(large < half - 1 ? large : half - 1);
}

/* bias [H, L, L] of one layer: rel_bias[bucket(j - i), h]. */
static void position_bias(const hl_umt5_config *c, const float *rel_bias, int64_t L,
                          const int *bucket_of, float *bias) {
    for (int h = 0; h < c->num_heads; h++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++)
                bias[((int64_t)h * L + i) * L + j] =
                    rel_bias[bucket_of[j - i + L - 1] * c->num_heads + h];
}

hl_status hl_umt5_position_bias(const hl_umt5 *m, int layer, int64_t L, float *bias,
                                hl_error *err) {
    if (layer < 0 || layer >= m->cfg.num_layers || L < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "umt5: no layer %d", layer);
    int *bucket_of = malloc((size_t)(2 * L - 1) * sizeof *bucket_of);
    if (!bucket_of) return hl_fail(err, HELIOS_ERR_OOM, "umt5: out of memory");
    for (int64_t n = -(L - 1); n <= L - 1; n++)
        bucket_of[n + L - 1] = hl_umt5_bucket(n, m->cfg.num_buckets, m->cfg.max_distance);
    position_bias(&m->cfg, m->layers[layer].rel_bias, L, bucket_of, bias);
    free(bucket_of);
    return HL_OK;
}

static hl_dtype gemm_dtype(const hl_tensor *w) { return w->dtype == HL_BF16 ? HL_BF16 : HL_F32; }

/* Scratch of one forward. */
typedef struct umt5_acts {
    float *h, *n, *q, *k, *v, *a, *f0, *f1, *bias, *key_bias;
    float *rel;     /* [H, 2L - 1]: one layer's bias per offset n = j - i, indexed n + L - 1 */
    int *bucket_of; /* [2L - 1]: bucket of n = j - i, indexed n + L - 1 */
} umt5_acts;

static hl_status attention_block(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_layer *l, int B,
                                 int64_t L, const int64_t *mask, umt5_acts *s) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, M = (int64_t)B * L;
    HL_TRY(hl_rmsnorm(ctx, M, D, s->h, D, l->ln_attn, c->eps, s->n, D, NULL));
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->q, NULL, s->q, I)); /* [B*L, H*dkv] */
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->k, NULL, s->k, I));
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->v, NULL, s->v, I));
    for (int h = 0; h < c->num_heads; h++) /* the bias of every offset, then [H, L, L] */
        for (int64_t n = 0; n < 2 * L - 1; n++)
            s->rel[h * (2 * L - 1) + n] = l->rel_bias[s->bucket_of[n] * c->num_heads + h];
    HL_TRY(hl_relative_bias(ctx, c->num_heads, L, L, s->rel, s->bias));
    for (int b = 0; b < B; b++) {
        for (int64_t j = 0; j < L; j++) /* (1 - mask) · finfo(float32).min */
            s->key_bias[j] = mask && !mask[(int64_t)b * L + j] ? -FLT_MAX : 0.0f;
        int64_t r = (int64_t)b * L * I;
        HL_TRY(hl_attention_biased(ctx, L, L, c->num_heads, c->d_kv, s->q + r, I, s->k + r, I,
                                   s->v + r, I, 1.0f /* T5: no 1/sqrt(d) */, s->bias, s->key_bias,
                                   gemm_dtype(&l->q), s->a + r, I));
    }
    HL_TRY(hl_linear(ctx, M, s->a, I, &l->o, NULL, s->n, D));
    return hl_add_gated(ctx, M, D, s->h, D, s->n, D, NULL); /* h += o(attn) */
}

static hl_status ffn_block(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_layer *l, int64_t M,
                           umt5_acts *s) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, F = c->d_ff;
    HL_TRY(hl_rmsnorm(ctx, M, D, s->h, D, l->ln_ffn, c->eps, s->n, D, NULL));
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->wi_0, NULL, s->f0, F)); /* [M, F] */
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->wi_1, NULL, s->f1, F));
    HL_TRY(hl_gelu_tanh_mul(ctx, M * F, s->f0, s->f1, s->f0)); /* gelu(wi_0·x) ⊙ wi_1·x */
    HL_TRY(hl_linear(ctx, M, s->f0, F, &l->wo, NULL, s->n, D));
    return hl_add_gated(ctx, M, D, s->h, D, s->n, D, NULL);
}

hl_status hl_umt5_embed(const hl_umt5 *m, int64_t M, const int64_t *ids, float *h, hl_error *err) {
    int64_t D = m->cfg.d_model;
    size_t es = hl_dtype_size(m->shared.dtype);
    for (int64_t i = 0; i < M; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "umt5: token id %lld out of the vocabulary (%d)", (long long)ids[i],
                           m->cfg.vocab_size);
        hl_convert_to_f32(m->shared.dtype, (const char *)m->shared.data + (size_t)(ids[i] * D) * es,
                          h + i * D, (size_t)D);
    }
    return HL_OK;
}

hl_status hl_umt5_forward(const hl_ctx *ctx, const hl_umt5 *m, int B, int64_t L, const int64_t *ids,
                          const int64_t *mask, const hl_probe *probe, float *out) {
    const hl_umt5_config *c = &m->cfg;
    if (B < 1 || L < 1) return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "umt5: empty input");
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff, M = (int64_t)B * L;
    umt5_acts s = {0};
    size_t f = sizeof(float);
    s.h = out; /* the residual stream lives in the output */
    s.n = malloc((size_t)(M * (D > I ? D : I)) * f);
    s.q = malloc((size_t)(M * I) * f), s.k = malloc((size_t)(M * I) * f),
    s.v = malloc((size_t)(M * I) * f);
    s.a = malloc((size_t)(M * I) * f);
    s.f0 = malloc((size_t)(M * F) * f), s.f1 = malloc((size_t)(M * F) * f);
    s.bias = malloc((size_t)(c->num_heads * L * L) * f);
    s.key_bias = malloc((size_t)L * f);
    s.rel = malloc((size_t)((int64_t)c->num_heads * (2 * L - 1)) * f);
    s.bucket_of = malloc((size_t)(2 * L - 1) * sizeof(int));
    hl_status st = HL_OK;
    if (!s.n || !s.q || !s.k || !s.v || !s.a || !s.f0 || !s.f1 || !s.bias || !s.key_bias ||
        !s.rel || !s.bucket_of) {
        st = hl_fail(ctx->err, HELIOS_ERR_OOM, "umt5: out of memory for %lld tokens", (long long)M);
        goto done;
    }
    for (int64_t n = -(L - 1); n <= L - 1; n++)
        s.bucket_of[n + L - 1] = hl_umt5_bucket(n, c->num_buckets, c->max_distance);
    st = hl_umt5_embed(m, M, ids, s.h, ctx->err);
    for (int i = 0; st == HL_OK && i < c->num_layers; i++) {
        hl_probe_emit(probe, s.h, M, D, "hidden_states.%d", i);
        st = attention_block(ctx, m, &m->layers[i], B, L, mask, &s);
        if (st == HL_OK) st = ffn_block(ctx, m, &m->layers[i], M, &s);
    }
    if (st == HL_OK) st = hl_rmsnorm(ctx, M, D, s.h, D, m->final_ln, c->eps, s.h, D, NULL);
    if (st == HL_OK) hl_probe_emit(probe, s.h, M, D, "hidden_states.%d", c->num_layers);
done:
    free(s.n), free(s.q), free(s.k), free(s.v), free(s.a), free(s.f0), free(s.f1);
    free(s.bias), free(s.key_bias), free(s.rel), free(s.bucket_of);
    return st;
}

void hl_umt5_zero_padding(int B, int64_t L, int64_t D, const int64_t *mask, float *out) {
    for (int b = 0; b < B; b++) {
        int64_t n = 0;
        for (int64_t j = 0; j < L; j++) n += mask[(int64_t)b * L + j] != 0;
        memset(out + ((int64_t)b * L + n) * D, 0, (size_t)((L - n) * D) * sizeof(float));
    }
}

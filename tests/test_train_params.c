/* Flat parameter buffers (train/params.h, train/dit_flat.h): the layout tiles the buffer, every
 * field of a flat-bound transformer points at its own slice, loading from the oracle checkpoint
 * gives a model whose forward is bit-identical to the normally loaded one, load errors name the
 * file and tensor, and the random init follows its documented rules deterministically. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "train/dit_flat.h"
#include "verify/dit_vectors.h"

static const char *weights_path(void) { return vector_path("transformer_weights_f32.safetensors"); }

static void check_layout_tiles(const hl_params *L, const hl_weights *w) {
    int64_t off = 0;
    int tiled = 1;
    for (size_t i = 0; i < L->n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < L->p[i].ndim; d++) numel *= L->p[i].shape[d];
        if (L->p[i].offset != off || L->p[i].numel != numel) tiled = 0;
        off += L->p[i].numel;
        CHECK(hl_params_find(L, L->p[i].name) == &L->p[i], "find %s", L->p[i].name);
    }
    CHECK(tiled && off == L->total, "offsets tile [0, %lld)", (long long)L->total);
    CHECK(hl_params_find(L, "no.such.weight") == NULL, "find absent");
    /* every tensor of the checkpoint except the ones hl_dit_bind ignores is a parameter */
    int64_t ck = 0;
    for (size_t f = 0; f < w->n_files; f++)
        for (size_t i = 0; i < w->files[f]->n; i++) {
            const hl_st_tensor *t = &w->files[f]->tensors[i];
            if (strstr(t->name, "norm_added_q")) continue;
            CHECK(hl_params_find(L, t->name) != NULL, "checkpoint tensor %s not a parameter",
                  t->name);
            ck += (int64_t)(t->nbytes / hl_dtype_size(t->dtype));
        }
    CHECK(ck == L->total, "checkpoint holds %lld floats, layout %lld", (long long)ck,
          (long long)L->total);
}

/* Every field of m points at the slice of its parameter in data. */
static void check_fields(const hl_dit *m, const hl_params *L, const float *data) {
    const hl_param *q = hl_params_find(L, "blocks.0.attn1.norm_q.weight");
    CHECK(q && m->blocks[0].attn1.norm_q == data + q->offset, "norm_q points into the buffer");
    q = hl_params_find(L, "blocks.1.scale_shift_table");
    CHECK(q && m->blocks[1].scale_shift_table == data + q->offset, "scale_shift_table");
    q = hl_params_find(L, "norm_out.scale_shift_table");
    CHECK(q && m->norm_out_table == data + q->offset, "norm_out table");
    q = hl_params_find(L, "blocks.1.ffn.net.2.weight");
    CHECK(q && m->blocks[1].ffn2_w.data == data + q->offset &&
              m->blocks[1].ffn2_w.dtype == HL_F32 && hl_tensor_is_contiguous(&m->blocks[1].ffn2_w),
          "ffn2_w view");
    q = hl_params_find(L, "proj_out.bias");
    CHECK(q && m->proj_out_b.data == data + q->offset, "proj_out.bias");
    CHECK(m->weights == NULL && m->small == NULL, "owns no buffer");
}

static void test_layout_and_forward(void) {
    hl_error e = {0};
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/transformer_config.json", HELIOS_VECTORS);
    hl_dit *ref = NULL;
    CHECK(hl_dit_load(cfg, weights_path(), &ref, &e) == HL_OK, "%s", e.msg);
    if (!ref) return;
    hl_params L;
    CHECK(hl_dit_params_layout(&ref->cfg, &L, &e) == HL_OK, "%s", e.msg);
    printf("  %zu parameters, %lld floats\n", L.n, (long long)L.total);
    check_layout_tiles(&L, ref->weights);

    float *w = calloc((size_t)L.total, sizeof *w), *g = calloc((size_t)L.total, sizeof *g);
    CHECK(hl_params_load(&L, w, ref->weights, &e) == HL_OK, "%s", e.msg);
    hl_dit *m = NULL, *grad = NULL;
    CHECK(hl_dit_new_flat(&ref->cfg, &L, w, &m, &e) == HL_OK, "%s", e.msg);
    CHECK(hl_dit_new_flat(&ref->cfg, &L, g, &grad, &e) == HL_OK, "%s", e.msg);
    if (!m || !grad) goto done;
    check_fields(m, &L, w);
    check_fields(grad, &L, g);
    /* values equal the checkpoint's */
    CHECK(!memcmp(m->blocks[0].attn1.norm_q, ref->blocks[0].attn1.norm_q,
                  (size_t)ref->cfg.dim * sizeof(float)),
          "norm_q values");
    CHECK(!memcmp(m->blocks[0].attn1.to_q_w.data, ref->blocks[0].attn1.to_q_w.data,
                  hl_tensor_nbytes(&ref->blocks[0].attn1.to_q_w)),
          "to_q values");
    /* a write through the gradient view lands in g at the parameter's offset */
    const hl_param *q = hl_params_find(&L, "blocks.0.attn2.norm_k.weight");
    ((float *)grad->blocks[0].attn2.norm_k)[3] += 2.5f;
    CHECK(q && g[q->offset + 3] == 2.5f, "gradient view writes into g");

    /* the forward of the flat model is bit-identical to the loaded one, on both backends */
    hl_safetensors *st = NULL;
    hl_dit_case c = {0};
    CHECK(hl_st_open(vector_path("transformer_case_ii_history.safetensors"), &st, &e) == HL_OK,
          "%s", e.msg);
    if (st && hl_dit_case_read(st, &c, &e) == HL_OK) {
        int64_t n = hl_dit_case_out_numel(&c, ref);
        float *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
        helios_backend kinds[2] = {HELIOS_BACKEND_REF, HELIOS_BACKEND_CPU};
        for (int k = 0; k < 2; k++) {
            hl_ctx ctx = test_ctx(kinds[k], &e);
            CHECK(hl_dit_forward(&ctx, ref, &c.in, NULL, a) == HL_OK, "%s", e.msg);
            CHECK(hl_dit_forward(&ctx, m, &c.in, NULL, b) == HL_OK, "%s", e.msg);
            CHECK(!memcmp(a, b, (size_t)n * sizeof *a), "backend %d: flat forward differs", k);
        }
        free(a);
        free(b);
    }
    hl_dit_case_free(&c);
    hl_st_close(st);
done:
    hl_dit_free(m);
    hl_dit_free(grad);
    free(w);
    free(g);
    hl_params_free(&L);
    hl_dit_free(ref);
}

/* bf16 checkpoints load converted to float32: the same values hl_dit_load's float32 copies and
 * bf16 views hold */
static void test_load_bf16(void) {
    hl_error e = {0};
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/transformer_config.json", HELIOS_VECTORS);
    hl_dit *ref = NULL;
    CHECK(hl_dit_load(cfg, vector_path("transformer_weights_bf16.safetensors"), &ref, &e) == HL_OK,
          "%s", e.msg);
    if (!ref) return;
    hl_params L;
    CHECK(hl_dit_params_layout(&ref->cfg, &L, &e) == HL_OK, "%s", e.msg);
    float *w = calloc((size_t)L.total, sizeof *w);
    CHECK(hl_params_load(&L, w, ref->weights, &e) == HL_OK, "%s", e.msg);
    const hl_param *q = hl_params_find(&L, "blocks.1.attn1.norm_k.weight");
    CHECK(q && !memcmp(w + q->offset, ref->blocks[1].attn1.norm_k, (size_t)q->numel * 4),
          "bf16 norm_k");
    q = hl_params_find(&L, "blocks.0.ffn.net.0.proj.weight");
    const hl_tensor *t = &ref->blocks[0].ffn0_w;
    int same = q && t->dtype == HL_BF16;
    for (int64_t i = 0; same && i < q->numel; i++)
        same = w[q->offset + i] == hl_bf16_to_f32(((const hl_bf16 *)t->data)[i]);
    CHECK(same, "bf16 ffn0 weight converted exactly");
    free(w);
    hl_params_free(&L);
    hl_dit_free(ref);
}

static void test_errors(void) {
    hl_error e = {0};
    hl_weights *w = NULL;
    CHECK(hl_weights_open(weights_path(), &w, &e) == HL_OK, "%s", e.msg);
    if (!w) return;
    hl_param p[2] = {
        {.name = "proj_out.bias", .ndim = 1, .shape = {7}, .offset = 0, .numel = 7},
        {.name = "blocks.0.nothing", .ndim = 1, .shape = {2}, .offset = 7, .numel = 2}};
    hl_params L = {p, 2, 9};
    float buf[9];
    hl_status st = hl_params_load(&L, buf, w, &e);
    CHECK(st != HL_OK, "bad layout accepted");
    CHECK(strstr(e.msg, "blocks.0.nothing") && strstr(e.msg, "proj_out.bias") &&
              strstr(e.msg, "transformer_weights_f32"),
          "message names file and tensors: %s", e.msg);
    hl_weights_close(w);

    /* binding a table to a layout of another config is refused, naming the row */
    hl_dit_config c = {0};
    c.dim = 8, c.heads = 2, c.head_dim = 4, c.in_channels = 4, c.out_channels = 4;
    c.patch[0] = 1, c.patch[1] = 2, c.patch[2] = 2, c.text_dim = 8, c.freq_dim = 8;
    c.ffn_dim = 16, c.num_layers = 1;
    hl_dit_config c2 = c;
    c2.ffn_dim = 12;
    hl_params L1, L2;
    CHECK(hl_dit_params_layout(&c, &L1, &e) == HL_OK, "%s", e.msg);
    CHECK(hl_dit_params_layout(&c2, &L2, &e) == HL_OK, "%s", e.msg);
    float *d = calloc((size_t)L1.total, sizeof *d);
    hl_dit *m = NULL;
    CHECK(hl_dit_new_flat(&c, &L2, d, &m, &e) != HL_OK && strstr(e.msg, "ffn.net.0.proj.weight"),
          "mismatch named: %s", e.msg);
    CHECK(m == NULL, "no model on failure");
    free(d);
    hl_params_free(&L1);
    hl_params_free(&L2);
}

static void test_random_init(void) {
    hl_error e = {0};
    hl_dit_config c = {0};
    c.dim = 16, c.heads = 2, c.head_dim = 8, c.in_channels = 4, c.out_channels = 4;
    c.patch[0] = 1, c.patch[1] = 2, c.patch[2] = 2, c.text_dim = 12, c.freq_dim = 8;
    c.ffn_dim = 32, c.num_layers = 2, c.cross_attn_norm = true, c.is_amplify_history = true;
    c.has_multi_term_memory_patch = true;
    hl_params L;
    CHECK(hl_dit_params_layout(&c, &L, &e) == HL_OK, "%s", e.msg);
    float *a = calloc((size_t)L.total, sizeof *a), *b = calloc((size_t)L.total, sizeof *b);
    hl_rng r;
    r.path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed(&r, 7);
    hl_dit_params_init_random(&c, &L, a, &r);
    hl_rng_seed(&r, 7);
    hl_dit_params_init_random(&c, &L, b, &r);
    CHECK(!memcmp(a, b, (size_t)L.total * sizeof *a), "same seed, same weights");
    for (size_t i = 0; i < L.n; i++) {
        const hl_param *q = &L.p[i];
        const float *x = a + q->offset;
        double mx = 0, s2 = 0;
        for (int64_t k = 0; k < q->numel; k++) mx = fmax(mx, fabs(x[k])), s2 += x[k] * x[k];
        const char *nm = q->name;
        size_t len = strlen(nm);
        if (strstr(nm, "norm_q.weight") || strstr(nm, "norm_k.weight") ||
            strstr(nm, "norm2.weight") || strstr(nm, "history_key_scale"))
            CHECK(mx == 1 && s2 == (double)q->numel, "%s ones", nm);
        else if ((len > 5 && !strcmp(nm + len - 5, ".bias")) || !strcmp(nm, "proj_out.weight"))
            CHECK(mx == 0, "%s zeros", nm);
        else if (strstr(nm, "scale_shift_table") || strstr(nm, "time_embedder.") ||
                 strstr(nm, "text_embedder."))
            CHECK(mx > 0 && mx < 6.0 / (strstr(nm, "table") ? 4.0 : 50.0), "%s normal scale %g", nm,
                  mx);
        else {
            int64_t fo = q->shape[0], fi = q->numel / fo;
            double bound = sqrt(6.0 / (double)(fi + fo));
            CHECK(mx > 0.5 * bound && mx <= bound, "%s xavier %g (bound %g)", nm, mx, bound);
        }
    }
    free(a);
    free(b);
    hl_params_free(&L);
}

int main(void) {
    test_layout_and_forward();
    test_load_bf16();
    test_errors();
    test_random_init();
    return test_done("test_train_params");
}

/* Training the text encoder (the "mlm" objective, train/mlm.h): the loss against a hand-computed
 * value, the corruption's counts, proportions and determinism, the flat layout = the loader's
 * table (same forward, bit for bit), and the whole objective's gradient (encoder + tied head +
 * cross-entropy) against central finite differences along several parameter tensors. Uses the
 * tiny model folder's text encoder config and tokenizer and the tiny world's captions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "train/mlm.h"
#include "train/objective.h"
#include "train/umt5_flat.h"

#define MODEL HELIOS_VECTORS "/../models/tiny-random-model"

/* E [3, 2] = [[1, 0], [0, 1], [1, 1]], scale 1/2, h = [[2, 0], [0, 4]], targets 1 and 2:
 *   x0 = [1, 0] -> logits [1, 0, 1], CE = log(e + 1 + e) - 0 = log(2e + 1)
 *   x1 = [0, 2] -> logits [0, 2, 2], CE = log(1 + 2e²) - 2
 *   loss = (log(2e + 1) + log(1 + 2e²) - 2) / 2 = 1.3103092398688823
 * dh0 = ½ · ((p0 - onehot(1)) / 2) · E with p0 = [e, 1, e] / (2e + 1), i.e. (p0 - onehot(1)) =
 *   [e, -2e, e] / (2e + 1), times E = [2e, -e] / (2e + 1): dh0 = [a/4, -a/8], a = 2e / (2e + 1) */
static void test_loss_by_hand(void) {
    hl_error err = {0};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_CPU, &err);
    float Ed[6] = {1, 0, 0, 1, 1, 1}, h[4] = {2, 0, 0, 4}, dh[4], dE[6] = {0};
    hl_tensor E = hl_tensor_make(Ed, HL_F32, 2, (const int64_t[]){3, 2});
    int64_t target[2] = {1, 2};
    double loss = 0;
    hl_status st = hl_mlm_loss(&ctx, &E, 0.5f, 2, h, target, &loss, dh, dE);
    CHECK(st == HL_OK, "%s", err.msg);
    CHECK(fabs(loss - 1.3103092398688823) < 1e-6, "loss %.9g", loss);
    double e = exp(1.0), a = 2 * e / (2 * e + 1);
    CHECK(fabs(dh[0] - a / 4) < 1e-6 && fabs(dh[1] + a / 8) < 1e-6, "dh0 %g %g", dh[0], dh[1]);
    int64_t bad[2] = {1, 3};
    CHECK(hl_mlm_loss(&ctx, &E, 0.5f, 2, h, bad, &loss, dh, NULL) == HELIOS_ERR_INVALID_ARG,
          "a target past the vocabulary is refused");
}

/* K = round(0.15 n), distinct increasing candidates, targets the originals; over many draws
 * about 80% masked, 10% random, 10% kept; the same generator state gives the same result. */
static void test_corrupt(void) {
    enum { L = 40, N = 38 };
    int64_t ids[L], cand[N], words[5] = {100, 101, 102, 103, 104};
    for (int i = 0; i < L; i++) ids[i] = 10 + i;
    for (int i = 0; i < N; i++) cand[i] = i + 1; /* positions 0 and 39 are never chosen */
    hl_mlm_params p = {0.15, 0.8, 0.1, 99, words, 5};
    int64_t in[L], pos[N], tgt[N], K, masked = 0, random = 0, kept = 0, total = 0;
    hl_rng g = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed(&g, 7);
    for (int trial = 0; trial < 400; trial++) {
        hl_mlm_corrupt(&p, &g, ids, L, cand, N, in, pos, tgt, &K);
        CHECK(K == 6, "K %lld, want round(0.15 * 38) = 6", (long long)K);
        for (int64_t k = 0; k < K; k++) {
            CHECK(pos[k] >= 1 && pos[k] <= 38 && (k == 0 || pos[k] > pos[k - 1]), "pos %lld",
                  (long long)pos[k]);
            CHECK(tgt[k] == ids[pos[k]], "target");
            int64_t v = in[pos[k]];
            masked += v == 99, random += v >= 100, kept += v == ids[pos[k]];
        }
        int64_t changed = 0;
        for (int i = 0; i < L; i++) changed += in[i] != ids[i];
        CHECK(changed <= K, "only chosen positions change");
        total += K;
    }
    CHECK(masked + random + kept == total, "every chosen token is masked, random or kept");
    CHECK(fabs((double)masked / total - 0.8) < 0.04, "masked %.3f", (double)masked / total);
    CHECK(fabs((double)random / total - 0.1) < 0.03, "random %.3f", (double)random / total);
    CHECK(fabs((double)kept / total - 0.1) < 0.03, "kept %.3f", (double)kept / total);
    int64_t in2[L], pos2[N], tgt2[N], K2;
    hl_rng a = {.path = HL_RNG_NORMAL_AVX2}, b = a;
    hl_rng_seed(&a, 11), hl_rng_seed(&b, 11);
    hl_mlm_corrupt(&p, &a, ids, L, cand, N, in, pos, tgt, &K);
    hl_mlm_corrupt(&p, &b, ids, L, cand, N, in2, pos2, tgt2, &K2);
    CHECK(K == K2 && !memcmp(in, in2, sizeof in) && !memcmp(pos, pos2, (size_t)K * sizeof *pos),
          "same generator, same corruption");
    p.mask_prob = 0.001; /* K never drops to 0 */
    hl_mlm_corrupt(&p, &a, ids, L, cand, N, in, pos, tgt, &K);
    CHECK(K == 1, "K %lld, want at least 1", (long long)K);
}

static hl_status load_cfg(hl_umt5_config *c, hl_error *err) {
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(MODEL "/text_encoder/config.json", &j, err));
    hl_status st = hl_umt5_config_parse(j, c, err);
    hl_json_free(j);
    return st;
}

/* The tiny model's text encoder loaded by hl_umt5_load and the same weights in the flat layout:
 * the same forward, bit for bit (the layout is the loader's table, names and order). */
static void test_layout_is_loader(void) {
    hl_error err = {0};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_CPU, &err);
    hl_umt5 *ref = NULL;
    hl_umt5_flat f;
    hl_status st = hl_umt5_load(MODEL "/text_encoder/config.json", MODEL "/text_encoder", &ref,
                                &err);
    CHECK(st == HL_OK, "%s", err.msg);
    if (st != HL_OK) return;
    st = hl_umt5_flat_new(&ref->cfg, &f, &err);
    CHECK(st == HL_OK, "%s", err.msg);
    int64_t n = f.layout.total, D = ref->cfg.d_model;
    float *w = malloc((size_t)n * sizeof *w), *g = calloc((size_t)n, sizeof *g);
    hl_weights *wf = NULL;
    if (st == HL_OK) st = hl_weights_open(MODEL "/text_encoder", &wf, &err);
    if (st == HL_OK) st = hl_params_load(&f.layout, w, wf, &err);
    if (st == HL_OK) st = hl_umt5_flat_bind(&f, w, g, &err);
    CHECK(st == HL_OK, "%s", err.msg);
    CHECK(!strcmp(f.layout.p[0].name, "shared.weight") &&
              !strcmp(f.layout.p[f.layout.n - 1].name, "encoder.final_layer_norm.weight"),
          "layout names are the checkpoint's");
    int64_t ids[6] = {5, 77, 3, 650, 12, 1};
    float a[6 * 32], b[6 * 32];
    if (st == HL_OK && D == 32) {
        CHECK(hl_umt5_forward(&ctx, ref, 1, 6, ids, NULL, NULL, a) == HL_OK, "%s", err.msg);
        CHECK(hl_umt5_forward(&ctx, &f.m, 1, 6, ids, NULL, NULL, b) == HL_OK, "%s", err.msg);
        CHECK(!memcmp(a, b, sizeof a), "flat forward differs from the loaded model's by %g",
              max_abs_diff(a, b, 6 * 32));
    }
    hl_weights_close(wf);
    hl_umt5_flat_free(&f);
    hl_umt5_free(ref);
    free(w), free(g);
}

typedef struct run {
    const hl_train_objective *ob;
    void *obj;
    int64_t total;
} run;

/* The objective's loss of sample 0 at weights w (its corruption drawn from the same generator
 * every call); gradients into g (+=). */
static double loss_at(const run *r, const float *w, float *g) {
    hl_error err = {0};
    hl_rng rng = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed_array(&rng, (const uint32_t[]){3, 0, 0, 0}, 4);
    double loss = NAN;
    hl_status st = r->ob->step(r->obj, &rng, 0, w, g, &loss, &err);
    CHECK(st == HL_OK, "%s", err.msg);
    return loss;
}

/* Central differences (ε = 1e-2, float32 forward) of the whole objective along entries of
 * several tensors: per tensor its largest-gradient entry and 3 drawn ones. */
static void test_objective_gradient(void) {
    hl_error err = {0};
    hl_umt5_config cfg;
    CHECK(load_cfg(&cfg, &err) == HL_OK, "%s", err.msg);
    hl_umt5_flat f;
    CHECK(hl_umt5_flat_new(&cfg, &f, &err) == HL_OK, "%s", err.msg);
    hl_json *s = NULL;
    const char *js = "{\"type\": \"mlm\", \"mask_prob\": 0.3, \"dataset\": {\"clips\": 2}}";
    CHECK(hl_json_parse(js, strlen(js), &s, &err) == HL_OK, "%s", err.msg);
    hl_train_env env = {.config_path = "test.json",
                        .layout = &f.layout,
                        .seed = 3,
                        .data = "procedural",
                        .model = MODEL,
                        .samples_per_step = 1,
                        .umt5 = &cfg};
    run r = {hl_train_objective_find("mlm"), NULL, f.layout.total};
    CHECK(r.ob && !strcmp(r.ob->component, "text_encoder"), "mlm in the table");
    hl_status st = r.ob->create(s, &env, &r.obj, &err);
    CHECK(st == HL_OK, "%s", err.msg);
    if (st != HL_OK) {
        hl_json_free(s);
        hl_umt5_flat_free(&f);
        return;
    }
    CHECK(r.ob->tokens_per_sample(r.obj) > 2, "tokens per sample %g",
          r.ob->tokens_per_sample(r.obj));
    size_t n = (size_t)f.layout.total;
    float *w = malloc(n * sizeof *w), *g = calloc(n, sizeof *g), *junk = calloc(n, sizeof *g);
    hl_rng init = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed(&init, 5);
    hl_umt5_params_init_random(&cfg, &f.layout, w, &init);
    double l0 = st == HL_OK ? loss_at(&r, w, g) : NAN;
    CHECK(isfinite(l0) && l0 > 0, "loss %g", l0);
    static const char *const names[] = {
        "shared.weight",
        "encoder.block.0.layer.0.SelfAttention.q.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "encoder.block.1.layer.1.DenseReluDense.wo.weight",
        "encoder.block.1.layer.0.layer_norm.weight",
        "encoder.final_layer_norm.weight"};
    int checked = 0;
    for (int t = 0; st == HL_OK && t < 6; t++) {
        const hl_param *p = hl_params_find(&f.layout, names[t]);
        CHECK(p != NULL, "%s in the layout", names[t]);
        if (!p) continue;
        int64_t best = 0;
        for (int64_t i = 1; i < p->numel; i++)
            if (fabsf(g[p->offset + i]) > fabsf(g[p->offset + best])) best = i;
        int64_t picks[4] = {best, (best * 7 + 3) % p->numel, (best * 13 + 11) % p->numel,
                            p->numel / 2};
        for (int k = 0; k < 4; k++) {
            float *x = w + p->offset + picks[k], x0 = *x, eps = 1e-2f;
            *x = x0 + eps;
            double lp = loss_at(&r, w, junk);
            *x = x0 - eps;
            double lm = loss_at(&r, w, junk);
            *x = x0;
            double fd = (lp - lm) / (2.0 * eps), an = g[p->offset + picks[k]];
            CHECK(fabs(fd - an) <= 2e-3 + 3e-2 * fabs(an), "%s[%lld]: analytic %.6g, fd %.6g",
                  names[t], (long long)picks[k], an, fd);
            checked++;
        }
        CHECK(fabsf(g[p->offset + best]) > 1e-4f, "%s has a gradient", names[t]);
    }
    CHECK(checked == 24, "%d entries checked", checked);
    if (r.obj) r.ob->destroy(r.obj);
    hl_json_free(s);
    hl_umt5_flat_free(&f);
    free(w), free(g), free(junk);
}

int main(void) {
    test_loss_by_hand();
    test_corrupt();
    test_layout_is_loader();
    test_objective_gradient();
    return test_done("test_train_text");
}

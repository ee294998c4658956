/* src/train/stage2, the data side of the stage-2 (Mid, pyramid) objective against the reference
 * vector grads_transformer_flow_stage2 (oracle README §9.2): the pyramid of x0 and the noise, the
 * start and end points of every level, sigma and timestep of every sample from its stored u,
 * noisy and target, the loss and its gradient; the tiny transformer's forward on each sample
 * (current chunk at the level's size, history at full resolution); then clip -> sample: the draw
 * order, determinism, the sample ratios, the levels' sizes and timestep ranges, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dit/dit.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "sample/rng.h"
#include "sample/schedule.h"
#include "test_util.h"
#include "train/stage1.h"
#include "train/stage2.h"
#include "train/timestep.h"

enum { OC = 16, OF = 3, OH = 8, OW = 8, NS = 4, OL = 3 };

/* Distance in units in the last place between two finite doubles of the same sign. */
static int64_t ulps64(double a, double b) {
    int64_t ia, ib;
    memcpy(&ia, &a, 8), memcpy(&ib, &b, 8);
    if ((ia < 0) != (ib < 0)) return a == b ? 0 : INT64_MAX;
    return ia > ib ? ia - ib : ib - ia;
}

/* A float64 scalar tensor of the vector (hl_st_read_f32 would round it). */
static bool read_f64(const hl_safetensors *st, const char *name, double *out, hl_error *err) {
    const hl_st_tensor *t = hl_st_find(st, name);
    if (!t || t->dtype != HL_F64 || t->nbytes != 8) {
        snprintf(err->msg, sizeof err->msg, "%s: not a float64 scalar", name);
        return false;
    }
    memcpy(out, t->data, 8);
    return true;
}

static int64_t level_numel(int s) {
    return (int64_t)OC * OF * (OH >> (OL - 1 - s)) * (OW >> (OL - 1 - s));
}

/* The per-sample values the reference recorded. */
typedef struct oracle_sample {
    int stage;
    float u;
    int64_t index;
    double sigma, timestep;
    float *start, *end, *hidden, *target, *pred, loss;
} oracle_sample;

typedef struct oracle {
    hl_safetensors *st;
    float *x0, *noise, *lat[OL], *noi[OL];
    double start_sigma[OL], end_sigma[OL]; /* from the metadata */
    oracle_sample s[NS];
    float loss;
} oracle;

static void oracle_free(oracle *o) {
    free(o->x0), free(o->noise);
    for (int i = 0; i < OL; i++) free(o->lat[i]), free(o->noi[i]);
    for (int k = 0; k < NS; k++) {
        oracle_sample *s = &o->s[k];
        free(s->start), free(s->end), free(s->hidden), free(s->target), free(s->pred);
    }
    hl_st_close(o->st);
    memset(o, 0, sizeof *o);
}

static bool oracle_load(oracle *o, hl_error *err) {
    memset(o, 0, sizeof *o);
    if (hl_st_open(vector_path("grads_transformer_flow_stage2.safetensors"), &o->st, err) != HL_OK)
        return false;
    const int64_t n = (int64_t)OC * OF * OH * OW;
    char name[64];
    float *loss = NULL;
    bool ok = hl_st_read_f32(o->st, "x0", n, &o->x0, err) == HL_OK &&
              hl_st_read_f32(o->st, "noise", n, &o->noise, err) == HL_OK &&
              hl_st_read_f32(o->st, "loss", 1, &loss, err) == HL_OK;
    if (ok) o->loss = loss[0];
    free(loss);
    for (int i = 0; ok && i < OL; i++) {
        snprintf(name, sizeof name, "pyramid.latents%d", i);
        ok = hl_st_read_f32(o->st, name, level_numel(i), &o->lat[i], err) == HL_OK;
        snprintf(name, sizeof name, "pyramid.noise%d", i);
        ok = ok && hl_st_read_f32(o->st, name, level_numel(i), &o->noi[i], err) == HL_OK;
    }
    for (int k = 0; ok && k < NS; k++) {
        oracle_sample *s = &o->s[k];
        int64_t *stage = NULL, *index = NULL;
        float *u = NULL, *l = NULL;
        snprintf(name, sizeof name, "sample%d.stage", k);
        ok = hl_st_read_i64(o->st, name, 1, &stage, err) == HL_OK;
        snprintf(name, sizeof name, "sample%d.index", k);
        ok = ok && hl_st_read_i64(o->st, name, 1, &index, err) == HL_OK;
        snprintf(name, sizeof name, "sample%d.u", k);
        ok = ok && hl_st_read_f32(o->st, name, 1, &u, err) == HL_OK;
        snprintf(name, sizeof name, "sample%d.loss", k);
        ok = ok && hl_st_read_f32(o->st, name, 1, &l, err) == HL_OK;
        snprintf(name, sizeof name, "sample%d.sigma", k);
        ok = ok && read_f64(o->st, name, &s->sigma, err);
        snprintf(name, sizeof name, "sample%d.timestep", k);
        ok = ok && read_f64(o->st, name, &s->timestep, err);
        if (ok) {
            s->stage = (int)stage[0], s->index = index[0], s->u = u[0], s->loss = l[0];
            ok = s->stage >= 0 && s->stage < OL;
            if (!ok) snprintf(err->msg, sizeof err->msg, "sample%d: stage %d", k, s->stage);
        }
        free(stage), free(index), free(u), free(l);
        const char *parts[5] = {"start_point", "end_point", "hidden_states", "target",
                                "model_pred"};
        float **dst[5] = {&s->start, &s->end, &s->hidden, &s->target, &s->pred};
        for (int i = 0; ok && i < 5; i++) {
            snprintf(name, sizeof name, "sample%d.%s", k, parts[i]);
            ok = hl_st_read_f32(o->st, name, level_numel(s->stage), dst[i], err) == HL_OK;
        }
    }
    /* metadata "samples": [{"stage", "start_sigma", "end_sigma", ...}, ...] */
    const char *meta = ok ? hl_st_meta(o->st, "samples") : NULL;
    hl_json *j = NULL;
    if (ok && (!meta || hl_json_parse(meta, strlen(meta), &j, err) != HL_OK ||
               j->type != HL_JSON_ARRAY || j->n != NS)) {
        if (!meta || j) snprintf(err->msg, sizeof err->msg, "metadata 'samples' missing or bad");
        ok = false;
    }
    for (size_t k = 0; ok && k < NS; k++) {
        int64_t stage;
        double ss, es;
        ok = hl_json_get_int(&j->items[k], "stage", &stage) == 0 && stage >= 0 && stage < OL &&
             hl_json_get_double(&j->items[k], "start_sigma", &ss) == 0 &&
             hl_json_get_double(&j->items[k], "end_sigma", &es) == 0;
        if (ok) o->start_sigma[stage] = ss, o->end_sigma[stage] = es;
        else snprintf(err->msg, sizeof err->msg, "metadata 'samples'[%zu] incomplete", k);
    }
    hl_json_free(j);
    if (!ok) oracle_free(o);
    return ok;
}

/* ---- the pieces against the reference -------------------------------------------------------- */

static void test_oracle_pieces(void) {
    hl_error err = {0};
    oracle o;
    if (!oracle_load(&o, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    /* the pyramid */
    hl_stage2_pyramid p;
    CHECK(hl_stage2_pyramid_build(o.x0, o.noise, OC, OF, OH, OW, OL, &p, &err) == HL_OK, "%s",
          err.msg);
    double e_lat = 0, e_noi = 0;
    for (int s = 0; s < OL; s++) {
        CHECK(p.H[s] == OH >> (OL - 1 - s) && p.W[s] == OW >> (OL - 1 - s), "level %d is %dx%d", s,
              p.H[s], p.W[s]);
        e_lat = fmax(e_lat, max_abs_diff(p.latents[s], o.lat[s], level_numel(s)));
        e_noi = fmax(e_noi, max_abs_diff(p.noise[s], o.noi[s], level_numel(s)));
    }
    CHECK(e_lat <= 1e-6 && e_noi <= 1e-6, "pyramid: latents off by %.3g, noise by %.3g", e_lat,
          e_noi);

    /* the scheduler's start/end sigmas are the ones the reference used */
    hl_sched_config sc;
    hl_sched sched;
    hl_sched_config_default(&sc, HL_SCHED_UNIPC);
    CHECK(hl_sched_init(&sched, &sc, &err) == HL_OK, "%s", err.msg);
    int64_t u_ss = 0, u_es = 0;
    for (int s = 0; s < OL; s++) {
        if (s > 0)
            u_ss = ulps64(sched.start_sigma[s], o.start_sigma[s]) > u_ss
                       ? ulps64(sched.start_sigma[s], o.start_sigma[s])
                       : u_ss;
        if (s < OL - 1)
            u_es = ulps64(sched.end_sigma[s], o.end_sigma[s]) > u_es
                       ? ulps64(sched.end_sigma[s], o.end_sigma[s])
                       : u_es;
    }
    CHECK(u_ss <= 1 && u_es <= 1, "start sigmas %lld ulp, end sigmas %lld ulp off", (long long)u_ss,
          (long long)u_es);

    /* start and end points */
    CHECK(hl_stage2_pyramid_paths(&p, sched.start_sigma, sched.end_sigma, &err) == HL_OK, "%s",
          err.msg);
    double e_start = 0, e_end = 0, e_noisy = 0, e_target = 0;
    int64_t u_sigma = 0, u_tstep = 0;
    bool index_ok = true;
    hl_flow_table table;
    CHECK(hl_flow_table_init(&table, 1000, 1.0f, &err) == HL_OK, "%s", err.msg);
    const float *pred[NS], *target[NS];
    float *dpred[NS];
    int64_t numel[NS];
    for (int k = 0; k < NS; k++) {
        oracle_sample *os = &o.s[k];
        int s = os->stage;
        int64_t n = level_numel(s);
        e_start = fmax(e_start, max_abs_diff(p.start[s], os->start, n));
        e_end = fmax(e_end, max_abs_diff(p.end[s], os->end, n));
        /* sigma and timestep from the stored u, through our index and the scheduler's tables */
        hl_tdraw d;
        hl_stage2_time t;
        hl_tsample_from_u(&table, NAN, os->u, &d);
        index_ok &= d.index == os->index;
        CHECK(hl_stage2_time_at(&sched, s, &d, &t, &err) == HL_OK, "%s", err.msg);
        int64_t us = ulps64(t.sigma, os->sigma), ut = ulps64(t.timestep, os->timestep);
        u_sigma = us > u_sigma ? us : u_sigma;
        u_tstep = ut > u_tstep ? ut : u_tstep;
        CHECK(t.level == s && t.index == os->index, "sample %d: level %d index %lld", k, t.level,
              (long long)t.index);
        /* noisy and target */
        float *noisy = malloc((size_t)n * sizeof *noisy), *tg = malloc((size_t)n * sizeof *tg);
        hl_stage2_noisy(p.start[s], p.end[s], t.sigma, n, noisy, tg);
        e_noisy = fmax(e_noisy, max_abs_diff(noisy, os->hidden, n));
        e_target = fmax(e_target, max_abs_diff(tg, os->target, n));
        free(noisy), free(tg);
        pred[k] = os->pred, target[k] = os->target, numel[k] = n;
        dpred[k] = malloc((size_t)n * sizeof(float));
    }
    CHECK(index_ok, "an index from the stored u differs from the reference's");
    CHECK(e_start <= 1e-6 && e_end <= 1e-6, "start points off by %.3g, end points by %.3g", e_start,
          e_end);
    CHECK(u_sigma <= 1 && u_tstep <= 1, "sigma %lld ulp, timestep %lld ulp off", (long long)u_sigma,
          (long long)u_tstep);
    CHECK(e_noisy <= 1e-6 && e_target <= 1e-6, "noisy off by %.3g, target by %.3g", e_noisy,
          e_target);

    /* the loss, per sample and over the four; its gradient */
    double loss_k[NS], worst_k = 0;
    double loss = hl_stage2_loss(NS, numel, pred, target, dpred, loss_k);
    for (int k = 0; k < NS; k++)
        worst_k = fmax(worst_k, fabs(loss_k[k] - o.s[k].loss) / fabs((double)o.s[k].loss));
    double rel = fabs(loss - o.loss) / fabs((double)o.loss);
    CHECK(worst_k <= 1e-6 && rel <= 1e-6, "loss %.9g vs %.9g (rel %.3g), per sample rel %.3g", loss,
          (double)o.loss, rel, worst_k);
    double e_grad = 0;
    for (int k = 0; k < NS; k++)
        for (int64_t i = 0; i < numel[k]; i++) {
            double want = 2.0 * ((double)pred[k][i] - target[k][i]) / (NS * (double)numel[k]);
            e_grad = fmax(e_grad, fabs(dpred[k][i] - want) / fmax(fabs(want), 1e-12));
        }
    CHECK(e_grad < 1e-6, "dL/dpred off by %.3g (relative)", e_grad);
    /* against central differences of the double loss, a few elements of each sample */
    double worst_fd = 0;
    for (int k = 0; k < NS; k++)
        for (int64_t i = 0; i < numel[k]; i += 37) {
            float *x = (float *)pred[k], keep = x[i], h = 1e-2f;
            x[i] = keep + h;
            double lp = hl_stage2_loss(NS, numel, pred, target, NULL, NULL);
            float xp = x[i];
            x[i] = keep - h;
            double lm = hl_stage2_loss(NS, numel, pred, target, NULL, NULL);
            float xm = x[i];
            x[i] = keep;
            double fd = (lp - lm) / ((double)xp - (double)xm);
            worst_fd = fmax(worst_fd, fabs(fd - dpred[k][i]) / (fabs(fd) + 1e-9));
        }
    CHECK(worst_fd < 1e-4, "dL/dpred vs finite differences: rel %.3g", worst_fd);
    printf("oracle: pyramid latents %.3g noise %.3g, start %.3g end %.3g, sigma %lld ulp timestep "
           "%lld ulp, noisy %.3g target %.3g, loss %.9g vs %.9g (rel %.2e), dpred rel %.2e\n",
           e_lat, e_noi, e_start, e_end, (long long)u_sigma, (long long)u_tstep, e_noisy, e_target,
           loss, (double)o.loss, rel, e_grad);
    for (int k = 0; k < NS; k++) free(dpred[k]);
    hl_sched_free(&sched);
    hl_stage2_pyramid_free(&p);
    oracle_free(&o);
}

/* The tiny transformer on each sample: the current chunk at the level's size with the history at
 * full resolution (hl_stage2_dit_input), against the recorded model_pred and loss. */
static void test_oracle_forward(void) {
    hl_error err = {0};
    oracle o;
    hl_dit *m = NULL;
    char cfg[4096], wts[4096]; /* vector_path returns a static buffer */
    snprintf(cfg, sizeof cfg, "%s", vector_path("transformer_config.json"));
    snprintf(wts, sizeof wts, "%s", vector_path("transformer_weights_f32.safetensors"));
    if (!oracle_load(&o, &err) || hl_dit_load(cfg, wts, &m, &err) != HL_OK) {
        CHECK(0, "%s", err.msg);
        oracle_free(&o);
        return;
    }
    const int64_t P = (int64_t)OC * OH * OW;
    float *text = NULL, *ls = NULL, *lm = NULL, *ll = NULL;
    int64_t *is = NULL, *im = NULL, *il = NULL, *ih = NULL;
    bool ok = hl_st_read_f32(o.st, "encoder_hidden_states", 16 * 32, &text, &err) == HL_OK &&
              hl_st_read_f32(o.st, "latents_history_short", 2 * P, &ls, &err) == HL_OK &&
              hl_st_read_f32(o.st, "latents_history_mid", 2 * P, &lm, &err) == HL_OK &&
              hl_st_read_f32(o.st, "latents_history_long", 16 * P, &ll, &err) == HL_OK &&
              hl_st_read_i64(o.st, "indices_latents_history_short", 2, &is, &err) == HL_OK &&
              hl_st_read_i64(o.st, "indices_latents_history_mid", 2, &im, &err) == HL_OK &&
              hl_st_read_i64(o.st, "indices_latents_history_long", 16, &il, &err) == HL_OK &&
              hl_st_read_i64(o.st, "indices_hidden_states", 3, &ih, &err) == HL_OK;
    CHECK(ok, "%s", err.msg);
    hl_stage2_sample s;
    memset(&s, 0, sizeof s);
    hl_sched_config sc;
    hl_sched sched;
    hl_sched_config_default(&sc, HL_SCHED_UNIPC);
    ok = ok && hl_sched_init(&sched, &sc, &err) == HL_OK;
    if (ok) { /* a sample assembled from the vector's x0, noise, history and draws */
        s.C = OC, s.F = OF, s.H = OH, s.W = OW, s.K = NS;
        s.base.C = OC, s.base.F = OF, s.base.H = OH, s.base.W = OW;
        s.base.n_long = 16, s.base.n_mid = 2;
        s.base.hist.lat_short = ls, s.base.hist.lat_mid = lm, s.base.hist.lat_long = ll;
        s.base.hist.idx_short = is, s.base.hist.idx_mid = im, s.base.hist.idx_long = il;
        s.base.hist.idx_cur = ih;
        CHECK(hl_stage2_pyramid_build(o.x0, o.noise, OC, OF, OH, OW, OL, &s.pyr, &err) == HL_OK &&
                  hl_stage2_pyramid_paths(&s.pyr, sched.start_sigma, sched.end_sigma, &err) ==
                      HL_OK,
              "%s", err.msg);
        hl_flow_table table;
        hl_flow_table_init(&table, 1000, 1.0f, &err);
        for (int k = 0; k < NS; k++) {
            hl_stage2_item *it = &s.items[k];
            it->level = o.s[k].stage, it->H = s.pyr.H[it->level], it->W = s.pyr.W[it->level];
            int64_t n = level_numel(it->level);
            it->noisy = malloc((size_t)n * sizeof(float));
            it->target = malloc((size_t)n * sizeof(float));
            hl_tdraw d;
            hl_tsample_from_u(&table, NAN, o.s[k].u, &d);
            hl_stage2_time_at(&sched, it->level, &d, &it->t, &err);
            hl_stage2_noisy(s.pyr.start[it->level], s.pyr.end[it->level], it->t.sigma, n, it->noisy,
                            it->target);
        }
        hl_ctx ctx = test_ctx(HELIOS_BACKEND_REF, &err);
        float *pred[NS];
        double worst = 0, scale = 0;
        for (int k = 0; k < NS; k++) {
            int64_t n = level_numel(s.items[k].level);
            pred[k] = malloc((size_t)n * sizeof(float));
            helios_dit_input in;
            hl_stage2_dit_input(&s, k, text, 16, &in);
            CHECK(in.height == s.items[k].H && in.hist_height == OH && in.frames == OF &&
                      *in.timestep == s.items[k].t.timestep,
                  "sample %d: dit input %dx%d, history %dx%d", k, in.height, in.width,
                  in.hist_height, in.hist_width);
            CHECK(hl_dit_forward(&ctx, m, &in, NULL, pred[k]) == HL_OK, "%s", err.msg);
            worst = fmax(worst, max_abs_diff(pred[k], o.s[k].pred, n));
            scale = fmax(scale, max_abs(o.s[k].pred, n));
        }
        double l = hl_stage2_sample_loss(&s, (const float *const *)pred, NULL, NULL);
        CHECK(worst < 1e-4 * fmax(1.0, scale), "model_pred off by %.3g (scale %.3g)", worst, scale);
        CHECK(fabs(l - o.loss) < 1e-5 * o.loss, "loss %.9g, reference %.9g", l, (double)o.loss);
        printf("oracle forward: model_pred max abs error %.3g (max %.3g), loss %.9g vs %.9g\n",
               worst, scale, l, (double)o.loss);
        for (int k = 0; k < NS; k++) free(pred[k]);
        hl_sched_free(&sched);
    }
    /* the history belongs to the vector, not to s */
    memset(&s.base, 0, sizeof s.base);
    hl_stage2_sample_free(&s);
    free(text), free(ls), free(lm), free(ll), free(is), free(im), free(il), free(ih);
    hl_dit_free(m);
    oracle_free(&o);
}

/* ---- clip -> sample -------------------------------------------------------------------------- */

enum { SC = 2, SH = 8, SW = 4, SP = SH * SW, SF = 3 };

static float *make_clip(int n_chunks, uint64_t seed) {
    size_t n = (size_t)SC * (size_t)(n_chunks * SF) * SP;
    float *x = malloc(n * sizeof *x);
    fill_random(x, (int64_t)n, seed);
    return x;
}

static void small_config(hl_stage2_config *c) {
    hl_stage2_config_default(c);
    c->base.chunk_frames = SF;
}

static bool samples_equal(const hl_stage2_sample *a, const hl_stage2_sample *b) {
    size_t p = (size_t)SC * SP * sizeof(float);
    if (a->K != b->K || a->base.chunk != b->base.chunk || a->base.task != b->base.task ||
        a->base.dropped != b->base.dropped || a->base.drop_text != b->base.drop_text ||
        memcmp(&a->base.corrupt, &b->base.corrupt, sizeof a->base.corrupt) ||
        memcmp(a->noise, b->noise, p * SF) ||
        memcmp(a->base.hist.lat_long, b->base.hist.lat_long, p * 16) ||
        memcmp(a->base.hist.lat_mid, b->base.hist.lat_mid, p * 2) ||
        memcmp(a->base.hist.lat_short, b->base.hist.lat_short, p * 2))
        return false;
    for (int k = 0; k < a->K; k++) {
        const hl_stage2_item *x = &a->items[k], *y = &b->items[k];
        size_t n = (size_t)SC * SF * x->H * x->W * sizeof(float);
        if (x->level != y->level || memcmp(&x->t, &y->t, sizeof x->t) ||
            memcmp(x->noisy, y->noisy, n) || memcmp(x->target, y->target, n))
            return false;
    }
    return true;
}

/* The draws happen in the header's order: replaying them by hand from the same seed gives the
 * same history, noise, timesteps and corruption. */
static void test_draw_order(void) {
    hl_error err = {0};
    hl_stage2_config cfg;
    small_config(&cfg);
    cfg.base.corrupt.p_clean_history = 0.0f; /* corruption always on, so it draws */
    float *clip = make_clip(3, 7);
    hl_rng g = {0}, h = {0};
    hl_rng_seed(&g, 42), hl_rng_seed(&h, 42);
    hl_stage2_sample s;
    hl_status st = hl_stage2_sample_make(&cfg, clip, SC, 3 * SF, SH, SW, &g, &s, &err);
    CHECK(st == HL_OK, "%s", err.msg);
    if (st != HL_OK) {
        free(clip);
        return;
    }
    hl_stage1_sample b;
    CHECK(hl_stage1_history_make(&cfg.base, clip, SC, 3 * SF, SH, SW, &h, &b, &err) == HL_OK, "%s",
          err.msg);
    CHECK(b.chunk == s.base.chunk && b.task == s.base.task && b.drop_text == s.base.drop_text,
          "history draws differ");
    CHECK(!memcmp(b.x0, s.base.x0, (size_t)SC * SF * SP * sizeof(float)), "x0 differs");
    float *noise = malloc((size_t)SC * SF * SP * sizeof *noise);
    hl_rng_randn_f32(&h, noise, (int64_t)SC * SF * SP);
    CHECK(!memcmp(noise, s.noise, (size_t)SC * SF * SP * sizeof *noise),
          "the noise is not the next randn");
    int levels[NS] = {0, 1, 1, 2};
    CHECK(s.K == NS, "K = %d", s.K);
    for (int k = 0; k < s.K && k < NS; k++) {
        float u;
        hl_rng_rand_f32(&h, &u, 1);
        CHECK(s.items[k].level == levels[k] && s.items[k].t.u == u && isnan(s.items[k].t.u_logit),
              "sample %d: level %d u %.9g, expected level %d u %.9g", k, s.items[k].level,
              (double)s.items[k].t.u, levels[k], (double)u);
    }
    hl_corrupt_report rep;
    CHECK(hl_corrupt_history(&cfg.base.corrupt, &h, &b.hist, SC, SH, SW, b.n_long, b.n_mid, &rep,
                             &err) == HL_OK,
          "%s", err.msg);
    size_t p = (size_t)SC * SP * sizeof(float);
    CHECK(!memcmp(&rep, &s.base.corrupt, sizeof rep) &&
              !memcmp(b.hist.lat_long, s.base.hist.lat_long, p * 16) &&
              !memcmp(b.hist.lat_mid, s.base.hist.lat_mid, p * 2) &&
              !memcmp(b.hist.lat_short, s.base.hist.lat_short, p * 2),
          "the corruption is not the last draw");
    CHECK(!memcmp(&g, &h, sizeof g), "the generators end in different states");
    /* the pyramid and the items follow from x0 and the noise */
    hl_stage2_pyramid pyr;
    hl_sched_config sc;
    hl_sched sched;
    hl_sched_config_default(&sc, HL_SCHED_UNIPC);
    CHECK(hl_sched_init(&sched, &sc, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_stage2_pyramid_build(b.x0, noise, SC, SF, SH, SW, 3, &pyr, &err) == HL_OK &&
              hl_stage2_pyramid_paths(&pyr, sched.start_sigma, sched.end_sigma, &err) == HL_OK,
          "%s", err.msg);
    for (int k = 0; k < s.K; k++) {
        const hl_stage2_item *it = &s.items[k];
        int64_t n = (int64_t)SC * SF * it->H * it->W;
        CHECK(it->H == SH >> (2 - it->level) && it->W == SW >> (2 - it->level),
              "sample %d is %dx%d at level %d", k, it->H, it->W, it->level);
        float *noisy = malloc((size_t)n * sizeof *noisy), *tg = malloc((size_t)n * sizeof *tg);
        hl_stage2_noisy(pyr.start[it->level], pyr.end[it->level], it->t.sigma, n, noisy, tg);
        CHECK(!memcmp(noisy, it->noisy, (size_t)n * sizeof *noisy) &&
                  !memcmp(tg, it->target, (size_t)n * sizeof *tg),
              "sample %d: noisy/target differ from the pieces", k);
        free(noisy), free(tg);
    }
    /* the transformer input: history at full size, the chunk at the level's */
    helios_dit_input in;
    hl_stage2_dit_input(&s, 0, NULL, 0, &in);
    CHECK(in.height == SH / 4 && in.width == SW / 4 && in.hist_height == SH &&
              in.hist_width == SW && in.hidden_states == s.items[0].noisy &&
              in.indices_hidden_states == s.base.hist.idx_cur && in.long_frames == 16,
          "dit input of sample 0");
    hl_sched_free(&sched);
    hl_stage2_pyramid_free(&pyr);
    hl_stage1_sample_free(&b);
    hl_stage2_sample_free(&s);
    free(noise), free(clip);
}

static void test_determinism(void) {
    hl_error err = {0};
    hl_stage2_config cfg;
    small_config(&cfg); /* everything on: task mix, corruption */
    float *clip = make_clip(4, 3);
    int same = 0, differ = 0;
    for (int rep = 0; rep < 10; rep++) {
        hl_rng g1 = {0}, g2 = {0}, other = {0};
        hl_rng_seed(&g1, 1000 + rep), hl_rng_seed(&g2, 1000 + rep), hl_rng_seed(&other, 7 + rep);
        hl_stage2_sample a, b, c;
        CHECK(hl_stage2_sample_make(&cfg, clip, SC, 4 * SF, SH, SW, &g1, &a, &err) == HL_OK &&
                  hl_stage2_sample_make(&cfg, clip, SC, 4 * SF, SH, SW, &g2, &b, &err) == HL_OK &&
                  hl_stage2_sample_make(&cfg, clip, SC, 4 * SF, SH, SW, &other, &c, &err) == HL_OK,
              "%s", err.msg);
        same += samples_equal(&a, &b);
        differ += !samples_equal(&a, &c);
        hl_stage2_sample_free(&a), hl_stage2_sample_free(&b), hl_stage2_sample_free(&c);
    }
    CHECK(same == 10, "same seed gave different samples (%d of 10 equal)", same);
    CHECK(differ == 10, "other seeds gave the same sample (%d of 10 differ)", differ);
    free(clip);
}

/* The sample ratios decide K and the levels; every timestep lies in its level's range and the
 * uniform draws cover it. */
static void test_ratios(void) {
    hl_error err = {0};
    hl_stage2_config cfg;
    small_config(&cfg);
    cfg.base.corrupt_history = false;
    float *clip = make_clip(2, 5);
    hl_sched sched;
    CHECK(hl_sched_init(&sched, &cfg.sched, &err) == HL_OK, "%s", err.msg);
    const int ratios[4][3] = {{1, 2, 1}, {1, 1, 1}, {0, 3, 0}, {2, 0, 5}};
    hl_rng g = {0};
    hl_rng_seed(&g, 11);
    for (int r = 0; r < 4; r++) {
        memcpy(cfg.ratios, ratios[r], sizeof ratios[r]);
        int count[3] = {0, 0, 0}, K = ratios[r][0] + ratios[r][1] + ratios[r][2];
        hl_stage2_sample s;
        CHECK(hl_stage2_sample_make(&cfg, clip, SC, 2 * SF, SH, SW, &g, &s, &err) == HL_OK, "%s",
              err.msg);
        CHECK(s.K == K, "ratios %d: K %d, expected %d", r, s.K, K);
        for (int k = 0; k < s.K; k++) {
            const hl_stage2_item *it = &s.items[k];
            count[it->level]++;
            CHECK(k == 0 || it->level >= s.items[k - 1].level, "levels out of order");
        }
        CHECK(count[0] == ratios[r][0] && count[1] == ratios[r][1] && count[2] == ratios[r][2],
              "ratios %d: counts %d %d %d", r, count[0], count[1], count[2]);
        hl_stage2_sample_free(&s);
    }
    /* the timesteps of each level stay in its third of the schedule and reach both ends */
    cfg.ratios[0] = cfg.ratios[1] = cfg.ratios[2] = 20;
    double lo[3] = {1e9, 1e9, 1e9}, hi[3] = {-1, -1, -1};
    bool in_range = true;
    for (int rep = 0; rep < 25; rep++) {
        hl_stage2_sample s;
        CHECK(hl_stage2_sample_make(&cfg, clip, SC, 2 * SF, SH, SW, &g, &s, &err) == HL_OK, "%s",
              err.msg);
        for (int k = 0; k < s.K; k++) {
            const hl_stage2_time *t = &s.items[k].t;
            const double *tps = sched.timesteps_per_stage + (size_t)t->level * 1000;
            const double *sps = sched.sigmas_per_stage + (size_t)t->level * 1000;
            in_range &= t->index >= 0 && t->index < 1000 && t->timestep <= tps[0] &&
                        t->timestep >= tps[999] && t->sigma == sps[t->index] &&
                        t->timestep == tps[t->index];
            lo[t->level] = fmin(lo[t->level], (double)t->index);
            hi[t->level] = fmax(hi[t->level], (double)t->index);
        }
        hl_stage2_sample_free(&s);
    }
    CHECK(in_range, "a timestep outside its level's table");
    for (int l = 0; l < 3; l++)
        CHECK(lo[l] < 50 && hi[l] > 950, "level %d: indices %g .. %g over 500 uniform draws", l,
              lo[l], hi[l]);
    hl_sched_free(&sched);
    free(clip);
}

/* Sample k of two clips as one batch-2 forward of the tiny transformer: the same predictions as
 * the two forwards alone, and the batches' loss is the mean of the clips' losses. */
static void test_batch(void) {
    hl_error err = {0};
    hl_dit *m = NULL;
    char cfgp[4096], wts[4096];
    snprintf(cfgp, sizeof cfgp, "%s", vector_path("transformer_config.json"));
    snprintf(wts, sizeof wts, "%s", vector_path("transformer_weights_f32.safetensors"));
    if (hl_dit_load(cfgp, wts, &m, &err) != HL_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    hl_stage2_config cfg;
    hl_stage2_config_default(&cfg);
    cfg.base.chunk_frames = OF;
    size_t clip_n = (size_t)OC * 2 * OF * OH * OW;
    float *clip = malloc(clip_n * sizeof *clip), *text = malloc(2 * 16 * 32 * sizeof *text);
    fill_random(clip, (int64_t)clip_n, 21);
    fill_random(text, 2 * 16 * 32, 22);
    hl_rng g1 = {0}, g2 = {0};
    hl_rng_seed(&g1, 5), hl_rng_seed(&g2, 6);
    hl_stage2_sample a, b;
    CHECK(hl_stage2_sample_make(&cfg, clip, OC, 2 * OF, OH, OW, &g1, &a, &err) == HL_OK &&
              hl_stage2_sample_make(&cfg, clip, OC, 2 * OF, OH, OW, &g2, &b, &err) == HL_OK,
          "%s", err.msg);
    const hl_stage2_sample *pair[2] = {&a, &b};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_REF, &err);
    float *pa[NS], *pb[NS], *pbatch[NS], *tbatch[NS];
    int64_t numel[NS];
    double worst = 0;
    for (int k = 0; k < a.K && k < NS; k++) {
        hl_stage2_batch bt;
        CHECK(hl_stage2_batch_make(pair, 2, k, &bt, &err) == HL_OK, "%s", err.msg);
        int64_t n = (int64_t)OC * OF * bt.h * bt.w;
        CHECK(bt.level == a.items[k].level && bt.h == a.items[k].H && bt.H == OH &&
                  bt.timesteps[0] == a.items[k].t.timestep &&
                  bt.timesteps[1] == b.items[k].t.timestep &&
                  !memcmp(bt.noisy + n, b.items[k].noisy, (size_t)n * sizeof(float)),
              "batch %d layout", k);
        pa[k] = malloc((size_t)n * sizeof(float)), pb[k] = malloc((size_t)n * sizeof(float));
        pbatch[k] = malloc(2 * (size_t)n * sizeof(float));
        helios_dit_input in;
        hl_stage2_dit_input(&a, k, text, 16, &in);
        CHECK(hl_dit_forward(&ctx, m, &in, NULL, pa[k]) == HL_OK, "%s", err.msg);
        hl_stage2_dit_input(&b, k, text + 16 * 32, 16, &in);
        CHECK(hl_dit_forward(&ctx, m, &in, NULL, pb[k]) == HL_OK, "%s", err.msg);
        hl_stage2_batch_dit_input(&bt, text, 16, &in);
        CHECK(hl_dit_forward(&ctx, m, &in, NULL, pbatch[k]) == HL_OK, "%s", err.msg);
        worst = fmax(worst, max_abs_diff(pbatch[k], pa[k], n));
        worst = fmax(worst, max_abs_diff(pbatch[k] + n, pb[k], n));
        tbatch[k] = malloc(2 * (size_t)n * sizeof(float));
        memcpy(tbatch[k], bt.target, 2 * (size_t)n * sizeof(float));
        numel[k] = 2 * n;
        hl_stage2_batch_free(&bt);
    }
    CHECK(worst <= 1e-6, "batch-2 forward differs from the single ones by %.3g", worst);
    double la = hl_stage2_sample_loss(&a, (const float *const *)pa, NULL, NULL);
    double lb = hl_stage2_sample_loss(&b, (const float *const *)pb, NULL, NULL);
    double lbatch = hl_stage2_loss(a.K, numel, (const float *const *)pbatch,
                                   (const float *const *)tbatch, NULL, NULL);
    CHECK(fabs(lbatch - 0.5 * (la + lb)) <= 1e-6 * lbatch, "batch loss %.9g, clips %.9g %.9g",
          lbatch, la, lb);
    printf("batch: batch-2 forward vs single max abs %.3g, loss %.9g vs %.9g\n", worst, lbatch,
           0.5 * (la + lb));
    for (int k = 0; k < a.K && k < NS; k++)
        free(pa[k]), free(pb[k]), free(pbatch[k]), free(tbatch[k]);
    /* clips from different configs do not stack */
    hl_stage2_sample c;
    cfg.ratios[1] = 1;
    CHECK(hl_stage2_sample_make(&cfg, clip, OC, 2 * OF, OH, OW, &g1, &c, &err) == HL_OK, "%s",
          err.msg);
    const hl_stage2_sample *mixed[2] = {&a, &c};
    hl_stage2_batch bt;
    CHECK(hl_stage2_batch_make(mixed, 2, 2, &bt, &err) == HELIOS_ERR_INVALID_ARG,
          "level 1 and level 2 stacked");
    CHECK(hl_stage2_batch_make(mixed, 2, 3, &bt, &err) == HELIOS_ERR_INVALID_ARG,
          "a missing sample stacked");
    hl_stage2_batch_free(&bt);
    hl_stage2_sample_free(&a), hl_stage2_sample_free(&b), hl_stage2_sample_free(&c);
    free(clip), free(text);
    hl_dit_free(m);
}

/* Two levels (a model folder with stages 2, stage_range [0, 0.5, 1]): level 0 at half the size,
 * its path from the noise to the renoised half-size latents, level 1 from the upsampled level 0
 * to x0 (stage2.h), recomputed here from the sample's noise and x0. */
static void test_two_levels(void) {
    hl_error err = {0};
    hl_stage2_config cfg;
    small_config(&cfg);
    cfg.sched.stages = 2;
    cfg.sched.n_stage_range = 3;
    cfg.sched.stage_range[1] = 0.5, cfg.sched.stage_range[2] = 1.0;
    cfg.ratios[0] = 2, cfg.ratios[1] = 2, cfg.ratios[2] = 0;
    CHECK(hl_stage2_config_check(&cfg, &err) == HL_OK, "%s", err.msg);
    hl_sched sched;
    CHECK(hl_sched_init(&sched, &cfg.sched, &err) == HL_OK, "%s", err.msg);
    float *clip = make_clip(2, 9);
    hl_rng g = {0};
    hl_rng_seed(&g, 5);
    hl_stage2_sample s;
    CHECK(hl_stage2_sample_make(&cfg, clip, SC, 2 * SF, SH, SW, &g, &s, &err) == HL_OK, "%s",
          err.msg);
    CHECK(s.K == 4 && s.pyr.levels == 2, "K %d, %d levels", s.K, s.pyr.levels);
    const int h = SH / 2, w = SW / 2, P = SC * SF; /* planes */
    float es0 = (float)sched.end_sigma[0], ss1 = (float)sched.start_sigma[1];
    double worst = 0;
    for (int k = 0; s.K == 4 && k < 4; k++) {
        const hl_stage2_item *it = &s.items[k];
        int lv = k / 2;
        CHECK(it->level == lv && it->H == (lv ? SH : h) && it->W == (lv ? SW : w),
              "item %d: level %d, %dx%d", k, it->level, it->H, it->W);
        for (int p = 0; p < P; p++)
            for (int y = 0; y < it->H; y++)
                for (int x = 0; x < it->W; x++) {
                    /* the half-size latent and noise around the pixel (y, x) of this level */
                    int yy = lv ? y / 2 : y, xx = lv ? x / 2 : x;
                    const float *x0 = s.base.x0 + (size_t)p * SP, *nz = s.noise + (size_t)p * SP;
                    double l0 = 0, n0 = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            l0 += 0.25 * x0[(2 * yy + dy) * SW + 2 * xx + dx];
                            n0 += 0.5 * nz[(2 * yy + dy) * SW + 2 * xx + dx];
                        }
                    double start, end;
                    if (lv == 0) start = n0, end = es0 * n0 + (1 - es0) * l0;
                    else start = ss1 * nz[y * SW + x] + (1 - ss1) * l0, end = x0[y * SW + x];
                    double got = it->target[((size_t)p * it->H + y) * it->W + x];
                    worst = fmax(worst, fabs(got - (start - end)));
                }
    }
    CHECK(worst < 1e-5, "two levels: target off by %g", worst);
    hl_stage2_sample_free(&s);
    hl_sched_free(&sched);
    free(clip);
}

static void test_bad_input(void) {
    hl_error err = {0};
    hl_stage2_config cfg;
    small_config(&cfg);
    float *clip = make_clip(1, 1);
    hl_rng g = {0};
    hl_rng_seed(&g, 1);
    hl_stage2_sample s;
    /* 6 rows do not halve twice */
    CHECK(hl_stage2_sample_make(&cfg, clip, SC, SF, 6, SW, &g, &s, &err) == HELIOS_ERR_SHAPE,
          "6 rows accepted");
    CHECK(s.K == 0 && s.noise == NULL, "a failed sample is not empty");
    hl_stage2_sample_free(&s);
    cfg.ratios[0] = cfg.ratios[1] = cfg.ratios[2] = 0;
    CHECK(hl_stage2_sample_make(&cfg, clip, SC, SF, SH, SW, &g, &s, &err) == HELIOS_ERR_INVALID_ARG,
          "no samples accepted");
    cfg.ratios[1] = -1, cfg.ratios[0] = 2;
    CHECK(hl_stage2_config_check(&cfg, &err) == HELIOS_ERR_INVALID_ARG, "negative ratio accepted");
    cfg.ratios[1] = 1, cfg.ratios[2] = HL_STAGE2_MAX_SAMPLES;
    CHECK(hl_stage2_config_check(&cfg, &err) == HELIOS_ERR_INVALID_ARG, "K over the cap accepted");
    small_config(&cfg);
    cfg.sched.use_dynamic_shifting = true;
    CHECK(hl_stage2_config_check(&cfg, &err) == HELIOS_ERR_UNSUPPORTED,
          "dynamic shifting accepted");
    small_config(&cfg);
    cfg.base.tsample.num_train_timesteps = 500;
    CHECK(hl_stage2_config_check(&cfg, &err) == HELIOS_ERR_INVALID_ARG,
          "mismatched timestep counts accepted");
    small_config(&cfg);
    /* frames not a multiple of the chunk */
    CHECK(hl_stage2_sample_make(&cfg, clip, SC, SF - 1, SH, SW, &g, &s, &err) ==
              HELIOS_ERR_INVALID_ARG,
          "a partial chunk accepted");
    /* one level: no pyramid, the plain flow between noise and x0 over the whole schedule */
    cfg.sched.stages = 1;
    cfg.sched.stage_range[1] = 1.0;
    cfg.ratios[0] = 1;
    CHECK(hl_stage2_sample_make(&cfg, clip, SC, SF, 3, 5, &g, &s, &err) == HL_OK, "%s", err.msg);
    if (s.K == 1) {
        int64_t n = (int64_t)SC * SF * 15;
        bool ok = true;
        for (int64_t i = 0; i < n; i++)
            ok &= s.items[0].target[i] == s.noise[i] - s.base.x0[i] && s.items[0].H == 3;
        CHECK(ok, "one level: target is not noise - x0");
    }
    hl_stage2_sample_free(&s);
    hl_stage2_pyramid p;
    CHECK(hl_stage2_pyramid_build(clip, clip, SC, SF, SH, SW, HL_STAGE2_MAX_LEVELS + 1, &p, &err) ==
              HELIOS_ERR_INVALID_ARG,
          "too many levels accepted");
    hl_stage2_pyramid_free(&p);
    free(clip);
}

int main(void) {
    test_oracle_pieces();
    test_oracle_forward();
    test_draw_order();
    test_determinism();
    test_ratios();
    test_two_levels();
    test_batch();
    test_bad_input();
    return test_done("test_train_stage2");
}

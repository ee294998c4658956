/* sample_vectors.c — src/sample against a directory of reference vectors (see
 * sample_vectors.h). Tolerances, relative to max(1, max|ref|) unless noted:
 *   schedules (float64)                  1e-12   (reproduced bit for bit; README §7: 1e-10)
 *   int64(t) of every timestep           0
 *   one scheduler step (float32)         1e-6    (float32 ulp ~6e-8 at |x| ~ 1: the step is a
 *                                                 handful of roundings; observed 0)
 *   down/up sampling, renoise inputs     1e-6
 *   block noise                          1e-5 absolute (README §6.1 suggests 1e-3: the
 *                                                 reference's float32 factor is a fallback;
 *                                                 observed 0)
 *   Cholesky factor vs the float64 one   1e-10 absolute: the last pivot (~4e-8) comes from
 *                                                 cancelling O(1) terms, so the factorization
 *                                                 order moves L[3][3] by ~1e-12 (observed 8e-13);
 *                                                 vs the float32 factor used: 1e-6
 *   generator draws                      0 */
#include "verify/sample_vectors.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "sample/pyramid.h"
#include "sample/rng.h"
#include "sample/schedule.h"
#include "sample/steps.h"

#define TOL_SCHED 1e-12
#define TOL_STEP 1e-6
#define TOL_OPS 1e-6
#define TOL_BLOCK 1e-5
#define TOL_CHOL 1e-10
#define TOL_CHOL_F32 1e-6
#define SEED_SEARCH_LIMIT (UINT64_C(1) << 22) /* ~1 s when no seed matches */

typedef struct vctx {
    const char *file; /* base name in reports */
    hl_report_fn report;
    void *user;
} vctx;

static void rep(const vctx *v, const char *name, double max_abs, double tol) {
    v->report(v->user, v->file, name, max_abs, tol, 0);
}

static double rel_tol(double rel, double ref_max) { return rel * (ref_max > 1.0 ? ref_max : 1.0); }

/* ---- reading --------------------------------------------------------------------------------- */

static int64_t numel_of(const hl_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* Tensor `name` as float64 (F64 exactly; F32/I64/I32 converted). *out = NULL if absent. */
static hl_status get_f64(const hl_safetensors *st, const char *name, double **out, int64_t *n,
                         hl_error *err) {
    *out = NULL;
    *n = 0;
    const hl_st_tensor *t = hl_st_find(st, name);
    if (!t) return HL_OK;
    int64_t m = numel_of(t);
    double *d = malloc((size_t)(m > 0 ? m : 1) * sizeof *d);
    if (!d) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", name);
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < m; i++) {
        switch (t->dtype) {
        case HL_F64: memcpy(&d[i], p + i * 8, 8); break;
        case HL_F32: {
            float f;
            memcpy(&f, p + i * 4, 4);
            d[i] = f;
        } break;
        case HL_I64: {
            int64_t q;
            memcpy(&q, p + i * 8, 8);
            d[i] = (double)q;
        } break;
        case HL_I32: {
            int32_t q;
            memcpy(&q, p + i * 4, 4);
            d[i] = q;
        } break;
        default:
            free(d);
            return hl_fail(err, HELIOS_ERR_DTYPE, "tensor '%s': dtype %s is not numeric", name,
                           hl_dtype_name(t->dtype));
        }
    }
    *out = d;
    *n = m;
    return HL_OK;
}

/* Tensor `name` as float32. *out = NULL if absent. */
static hl_status get_f32(const hl_safetensors *st, const char *name, float **out, int64_t *n,
                         hl_error *err) {
    *out = NULL;
    *n = 0;
    const hl_st_tensor *t = hl_st_find(st, name);
    if (!t) return HL_OK;
    HL_TRY(hl_st_read_f32(st, name, -1, out, err));
    *n = numel_of(t);
    return HL_OK;
}

/* The "__metadata__" value `key` parsed as JSON; *out = NULL if absent. */
static hl_status meta_json(const hl_safetensors *st, const char *key, hl_json **out,
                           hl_error *err) {
    *out = NULL;
    const char *s = hl_st_meta(st, key);
    if (!s) return HL_OK;
    hl_status r = hl_json_parse(s, strlen(s), out, err);
    if (r != HL_OK) hl_error_prefix(err, "%s: metadata '%s'", st->path, key);
    return r;
}

static double diff_f64(const double *a, const double *b, int64_t n, double *ref_max) {
    double m = 0.0, r = 0.0;
    if (ref_max) *ref_max = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
        if (fabs(b[i]) > r) r = fabs(b[i]);
    }
    if (ref_max) *ref_max = r;
    return m;
}

static double diff_f32(const float *a, const float *b, int64_t n, double *ref_max) {
    double m = 0.0, r = 0.0;
    if (ref_max) *ref_max = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
        if (fabs((double)b[i]) > r) r = fabs((double)b[i]);
    }
    if (ref_max) *ref_max = r;
    return m;
}

/* Reports |mine - ref| of a float32 result against tensor `ref_name` (INFINITY if it is absent
 * or has another size). */
static hl_status cmp_f32(const vctx *v, const hl_safetensors *st, const char *ref_name,
                         const char *case_name, const float *mine, int64_t n, double rel,
                         bool absolute, hl_error *err) {
    float *ref;
    int64_t m;
    HL_TRY(get_f32(st, ref_name, &ref, &m, err));
    if (!ref || m != n) {
        rep(v, case_name, INFINITY, 0.0);
        free(ref);
        return HL_OK;
    }
    double rmax, d = diff_f32(mine, ref, n, &rmax);
    rep(v, case_name, d, absolute ? rel : rel_tol(rel, rmax));
    free(ref);
    return HL_OK;
}

/* Float64 results: max |mine - ref| with tol TOL_SCHED * max(1, max|ref|). */
static hl_status cmp_f64(const vctx *v, const hl_safetensors *st, const char *ref_name,
                         const char *case_name, const double *mine, int64_t n, hl_error *err) {
    double *ref;
    int64_t m;
    HL_TRY(get_f64(st, ref_name, &ref, &m, err));
    if (!ref || m != n) {
        rep(v, case_name, INFINITY, 0.0);
        free(ref);
        return HL_OK;
    }
    double rmax, d = diff_f64(mine, ref, n, &rmax);
    rep(v, case_name, d, rel_tol(TOL_SCHED, rmax));
    free(ref);
    return HL_OK;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Opens dir/name if it exists; *st = NULL if it does not. */
static hl_status open_opt(const char *dir, const char *name, hl_safetensors **st, hl_error *err) {
    char path[4096];
    *st = NULL;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: path too long", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return HL_OK;
    fclose(f);
    return hl_st_open(path, st, err);
}

/* A JSON value that is a number or a numeric string (the pipeline logs print args as strings). */
static bool json_num(const hl_json *j, double *out) {
    if (!j) return false;
    if (j->type == HL_JSON_NUMBER) {
        *out = j->number;
        return true;
    }
    if (j->type == HL_JSON_STRING) {
        char *end;
        *out = strtod(j->string, &end);
        return end != j->string;
    }
    return false;
}

/* d as an integer within [lo, hi] (false for NaN, fractions are truncated). The casts below all
 * go through this so that no value from a file converts out of range. */
static bool to_int(double d, int64_t lo, int64_t hi, int64_t *out) {
    if (!(d >= (double)lo && d <= (double)hi)) return false;
    *out = (int64_t)d;
    return true;
}

/* A count or index field read from a file: within [0, 1e6]. */
static bool json_index(const hl_json *j, int *out) {
    double d;
    int64_t v;
    if (!json_num(j, &d) || !to_int(d, 0, 1000000, &v)) return false;
    *out = (int)v;
    return true;
}

/* ---- scheduler_schedules --------------------------------------------------------------------- */

/* One tag: rebuild its schedule from the case config and compare. */
static hl_status check_schedule_case(const vctx *v, const hl_safetensors *st, const hl_json *c,
                                     hl_error *err) {
    const char *tag = hl_json_get_string(c, "tag");
    const hl_json *cfgj = hl_json_get(c, "config");
    if (!tag || !cfgj)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: case without tag/config", v->file);
    /* HeliosScheduler cases name their scheduler_type; HeliosDMDScheduler ones do not */
    hl_sched_config cfg;
    HL_TRY(hl_sched_config_from_json(cfgj, HL_SCHED_DMD, &cfg, err));
    double mu = 0.0;
    int n = 0, stage = 0;
    bool amp = false;
    json_num(hl_json_get(cfgj, "mu"), &mu);
    hl_json_get_bool(cfgj, "is_amplify_first_chunk", &amp);
    bool base = json_index(hl_json_get(cfgj, "N"), &n);
    if (!base && !json_index(hl_json_get(cfgj, "n"), &n))
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: case %s has neither N nor n", v->file, tag);
    json_index(hl_json_get(cfgj, "stage"), &stage);

    hl_sched sched;
    HL_TRY(hl_sched_init(&sched, &cfg, err));
    hl_schedule sc;
    hl_status r;
    if (base) {
        double *sin = malloc((size_t)(n > 0 ? n : 1) * sizeof *sin);
        if (!sin) {
            hl_sched_free(&sched);
            return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        }
        hl_sched_base_sigmas(n, sin);
        r = hl_sched_set_timesteps_sigmas(&sched, n, sin, mu, &sc, err);
        free(sin);
    } else {
        r = hl_sched_set_timesteps(&sched, n, stage, mu, amp, &sc, err);
    }
    hl_sched_free(&sched);
    if (r != HL_OK) {
        hl_error_prefix(err, "%s: case %s", v->file, tag);
        return r;
    }
    char name[256], cname[300];
    snprintf(name, sizeof name, "%s.timesteps", tag);
    r = cmp_f64(v, st, name, name, sc.timesteps, sc.n, err);
    if (r == HL_OK) { /* the pyramid pipelines truncate t for the model: must agree exactly */
        double *ref;
        int64_t m;
        r = get_f64(st, name, &ref, &m, err);
        if (r == HL_OK && ref && m == sc.n) {
            double d = 0.0;
            for (int i = 0; i < sc.n; i++) {
                double e = fabs((double)(hl_sched_model_timestep(sc.timesteps[i]) -
                                         hl_sched_model_timestep(ref[i])));
                if (e > d) d = e;
            }
            snprintf(cname, sizeof cname, "%s.int64", name);
            rep(v, cname, d, 0.0);
        }
        free(ref);
    }
    if (r == HL_OK) {
        snprintf(name, sizeof name, "%s.sigmas", tag);
        r = cmp_f64(v, st, name, name, sc.sigmas, sc.n + 1, err);
    }
    hl_schedule_free(&sc);
    return r;
}

/* A {"0": x, "1": y, ...} object against vals[0..n). */
static double const_diff(const hl_json *obj, const double *vals, int n, double *ref_max) {
    double d = 0.0, r = 0.0, x;
    if (!obj || obj->type != HL_JSON_OBJECT) return INFINITY;
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        if (!json_num(hl_json_get(obj, k), &x)) return INFINITY;
        if (fabs(x - vals[i]) > d) d = fabs(x - vals[i]);
        if (fabs(x) > r) r = fabs(x);
    }
    *ref_max = r;
    return d;
}

/* The stage tables (const.* tensors) and the metadata "constants". */
static hl_status check_stage_tables(const vctx *v, const hl_safetensors *st, hl_error *err) {
    hl_json *consts = NULL;
    HL_TRY(meta_json(st, "constants", &consts, err));
    int S = 0;
    char name[128];
    for (;; S++) {
        snprintf(name, sizeof name, "const.timesteps_per_stage.%d", S);
        if (!hl_st_find(st, name) || S >= HL_SCHED_MAX_STAGES) break;
    }
    if (S == 0 && !consts) return HL_OK;
    hl_sched_config cfg;
    hl_sched_config_default(&cfg, HL_SCHED_UNIPC);
    double g;
    if (consts && json_num(hl_json_get(consts, "gamma"), &g) && g > 0) cfg.gamma = g;
    if (S > 0 && S + 1 <= cfg.n_stage_range) cfg.stages = S; /* over the default stage_range */
    hl_sched sched;
    hl_status r = hl_sched_init(&sched, &cfg, err);
    if (r != HL_OK) {
        hl_json_free(consts);
        return r;
    }
    int N = sched.n_train;
    for (int s = 0; s < S && r == HL_OK; s++) {
        snprintf(name, sizeof name, "const.timesteps_per_stage.%d", s);
        r = cmp_f64(v, st, name, name, sched.timesteps_per_stage + (size_t)s * N, N, err);
        if (r != HL_OK) break;
        snprintf(name, sizeof name, "const.sigmas_per_stage.%d", s);
        r = cmp_f64(v, st, name, name, sched.sigmas_per_stage + (size_t)s * N, N, err);
    }
    if (r == HL_OK && consts) {
        int n = cfg.stages;
        static const char *keys[] = {"ori_start_sigmas", "start_sigmas", "end_sigmas"};
        const double *vals[] = {sched.ori_start_sigma, sched.start_sigma, sched.end_sigma};
        for (int k = 0; k < 3; k++) {
            double rmax = 0.0, d = const_diff(hl_json_get(consts, keys[k]), vals[k], n, &rmax);
            snprintf(name, sizeof name, "constants.%s", keys[k]);
            rep(v, name, d, rel_tol(TOL_SCHED, rmax));
        }
        const hl_json *rat = hl_json_get(consts, "timestep_ratios");
        double d = 0.0;
        for (int s = 0; s < n; s++) {
            char k[16];
            snprintf(k, sizeof k, "%d", s);
            const hl_json *p = rat ? hl_json_get(rat, k) : NULL;
            double a, b;
            if (!p || p->type != HL_JSON_ARRAY || p->n != 2 || !json_num(&p->items[0], &a) ||
                !json_num(&p->items[1], &b)) {
                d = INFINITY;
                break;
            }
            d = fmax(d, fmax(fabs(a - sched.ratio[s][0]), fabs(b - sched.ratio[s][1])));
        }
        rep(v, "constants.timestep_ratios", d, TOL_SCHED);
    }
    hl_sched_free(&sched);
    hl_json_free(consts);
    return r;
}

static hl_status verify_schedules(const char *dir, hl_report_fn report, void *user, hl_error *err) {
    hl_safetensors *st;
    HL_TRY(open_opt(dir, "scheduler_schedules.safetensors", &st, err));
    if (!st) return HL_OK;
    vctx v = {base_name(st->path), report, user};
    hl_json *cases = NULL;
    hl_status r = meta_json(st, "cases", &cases, err);
    if (r == HL_OK && cases && cases->type == HL_JSON_ARRAY)
        for (size_t i = 0; i < cases->n && r == HL_OK; i++)
            r = check_schedule_case(&v, st, &cases->items[i], err);
    if (r == HL_OK) r = check_stage_tables(&v, st, err);
    hl_json_free(cases);
    hl_st_close(st);
    return r;
}

/* ---- scheduler_steps ------------------------------------------------------------------------- */

/* One tag's step() sequence: the schedule is the recorded one, each step starts from the
 * recorded previous output (so every step is checked on its own). */
static hl_status check_step_tag(const vctx *v, const hl_safetensors *st, const char *tag,
                                hl_error *err) {
    char name[256];
    double *ts = NULL, *sg = NULL;
    float *x = NULL, *out = NULL, *start = NULL, *mo = NULL, *nx = NULL;
    int64_t nts, nsg, numel, m;
    hl_unipc u = {0};
    hl_status r;
    hl_sched_kind kind;
    if (strstr(tag, "unipc")) kind = HL_SCHED_UNIPC;
    else if (strstr(tag, "euler")) kind = HL_SCHED_EULER;
    else if (!strncmp(tag, "dmd", 3)) kind = HL_SCHED_DMD;
    else {
        snprintf(name, sizeof name, "%s (unknown scheduler kind)", tag);
        rep(v, name, INFINITY, 0.0);
        return HL_OK;
    }
    snprintf(name, sizeof name, "%s.timesteps", tag);
    if ((r = get_f64(st, name, &ts, &nts, err)) != HL_OK) goto done;
    snprintf(name, sizeof name, "%s.sigmas", tag);
    if ((r = get_f64(st, name, &sg, &nsg, err)) != HL_OK) goto done;
    snprintf(name, sizeof name, "%s.sample_in", tag);
    if ((r = get_f32(st, name, &x, &numel, err)) != HL_OK) goto done;
    if (!ts || !sg || !x || nsg != nts + 1 || nts < 1 || nts > 1000000) {
        snprintf(name, sizeof name, "%s (timesteps/sigmas/sample_in)", tag);
        rep(v, name, INFINITY, 0.0);
        goto done;
    }
    hl_schedule sc = {(int)nts, 0, ts, sg};
    out = malloc((size_t)numel * sizeof *out);
    start = malloc((size_t)numel * sizeof *start);
    if (!out || !start) {
        r = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        goto done;
    }
    memcpy(start, x, (size_t)numel * sizeof *x); /* DMD: dmd_noisy_tensor = sample_in */
    if (kind == HL_SCHED_UNIPC) {
        hl_sched_config cfg;
        hl_sched_config_default(&cfg, HL_SCHED_UNIPC);
        if ((r = hl_unipc_init(&u, &cfg, numel, err)) != HL_OK) goto done;
        hl_unipc_reset(&u, &sc);
    }
    for (int i = 0; i < sc.n; i++) {
        snprintf(name, sizeof name, "%s.model_output.%d", tag, i);
        if ((r = get_f32(st, name, &mo, &m, err)) != HL_OK) goto done;
        if (!mo) break;
        if (m != numel) {
            rep(v, name, INFINITY, 0.0);
            goto done;
        }
        if (kind == HL_SCHED_UNIPC) r = hl_unipc_step(&u, mo, x, out, err);
        else if (kind == HL_SCHED_EULER) r = hl_euler_step(&sc, i, numel, mo, x, out, err);
        else r = hl_dmd_step(&sc, i, ts[i], ts, sc.n, numel, mo, x, start, out, err);
        if (r != HL_OK) goto done;
        snprintf(name, sizeof name, "%s.prev_sample.%d", tag, i);
        if ((r = cmp_f32(v, st, name, name, out, numel, TOL_STEP, false, err)) != HL_OK) goto done;
        if ((r = get_f32(st, name, &nx, &m, err)) != HL_OK) goto done;
        if (!nx || m != numel) break;
        free(x);
        x = nx; /* continue from the recorded output */
        nx = NULL;
        free(mo);
        mo = NULL;
    }
done:
    hl_unipc_free(&u);
    free(ts);
    free(sg);
    free(x);
    free(out);
    free(start);
    free(mo);
    free(nx);
    return r;
}

static hl_status verify_steps(const char *dir, hl_report_fn report, void *user, hl_error *err) {
    hl_safetensors *st;
    HL_TRY(open_opt(dir, "scheduler_steps.safetensors", &st, err));
    if (!st) return HL_OK;
    vctx v = {base_name(st->path), report, user};
    hl_status r = HL_OK;
    const char *suffix = ".sample_in";
    size_t sl = strlen(suffix);
    for (size_t i = 0; i < st->n && r == HL_OK; i++) {
        const char *nm = st->tensors[i].name;
        size_t l = strlen(nm);
        if (l <= sl || strcmp(nm + l - sl, suffix) || l - sl >= 200) continue;
        char tag[200];
        memcpy(tag, nm, l - sl);
        tag[l - sl] = '\0';
        r = check_step_tag(&v, st, tag, err);
    }
    hl_st_close(st);
    return r;
}

/* ---- pyramid_ops ----------------------------------------------------------------------------- */

/* Planes and plane size of a (..., H, W) tensor. */
static bool plane_dims(const hl_st_tensor *t, int64_t *planes, int *H, int *W) {
    if (!t || t->ndim < 2) return false;
    int64_t h = t->shape[t->ndim - 2], w = t->shape[t->ndim - 1];
    if (h <= 0 || w <= 0 || h > (1 << 24) || w > (1 << 24)) return false;
    *H = (int)h;
    *W = (int)w;
    *planes = numel_of(t) / (h * w);
    return *planes > 0;
}

static hl_status check_resampling(const vctx *v, const hl_safetensors *st, hl_error *err) {
    static const char *names[] = {"latents_full", "latents_down1", "latents_down2"};
    hl_status r = HL_OK;
    for (int lv = 0; lv < 2 && r == HL_OK; lv++) { /* down2x of each recorded level */
        int64_t P, n;
        int H, W;
        if (!plane_dims(hl_st_find(st, names[lv]), &P, &H, &W) || !hl_st_find(st, names[lv + 1]))
            continue;
        float *x, *y = malloc((size_t)(P * (H / 2) * (W / 2) + 1) * sizeof *y);
        if (!y) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        r = get_f32(st, names[lv], &x, &n, err);
        if (r == HL_OK) r = hl_pyramid_down2x(x, P, H, W, 2.0f, y, err);
        if (r == HL_OK)
            r = cmp_f32(v, st, names[lv + 1], names[lv + 1], y, P * (H / 2) * (W / 2), TOL_OPS,
                        false, err);
        free(x);
        free(y);
    }
    int64_t P, n;
    int h, w;
    if (r == HL_OK && plane_dims(hl_st_find(st, "latents_down2"), &P, &h, &w) &&
        hl_st_find(st, "latents_down2_nearest_up")) {
        float *x, *y = malloc((size_t)(P * 4 * h * w) * sizeof *y);
        if (!y) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        r = get_f32(st, "latents_down2", &x, &n, err);
        if (r == HL_OK) {
            hl_pyramid_up2x_nearest(x, P, h, w, y);
            r = cmp_f32(v, st, "latents_down2_nearest_up", "latents_down2_nearest_up", y,
                        P * 4 * h * w, TOL_OPS, false, err);
        }
        free(x);
        free(y);
    }
    return r;
}

/* Block noise `noise_name` (..., 2h, 2w) from z [blocks, 4]; z and L given. */
static hl_status check_block_noise(const vctx *v, const hl_safetensors *st, const float *z,
                                   int64_t nz, const double L[16], const char *noise_name,
                                   const char *case_name, hl_error *err) {
    int64_t P;
    int H, W;
    if (!plane_dims(hl_st_find(st, noise_name), &P, &H, &W) || H % 2 || W % 2 || nz != P * H * W) {
        rep(v, case_name, INFINITY, 0.0);
        return HL_OK;
    }
    float *noise = malloc((size_t)(P * H * W) * sizeof *noise);
    if (!noise) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    hl_status r = hl_pyramid_block_noise(z, L, P, H / 2, W / 2, HL_F32, noise, err);
    if (r == HL_OK)
        r = cmp_f32(v, st, noise_name, case_name, noise, P * H * W, TOL_BLOCK, true, err);
    free(noise);
    return r;
}

static double meta_gamma(const hl_json *j) {
    double g;
    if (json_num(j, &g) && g > 0) return g;
    if (j && j->type == HL_JSON_OBJECT && json_num(hl_json_get(j, "gamma"), &g) && g > 0) return g;
    return 1.0 / 3.0;
}

static hl_status check_cholesky(const vctx *v, const hl_safetensors *st, const double L[16],
                                hl_error *err) {
    double *ref;
    int64_t n;
    HL_TRY(get_f64(st, "block_noise.cholesky_L_exact_f64", &ref, &n, err));
    if (ref)
        rep(v, "block_noise.cholesky_L_exact_f64", n == 16 ? diff_f64(L, ref, 16, NULL) : INFINITY,
            TOL_CHOL);
    free(ref);
    HL_TRY(get_f64(st, "block_noise.cholesky_L_used", &ref, &n, err));
    if (ref)
        rep(v, "block_noise.cholesky_L_used (float32)",
            n == 16 ? diff_f64(L, ref, 16, NULL) : INFINITY, TOL_CHOL_F32);
    free(ref);
    return HL_OK;
}

/* metadata renoise_coefficients {"s": {"alpha", "beta", ...}} against the scheduler's. */
static void check_renoise_coeffs(const vctx *v, const hl_json *rc, double gamma) {
    if (!rc || rc->type != HL_JSON_OBJECT) return;
    hl_sched_config cfg;
    hl_sched_config_default(&cfg, HL_SCHED_UNIPC);
    cfg.gamma = gamma;
    hl_sched sched;
    if (hl_sched_init(&sched, &cfg, NULL) != HL_OK) return;
    for (size_t i = 0; i < rc->n; i++) {
        int s = atoi(rc->keys[i]);
        char name[64];
        double a, b, ra, rb;
        snprintf(name, sizeof name, "renoise_coefficients.%d", s);
        if (s < 0 || s >= sched.cfg.stages || !json_num(hl_json_get(&rc->items[i], "alpha"), &ra) ||
            !json_num(hl_json_get(&rc->items[i], "beta"), &rb)) {
            rep(v, name, INFINITY, 0.0);
            continue;
        }
        hl_sched_renoise_coeffs(&sched, s, &a, &b);
        rep(v, name, fmax(fabs(a - ra), fabs(b - rb)), TOL_SCHED);
    }
    hl_sched_free(&sched);
}

static hl_status verify_pyramid(const char *dir, hl_report_fn report, void *user, hl_error *err) {
    hl_safetensors *st;
    HL_TRY(open_opt(dir, "pyramid_ops.safetensors", &st, err));
    if (!st) return HL_OK;
    vctx v = {base_name(st->path), report, user};
    hl_json *gj = NULL, *rc = NULL;
    hl_status r = check_resampling(&v, st, err);
    if (r == HL_OK) r = meta_json(st, "gamma", &gj, err);
    if (r == HL_OK) r = meta_json(st, "renoise_coefficients", &rc, err);
    double gamma = meta_gamma(gj), L[16];
    if (r == HL_OK) r = hl_pyramid_block_cholesky(gamma, L, err);
    if (r == HL_OK) r = check_cholesky(&v, st, L, err);
    /* every "<prefix>.z" with its "<prefix>.noise" */
    for (size_t i = 0; i < st->n && r == HL_OK; i++) {
        const char *nm = st->tensors[i].name;
        size_t l = strlen(nm);
        if (l < 3 || strcmp(nm + l - 2, ".z") || l >= 200) continue;
        char noise_name[210];
        snprintf(noise_name, sizeof noise_name, "%.*s.noise", (int)(l - 2), nm);
        float *z;
        int64_t nz;
        r = get_f32(st, nm, &z, &nz, err);
        if (r == HL_OK) r = check_block_noise(&v, st, z, nz, L, noise_name, noise_name, err);
        free(z);
    }
    if (r == HL_OK) check_renoise_coeffs(&v, rc, gamma);
    hl_json_free(gj);
    hl_json_free(rc);
    hl_st_close(st);
    return r;
}

/* ---- pipelines: generator draws -------------------------------------------------------------- */

typedef struct draw {
    bool uniform; /* torch.rand, else torch.randn */
    int64_t numel;
    char ref[64];   /* tensor holding exactly this draw, or "" */
    char ref2[64];  /* another tensor equal to it (chunkK.initial_noise), or "" */
    char block[64]; /* block_noiseNN made from this draw, or "" */
} draw;

typedef struct plan {
    draw *d;
    int n, cap;
} plan;

static draw *plan_add(plan *p, hl_error *err) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        draw *d = realloc(p->d, (size_t)cap * sizeof *d);
        if (!d) {
            hl_fail(err, HELIOS_ERR_OOM, "out of memory");
            return NULL;
        }
        p->d = d;
        p->cap = cap;
    }
    draw *d = &p->d[p->n++];
    memset(d, 0, sizeof *d);
    return d;
}

static int64_t tensor_numel(const hl_safetensors *st, const char *name) {
    const hl_st_tensor *t = hl_st_find(st, name);
    return t ? numel_of(t) : -1;
}

/* An integer field of a log event (event indices, chunk numbers: within [-1, 1e9]). */
static int event_int(const hl_json *e, const char *key, int64_t *out) {
    double d;
    if (!json_num(hl_json_get(e, key), &d) || !to_int(d, -1, 1000000000, out)) return -1;
    return 0;
}

/* The pipeline generator's draws in order, from the log: the recorded rngNNN draws when the file
 * has them (I2V/V2V), else each chunk's initial noise and each stage's block-noise draw. */
static hl_status build_plan(const hl_safetensors *st, const hl_json *log, plan *p, hl_error *err) {
    bool has_rng = false;
    for (size_t i = 0; i < log->n; i++)
        if (hl_json_get(&log->items[i], "rng")) has_rng = true;
    int64_t last_chunk = -1;
    for (size_t i = 0; i < log->n; i++) {
        const hl_json *e = &log->items[i];
        int64_t k, chunk = -1;
        event_int(e, "chunk", &chunk);
        if (has_rng && !event_int(e, "rng", &k)) {
            const char *fn = hl_json_get_string(e, "fn");
            const char *caller = hl_json_get_string(e, "caller");
            bool uni = fn && !strcmp(fn, "torch.rand");
            draw *d = plan_add(p, err);
            if (!d) return err ? err->status : HELIOS_ERR_OOM;
            d->uniform = uni;
            snprintf(d->ref, sizeof d->ref, "rng%03lld.%s", (long long)k, uni ? "rand" : "randn");
            d->numel = tensor_numel(st, d->ref);
            if (d->numel < 0)
                return hl_fail(err, HELIOS_ERR_MISSING, "%s: tensor '%s' of the log is absent",
                               st->path, d->ref);
            if (caller && strstr(caller, "prepare_latents") && chunk >= 0)
                snprintf(d->ref2, sizeof d->ref2, "chunk%lld.initial_noise", (long long)chunk);
        } else if (!has_rng && chunk > last_chunk) {
            char nm[64];
            snprintf(nm, sizeof nm, "chunk%lld.initial_noise", (long long)chunk);
            int64_t nn = tensor_numel(st, nm);
            if (nn < 0) return HL_OK; /* no recorded noise: the stream cannot be followed on */
            last_chunk = chunk;
            draw *d = plan_add(p, err);
            if (!d) return err ? err->status : HELIOS_ERR_OOM;
            snprintf(d->ref, sizeof d->ref, "%s", nm);
            d->numel = nn;
        }
        if (!event_int(e, "block_noise", &k)) {
            char bn[64];
            snprintf(bn, sizeof bn, "block_noise%02lld", (long long)k);
            int64_t nb = tensor_numel(st, bn);
            if (nb < 0) return HL_OK;
            if (has_rng) { /* the last recorded draw is its z */
                if (p->n == 0 || p->d[p->n - 1].numel != nb) return HL_OK;
                snprintf(p->d[p->n - 1].block, sizeof p->d[p->n - 1].block, "%s", bn);
            } else {
                draw *d = plan_add(p, err);
                if (!d) return err ? err->status : HELIOS_ERR_OOM;
                d->numel = nb;
                snprintf(d->block, sizeof d->block, "%s", bn);
            }
        }
    }
    return HL_OK;
}

/* Replays the plan from `seed`; with report, reports every comparison. Returns the largest
 * difference of the exact (non-block) comparisons in *worst. */
static hl_status replay(const vctx *v, const hl_safetensors *st, const plan *p, uint64_t seed,
                        const double L[16], bool report, double *worst, hl_error *err) {
    hl_rng g = {0};
    hl_rng_seed(&g, seed);
    *worst = 0.0;
    hl_status r = HL_OK;
    for (int i = 0; i < p->n && r == HL_OK; i++) {
        const draw *d = &p->d[i];
        float *buf = malloc((size_t)(d->numel > 0 ? d->numel : 1) * sizeof *buf);
        if (!buf) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        if (d->uniform) hl_rng_rand_f32(&g, buf, d->numel);
        else hl_rng_randn_f32(&g, buf, d->numel);
        const char *refs[2] = {d->ref, d->ref2};
        for (int k = 0; k < 2 && r == HL_OK; k++) {
            if (!refs[k][0]) continue;
            float *ref;
            int64_t m;
            r = get_f32(st, refs[k], &ref, &m, err);
            double dd = (ref && m == d->numel) ? diff_f32(buf, ref, m, NULL) : INFINITY;
            free(ref);
            if (dd > *worst) *worst = dd;
            if (report && r == HL_OK) {
                char name[96];
                snprintf(name, sizeof name, "rng.%s", refs[k]);
                rep(v, name, dd, 0.0);
            }
        }
        if (report && d->block[0] && r == HL_OK) {
            char name[96];
            snprintf(name, sizeof name, "rng.%s", d->block);
            r = check_block_noise(v, st, buf, d->numel, L, d->block, name, err);
        }
        free(buf);
        if (!report && *worst > 0.0) break;
    }
    return r;
}

/* A seed named in the metadata (call_args, pipeline_init or top level), if any. */
static bool meta_seed(const hl_safetensors *st, uint64_t *seed) {
    static const char *holders[] = {"call_args", "pipeline_init", "generator"};
    double s;
    for (int i = 0; i < 3; i++) {
        const char *txt = hl_st_meta(st, holders[i]);
        hl_json *j = NULL;
        if (!txt || hl_json_parse(txt, strlen(txt), &j, NULL) != HL_OK) continue;
        bool ok = json_num(hl_json_get(j, "seed"), &s) ||
                  json_num(hl_json_get(j, "generator_seed"), &s);
        hl_json_free(j);
        int64_t v;
        if (ok && to_int(s, 0, INT64_MAX / 2, &v)) {
            *seed = (uint64_t)v;
            return true;
        }
    }
    const char *txt = hl_st_meta(st, "seed");
    int64_t v;
    if (txt && txt[0] && to_int(strtod(txt, NULL), 0, INT64_MAX / 2, &v)) {
        *seed = (uint64_t)v;
        return true;
    }
    return false;
}

hl_status hl_sample_manifest_seed(const char *path, uint64_t *seed, bool *found, hl_error *err) {
    *found = false;
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    char mp[4096];
    snprintf(mp, sizeof mp, "%.*s%s", (int)(base - path), path, "manifest.json");
    FILE *f = fopen(mp, "rb");
    if (!f) return HL_OK;
    fclose(f);
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(mp, &j, err));
    int64_t s = -1;
    bool has = hl_json_get(j, "seed") != NULL;
    int ok = hl_json_get_int(j, "seed", &s) == 0 && s >= 0 &&
             (uint64_t)s <= (UINT64_MAX - 96) / 1000003u;
    hl_json_free(j);
    if (!has) return HL_OK;
    if (!ok)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: \"seed\" is not a non-negative integer", mp);
    uint64_t k = !strncmp(base, "pipeline_i2v_", 13)   ? 91
                 : !strncmp(base, "pipeline_v2v_", 13) ? 96
                                                       : 72;
    *seed = (uint64_t)s * 1000003u + k;
    *found = true;
    return HL_OK;
}

/* The generator seed of a pipeline file: from the metadata, else from manifest.json (*given
 * names the source; the caller checks the draws), else the smallest seed in
 * [0, SEED_SEARCH_LIMIT) whose replay reproduces every recorded draw. *found = false if none. */
static hl_status find_seed(const hl_safetensors *st, const hl_json *log, const plan *p,
                           const double L[16], uint64_t *seed, bool *found, const char **given,
                           hl_error *err) {
    *given = NULL;
    *found = meta_seed(st, seed);
    if (*found) {
        *given = "the metadata";
        return HL_OK;
    }
    HL_TRY(hl_sample_manifest_seed(st->path, seed, found, err));
    if (*found) {
        *given = "manifest.json";
        return HL_OK;
    }
    if (p->n == 0 || !p->d[0].ref[0]) return HL_OK;
    float *ref0 = NULL;
    int64_t m;
    hl_status r = get_f32(st, p->d[0].ref, &ref0, &m, err);
    vctx quiet = {0};
    double worst;
    for (uint64_t s = 0;
         r == HL_OK && ref0 &&
         hl_rng_find_seed(p->d[0].uniform, p->d[0].numel, ref0, s, SEED_SEARCH_LIMIT, &s);
         s++) {
        if ((r = replay(&quiet, st, p, s, L, false, &worst, err)) != HL_OK) break;
        if (worst == 0.0) {
            *seed = s;
            *found = true;
            break;
        }
    }
    free(ref0);
    return r;
}

static hl_status verify_rng(const vctx *v, const hl_safetensors *st, const hl_json *log,
                            double gamma, hl_error *err) {
    plan p = {0};
    double L[16], worst;
    uint64_t seed = 0;
    bool found = false;
    const char *given = NULL;
    hl_status r = build_plan(st, log, &p, err);
    if (r == HL_OK && p.n > 0 && p.d[0].ref[0]) {
        r = hl_pyramid_block_cholesky(gamma, L, err);
        if (r == HL_OK) r = find_seed(st, log, &p, L, &seed, &found, &given, err);
        if (r == HL_OK && !found)
            rep(v,
                "rng.seed (not in the metadata or manifest.json, none in [0, 2^22) reproduces the "
                "draws)",
                INFINITY, 0.0);
        worst = 0.0;
        if (r == HL_OK && found && given)
            r = replay(&(vctx){0}, st, &p, seed, L, false, &worst, err);
        if (r == HL_OK && found) {
            char name[160];
            if (worst == 0.0)
                snprintf(name, sizeof name, "rng.seed = %llu", (unsigned long long)seed);
            else
                snprintf(name, sizeof name,
                         "rng.seed = %llu (from %s) does not reproduce the draws",
                         (unsigned long long)seed, given);
            rep(v, name, worst, 0.0);
            r = replay(v, st, &p, seed, L, true, &worst, err);
        }
    }
    free(p.d);
    return r;
}

hl_status hl_sample_pipeline_seed(const hl_safetensors *st, uint64_t *seed, hl_error *err) {
    hl_json *log = NULL, *scj = NULL;
    plan p = {0};
    double L[16], gamma = 1.0 / 3.0;
    bool found = false;
    const char *given = NULL;
    hl_status r = meta_json(st, "log", &log, err);
    if (r == HL_OK) r = meta_json(st, "scheduler_config", &scj, err);
    if (r == HL_OK && scj) gamma = meta_gamma(scj);
    if (r == HL_OK && (!log || log->type != HL_JSON_ARRAY))
        r = hl_fail(err, HELIOS_ERR_MISSING, "%s: no event log in the metadata", st->path);
    if (r == HL_OK) r = build_plan(st, log, &p, err);
    if (r == HL_OK) r = hl_pyramid_block_cholesky(gamma, L, err);
    if (r == HL_OK) r = find_seed(st, log, &p, L, seed, &found, &given, err);
    if (r == HL_OK && !found)
        r = hl_fail(
            err, HELIOS_ERR_MISSING,
            "%s: no seed in the metadata or manifest.json, and none in [0, 2^22) reproduces "
            "the recorded draws",
            st->path);
    double worst = 0.0;
    if (r == HL_OK && given) r = replay(&(vctx){0}, st, &p, *seed, L, false, &worst, err);
    if (r == HL_OK && worst > 0.0)
        r = hl_fail(err, HELIOS_ERR_FORMAT,
                    "%s: generator seed %llu (from %s) does not reproduce the recorded draws",
                    st->path, (unsigned long long)*seed, given);
    free(p.d);
    hl_json_free(log);
    hl_json_free(scj);
    return r;
}

/* ---- pipelines: schedules, steps, stage inputs ----------------------------------------------- */

typedef struct pipe_state {
    hl_sched sched;
    hl_schedule sc;
    bool have_sc;
    hl_unipc u;
    int stage_step;
    float *start;     /* DMD stage start point */
    float *last_prev; /* recorded prev_sample of the last step */
    int64_t last_numel;
    int64_t last_shape[HL_MAX_DIMS];
    int last_ndim;
    char pending_block[64]; /* block noise of a stage transition whose first call comes next */
    int pending_stage;
    int64_t chunk; /* chunk of the last call */
} pipe_state;

static hl_status pipe_set_timesteps(const vctx *v, const hl_safetensors *st, pipe_state *ps,
                                    const hl_json *e, int64_t idx, hl_error *err) {
    const hl_json *args = hl_json_get(e, "args"), *kw = hl_json_get(e, "kwargs");
    int n = 0, stage = 0;
    double mu = 0;
    if (!args || args->type != HL_JSON_ARRAY || args->n < 1 || !json_index(&args->items[0], &n))
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: set_timesteps event without n", st->path);
    if (args->n > 1) json_index(&args->items[1], &stage);
    json_index(hl_json_get(kw, "stage_index"), &stage);
    json_num(hl_json_get(kw, "mu"), &mu);
    const char *amp = hl_json_get_string(kw, "is_amplify_first_chunk");
    bool amplify = amp && !strcmp(amp, "True");
    if (ps->have_sc) hl_schedule_free(&ps->sc);
    ps->have_sc = false;
    hl_status r;
    if (hl_json_get(kw, "sigmas")) { /* Base: linspace(0.999, 0, n + 1)[:-1] */
        double *sin = malloc((size_t)(n >= 1 ? n : 1) * sizeof *sin);
        if (!sin) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        hl_sched_base_sigmas(n, sin);
        r = hl_sched_set_timesteps_sigmas(&ps->sched, n, sin, mu, &ps->sc, err);
        free(sin);
    } else {
        r = hl_sched_set_timesteps(&ps->sched, n, stage, mu, amplify, &ps->sc, err);
    }
    if (r != HL_OK) return r;
    ps->have_sc = true;
    ps->stage_step = 0;
    hl_unipc_reset(&ps->u, &ps->sc);
    char name[64];
    snprintf(name, sizeof name, "set_timesteps%02lld.timesteps", (long long)idx);
    HL_TRY(cmp_f64(v, st, name, name, ps->sc.timesteps, ps->sc.n, err));
    snprintf(name, sizeof name, "set_timesteps%02lld.sigmas", (long long)idx);
    return cmp_f64(v, st, name, name, ps->sc.sigmas, ps->sc.n + 1, err);
}

static hl_status pipe_step(const vctx *v, const hl_safetensors *st, pipe_state *ps,
                           const hl_json *e, int64_t idx, hl_error *err) {
    char name[96], pfx[32];
    snprintf(pfx, sizeof pfx, "step%03lld", (long long)idx);
    float *mo = NULL, *x = NULL, *out = NULL;
    double *t = NULL;
    int64_t n, m, nt;
    hl_status r;
    snprintf(name, sizeof name, "%s.model_output", pfx);
    if ((r = get_f32(st, name, &mo, &n, err)) != HL_OK) goto done;
    snprintf(name, sizeof name, "%s.sample", pfx);
    if ((r = get_f32(st, name, &x, &m, err)) != HL_OK) goto done;
    snprintf(name, sizeof name, "%s.timestep", pfx);
    if ((r = get_f64(st, name, &t, &nt, err)) != HL_OK) goto done;
    if (!ps->have_sc || !mo || !x || !t || nt != 1 || m != n || ps->stage_step >= ps->sc.n) {
        snprintf(name, sizeof name, "%s (inputs or schedule missing)", pfx);
        rep(v, name, INFINITY, 0.0);
        goto done;
    }
    snprintf(name, sizeof name, "%s.timestep", pfx);
    rep(v, name, fabs(t[0] - ps->sc.timesteps[ps->stage_step]), 0.0);
    if (!(out = malloc((size_t)n * sizeof *out))) {
        r = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        goto done;
    }
    hl_sched_kind kind = ps->sched.cfg.kind;
    if (kind == HL_SCHED_UNIPC) {
        if (ps->u.numel != n) { /* a new stage resolution: only at a stage start */
            if (ps->stage_step != 0) {
                rep(v, pfx, INFINITY, 0.0);
                goto done;
            }
            hl_unipc_free(&ps->u);
            if ((r = hl_unipc_init(&ps->u, &ps->sched.cfg, n, err)) != HL_OK) goto done;
            hl_unipc_reset(&ps->u, &ps->sc);
        }
        r = hl_unipc_step(&ps->u, mo, x, out, err);
    } else if (kind == HL_SCHED_EULER) {
        r = hl_euler_step(&ps->sc, ps->stage_step, n, mo, x, out, err);
    } else {
        int di = ps->stage_step;
        json_index(hl_json_get(hl_json_get(e, "extra"), "cur_sampling_step"), &di);
        if (di == 0) { /* the stage's start point is the sample of its first step */
            free(ps->start);
            if (!(ps->start = malloc((size_t)n * sizeof *ps->start))) {
                r = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
                goto done;
            }
            memcpy(ps->start, x, (size_t)n * sizeof *x);
        }
        r = hl_dmd_step(&ps->sc, di, t[0], ps->sc.timesteps, ps->sc.n, n, mo, x, ps->start, out,
                        err);
    }
    if (r != HL_OK) goto done;
    snprintf(name, sizeof name, "%s.prev_sample", pfx);
    if ((r = cmp_f32(v, st, name, name, out, n, TOL_STEP, false, err)) != HL_OK) goto done;
    ps->stage_step++;
    /* keep the recorded output for the next stage transition */
    free(ps->last_prev);
    ps->last_prev = NULL;
    if ((r = get_f32(st, name, &ps->last_prev, &ps->last_numel, err)) != HL_OK) goto done;
    const hl_st_tensor *pt = hl_st_find(st, name);
    if (pt) {
        ps->last_ndim = pt->ndim;
        memcpy(ps->last_shape, pt->shape, sizeof ps->last_shape);
    }
done:
    free(mo);
    free(x);
    free(t);
    free(out);
    return r;
}

/* The first call of a stage > 0: alpha * up(previous output) + beta * block noise. */
static hl_status pipe_transition(const vctx *v, const hl_safetensors *st, pipe_state *ps,
                                 const char *call_in, hl_error *err) {
    char name[160];
    snprintf(name, sizeof name, "%s (stage %d renoise)", call_in, ps->pending_stage);
    float *noise = NULL, *y = NULL;
    int64_t nn;
    hl_status r = get_f32(st, ps->pending_block, &noise, &nn, err);
    if (r != HL_OK) return r;
    int nd = ps->last_ndim;
    if (!noise || !ps->last_prev || nd < 2 || ps->last_numel <= 0 || nn != 4 * ps->last_numel ||
        ps->last_shape[nd - 2] <= 0 || ps->last_shape[nd - 1] <= 0 ||
        ps->last_shape[nd - 2] > (1 << 24) || ps->last_shape[nd - 1] > (1 << 24)) {
        rep(v, name, INFINITY, 0.0);
        free(noise);
        return HL_OK;
    }
    int h = (int)ps->last_shape[nd - 2], w = (int)ps->last_shape[nd - 1];
    int64_t P = ps->last_numel / ((int64_t)h * w);
    if (!(y = malloc((size_t)nn * sizeof *y))) {
        free(noise);
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    hl_pyramid_up2x_nearest(ps->last_prev, P, h, w, y);
    double a, b;
    hl_sched_renoise_coeffs(&ps->sched, ps->pending_stage, &a, &b);
    hl_pyramid_renoise(y, noise, nn, a, b, y);
    r = cmp_f32(v, st, call_in, name, y, nn, TOL_OPS, false, err);
    free(noise);
    free(y);
    return r;
}

/* The first call of a chunk: its initial noise down-sampled (stages - 1) times. */
static hl_status pipe_chunk_start(const vctx *v, const hl_safetensors *st, const pipe_state *ps,
                                  const char *call_in, int64_t chunk, hl_error *err) {
    char noise_name[64], name[160];
    snprintf(noise_name, sizeof noise_name, "chunk%lld.initial_noise", (long long)chunk);
    snprintf(name, sizeof name, "%s (stage 0 = down-sampled %s)", call_in, noise_name);
    int64_t P, n;
    int H, W;
    if (!plane_dims(hl_st_find(st, noise_name), &P, &H, &W)) return HL_OK;
    float *x;
    hl_status r = get_f32(st, noise_name, &x, &n, err);
    if (r != HL_OK) return r;
    for (int s = 1; s < ps->sched.cfg.stages && r == HL_OK; s++) {
        float *y = malloc((size_t)(P * (H / 2) * (W / 2) + 1) * sizeof *y);
        if (!y) {
            r = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
            break;
        }
        r = hl_pyramid_down2x(x, P, H, W, 2.0f, y, err);
        free(x);
        x = y;
        H /= 2;
        W /= 2;
    }
    if (r == HL_OK) r = cmp_f32(v, st, call_in, name, x, P * H * W, TOL_OPS, false, err);
    free(x);
    return r;
}

static hl_status pipe_call(const vctx *v, const hl_safetensors *st, pipe_state *ps,
                           const hl_json *e, int64_t idx, hl_error *err) {
    char call_in[64];
    snprintf(call_in, sizeof call_in, "call%03lld.hidden_states", (long long)idx);
    int64_t chunk = -1;
    event_int(e, "chunk", &chunk);
    hl_status r = HL_OK;
    if (ps->pending_block[0]) {
        r = pipe_transition(v, st, ps, call_in, err);
        ps->pending_block[0] = '\0';
    } else if (chunk > ps->chunk && ps->stage_step == 0) {
        r = pipe_chunk_start(v, st, ps, call_in, chunk, err);
    }
    if (chunk > ps->chunk) ps->chunk = chunk;
    return r;
}

static hl_status verify_pipeline_steps(const vctx *v, const hl_safetensors *st, const hl_json *log,
                                       const hl_sched_config *cfg, hl_error *err) {
    pipe_state ps;
    memset(&ps, 0, sizeof ps);
    ps.chunk = -1;
    HL_TRY(hl_sched_init(&ps.sched, cfg, err));
    hl_status r = HL_OK;
    for (size_t i = 0; i < log->n && r == HL_OK; i++) {
        const hl_json *e = &log->items[i];
        int64_t k;
        if (!event_int(e, "set_timesteps", &k)) {
            r = pipe_set_timesteps(v, st, &ps, e, k, err);
        } else if (!event_int(e, "step", &k)) {
            r = pipe_step(v, st, &ps, e, k, err);
        } else if (!event_int(e, "block_noise", &k)) {
            snprintf(ps.pending_block, sizeof ps.pending_block, "block_noise%02lld", (long long)k);
            ps.pending_stage = ps.have_sc ? ps.sc.stage : 0;
        } else if (!event_int(e, "call", &k)) {
            r = pipe_call(v, st, &ps, e, k, err);
        }
    }
    if (ps.have_sc) hl_schedule_free(&ps.sc);
    hl_unipc_free(&ps.u);
    hl_sched_free(&ps.sched);
    free(ps.start);
    free(ps.last_prev);
    return r;
}

static hl_status verify_pipeline_file(const char *path, hl_report_fn report, void *user,
                                      hl_error *err) {
    hl_safetensors *st;
    HL_TRY(hl_st_open(path, &st, err));
    vctx v = {base_name(st->path), report, user};
    hl_json *log = NULL, *scj = NULL, *init = NULL;
    hl_status r = meta_json(st, "log", &log, err);
    if (r == HL_OK) r = meta_json(st, "scheduler_config", &scj, err);
    if (r == HL_OK) r = meta_json(st, "pipeline_init", &init, err);
    if (r != HL_OK || !log || log->type != HL_JSON_ARRAY) goto done;
    hl_sched_config cfg;
    bool distilled = false;
    if (init) hl_json_get_bool(init, "is_distilled", &distilled);
    if (scj) {
        if ((r = hl_sched_config_from_json(scj, distilled ? HL_SCHED_DMD : HL_SCHED_UNIPC, &cfg,
                                           err)) != HL_OK) {
            hl_error_prefix(err, "%s: scheduler_config", path);
            goto done;
        }
    } else {
        hl_sched_config_default(&cfg, distilled ? HL_SCHED_DMD : HL_SCHED_UNIPC);
    }
    if ((r = verify_rng(&v, st, log, cfg.gamma, err)) != HL_OK) goto done;
    if (scj) r = verify_pipeline_steps(&v, st, log, &cfg, err);
done:
    hl_json_free(log);
    hl_json_free(scj);
    hl_json_free(init);
    hl_st_close(st);
    return r;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every pipeline_*.safetensors of dir, in name order. */
static hl_status verify_pipelines(const char *dir, hl_report_fn report, void *user, hl_error *err) {
    DIR *d = opendir(dir);
    if (!d) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot open the directory", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    hl_status r = HL_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        if (strncmp(nm, "pipeline_", 9) || l < 21 || strcmp(nm + l - 12, ".safetensors")) continue;
        if (n == cap) {
            size_t c = cap ? 2 * cap : 16;
            char **t = realloc(names, c * sizeof *t);
            if (!t) {
                r = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
                break;
            }
            names = t;
            cap = c;
        }
        if (!(names[n] = malloc(strlen(dir) + l + 2))) {
            r = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
            break;
        }
        sprintf(names[n++], "%s/%s", dir, nm);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && r == HL_OK; i++)
        r = verify_pipeline_file(names[i], report, user, err);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return r;
}

hl_status hl_sample_verify(const char *dir, hl_report_fn report, void *user, hl_error *err) {
    if (!dir || !report) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_sample_verify: NULL");
    HL_TRY(verify_schedules(dir, report, user, err));
    HL_TRY(verify_steps(dir, report, user, err));
    HL_TRY(verify_pyramid(dir, report, user, err));
    return verify_pipelines(dir, report, user, err);
}

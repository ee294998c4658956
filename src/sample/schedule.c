/* schedule.c — HeliosScheduler / HeliosDMDScheduler sigma and timestep tables (schedule.h). */
#include "sample/schedule.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hl_sched_config_default(hl_sched_config *c, hl_sched_kind kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->num_train_timesteps = 1000;
    c->shift = 1.0;
    c->stages = 3;
    c->stage_range[0] = 0.0;
    c->stage_range[1] = 1.0 / 3.0;
    c->stage_range[2] = 2.0 / 3.0;
    c->stage_range[3] = 1.0;
    c->n_stage_range = 4;
    c->gamma = 1.0 / 3.0;
    c->use_dynamic_shifting = false;
    c->time_shift_type = HL_SHIFT_EXPONENTIAL;
    c->solver_order = 2;
    c->lower_order_final = true;
}

static hl_status parse_kind(const char *v, hl_sched_kind *kind, hl_error *err) {
    if (!strcmp(v, "unipc")) *kind = HL_SCHED_UNIPC;
    else if (!strcmp(v, "euler")) *kind = HL_SCHED_EULER;
    else if (!strcmp(v, "dmd")) *kind = HL_SCHED_DMD;
    else
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'scheduler_type' \"%s\" is not implemented",
                       v);
    return HL_OK;
}

/* Typed optional members: absent or null keeps the default; a value of another type is an error,
 * never read as the default ("use_dynamic_shifting": "yes" must not silently mean false). */
static hl_status opt_bool(const hl_json *j, const char *key, bool *out, hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_BOOL)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be true or false", key);
    *out = m->boolean;
    return HL_OK;
}

static hl_status opt_int(const hl_json *j, const char *key, int64_t lo, int64_t hi, int *out,
                         hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_NUMBER || !m->is_int)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be an integer", key);
    if (m->integer < lo || m->integer > hi)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' = %lld is out of range [%lld, %lld]", key,
                       (long long)m->integer, (long long)lo, (long long)hi);
    *out = (int)m->integer;
    return HL_OK;
}

/* A number in (0, hi] (the JSON reader already refuses infinities and NaN). */
static hl_status opt_positive(const hl_json *j, const char *key, double hi, double *out,
                              hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_NUMBER)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be a number", key);
    if (!(m->number > 0.0 && m->number <= hi))
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' = %g is out of range (0, %g]", key, m->number,
                       hi);
    *out = m->number;
    return HL_OK;
}

static hl_status opt_string(const hl_json *j, const char *key, const char **out, hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    *out = NULL;
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_STRING)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be a string", key);
    *out = m->string;
    return HL_OK;
}

/* Reads "stage_range" (increasing numbers within [0, 1]). */
static hl_status parse_stage_range(const hl_json *j, hl_sched_config *c, hl_error *err) {
    const hl_json *r = hl_json_get(j, "stage_range");
    if (!r || r->type == HL_JSON_NULL) return HL_OK;
    if (r->type != HL_JSON_ARRAY || r->n < 2 || r->n > HL_SCHED_MAX_STAGES + 1)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'stage_range' must be an array of 2..%d numbers",
                       HL_SCHED_MAX_STAGES + 1);
    c->n_stage_range = (int)r->n;
    for (size_t i = 0; i < r->n; i++) {
        if (r->items[i].type != HL_JSON_NUMBER)
            return hl_fail(err, HELIOS_ERR_FORMAT, "'stage_range'[%zu] is not a number", i);
        c->stage_range[i] = r->items[i].number;
        if (c->stage_range[i] < 0.0 || c->stage_range[i] > 1.0 ||
            (i > 0 && !(c->stage_range[i] > c->stage_range[i - 1])))
            return hl_fail(err, HELIOS_ERR_FORMAT, "'stage_range' is not increasing within [0, 1]");
    }
    return HL_OK;
}

/* Rejects the config values whose code paths are not implemented. */
static hl_status check_supported(const hl_json *j, hl_error *err) {
    const char *v;
    bool b;
    HL_TRY(opt_string(j, "prediction_type", &v, err));
    if (v && strcmp(v, "flow_prediction"))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'prediction_type' \"%s\" is not implemented",
                       v);
    HL_TRY(opt_string(j, "solver_type", &v, err));
    if (v && strcmp(v, "bh2"))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'solver_type' \"%s\" is not implemented", v);
    b = true;
    HL_TRY(opt_bool(j, "predict_x0", &b, err));
    if (!b) return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'predict_x0' = false is not implemented");
    b = true;
    HL_TRY(opt_bool(j, "use_flow_sigmas", &b, err));
    if (!b)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'use_flow_sigmas' = false is not implemented");
    b = false;
    HL_TRY(opt_bool(j, "thresholding", &b, err));
    if (b) return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'thresholding' is not implemented");
    const hl_json *sp = hl_json_get(j, "solver_p");
    if (sp && sp->type != HL_JSON_NULL)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'solver_p' is not implemented");
    return HL_OK;
}

/* The training grid is allocated per stage (hl_sched_init: 2 x stages x N doubles); the released
 * models use 1000, and a hostile 10^8 would ask for gigabytes. */
#define HL_SCHED_MAX_TRAIN_TIMESTEPS 100000

hl_status hl_sched_config_from_json(const hl_json *j, hl_sched_kind fallback, hl_sched_config *c,
                                    hl_error *err) {
    if (!c) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "scheduler config: no output");
    /* a file that is not an object is bad input (FORMAT), not a bad call */
    if (!j || j->type != HL_JSON_OBJECT)
        return hl_fail(err, HELIOS_ERR_FORMAT, "not a JSON object");
    hl_sched_kind kind = fallback;
    const char *v, *cls;
    HL_TRY(opt_string(j, "scheduler_type", &v, err));
    HL_TRY(opt_string(j, "_class_name", &cls, err));
    if (v) {
        HL_TRY(parse_kind(v, &kind, err));
    } else if (cls && strstr(cls, "DMD")) {
        kind = HL_SCHED_DMD;
    }
    hl_sched_config_default(c, kind);
    HL_TRY(check_supported(j, err));

    HL_TRY(opt_int(j, "num_train_timesteps", 2, HL_SCHED_MAX_TRAIN_TIMESTEPS,
                   &c->num_train_timesteps, err));
    HL_TRY(opt_positive(j, "shift", 1e6, &c->shift, err));
    HL_TRY(opt_int(j, "stages", 1, HL_SCHED_MAX_STAGES, &c->stages, err));
    HL_TRY(parse_stage_range(j, c, err));
    /* the reference reads stage_range[0 .. stages] whatever its length (the default is
     * [0, 1/3, 2/3, 1] also for stages = 1, making stage 0 span [0, 1/3]) */
    if (c->n_stage_range < c->stages + 1)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'stage_range' has %d entries for %d stages",
                       c->n_stage_range, c->stages);
    HL_TRY(opt_positive(j, "gamma", 1e6, &c->gamma, err));
    HL_TRY(opt_bool(j, "use_dynamic_shifting", &c->use_dynamic_shifting, err));
    HL_TRY(opt_string(j, "time_shift_type", &v, err));
    if (v) {
        if (!strcmp(v, "exponential")) c->time_shift_type = HL_SHIFT_EXPONENTIAL;
        else if (!strcmp(v, "linear")) c->time_shift_type = HL_SHIFT_LINEAR;
        else
            return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                           "'time_shift_type' \"%s\" is not implemented", v);
    }
    const hl_json *so = hl_json_get(j, "solver_order");
    if (so && so->type == HL_JSON_NUMBER && so->is_int && (so->integer < 1 || so->integer > 2))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'solver_order' %lld (only 1 and 2)",
                       (long long)so->integer);
    HL_TRY(opt_int(j, "solver_order", 1, 2, &c->solver_order, err));
    HL_TRY(opt_bool(j, "lower_order_final", &c->lower_order_final, err));
    const hl_json *dc = hl_json_get(j, "disable_corrector");
    if (dc && dc->type != HL_JSON_NULL) {
        if (dc->type != HL_JSON_ARRAY)
            return hl_fail(err, HELIOS_ERR_FORMAT, "'disable_corrector' must be an array");
        if (dc->n > HL_SCHED_MAX_DISABLED)
            return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'disable_corrector': more than %d entries",
                           HL_SCHED_MAX_DISABLED);
        for (size_t i = 0; i < dc->n; i++) {
            if (dc->items[i].type != HL_JSON_NUMBER || !dc->items[i].is_int ||
                dc->items[i].integer < 0 || dc->items[i].integer > INT32_MAX)
                return hl_fail(err, HELIOS_ERR_FORMAT,
                               "'disable_corrector'[%zu] is not a step index", i);
            c->disable_corrector[i] = (int)dc->items[i].integer;
        }
        c->n_disable_corrector = (int)dc->n;
    }
    return HL_OK;
}

/* ---- scalar helpers -------------------------------------------------------------------------- */

double hl_sched_calculate_shift(double image_seq_len) {
    const double base_seq = 256, max_seq = 4096, base_shift = 0.5, max_shift = 1.15;
    double m = (max_shift - base_shift) / (max_seq - base_seq);
    double b = base_shift - m * base_seq;
    return image_seq_len * m + b;
}

int64_t hl_sched_image_seq_len(int64_t F, int64_t H, int64_t W, int pt, int ph, int pw) {
    int64_t p = (int64_t)pt * ph * pw;
    return p > 0 ? F * H * W / p : 0;
}

double hl_sched_time_shift(hl_time_shift type, double mu, double s) {
    if (s == 0.0) return 0.0; /* 1/0 = inf in the reference, which maps to 0 */
    /* torch evaluates `k / (k + (1/s - 1) ** 1.0)` as reciprocal(denominator) * k */
    double k = type == HL_SHIFT_EXPONENTIAL ? exp(mu) : mu;
    return (1.0 / (k + (1.0 / s - 1.0))) * k;
}

void hl_sched_linspace(double start, double stop, int num, double *out) {
    if (num <= 0) return;
    if (num == 1) {
        out[0] = start;
        return;
    }
    int div = num - 1;
    double delta = stop - start;
    double step = delta / div;
    for (int i = 0; i < num; i++)
        out[i] = step == 0.0 ? ((double)i / div) * delta + start : (double)i * step + start;
    out[num - 1] = stop;
}

int64_t hl_sched_model_timestep(double t) { return (int64_t)t; }

/* ---- stage tables ---------------------------------------------------------------------------- */

void hl_sched_free(hl_sched *s) {
    if (!s) return;
    free(s->train_sigmas);
    free(s->train_timesteps);
    free(s->timesteps_per_stage);
    free(s->sigmas_per_stage);
    memset(s, 0, sizeof *s);
}

/* init_sigmas: sigmas = flip(1 - linspace(1, 1/N, N + 1))[:-1] through the static shift,
 * timesteps = N * sigmas. */
static hl_status init_train_grid(hl_sched *s, hl_error *err) {
    int N = s->n_train;
    double *alphas = malloc((size_t)(N + 1) * sizeof *alphas);
    if (!alphas) return hl_fail(err, HELIOS_ERR_OOM, "scheduler: out of memory");
    hl_sched_linspace(1.0, 1.0 / N, N + 1, alphas);
    double shift = s->cfg.shift;
    for (int i = 0; i < N; i++) {
        double sg = 1.0 - alphas[N - i]; /* flipped; entry N (sigma 0) is dropped */
        sg = shift * sg / (1.0 + (shift - 1.0) * sg);
        s->train_sigmas[i] = sg;
        s->train_timesteps[i] = sg * N;
    }
    free(alphas);
    return HL_OK;
}

/* init_sigmas_for_each_stage (spec §3.3): per-stage start/end sigmas, the start of a later stage
 * corrected for the renoise, the stages' shares of the total sigma distance, and from those each
 * stage's timestep range. */
static void init_stages(hl_sched *s) {
    const hl_sched_config *c = &s->cfg;
    int N = s->n_train, S = c->stages;
    double dist[HL_SCHED_MAX_STAGES];
    for (int i = 0; i < S; i++) {
        int a = (int)(c->stage_range[i] * N);
        int e = (int)(c->stage_range[i + 1] * N);
        if (a < 0) a = 0;
        if (a > N - 1) a = N - 1;
        if (e > N) e = N;
        double start = s->train_sigmas[a];
        double end = e < N ? s->train_sigmas[e] : 0.0;
        s->ori_start_sigma[i] = start;
        if (i != 0) {
            double ori = 1.0 - start; /* the signal coefficient at the stage start */
            double corrected = (1.0 / (sqrt(1.0 + 1.0 / c->gamma) * (1.0 - ori) + ori)) * ori;
            start = 1.0 - corrected;
        }
        s->start_sigma[i] = start;
        s->end_sigma[i] = end;
        dist[i] = start - end;
    }
    double tot = 0.0;
    for (int i = 0; i < S; i++) tot += dist[i];
    for (int i = 0; i < S; i++) {
        double before = 0.0;
        for (int k = 0; k < i; k++) before += dist[k];
        s->ratio[i][0] = i == 0 ? 0.0 : before / tot;
        /* the reference stores 1 - 2^-53 for the last end ratio (its constants show
         * 0.9999999999999999), which keeps int(ratio * N) below N */
        s->ratio[i][1] = i == S - 1 ? nextafter(1.0, 0.0) : (before + dist[i]) / tot;
    }
    for (int i = 0; i < S; i++) {
        int a = (int)(s->ratio[i][0] * N);
        int e = (int)(s->ratio[i][1] * N);
        if (a > N - 1) a = N - 1;
        if (e > N - 1) e = N - 1;
        double t_max = s->train_timesteps[a];
        if (t_max > 999.0) t_max = 999.0; /* spec §3.3: min(T[...], 999) */
        double t_min = s->train_timesteps[e];
        double *tps = s->timesteps_per_stage + (size_t)i * N;
        double *sps = s->sigmas_per_stage + (size_t)i * N;
        /* linspace(.., N + 1)[:-1]: fill N + 1 values in place, the last one spills over into
         * the next row (or the spare slot) and is dropped */
        hl_sched_linspace(t_max, t_min, N + 1, tps);
        hl_sched_linspace(s->train_sigmas[0], 0.0, N + 1, sps);
    }
}

hl_status hl_sched_init(hl_sched *s, const hl_sched_config *cfg, hl_error *err) {
    if (!s || !cfg) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_sched_init: NULL argument");
    memset(s, 0, sizeof *s);
    if (cfg->stages < 1 || cfg->stages > HL_SCHED_MAX_STAGES || cfg->num_train_timesteps < 2 ||
        cfg->n_stage_range < cfg->stages + 1 || !(cfg->gamma > 0.0) || !(cfg->shift > 0.0))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "scheduler config out of range");
    for (int i = 0; i < cfg->stages; i++)
        if (!(cfg->stage_range[i + 1] > cfg->stage_range[i]) || cfg->stage_range[i] < 0.0 ||
            cfg->stage_range[i + 1] > 1.0)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage_range not increasing in [0, 1]");
    s->cfg = *cfg;
    s->n_train = cfg->num_train_timesteps;
    size_t N = (size_t)s->n_train, S = (size_t)cfg->stages;
    s->train_sigmas = malloc(N * sizeof(double));
    s->train_timesteps = malloc(N * sizeof(double));
    /* + 1: room for the dropped last linspace element of the last stage */
    s->timesteps_per_stage = malloc((S * N + 1) * sizeof(double));
    s->sigmas_per_stage = malloc((S * N + 1) * sizeof(double));
    if (!s->train_sigmas || !s->train_timesteps || !s->timesteps_per_stage ||
        !s->sigmas_per_stage) {
        hl_sched_free(s);
        return hl_fail(err, HELIOS_ERR_OOM, "scheduler: out of memory");
    }
    hl_status st = init_train_grid(s, err);
    if (st != HL_OK) {
        hl_sched_free(s);
        return st;
    }
    init_stages(s);
    return HL_OK;
}

/* ---- set_timesteps --------------------------------------------------------------------------- */

void hl_schedule_free(hl_schedule *sc) {
    if (!sc) return;
    free(sc->timesteps);
    free(sc->sigmas);
    memset(sc, 0, sizeof *sc);
}

static hl_status schedule_alloc(hl_schedule *out, int n, hl_error *err) {
    memset(out, 0, sizeof *out);
    out->timesteps = malloc((size_t)n * sizeof(double));
    out->sigmas = malloc((size_t)(n + 1) * sizeof(double));
    if (!out->timesteps || !out->sigmas) {
        hl_schedule_free(out);
        return hl_fail(err, HELIOS_ERR_OOM, "schedule: out of memory");
    }
    out->n = n;
    return HL_OK;
}

/* sigma <- shift(mu, sigma) for all n + 1 sigmas; timesteps <- lo + sigma[:-1] (hi - lo). */
static void apply_dynamic_shift(const hl_sched *s, double mu, double lo, double hi,
                                hl_schedule *sc) {
    for (int i = 0; i <= sc->n; i++)
        sc->sigmas[i] = hl_sched_time_shift(s->cfg.time_shift_type, mu, sc->sigmas[i]);
    for (int i = 0; i < sc->n; i++) sc->timesteps[i] = lo + sc->sigmas[i] * (hi - lo);
}

hl_status hl_sched_set_timesteps(const hl_sched *s, int n, int stage, double mu, bool amplify,
                                 hl_schedule *out, hl_error *err) {
    if (!s || !out) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "set_timesteps: NULL argument");
    memset(out, 0, sizeof *out);
    if (n < 1 || n > 100000)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "set_timesteps: %d steps", n);
    if (stage < 0 || stage >= s->cfg.stages)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "set_timesteps: stage %d of %d", stage,
                       s->cfg.stages);
    bool dmd = s->cfg.kind == HL_SCHED_DMD;
    /* DMD builds one more point (2n + 1 amplified) and then drops one timestep and one sigma */
    int m = dmd ? (amplify ? 2 * n + 1 : n + 1) : n;
    int N = s->n_train;
    const double *tps = s->timesteps_per_stage + (size_t)stage * N;
    const double *sps = s->sigmas_per_stage + (size_t)stage * N;

    double *ts = malloc((size_t)m * sizeof *ts), *sg = malloc((size_t)(m + 1) * sizeof *sg);
    if (!ts || !sg) {
        free(ts);
        free(sg);
        return hl_fail(err, HELIOS_ERR_OOM, "schedule: out of memory");
    }
    hl_sched_linspace(tps[0], tps[N - 1], m, ts);
    hl_sched_linspace(sps[0], sps[N - 1], m, sg);
    sg[m] = 0.0;

    int nt = dmd ? m - 1 : m; /* DMD: timesteps[:-1], sigmas[:-2] + sigmas[-1:] */
    hl_status st = schedule_alloc(out, nt, err);
    if (st != HL_OK) {
        free(ts);
        free(sg);
        return st;
    }
    out->stage = stage;
    memcpy(out->timesteps, ts, (size_t)nt * sizeof *ts);
    if (dmd) {
        memcpy(out->sigmas, sg, (size_t)(m - 1) * sizeof *sg);
        out->sigmas[m - 1] = sg[m];
    } else {
        memcpy(out->sigmas, sg, (size_t)(m + 1) * sizeof *sg);
    }
    free(ts);
    free(sg);

    if (s->cfg.use_dynamic_shifting) {
        double lo = tps[0], hi = tps[0];
        for (int i = 1; i < N; i++) {
            if (tps[i] < lo) lo = tps[i];
            if (tps[i] > hi) hi = tps[i];
        }
        apply_dynamic_shift(s, mu, lo, hi, out);
    }
    return HL_OK;
}

hl_status hl_sched_set_timesteps_sigmas(const hl_sched *s, int n, const double *sigmas_in,
                                        double mu, hl_schedule *out, hl_error *err) {
    if (!s || !out || !sigmas_in)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "set_timesteps: NULL argument");
    memset(out, 0, sizeof *out);
    if (s->cfg.kind == HL_SCHED_DMD)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "set_timesteps(sigmas=...) with DMD");
    if (n < 1 || n > 100000)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "set_timesteps: %d steps", n);
    HL_TRY(schedule_alloc(out, n, err));
    double N = s->n_train;
    for (int i = 0; i < n; i++) {
        out->sigmas[i] = sigmas_in[i];
        out->timesteps[i] = sigmas_in[i] * N;
    }
    out->sigmas[n] = 0.0;
    if (s->cfg.use_dynamic_shifting) apply_dynamic_shift(s, mu, 0.0, N, out);
    return HL_OK;
}

void hl_sched_base_sigmas(int n, double *out) {
    if (n < 1) return;
    double *tmp = out; /* linspace(0.999, 0, n + 1)[:-1]: the first n values of that linspace */
    int div = n;
    double step = (0.0 - 0.999) / div;
    for (int i = 0; i < n; i++) tmp[i] = (double)i * step + 0.999;
}

void hl_sched_renoise_coeffs(const hl_sched *s, int stage, double *alpha, double *beta) {
    double ori = 1.0 - s->ori_start_sigma[stage];
    double g = s->cfg.gamma;
    double a = 1.0 / (sqrt(1.0 + 1.0 / g) * (1.0 - ori) + ori);
    *alpha = a;
    *beta = a * (1.0 - ori) / sqrt(g);
}

const char *hl_sched_format_range(const hl_sched_config *c, int digits, char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < c->n_stage_range && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s%.*g", i ? ", " : "", digits, c->stage_range[i]);
        if (w < 0) break;
        n += (size_t)w;
    }
    return buf;
}

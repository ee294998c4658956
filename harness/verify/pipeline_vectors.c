#include "verify/pipeline_vectors.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "sample/chunk_loop.h"
#include "sample/condition_encode.h"
#include "sample/prepare.h"
#include "verify/dit_vectors.h"
#include "verify/sample_vectors.h"

/* Largest error per kind of record ("call", "step", "chunk"), over all records of a run. */
typedef struct kind_err {
    const char *kind;
    double err, tol;
    int n;
} kind_err;

typedef struct pipe_check {
    const hl_safetensors *st;
    kind_err kinds[4]; /* call, step, chunk records; our VAE encodes of the inputs */
} pipe_check;

static void on_record(void *user, const char *name, const float *x, int64_t rows, int64_t cols) {
    pipe_check *pc = user;
    const hl_st_tensor *t = hl_st_find(pc->st, name);
    if (!t) return;
    int64_t n = rows * cols;
    float *ref = NULL;
    double err = INFINITY, ref_max = 0.0;
    if (hl_st_read_f32(pc->st, name, n, &ref, NULL) == HL_OK)
        err = hl_max_abs_diff(x, ref, n, &ref_max);
    free(ref);
    for (int k = 0; k < 3; k++) /* kinds[3] is filled by encode_inputs */
        if (!strncmp(name, pc->kinds[k].kind, strlen(pc->kinds[k].kind))) {
            kind_err *ke = &pc->kinds[k];
            double tol = 1e-4 * fmax(1.0, ref_max); /* README §7: whole pipelines 1e-4 */
            if (ke->n == 0 || !(err / tol <= ke->err / ke->tol))
                ke->err = err, ke->tol = tol; /* worst ratio */
            ke->n++;
        }
}

static bool json_int(const hl_json *o, const char *k, int64_t *v) {
    return o && hl_json_get_int(o, k, v) == 0;
}

/* The run's configuration from the file's metadata; sizes from chunk0.initial_noise. */
static hl_status configure(const hl_safetensors *st, hl_loop_config *c, int *chunks,
                           hl_error *err) {
    hl_json *args = NULL, *init = NULL, *scj = NULL;
    const char *a = hl_st_meta(st, "call_args"), *in = hl_st_meta(st, "pipeline_init"),
               *sc = hl_st_meta(st, "scheduler_config");
    const hl_st_tensor *noise = hl_st_find(st, "chunk0.initial_noise");
    if (!a || !sc || !noise || noise->ndim != 5)
        return hl_fail(err, HELIOS_ERR_MISSING,
                       "%s: call_args, scheduler_config or chunk0.initial_noise missing", st->path);
    hl_status r = hl_json_parse(a, strlen(a), &args, err);
    if (r == HL_OK && in) r = hl_json_parse(in, strlen(in), &init, err);
    if (r == HL_OK) r = hl_json_parse(sc, strlen(sc), &scj, err);
    bool distilled = false, zero_star = false;
    if (init)
        hl_json_get_bool(init, "is_distilled", &distilled),
            hl_json_get_bool(init, "is_cfg_zero_star", &zero_star);
    hl_loop_config_default(c);
    if (r == HL_OK)
        r = hl_sched_config_from_json(scj, distilled ? HL_SCHED_DMD : HL_SCHED_UNIPC, &c->sched,
                                      err);
    if (r == HL_OK) {
        int64_t v;
        double g;
        c->latent_frames = (int)noise->shape[2], c->height = (int)noise->shape[3],
        c->width = (int)noise->shape[4];
        int64_t list[HL_SCHED_MAX_STAGES];
        int n = hl_json_get_int_array(args, "pyramid_num_inference_steps_list", list,
                                      HL_SCHED_MAX_STAGES);
        c->pyramid = n > 0;
        c->n_stages = n > 0 ? n : 1;
        for (int s = 0; s < n; s++) c->stage_steps[s] = (int)list[s];
        if (json_int(args, "num_inference_steps", &v)) c->steps = (int)v;
        if (hl_json_get_double(args, "guidance_scale", &g) == 0) c->guidance_scale = g;
        hl_json_get_bool(args, "use_zero_init", &c->use_zero_init);
        if (json_int(args, "zero_steps", &v)) c->zero_steps = (int)v;
        hl_json_get_bool(args, "is_amplify_first_chunk", &c->amplify_first_chunk);
        c->cfg_zero_star = zero_star;
        /* chunks: as many as the file records */
        *chunks = 0;
        char name[64];
        do snprintf(name, sizeof name, "chunk%d.initial_noise", ++*chunks);
        while (hl_st_find(st, name));
    }
    hl_json_free(args), hl_json_free(init), hl_json_free(scj);
    return r;
}

static hl_status read_opt(const hl_safetensors *st, const char *name, float **out, hl_error *err) {
    *out = NULL;
    return hl_st_find(st, name) ? hl_st_read_f32(st, name, -1, out, err) : HL_OK;
}

/* A float array from a metadata JSON value (e.g. vae_latents_mean); n values expected. */
static bool meta_floats(const hl_safetensors *st, const char *key, float *out, int n) {
    const char *txt = hl_st_meta(st, key);
    hl_json *j = NULL;
    bool ok = txt && hl_json_parse(txt, strlen(txt), &j, NULL) == HL_OK &&
              j->type == HL_JSON_ARRAY && (int)j->n == n;
    for (int i = 0; ok && i < n; i++) {
        ok = j->items[i].type == HL_JSON_NUMBER;
        out[i] = (float)j->items[i].number;
    }
    hl_json_free(j);
    return ok;
}

/* Overrides the noise ranges from the metadata's noise_sigma_ranges, when present. */
static void meta_ranges(const hl_safetensors *st, hl_cond_config *c) {
    const char *txt = hl_st_meta(st, "noise_sigma_ranges");
    hl_json *j = NULL;
    if (!txt || hl_json_parse(txt, strlen(txt), &j, NULL) != HL_OK) return;
    const char *keys[2] = {"image_noise_sigma", "video_noise_sigma"};
    double *dst[2] = {c->image_sigma, c->video_sigma};
    for (int k = 0; k < 2; k++) {
        const hl_json *a = hl_json_get(j, keys[k]);
        if (a && a->type == HL_JSON_ARRAY && a->n == 2)
            dst[k][0] = a->items[0].number, dst[k][1] = a->items[1].number;
    }
    hl_json_free(j);
}

/* I2V / V2V: the history and the prefix of the final latents from the recorded VAE encodes
 * (vae_encodeNN.moments; the encoder itself is checked by vae_case). Returns the prefix length
 * in frames through *n_prefix (0 for T2V). */
/* Our VAE's encodes of the file's pixel input (as the CLI makes them), each compared with the
 * recorded one ("vae_encodes": the largest error). */
static hl_status encode_inputs(const hl_ctx *ctx, hl_vae *vae, const hl_safetensors *st, int F,
                               hl_cond_moments *out, float *const *rec, int n_rec, pipe_check *pc) {
    const hl_st_tensor *img = hl_st_find(st, "input.image"), *vid = hl_st_find(st, "input.video");
    const hl_st_tensor *t = img ? img : vid;
    float *x = NULL, *video = NULL;
    hl_status r = hl_st_read_f32(st, t->name, -1, &x, ctx->err);
    int T = img ? 1 : (int)t->shape[1], H = (int)t->shape[t->ndim - 2],
        W = (int)t->shape[t->ndim - 1];
    size_t frame = (size_t)H * W;
    if (r == HL_OK && vid) { /* (1, T, 3, H, W) -> (3, T, H, W) */
        video = malloc(3 * (size_t)T * frame * sizeof *video);
        if (!video) r = hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory");
        for (int f = 0; video && f < T; f++)
            for (int c = 0; c < 3; c++)
                memcpy(video + ((size_t)c * T + f) * frame, x + ((size_t)f * 3 + c) * frame,
                       frame * sizeof(float));
    }
    if (r == HL_OK) r = hl_condition_encode(ctx, vae, img ? x : NULL, video, T, 0, 0, H, W, F, out);
    if (r == HL_OK && out->n != n_rec)
        r = hl_fail(ctx->err, HELIOS_ERR_SHAPE, "%s: %d encodes made, %d recorded", st->path,
                    out->n, n_rec);
    for (int i = 0; r == HL_OK && i < out->n; i++) {
        char name[64];
        snprintf(name, sizeof name, "vae_encode%02d.moments", i);
        const hl_st_tensor *rt = hl_st_find(st, name);
        hl_tensor v = hl_st_view(rt);
        double ref_max, e = hl_max_abs_diff(out->m[i], rec[i], hl_tensor_numel(&v), &ref_max),
                        tol = 1e-4 * fmax(1.0, ref_max);
        kind_err *ke = &pc->kinds[3];
        if (ke->n == 0 || !(e / tol <= ke->err / ke->tol)) ke->err = e, ke->tol = tol;
        ke->n++;
    }
    free(x), free(video);
    return r;
}

static hl_status prepare_condition(const hl_ctx *ctx, hl_vae *vae, pipe_check *pc,
                                   const hl_safetensors *st, const hl_dit *dit,
                                   const hl_loop_config *cfg, hl_rng *g, hl_history *h,
                                   float **prefix, int *n_prefix, hl_error *err) {
    *prefix = NULL, *n_prefix = 0;
    bool i2v = hl_st_find(st, "input.image") != NULL, v2v = hl_st_find(st, "input.video") != NULL;
    if (!i2v && !v2v) return HL_OK;
    hl_cond_config c;
    hl_cond_config_default(&c);
    float mean[64], stdv[64];
    c.C = dit->cfg.in_channels, c.H = cfg->height, c.W = cfg->width;
    if (c.C > 64 || !meta_floats(st, "vae_latents_mean", mean, c.C) ||
        !meta_floats(st, "vae_latents_std", stdv, c.C))
        return hl_fail(err, HELIOS_ERR_MISSING, "%s: vae_latents_mean/std missing", st->path);
    c.latents_mean = mean, c.latents_std = stdv;
    meta_ranges(st, &c);
    hl_cond_moments rec = {0}, ours = {0};
    hl_status r = HL_OK;
    for (; r == HL_OK && rec.n < HL_COND_MAX_ENCODES; rec.n++) { /* the recorded encodes */
        char name[64];
        snprintf(name, sizeof name, "vae_encode%02d.moments", rec.n);
        if (!hl_st_find(st, name)) break;
        r = hl_st_read_f32(st, name, -1, &rec.m[rec.n], err);
    }
    int F = cfg->latent_frames;
    size_t plane = (size_t)c.H * c.W;
    if (r == HL_OK && rec.n < 2)
        r = hl_fail(err, HELIOS_ERR_MISSING, "%s: VAE encodes missing", st->path);
    if (r == HL_OK && vae) r = encode_inputs(ctx, vae, st, F, &ours, rec.m, rec.n, pc);
    const hl_cond_moments *m = vae ? &ours : &rec;
    if (r == HL_OK) {
        *n_prefix = i2v ? 1 : (m->n - 1) * F;
        *prefix = malloc((size_t)c.C * (size_t)*n_prefix * plane * sizeof(float));
        if (!*prefix) r = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    if (r == HL_OK && i2v) r = hl_prepare_i2v(&c, g, m->m[0], m->m[1], F, h, *prefix, err);
    if (r == HL_OK && v2v)
        r = hl_prepare_v2v(&c, g, m->m[0], (const float *const *)(m->m + 1), m->n - 1, F, h,
                           *prefix, err);
    hl_cond_moments_free(&rec);
    hl_cond_moments_free(&ours);
    return r;
}

/* Runs one pipeline file; reports calls, steps, chunk noise and final latents. */
static hl_status run_pipeline(const hl_ctx *ctx, const hl_dit *dit, hl_vae *vae,
                              const hl_safetensors *st, const char *file, hl_report_fn report,
                              void *user) {
    hl_loop_config cfg;
    int chunks = 0;
    float *text = NULL, *neg = NULL, *final = NULL, *ref = NULL;
    hl_loop *loop = NULL;
    HL_TRY(configure(st, &cfg, &chunks, ctx->err));
    HL_TRY(hl_sample_pipeline_seed(st, &cfg.seed, ctx->err));
    const hl_st_tensor *pe = hl_st_find(st, "prompt_embeds");
    if (!pe || pe->ndim != 3)
        return hl_fail(ctx->err, HELIOS_ERR_MISSING, "%s: prompt_embeds missing", st->path);
    hl_rng g;
    hl_rng_seed(&g, cfg.seed);
    hl_history hist = {0};
    float *prefix = NULL;
    int n_prefix = 0;
    pipe_check pc = {
        st, {{"call", 0, 0, 0}, {"step", 0, 0, 0}, {"chunk", 0, 0, 0}, {"vae_encode", 0, 0, 0}}};
    hl_probe probe = {on_record, &pc};
    hl_status r = hl_history_init(&hist, 1, dit->cfg.in_channels, cfg.height, cfg.width,
                                  cfg.history_sizes, ctx->err);
    if (r == HL_OK)
        r = prepare_condition(ctx, vae, &pc, st, dit, &cfg, &g, &hist, &prefix, &n_prefix,
                              ctx->err);
    if (r == HL_OK) r = read_opt(st, "prompt_embeds", &text, ctx->err);
    if (r == HL_OK) r = read_opt(st, "negative_prompt_embeds", &neg, ctx->err);
    if (r == HL_OK) r = hl_loop_new(ctx, dit, &cfg, text, neg, (int)pe->shape[1], &hist, &g, &loop);

    size_t plane = (size_t)cfg.latent_frames * cfg.height * cfg.width;
    /* final (1, C, T_total, H, W): the conditioning prefix, then the chunks along time */
    size_t frame = (size_t)cfg.height * cfg.width,
           T_total = (size_t)n_prefix + (size_t)chunks * cfg.latent_frames;
    if (r == HL_OK &&
        !(final = malloc((size_t)dit->cfg.in_channels * T_total * frame * sizeof *final)))
        r = hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory");
    for (int c = 0; r == HL_OK && n_prefix && c < dit->cfg.in_channels; c++)
        memcpy(final + (size_t)c * T_total * frame, prefix + (size_t)c * n_prefix * frame,
               (size_t)n_prefix * frame * sizeof(float));
    if (r == HL_OK) hl_loop_set_probe(loop, &probe);
    for (int k = 0; r == HL_OK && k < chunks;) {
        hl_loop_event ev;
        r = hl_loop_step(loop, &ev);
        if (r != HL_OK || !ev.chunk_done) continue;
        for (int c = 0; c < dit->cfg.in_channels; c++)
            memcpy(final + (size_t)c * T_total * frame +
                       ((size_t)n_prefix + (size_t)k * cfg.latent_frames) * frame,
                   ev.latents + (size_t)c * plane, plane * sizeof(float));
        k++;
    }
    if (r == HL_OK) {
        for (int i = 0; i < 4; i++) {
            if (i == 3 && !pc.kinds[3].n) continue; /* T2V, or no VAE beside the file */
            char name[64];
            snprintf(name, sizeof name, "%ss(%d)", pc.kinds[i].kind, pc.kinds[i].n);
            report(user, file, name, pc.kinds[i].n ? pc.kinds[i].err : INFINITY, pc.kinds[i].tol,
                   0);
        }
        int64_t n = (int64_t)dit->cfg.in_channels * (int64_t)(T_total * frame);
        double ref_max = 0.0, err = INFINITY;
        if (hl_st_read_f32(st, "final_latents", n, &ref, NULL) == HL_OK)
            err = hl_max_abs_diff(final, ref, n, &ref_max);
        report(user, file, "final_latents", err, 1e-4 * fmax(1.0, ref_max), 0);
    }
    hl_loop_free(loop);
    hl_history_free(&hist);
    free(text), free(neg), free(final), free(ref), free(prefix);
    return r;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

hl_status hl_pipeline_verify(const hl_ctx *ctx, const char *dir, hl_report_fn report, void *user) {
    DIR *d = opendir(dir);
    if (!d) return hl_fail(ctx->err, HELIOS_ERR_IO, "%s: cannot open", dir);
    char *files[256];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;)
        if (!strncmp(e->d_name, "pipeline_", 9) && strstr(e->d_name, ".safetensors"))
            files[n++] = strdup(e->d_name);
    closedir(d);
    qsort(files, (size_t)n, sizeof *files, cmp_str);
    hl_status r = HL_OK;
    hl_dit *dit = NULL;
    hl_vae *vae = NULL;
    if (n) { /* the tiny model the pipelines ran */
        char cfg[4096], w[4096];
        snprintf(cfg, sizeof cfg, "%s/transformer_config.json", dir);
        snprintf(w, sizeof w, "%s/transformer_weights_f32.safetensors", dir);
        r = hl_dit_load(cfg, w, &dit, ctx->err);
        /* the tiny VAE, when present, encodes the I2V/V2V inputs as the CLI does */
        char vcfg[4096], vw[4096];
        snprintf(vcfg, sizeof vcfg, "%s/vae_config.json", dir);
        snprintf(vw, sizeof vw, "%s/vae_weights_f32.safetensors", dir);
        FILE *probe_file = fopen(vw, "rb");
        if (probe_file) fclose(probe_file);
        if (r == HL_OK && probe_file) r = hl_vae_load(NULL, vcfg, vw, &vae, ctx->err);
    }
    for (int i = 0; r == HL_OK && i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        hl_safetensors *st = NULL;
        hl_status s = hl_st_open(path, &st, ctx->err);
        if (s == HL_OK) s = run_pipeline(ctx, dit, vae, st, files[i], report, user);
        if (s != HL_OK) {
            char msg[160];
            snprintf(msg, sizeof msg, "run (%s)", ctx->err->msg);
            report(user, files[i], msg, INFINITY, 0.0, 0);
        }
        hl_st_close(st);
    }
    hl_dit_free(dit);
    hl_vae_free(vae);
    for (int i = 0; i < n; i++) free(files[i]);
    return r;
}

/* helios train CONFIG.json --gan-memory: the peak activation memory of one stage-3 generator step
 * with and without Cache Grad (train/gan.h, spec training.md §6.6), for the configuration's model
 * and sample shape. Nothing is trained or written.
 *
 * The step: the generator (the config's transformer) runs a training forward on a random sample
 * of the objective's shape (chunk_frames current latent frames of synthetic.height x
 * synthetic.width, history history_sizes, synthetic.text_len prompt tokens, batch `batch`);
 * its output is re-noised at sigma 0.5 and goes to the discriminator (the critic trunk, here the
 * same weights, with the default GAN heads on its tapped blocks and output); the GAN generator
 * term's gradient comes back into the generator's backward. */
#include <stdio.h>
#include <stdlib.h>

#include "tools/train_memory.h"
#include "train/dit_flat.h"
#include "train/gan.h"

typedef struct shape {
    int B, F, H, W, L, hist[3], recompute;
} shape;

static void read_shape(const train_cfg *c, shape *s) {
    int64_t v[3], x;
    bool b;
    *s = (shape){c->batch, 9, 8, 8, 16, {16, 2, 1}, 1}; /* the stage-1 objective's defaults */
    if (!hl_json_get_int(c->objective, "chunk_frames", &x)) s->F = (int)x;
    if (hl_json_get_int_array(c->objective, "history_sizes", v, 3) == 3)
        for (int i = 0; i < 3; i++) s->hist[i] = (int)v[i];
    if (!hl_json_get_bool(c->objective, "recompute", &b)) s->recompute = b;
    const hl_json *syn = hl_json_get(c->objective, "synthetic");
    if (syn && !hl_json_get_int(syn, "height", &x)) s->H = (int)x;
    if (syn && !hl_json_get_int(syn, "width", &x)) s->W = (int)x;
    if (syn && !hl_json_get_int(syn, "text_len", &x)) s->L = (int)x;
}

static float *random_floats(hl_rng *g, int64_t n) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    if (x) hl_rng_randn_f32(g, x, n);
    return x;
}

static void print_row(const char *what, size_t bytes) {
    printf("  %-40s %10.3f MiB  (%zu bytes)\n", what, (double)bytes / (1 << 20), bytes);
}

int train_gan_memory(const train_cfg *c, const hl_dit_config *dit, const hl_params *layout,
                     float *params, hl_error *err) {
    shape s;
    read_shape(c, &s);
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), err};
    hl_rng g;
    hl_rng_seed(&g, c->seed);
    int64_t C = dit->in_channels, cur = (int64_t)s.B * C * s.F * s.H * s.W;
    int64_t hist[3], idx_n = (int64_t)s.hist[0] + s.hist[1] + s.hist[2] + s.F;
    float *lat[3], *x = random_floats(&g, cur);
    float *text = random_floats(&g, (int64_t)s.B * s.L * dit->text_dim);
    int64_t *idx = malloc((size_t)idx_n * sizeof *idx);
    double *ts = malloc((size_t)s.B * sizeof *ts);
    int ok = x && text && idx && ts;
    for (int i = 0; i < 3; i++) { /* long, mid, short */
        hist[i] = (int64_t)s.B * C * s.hist[i] * s.H * s.W;
        lat[i] = random_floats(&g, hist[i]);
        ok &= lat[i] != NULL;
    }
    for (int64_t i = 0; ok && i < idx_n; i++) idx[i] = i;
    for (int b = 0; ok && b < s.B; b++) ts[b] = 500.0;
    helios_dit_input in;
    helios_dit_input_init(&in);
    in.batch = s.B, in.frames = s.F, in.height = s.H, in.width = s.W;
    in.hidden_states = x, in.timestep = ts, in.text_len = s.L, in.encoder_hidden_states = text;
    in.long_frames = s.hist[0], in.mid_frames = s.hist[1], in.short_frames = s.hist[2];
    in.hist_height = s.H, in.hist_width = s.W;
    in.latents_history_long = s.hist[0] ? lat[0] : NULL;
    in.latents_history_mid = s.hist[1] ? lat[1] : NULL;
    in.latents_history_short = s.hist[2] ? lat[2] : NULL;
    in.indices_latents_history_long = idx;
    in.indices_latents_history_mid = idx + s.hist[0];
    in.indices_latents_history_short = idx + s.hist[0] + s.hist[1];
    in.indices_hidden_states = idx + s.hist[0] + s.hist[1] + s.hist[2];

    hl_gan_config gc;
    hl_gan_config_default(dit, &gc);
    hl_params gl = {0};
    hl_gan *heads = NULL;
    hl_dit *m = NULL, *crit_grad = NULL, *g1 = NULL, *g2 = NULL;
    float *hw = NULL, *gbuf = calloc((size_t)layout->total * 3, sizeof *gbuf);
    hl_status st = ok && gbuf ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "gan memory: out of memory");
    if (st == HL_OK) st = hl_gan_params_layout(&gc, &gl, err);
    if (st == HL_OK && !(hw = calloc((size_t)gl.total, sizeof *hw)))
        st = hl_fail(err, HELIOS_ERR_OOM, "gan memory: out of memory");
    if (st == HL_OK) {
        hl_gan_params_init_random(&gl, hw, &g);
        st = hl_gan_new_flat(&gc, &gl, hw, &heads, err);
    }
    if (st == HL_OK) st = hl_dit_new_flat(dit, layout, params, &m, err);
    if (st == HL_OK) st = hl_dit_new_flat(dit, layout, gbuf, &crit_grad, err);
    if (st == HL_OK) st = hl_dit_new_flat(dit, layout, gbuf + layout->total, &g1, err);
    if (st == HL_OK) st = hl_dit_new_flat(dit, layout, gbuf + 2 * layout->total, &g2, err);
    hl_gan_memory mem = {0};
    hl_gan_critic cr = {m, crit_grad, heads, s.recompute};
    if (st == HL_OK) st = hl_gan_memory_report(&ctx, m, &in, 0.5f, &cr, g1, g2, &mem);
    if (st == HL_OK) {
        printf("gan memory: one generator step, batch %d, %dx%dx%d latents, history %d/%d/%d, "
               "%d prompt tokens, recompute %s, heads on blocks",
               s.B, s.F, s.H, s.W, s.hist[0], s.hist[1], s.hist[2], s.L,
               s.recompute ? "on" : "off");
        for (int k = 0; k < gc.n_blocks; k++) printf(" %d", gc.blocks[k]);
        printf(" + output\n");
        print_row("generator activations (+ backward)", mem.generator);
        print_row("discriminator activations (+ backward)", mem.discriminator);
        print_row("peak with Cache Grad", mem.with_cache);
        print_row("peak without Cache Grad", mem.without_cache);
    }
    hl_gan_free(heads);
    hl_dit_free(m), hl_dit_free(crit_grad), hl_dit_free(g1), hl_dit_free(g2);
    hl_params_free(&gl);
    free(hw), free(gbuf), free(x), free(text), free(idx), free(ts);
    for (int i = 0; i < 3; i++) free(lat[i]);
    return st == HL_OK ? 0 : 1;
}

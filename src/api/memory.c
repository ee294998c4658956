/* Memory known before it is spent: what a generation will allocate, estimated from the loaded
 * model and the generation's sizes, checked against what this process may use, before any of
 * it is allocated (see memory.h for the terms of the estimate). */
#include "api/memory.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "core/log.h"
#include "core/parallel.h"

#define MIB(x) ((double)(x) / 1048576.0)

/* The transformer forward's activation arena (dit.c forward_bytes) for S tokens, with the
 * attention's q/k/v copies and per-thread blocks added. */
static uint64_t dit_forward_bytes(const hl_dit_config *c, uint64_t B, uint64_t S, uint64_t n_cur,
                                  uint64_t L) {
    uint64_t D = (uint64_t)c->dim, rows = B * S, ffn_rows = rows < 4096 ? rows : 4096;
    uint64_t P = (uint64_t)c->patch[0] * c->patch[1] * c->patch[2];
    uint64_t n = rows * D + S * (uint64_t)c->head_dim + 14 * B * D + D + 4 * B * L * D +
                 n_cur * (uint64_t)c->in_channels * P + n_cur * (uint64_t)c->out_channels * P +
                 5 * rows * D + ffn_rows * (uint64_t)c->ffn_dim + 12 * B * D;
    n += 3 * rows * D; /* attention: q, k, v gathered per head group */
    return n * sizeof(float);
}

/* The VAE decoder on one latent frame at a time (decode_chunk's step 1): at each up block the
 * activations of up to temporal_ratio frames at its resolution and width (four buffers: input,
 * two intermediates, shortcut), the causal caches (two frames per cached conv, at most every
 * conv at the widest, finest level: an upper bound), and the conv weights repacked once. */
static uint64_t vae_decode_bytes(const hl_vae *v, uint64_t h, uint64_t w) {
    const hl_vae_decoder *d = &v->decoder;
    uint64_t T = (uint64_t)v->cfg.temporal_ratio, px = h * w, widest = (uint64_t)v->cfg.z_dim,
             act = 0;
    for (int i = 0; i < d->n_up; i++) {
        uint64_t C = 0;
        for (int k = 0; k < d->up[i].n_res; k++) {
            if ((uint64_t)d->up[i].res[k].in > C) C = (uint64_t)d->up[i].res[k].in;
            if ((uint64_t)d->up[i].res[k].out > C) C = (uint64_t)d->up[i].res[k].out;
        }
        uint64_t a = 4 * T * C * px;
        if (a > act) act = a;
        if (C * px > widest) widest = C * px;
        if (d->up[i].up.mode != HL_VAE_NONE) px *= 4; /* x2 in height and width */
    }
    uint64_t caches = 2 * (uint64_t)(d->n_slots > 0 ? d->n_slots : 1) * widest;
    uint64_t weights = 0; /* the conv weights repacked into the backend's layout */
    for (int i = 0; i < d->n_up; i++)
        for (int k = 0; k < d->up[i].n_res; k++) {
            uint64_t ci = (uint64_t)d->up[i].res[k].in, co = (uint64_t)d->up[i].res[k].out;
            weights += 27 * (ci * co + co * co) + ci * co;
        }
    return (act + caches + weights) * sizeof(float);
}

/* The UMT5 forward on max_len tokens (umt5.c: normed input, q, k, v, attention output, the FFN
 * pair) and its position bias / scores (heads x L x L, twice). */
static uint64_t umt5_bytes(const hl_umt5_config *c, uint64_t L) {
    uint64_t D = (uint64_t)c->d_model, I = (uint64_t)c->num_heads * c->d_kv, F = (uint64_t)c->d_ff;
    uint64_t wide = D > I ? D : I;
    if (F > wide) wide = F;
    return (8 * L * wide + 2 * (uint64_t)c->num_heads * L * L + 2 * L * D) * sizeof(float);
}

void hl_mem_estimate(const hl_mem_gen *g, hl_mem_need *out) {
    memset(out, 0, sizeof *out);
    const hl_dit_config *c = &g->dit->cfg;
    uint64_t C = (uint64_t)c->in_channels, F = (uint64_t)g->latent_frames, H = (uint64_t)g->lat_h,
             W = (uint64_t)g->lat_w, B = (uint64_t)g->n_cond, L = (uint64_t)g->text_len;
    uint64_t n = C * F * H * W, hist = (uint64_t)g->history_frames + 2;
    /* chunk_loop.c: x, next, v, noise, a DMD start per stage, the batched input and output;
     * the history window and its batched copies; the text (prompt, from, to) per condition */
    out->latents = ((4 + (uint64_t)g->n_stages + 2 * B) * n + (1 + B) * C * hist * H * W +
                    3 * B * L * (uint64_t)c->text_dim) *
                   sizeof(float);
    uint64_t tpf = (H / (uint64_t)c->patch[1]) *
                   (W / (uint64_t)c->patch[2]); /* tokens per latent frame */
    uint64_t n_cur = (F + (uint64_t)c->patch[0] - 1) / (uint64_t)c->patch[0] * tpf;
    /* the history tokens as if none were compressed (mid/long are 2x/4x smaller): an upper bound */
    out->transformer = dit_forward_bytes(c, B, n_cur + hist * tpf, n_cur, L);
    if (g->vae && g->decode) {
        uint64_t frames = (uint64_t)hl_vae_decoded_frames(&g->vae->cfg, (int64_t)F);
        out->vae = vae_decode_bytes(g->vae, H, W) +
                   2 * C * F * H * W * sizeof(float)          /* denormalised copy */
                   + 3 * frames * H * W * 64 * sizeof(float); /* the decoded chunk */
    }
    if (g->vae &&
        g->conditioned) { /* the encode of one window: like a decode, plus the clip itself */
        uint64_t win = (F - 1) * (uint64_t)g->vae->cfg.temporal_ratio + 1;
        out->vae_encode = vae_decode_bytes(g->vae, H, W) + 3 * win * H * W * 64 * sizeof(float);
    }
    if (g->umt5)
        out->text = umt5_bytes(g->umt5, (uint64_t)g->max_len) +
                    2 * (uint64_t)g->max_len * g->umt5->d_model * sizeof(float);
    /* oneDNN: JIT code, primitive descriptors and per-thread scratchpads of the GEMM, attention
     * and conv primitives. Address space only: each worker thread's stack and malloc arena
     * (glibc reserves 64 MiB per arena) and the output encoder's threads. Both measured with the
     * tiny test model: VmPeak is ~230 MiB above VmSize at this point with 2 threads, and runs
     * below that fail (inside oneDNN, as a segfault). */
    uint64_t threads = (uint64_t)(hl_get_threads() > 0 ? hl_get_threads() : 1);
    out->backend = ((uint64_t)16 << 20) + threads * ((uint64_t)4 << 20);
    out->address_space = ((uint64_t)64 << 20) + threads * ((uint64_t)72 << 20);
    uint64_t vae = out->vae > out->vae_encode ? out->vae : out->vae_encode;
    uint64_t stage = out->transformer > vae ? out->transformer : vae; /* one at a time */
    if (out->text > stage) stage = out->text;
    out->total = out->latents + stage + out->backend;
}

/* A field of /proc/self/status or /proc/meminfo in kB, as bytes (0 when absent). */
static uint64_t proc_kb(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    size_t k = strlen(key);
    uint64_t v = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            unsigned long long kb = 0;
            if (sscanf(line + k + 1, "%llu", &kb) == 1) v = (uint64_t)kb * 1024;
            break;
        }
    fclose(f);
    return v;
}

static uint64_t rlimit_cur(int res) {
    struct rlimit r;
    if (getrlimit(res, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
    return (uint64_t)r.rlim_cur;
}

static void parts(const hl_mem_need *n, char *buf, size_t cap) {
    snprintf(buf, cap,
             "latents and history %.0f MiB, transformer activations %.0f MiB, VAE decode %.0f MiB, "
             "VAE encode %.0f MiB, "
             "text encoder %.0f MiB, oneDNN %.0f MiB, the largest stage counted once; plus %.0f "
             "MiB of address "
             "space for thread stacks and heaps",
             MIB(n->latents), MIB(n->transformer), MIB(n->vae), MIB(n->vae_encode), MIB(n->text),
             MIB(n->backend), MIB(n->address_space));
}

hl_status hl_mem_admit(const hl_mem_need *n, hl_error *err) {
    char detail[512];
    parts(n, detail, sizeof detail);
    const uint64_t virt = n->total + n->address_space; /* what the limits see */
    uint64_t as = rlimit_cur(RLIMIT_AS), data = rlimit_cur(RLIMIT_DATA);
    uint64_t vm = proc_kb("/proc/self/status", "VmSize"),
             vdata = proc_kb("/proc/self/status", "VmData");
    uint64_t avail = proc_kb("/proc/meminfo", "MemAvailable");
    char as_s[32] = "none", data_s[32] = "none";
    if (as != UINT64_MAX) snprintf(as_s, sizeof as_s, "%.0f MiB", MIB(as));
    if (data != UINT64_MAX) snprintf(data_s, sizeof data_s, "%.0f MiB", MIB(data));
    HL_DEBUG("memory: a generation needs about %.0f MiB more (%s); in use %.0f MiB (data %.0f "
             "MiB), limits: address space %s, data %s, available %.0f MiB",
             MIB(virt), detail, MIB(vm), MIB(vdata), as_s, data_s, MIB(avail));
    /* mapped weights are already in VmSize; everything estimated is new anonymous memory, which
     * counts against both limits and needs real memory */
    const char *which = NULL;
    uint64_t limit = 0, used = 0;
    if (as != UINT64_MAX && vm + virt > as)
        which = "the address-space limit (RLIMIT_AS, ulimit -v)", limit = as, used = vm;
    else if (data != UINT64_MAX && vdata + virt > data)
        which = "the data limit (RLIMIT_DATA, ulimit -d)", limit = data, used = vdata;
    if (which)
        return hl_fail(err, HELIOS_ERR_OOM,
                       "generate: not enough memory: needs about %.0f MiB more, but %s of %.0f MiB "
                       "leaves %.0f MiB "
                       "(%.0f MiB in use) (%s)",
                       MIB(virt), which, MIB(limit), used < limit ? MIB(limit - used) : 0.0,
                       MIB(used), detail);
    if (avail && n->total > avail)
        return hl_fail(err, HELIOS_ERR_OOM,
                       "generate: not enough memory: needs about %.0f MiB more, but only %.0f MiB "
                       "is available "
                       "(MemAvailable) (%s)",
                       MIB(n->total), MIB(avail), detail);
    return HL_OK;
}

/* The run state of an encode or a decode stream: cache slots, grow-only work buffers, and the
 * two conv helpers every block goes through (they also count the FLOPs). */
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "vae/vae_internal.h"

hl_status hl_vae_run_init(hl_vae_run *r, const hl_ctx *ctx, hl_vae *v, int n_slots,
                          const hl_tensor *first_weight) {
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->vae = v;
    /* bf16 conv inputs only where the conv rounds them anyway (ops.h precision rule) */
    r->act = hl_ctx_kind(ctx) != HELIOS_BACKEND_REF && first_weight->dtype == HL_BF16 ? HL_BF16
                                                                                      : HL_F32;
    r->n_slots = n_slots;
    r->slots = calloc((size_t)(n_slots > 0 ? n_slots : 1), sizeof *r->slots);
    if (!r->slots) return hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE: out of memory (cache slots)");
    return HL_OK;
}

void hl_vae_run_reset(hl_vae_run *r) {
    for (int i = 0; i < r->n_slots; i++) {
        hl_vae_slot *s = &r->slots[i];
        r->bytes -= s->frame_bytes * (size_t)s->cap;
        free(s->frames);
        memset(s, 0, sizeof *s);
    }
}

void hl_vae_run_free(hl_vae_run *r) {
    if (r->slots) hl_vae_run_reset(r);
    free(r->slots);
    for (int i = 0; i < BUF_COUNT; i++) free(r->buf[i].p);
    memset(r, 0, sizeof *r);
}

size_t hl_vae_act_size(const hl_vae_run *r) { return r->act == HL_BF16 ? 2 : 4; }

static void add_bytes(hl_vae_run *r, size_t add, size_t sub) {
    r->bytes += add - sub;
    if (r->bytes > r->peak_bytes) r->peak_bytes = r->bytes;
}

void *hl_vae_buf(hl_vae_run *r, int which, size_t bytes) {
    if (r->buf[which].cap >= bytes) return r->buf[which].p;
    size_t cap = bytes + bytes / 8 + 4096; /* some slack: chunk sizes vary a little */
    void *p = NULL;
    if (posix_memalign(&p, 64, cap) != 0) {
        hl_fail(r->ctx->err, HELIOS_ERR_OOM, "VAE: out of memory (work buffer of %zu bytes)",
                bytes);
        return NULL;
    }
    free(r->buf[which].p);
    add_bytes(r, cap, r->buf[which].cap);
    r->buf[which].p = p;
    r->buf[which].cap = cap;
    return p;
}

float *hl_vae_other(hl_vae_run *r, const hl_vae_act *a, int64_t n, int *which) {
    *which = a->buf == BUF_X0 ? BUF_X1 : BUF_X0;
    return hl_vae_buf(r, *which, (size_t)n * sizeof(float));
}

void *hl_vae_conv_input(hl_vae_run *r, int lead, int64_t T, int64_t S, int64_t C) {
    return hl_vae_buf(r, BUF_IN, (size_t)((lead + T) * S * C) * hl_vae_act_size(r));
}

void *hl_vae_frame(const hl_vae_run *r, void *base, int64_t f, int64_t S, int64_t C) {
    return (char *)base + (size_t)(f * S * C) * hl_vae_act_size(r);
}

static void count_flops(hl_vae_run *r, const hl_vae_conv *c, int64_t C, int64_t To, int64_t Ho,
                        int64_t Wo) {
    double taps = (double)hl_tensor_numel(&c->w) / (double)c->w.shape[0] / (double)C;
    r->flops += 2.0 * (double)c->w.shape[0] * (double)C * taps * (double)To * (double)Ho *
                (double)Wo;
}

hl_status hl_vae_conv_plain(hl_vae_run *r, hl_vae_conv *c, const void *x, hl_dtype xdt, int64_t T,
                            int64_t H, int64_t W, int64_t C, const int stride[3], const int pad[6],
                            float *y, int accumulate) {
    hl_conv3d_shape s = {HL_NTHWC,
                         xdt,
                         1,
                         C,
                         T,
                         H,
                         W,
                         {stride[0], stride[1], stride[2]},
                         {pad[0], pad[1], pad[2], pad[3], pad[4], pad[5]},
                         accumulate};
    int kt = c->w.ndim == 5 ? (int)c->w.shape[2] : 1;
    int kh = (int)c->w.shape[c->w.ndim - 2], kw = (int)c->w.shape[c->w.ndim - 1];
    count_flops(r, c, C, hl_conv_out_len(T, kt, stride[0], pad[0], pad[1]),
                hl_conv_out_len(H, kh, stride[1], pad[2], pad[3]),
                hl_conv_out_len(W, kw, stride[2], pad[4], pad[5]));
    return hl_conv3d(r->ctx, &s, x, &c->w, &c->b, &c->pack, y);
}

/* Parallel memcpy: the cache copies move whole frames (tens of MB at 256x256). */
typedef struct copy_job {
    char *dst;
    const char *src;
} copy_job;

static void copy_part(int64_t a, int64_t b, void *arg) {
    copy_job *j = arg;
    memcpy(j->dst + a, j->src + a, (size_t)(b - a));
}

static void copy_bytes(void *dst, const void *src, size_t n) {
    copy_job j = {dst, src};
    if (n < ((size_t)1 << 20)) memcpy(dst, src, n);
    else hl_parallel_for((int64_t)n, copy_part, &j);
}

hl_status hl_vae_causal_conv(hl_vae_run *r, hl_vae_conv *c, void *in, int64_t T, int64_t H,
                             int64_t W, int64_t C, float *y, int accumulate) {
    hl_vae_slot *s = &r->slots[c->slot];
    size_t fb = (size_t)(H * W * C) * hl_vae_act_size(r);
    if (!s->frames) { /* first use: a zero cache is the causal zero padding */
        if (!(s->frames = calloc(HL_VAE_CACHE_T, fb ? fb : 1)))
            return hl_fail(r->ctx->err, HELIOS_ERR_OOM, "VAE: out of memory (cache of %zu bytes)",
                           2 * fb);
        s->frame_bytes = fb;
        s->cap = HL_VAE_CACHE_T;
        add_bytes(r, HL_VAE_CACHE_T * fb, 0);
    } else if (s->frame_bytes != fb || s->cap != HL_VAE_CACHE_T) {
        return hl_fail(r->ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE: a chunk changed the frame size within one stream");
    }
    copy_bytes(in, s->frames, HL_VAE_CACHE_T * fb); /* [cache, x] */
    int kh = (int)c->w.shape[3], kw = (int)c->w.shape[4];
    int stride[3] = {1, 1, 1}, pad[6] = {0, 0, kh / 2, kh / 2, kw / 2, kw / 2};
    HL_TRY(hl_vae_conv_plain(r, c, in, r->act, T + HL_VAE_CACHE_T, H, W, C, stride, pad, y,
                             accumulate));
    copy_bytes(s->frames, (char *)in + (size_t)T * fb, HL_VAE_CACHE_T * fb); /* last 2 frames */
    s->started = true;
    return HL_OK;
}

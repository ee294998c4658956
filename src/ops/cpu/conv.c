/* cpu Conv3d through oneDNN's convolution primitive (C API), with a primitive cache and packed
 * weights (hl_conv_pack).
 *
 * Precision: the conv runs in the weight dtype (bf16 -> AMX brgconv, x rounded to bf16 by a
 * reorder when it arrives as f32; f32 -> AVX-512 brgconv). y and the bias are float32.
 *
 * Layouts, measured on this 2-core AMX Xeon (oneDNN 2.6.3, 3x3x3 conv, 6 -> 4 frames, bf16, best
 * of 3 on an otherwise idle machine; "blocked" = src/dst "any" (oneDNN picks nCdhw16c-like)
 * plus the two reorders from/to the caller's layout):
 *                       conv on plain ncdhw    blocked conv  + reorders   ndhwc direct
 *   C=O=96,  256x256      465 ms (gemm:jit)       51 ms      + 28 + 14 ms     50 ms
 *   C=O=192, 128x128                              38 ms      + 12 +  6 ms     40 ms
 *   C=O=384, 64x64                                38 ms      +  6 +  3 ms     43 ms
 * So HL_NCTHW goes through "any" + reorders (5x better than plain ncdhw) and HL_NTHWC runs
 * ndhwc directly (the blocked conv is within +-10%, the reorders cost 25-80% more). The AMX
 * brgconv kernels reach 2500-3400 GFLOP/s here, 2-3x the 4096^3 bf16 matmul of cpu_bench.h;
 * f32 (AVX-512 brgconv) about 410 GFLOP/s.
 * Weights must be in oneDNN's blocked layout ("oidhw" as stored makes oneDNN fall back to its
 * reference kernel at ~1 GFLOP/s), and that reorder is slow: 2.7 ms for a 384x384x3x3x3 weight,
 * longer than the 2.4 ms conv of a one-frame 32x32 chunk. Hence hl_conv_pack, which keeps the
 * blocked copy between calls.
 *
 * On an error while building a primitive (an unsupported combination) the call returns
 * HELIOS_ERR_UNSUPPORTED before writing anything, and ops.c runs it on the table's fallback (ref)
 * with a one-time warning. The engine, stream 0, scratch and the primitive cache are the
 * instance's (cpu_internal.h); calls are serialised by its lock. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/log.h"
#include "ops/cpu/cpu_internal.h"
#include "ops/ref/conv_util.h"

static hl_status dnnl_fail(hl_error *err, dnnl_status_t st, const char *what) {
    return hl_fail(err, HELIOS_ERR_INTERNAL, "conv3d: oneDNN %s failed: %s", what,
                   dnnl_status2str(st));
}

/* ---- primitive cache ------------------------------------------------------------------------- */

typedef struct conv_key {
    int64_t N, C, T, H, W, O, kt, kh, kw;
    int stride[3], pad[6];
    int layout, x_dt, w_dt, c_dt, bias, acc, nthr; /* c_dt: compute dtype (w_dt, or F32) */
} conv_key;

typedef struct conv_prim {
    conv_key key;
    dnnl_engine_t engine;
    dnnl_primitive_t conv;
    dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md, pad_md; /* what the conv wants */
    dnnl_memory_desc_t x_md, y_md, w_md;                        /* the caller's tensors */
    dnnl_primitive_t x_reorder;   /* x_md -> src_md (layout or dtype differ), else NULL */
    dnnl_primitive_t y_in, y_out; /* y_md <-> dst_md (NCTHW), else NULL */
    dnnl_primitive_t w_reorder;   /* w_md -> wei_md */
    size_t pad_bytes;             /* the largest scratchpad of the five */
} conv_prim;

static void prim_destroy(conv_prim *p) {
    dnnl_primitive_t *all[] = {&p->conv, &p->x_reorder, &p->y_in, &p->y_out, &p->w_reorder};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (*all[i]) dnnl_primitive_destroy(*all[i]);
    memset(p, 0, sizeof *p);
}

static dnnl_data_type_t dnnl_dt(int dt) { return dt == HL_BF16 ? dnnl_bf16 : dnnl_f32; }

static size_t pd_pad_bytes(const_dnnl_primitive_desc_t pd) {
    return dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
}

dnnl_status_t hl_cpu_dnnl_reorder_make(dnnl_engine_t eng, const dnnl_memory_desc_t *a,
                                       const dnnl_memory_desc_t *b,
                                       const_dnnl_primitive_attr_t attr, dnnl_primitive_t *out,
                                       size_t *pad) {
    *out = NULL;
    if (dnnl_memory_desc_equal(a, b)) return dnnl_success;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, a, eng, b, eng, attr);
    if (st != dnnl_success) return st;
    size_t n = pd_pad_bytes(pd);
    if (n > *pad) *pad = n;
    st = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static dnnl_status_t prim_build(conv_prim *p, dnnl_primitive_attr_t attr) {
    const conv_key *k = &p->key;
    dnnl_dims_t xd = {k->N, k->C, k->T, k->H, k->W};
    int64_t To = hl_conv_out_len(k->T, k->kt, k->stride[0], k->pad[0], k->pad[1]);
    int64_t Ho = hl_conv_out_len(k->H, k->kh, k->stride[1], k->pad[2], k->pad[3]);
    int64_t Wo = hl_conv_out_len(k->W, k->kw, k->stride[2], k->pad[4], k->pad[5]);
    dnnl_dims_t yd = {k->N, k->O, To, Ho, Wo}, wd = {k->O, k->C, k->kt, k->kh, k->kw}, bd = {k->O};
    dnnl_dims_t strides = {k->stride[0], k->stride[1], k->stride[2]};
    dnnl_dims_t pad_l = {k->pad[0], k->pad[2], k->pad[4]},
                pad_r = {k->pad[1], k->pad[3], k->pad[5]};
    const dnnl_format_tag_t user_tag = k->layout == HL_NTHWC ? dnnl_ndhwc : dnnl_ncdhw;
    const dnnl_format_tag_t conv_tag = k->layout == HL_NTHWC ? dnnl_ndhwc : dnnl_format_tag_any;
    const dnnl_data_type_t cdt = dnnl_dt(k->c_dt);
    dnnl_memory_desc_t src_req, wei_req, dst_req;
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&p->x_md, 5, xd, dnnl_dt(k->x_dt), user_tag)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->y_md, 5, yd, dnnl_f32, user_tag)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->w_md, 5, wd, dnnl_dt(k->w_dt), dnnl_oidhw)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->bias_md, 1, bd, dnnl_f32, dnnl_a)) ||
        (st = dnnl_memory_desc_init_by_tag(&src_req, 5, xd, cdt, conv_tag)) ||
        (st = dnnl_memory_desc_init_by_tag(&wei_req, 5, wd, cdt, dnnl_format_tag_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&dst_req, 5, yd, dnnl_f32, conv_tag)))
        return st;
    dnnl_convolution_desc_t cd;
    st = dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                            &src_req, &wei_req, k->bias ? &p->bias_md : NULL,
                                            &dst_req, strides, pad_l, pad_r);
    if (st != dnnl_success) return st;
    dnnl_primitive_desc_t pd = NULL;
    if ((st = dnnl_primitive_desc_create(&pd, &cd, attr, p->engine, NULL)) != dnnl_success)
        return st;
    p->src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    p->wei_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    p->dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    p->pad_bytes = pd_pad_bytes(pd);
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    HL_DEBUG("conv3d: %lldx%lldx%lldx%lldx%lld -> %lld, k %lldx%lldx%lld, %s: %s", (long long)k->N,
             (long long)k->C, (long long)k->T, (long long)k->H, (long long)k->W, (long long)k->O,
             (long long)k->kt, (long long)k->kh, (long long)k->kw,
             k->c_dt == HL_BF16 ? "bf16" : "f32", impl);
    st = dnnl_primitive_create(&p->conv, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return st;
    /* reorders share the attribute's user-scratchpad mode, not its post-ops */
    dnnl_primitive_attr_t rattr = NULL;
    if ((st = dnnl_primitive_attr_create(&rattr)) != dnnl_success) return st;
    dnnl_primitive_attr_set_scratchpad_mode(rattr, dnnl_scratchpad_mode_user);
    st = hl_cpu_dnnl_reorder_make(p->engine, &p->x_md, &p->src_md, rattr, &p->x_reorder,
                                  &p->pad_bytes);
    if (st == dnnl_success && k->acc)
        st = hl_cpu_dnnl_reorder_make(p->engine, &p->y_md, &p->dst_md, rattr, &p->y_in,
                                      &p->pad_bytes);
    if (st == dnnl_success)
        st = hl_cpu_dnnl_reorder_make(p->engine, &p->dst_md, &p->y_md, rattr, &p->y_out,
                                      &p->pad_bytes);
    if (st == dnnl_success)
        st = hl_cpu_dnnl_reorder_make(p->engine, &p->w_md, &p->wei_md, rattr, &p->w_reorder,
                                      &p->pad_bytes);
    dnnl_primitive_attr_destroy(rattr);
    dnnl_memory_desc_t pad1d;
    dnnl_dims_t padd = {(int64_t)(p->pad_bytes ? p->pad_bytes : 1)};
    dnnl_memory_desc_init_by_tag(&pad1d, 1, padd, dnnl_u8, dnnl_a);
    p->pad_md = pad1d;
    return st;
}

static hl_status prim_create(dnnl_engine_t eng, conv_prim *p, const conv_key *key, hl_error *err) {
    memset(p, 0, sizeof *p);
    p->key = *key;
    p->engine = eng;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && key->acc) {
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    /* oneDNN sizes its thread partitioning from omp_get_max_threads() at creation */
    int saved = omp_get_max_threads();
    omp_set_num_threads(key->nthr);
    if (st == dnnl_success) st = prim_build(p, attr);
    omp_set_num_threads(saved);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        hl_status s = dnnl_fail(err, st, "primitive creation");
        prim_destroy(p);
        return s;
    }
    return HL_OK;
}

static hl_status prim_new(hl_cpu *cpu, const void *key, void **obj, hl_error *err) {
    conv_prim *p = malloc(sizeof *p);
    if (!p) return hl_fail(err, HELIOS_ERR_OOM, "conv3d: out of memory (primitive)");
    hl_status st = prim_create(hl_cpu_engine(cpu), p, key, err);
    if (st != HL_OK) {
        free(p);
        return st;
    }
    *obj = p;
    return HL_OK;
}

static void prim_free(void *obj) {
    prim_destroy(obj);
    free(obj);
}

static hl_status prim_get(hl_cpu *cpu, const conv_key *key, conv_prim **out, hl_error *err) {
    void *obj = NULL;
    HL_TRY(hl_cpu_cache_get(cpu, HL_PRIM_CONV, key, sizeof *key, prim_new, prim_free, &obj, err));
    *out = obj;
    return HL_OK;
}

/* ---- execution ------------------------------------------------------------------------------- */

hl_status hl_cpu_dnnl_run(const hl_cpu *cpu, dnnl_primitive_t prim, const hl_dnnl_arg *args, int n,
                          int nthr, const char *what, hl_error *err) {
    dnnl_exec_arg_t ex[8];
    int m = 0;
    dnnl_status_t st = dnnl_success;
    for (int i = 0; i < n && i < 8 && st == dnnl_success; i++) {
        if (!args[i].handle) continue;
        ex[m].arg = args[i].arg;
        st = dnnl_memory_create(&ex[m].memory, args[i].md, hl_cpu_engine(cpu),
                                (void *)args[i].handle);
        if (st == dnnl_success) m++;
    }
    if (st == dnnl_success) st = hl_cpu_dnnl_execute(prim, hl_cpu_stream(cpu, 0), m, ex, nthr);
    for (int i = 0; i < m; i++) dnnl_memory_destroy(ex[i].memory);
    return st == dnnl_success ? HL_OK
                              : hl_fail(err, HELIOS_ERR_INTERNAL, "%s: oneDNN failed: %s", what,
                                        dnnl_status2str(st));
}

hl_status hl_cpu_dnnl_reorder_run(const hl_cpu *cpu, dnnl_primitive_t r,
                                  const dnnl_memory_desc_t *from, const void *a,
                                  const dnnl_memory_desc_t *to, void *b,
                                  const dnnl_memory_desc_t *pad_md, void *pad, int nthr,
                                  const char *what, hl_error *err) {
    hl_dnnl_arg args[3] = {
        {DNNL_ARG_FROM, from, a}, {DNNL_ARG_TO, to, b}, {DNNL_ARG_SCRATCHPAD, pad_md, pad}};
    return hl_cpu_dnnl_run(cpu, r, args, 3, nthr, what, err);
}

static hl_status reorder(const hl_cpu *cpu, const conv_prim *p, dnnl_primitive_t r,
                         const dnnl_memory_desc_t *from, const void *a,
                         const dnnl_memory_desc_t *to, void *b, void *pad, hl_error *err) {
    return hl_cpu_dnnl_reorder_run(cpu, r, from, a, to, b, &p->pad_md, pad, p->key.nthr,
                                   "conv3d: reorder", err);
}

/* ---- packs ----------------------------------------------------------------------------------- */

#define PACK_VARIANTS 4

/* Blocked copies of one weight, one per blocked layout the primitives asked for (a one-frame
 * and a four-frame chunk may block the same weight differently). */
typedef struct cpu_pack {
    hl_conv_pack base; /* owner = the cpu table */
    struct {
        const void *src; /* the weight data it was made from */
        hl_dtype dt;
        dnnl_memory_desc_t md;
        void *data;
        uint64_t last_use; /* 0: empty */
    } v[PACK_VARIANTS];
    uint64_t tick;
} cpu_pack;

static void pack_free(hl_conv_pack *base) {
    cpu_pack *p = (cpu_pack *)base;
    for (int i = 0; i < PACK_VARIANTS; i++) free(p->v[i].data);
    free(p);
}

/* The blocked weight for primitive prim: from the pack (made on a miss) or, without a pack, a
 * reorder into scratch. */
static hl_status packed_weight(const hl_ctx *ctx, const conv_prim *prim, const hl_tensor *w,
                               hl_conv_pack **pack, void *pad, const void **out) {
    hl_cpu *cpu = hl_cpu_of(ctx);
    if (pack && *pack && (*pack)->owner != &hl_cpu_backend_ops) pack = NULL; /* not ours */
    if (!prim->w_reorder) { /* already what the conv wants (not seen in practice) */
        *out = w->data;
        return HL_OK;
    }
    size_t bytes = dnnl_memory_desc_get_size(&prim->wei_md);
    if (!pack) {
        void *dst = hl_cpu_scratch(cpu, HL_SLOT_CONV_WEI, bytes);
        if (!dst) return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (weights)");
        HL_TRY(reorder(cpu, prim, prim->w_reorder, &prim->w_md, w->data, &prim->wei_md, dst, pad,
                       ctx->err));
        *out = dst;
        return HL_OK;
    }
    if (!*pack) {
        cpu_pack *np = calloc(1, sizeof *np);
        if (!np) return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (weight pack)");
        np->base.owner = &hl_cpu_backend_ops;
        np->base.free_fn = pack_free;
        *pack = &np->base;
    }
    cpu_pack *pk = (cpu_pack *)*pack;
    int victim = 0;
    for (int i = 0; i < PACK_VARIANTS; i++) {
        if (pk->v[i].last_use && pk->v[i].src == w->data && pk->v[i].dt == w->dtype &&
            dnnl_memory_desc_equal(&pk->v[i].md, &prim->wei_md)) {
            pk->v[i].last_use = ++pk->tick;
            *out = pk->v[i].data;
            return HL_OK;
        }
        if (pk->v[i].last_use < pk->v[victim].last_use) victim = i;
    }
    free(pk->v[victim].data);
    memset(&pk->v[victim], 0, sizeof pk->v[victim]);
    void *data = NULL;
    if (posix_memalign(&data, 64, (bytes + 63) / 64 * 64) != 0)
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (weight pack, %zu bytes)",
                       bytes);
    hl_status st = reorder(cpu, prim, prim->w_reorder, &prim->w_md, w->data, &prim->wei_md, data,
                           pad, ctx->err);
    if (st != HL_OK) {
        free(data);
        return st;
    }
    pk->v[victim].src = w->data;
    pk->v[victim].dt = w->dtype;
    pk->v[victim].md = prim->wei_md;
    pk->v[victim].data = data;
    pk->v[victim].last_use = ++pk->tick;
    *out = data;
    return HL_OK;
}

/* ---- the op ---------------------------------------------------------------------------------- */

static hl_status conv_locked(const hl_ctx *ctx, const hl_conv3d_shape *s, const hl_conv_geom *g,
                             const void *x, const hl_tensor *w, const float *bias,
                             hl_conv_pack **pack, float *y) {
    hl_cpu *cpu = hl_cpu_of(ctx);
    conv_key key;
    memset(&key, 0, sizeof key); /* padding bytes take part in memcmp */
    key.N = g->N, key.C = g->C, key.T = g->T, key.H = g->H, key.W = g->W;
    key.O = g->O, key.kt = g->kt, key.kh = g->kh, key.kw = g->kw;
    memcpy(key.stride, s->stride, sizeof key.stride);
    memcpy(key.pad, s->pad, sizeof key.pad);
    key.layout = s->layout, key.x_dt = s->x_dtype, key.w_dt = w->dtype;
    /* without bf16 kernels the reorders convert x and the weights to f32 */
    key.c_dt = w->dtype == HL_BF16 && !hl_cpu_bf16_gemm(cpu) ? HL_F32 : w->dtype;
    key.bias = bias != NULL, key.acc = s->accumulate != 0;
    key.nthr = hl_cpu_nthr_for((double)g->N * g->O * g->C * g->kt * g->kh * g->kw * g->T * g->H *
                               g->W / ((double)s->stride[0] * s->stride[1] * s->stride[2]));
    conv_prim *p;
    hl_status st = prim_get(cpu, &key, &p, ctx->err);
    if (st != HL_OK) /* nothing written yet: ops.c may run the fallback */
        return st == HELIOS_ERR_OOM ? st : HELIOS_ERR_UNSUPPORTED;
    void *pad = hl_cpu_scratch(cpu, HL_SLOT_CONV_PAD, p->pad_bytes);
    if (!pad) return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (scratchpad)");
    const void *wei = NULL;
    HL_TRY(packed_weight(ctx, p, w, pack, pad, &wei));
    const void *src = x;
    if (p->x_reorder) {
        void *buf = hl_cpu_scratch(cpu, HL_SLOT_CONV_SRC, dnnl_memory_desc_get_size(&p->src_md));
        if (!buf) return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (input copy)");
        HL_TRY(reorder(cpu, p, p->x_reorder, &p->x_md, x, &p->src_md, buf, pad, ctx->err));
        src = buf;
    }
    float *dst = y;
    if (p->y_out) {
        if (!(dst = hl_cpu_scratch(cpu, HL_SLOT_CONV_DST, dnnl_memory_desc_get_size(&p->dst_md))))
            return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (output copy)");
        if (p->y_in) HL_TRY(reorder(cpu, p, p->y_in, &p->y_md, y, &p->dst_md, dst, pad, ctx->err));
    }
    hl_dnnl_arg args[5] = {{DNNL_ARG_SRC, &p->src_md, src},
                           {DNNL_ARG_WEIGHTS, &p->wei_md, wei},
                           {DNNL_ARG_BIAS, &p->bias_md, bias},
                           {DNNL_ARG_DST, &p->dst_md, dst},
                           {DNNL_ARG_SCRATCHPAD, &p->pad_md, pad}};
    HL_TRY(hl_cpu_dnnl_run(cpu, p->conv, args, 5, p->key.nthr, "conv3d: convolution", ctx->err));
    if (p->y_out) HL_TRY(reorder(cpu, p, p->y_out, &p->dst_md, dst, &p->y_md, y, pad, ctx->err));
    return HL_OK;
}

/* An empty sum (no input channels or no input frames / rows / columns inside the padding, which
 * oneDNN rejects): y = b (+ y when accumulating) at every output position. */
static void conv_empty_sum(const hl_conv3d_shape *s, const hl_conv_geom *g, const hl_tensor *b,
                           float *y) {
    const int64_t P = g->To * g->Ho * g->Wo;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->O; o++) {
            float bo = 0.0f;
            if (b)
                hl_convert_to_f32(
                    b->dtype, (const char *)b->data + (size_t)o * hl_dtype_size(b->dtype), &bo, 1);
            for (int64_t p = 0; p < P; p++) {
                float *yp = s->layout == HL_NCTHW ? y + (n * g->O + o) * P + p
                                                  : y + (n * P + p) * g->O + o;
                *yp = s->accumulate ? *yp + bo : bo;
            }
        }
}

hl_status hl_cpu_conv3d(const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x,
                        const hl_tensor *w, const hl_tensor *b, hl_conv_pack **pack, float *y) {
    hl_conv_geom g = {0};
    hl_conv3d_geometry(s, w, &g);
    if (g.C == 0 || g.T == 0 || g.H == 0 || g.W == 0) {
        conv_empty_sum(s, &g, b, y);
        return HL_OK;
    }
    hl_cpu *cpu = hl_cpu_of(ctx);
    hl_status st = HL_OK;
    hl_cpu_lock(cpu);
    const float *bias = NULL;
    if (b && b->dtype == HL_F32) {
        bias = b->data;
    } else if (b) {
        float *bf = hl_cpu_scratch(cpu, HL_SLOT_CONV_BIAS, (size_t)g.O * sizeof(float));
        if (!bf) st = hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (bias)");
        else hl_convert_to_f32(b->dtype, b->data, bf, (size_t)g.O);
        bias = bf;
    }
    if (st == HL_OK) st = conv_locked(ctx, s, &g, x, w, bias, pack, y);
    hl_cpu_unlock(cpu);
    return st;
}

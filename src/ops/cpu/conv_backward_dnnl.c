/* cpu Conv3d backward through oneDNN's convolution backward primitives, channels-last: backward
 * data gives dx, backward weights gives dw and db (into scratch, then added: the op accumulates
 * them). Precision as the forward's (conv.c): in the weight dtype. f32 weights: float32 through
 * and through. bf16 weights (where oneDNN has bf16 kernels): x and dy rounded to bf16 by
 * reorders, the products in bf16 with float32 sums (AMX here), dx, dw and db float32 — 4-6x the
 * float32 kernels on the tiny VAE's convolutions (16-32 channels at 64x64 and 32x32, 33 frames;
 * 2 threads, AMX Xeon). The weights are reordered from the stored [O, C, kt, kh, kw] into the
 * primitive's layout on every call (the optimizer changes them between calls; a few thousand
 * values). Primitives are cached per geometry with the forward's and made for the call's thread
 * count; oneDNN's reduction order depends on that count, so results are the same for a given
 * thread count, not across counts.
 *
 * Why: over our GEMM (conv_backward.c), dx is a GEMM with K = O (16-32 in the tiny VAE: a C
 * tile round trip per few multiply-adds) into a taps·C-wide block that col2im then scatters,
 * and dw reads an im2col copy 27x the input; oneDNN's direct kernels do neither (measured in
 * conv_backward.c's header). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/log.h"
#include "ops/cpu/cpu_internal.h"
#include "ops/ref/conv_util.h"

typedef struct cbw_key {
    int64_t N, C, T, H, W, O, kt, kh, kw;
    int stride[3], pad[6];
    int w_dt, c_dt, dx, dw, db, nthr; /* c_dt: compute dtype; dw: the weights primitive runs */
} cbw_key;

typedef struct cbw_prim {
    cbw_key key;
    dnnl_primitive_t bwd_d, bwd_w; /* NULL when not wanted */
    dnnl_primitive_t w_reorder;    /* w as stored -> bwd_d's weights (NULL: the same) */
    dnnl_primitive_t dw_reorder;   /* bwd_w's diff weights -> [O, C, kt, kh, kw] (NULL: same) */
    dnnl_primitive_t x_reorder, y_reorder; /* x, dy -> bf16 (bf16 compute), else NULL */
    dnnl_memory_desc_t x_md, y_md;         /* the caller's x / dx and dy: float32 */
    dnnl_memory_desc_t xc_md, yc_md;       /* x and dy in the compute dtype */
    dnnl_memory_desc_t w_md, wd_md, dw_md, dwu_md, db_md, pad_md;
    size_t pad_bytes;
} cbw_prim;

static void cbw_destroy(cbw_prim *p) {
    dnnl_primitive_t *all[] = {&p->bwd_d,      &p->bwd_w,     &p->w_reorder,
                               &p->dw_reorder, &p->x_reorder, &p->y_reorder};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (*all[i]) dnnl_primitive_destroy(*all[i]);
    memset(p, 0, sizeof *p);
}

/* pd's primitive into *out, its scratchpad size into *pad (the largest), its kernel logged; *out
 * stays NULL where oneDNN has only its im2col GEMM ("gemm:jit", as on AVX2 for most weight
 * gradients: no better than ours, and ours gives the same bits on any thread count) or its
 * reference loops. */
static dnnl_status_t make_prim(dnnl_primitive_desc_t pd, const char *what, dnnl_primitive_t *out,
                               size_t *pad) {
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    const int direct = !strncmp(impl, "jit", 3) || !strncmp(impl, "brg", 3);
    HL_DEBUG("conv3d_backward: %s: %s%s", what, impl, direct ? "" : " (not used: our GEMM runs)");
    if (!direct) return dnnl_success;
    size_t n = dnnl_memory_desc_get_size(
        dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    if (n > *pad) *pad = n;
    return dnnl_primitive_create(out, pd);
}

static dnnl_status_t cbw_build(cbw_prim *p, dnnl_engine_t eng, const_dnnl_primitive_attr_t attr) {
    const cbw_key *k = &p->key;
    const int64_t To = hl_conv_out_len(k->T, k->kt, k->stride[0], k->pad[0], k->pad[1]),
                  Ho = hl_conv_out_len(k->H, k->kh, k->stride[1], k->pad[2], k->pad[3]),
                  Wo = hl_conv_out_len(k->W, k->kw, k->stride[2], k->pad[4], k->pad[5]);
    dnnl_dims_t xd = {k->N, k->C, k->T, k->H, k->W}, yd = {k->N, k->O, To, Ho, Wo},
                wd = {k->O, k->C, k->kt, k->kh, k->kw}, bd = {k->O};
    dnnl_dims_t strides = {k->stride[0], k->stride[1], k->stride[2]};
    dnnl_dims_t pad_l = {k->pad[0], k->pad[2], k->pad[4]},
                pad_r = {k->pad[1], k->pad[3], k->pad[5]};
    const dnnl_data_type_t cdt = k->c_dt == HL_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t wany, dwany;
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&p->x_md, 5, xd, dnnl_f32, dnnl_ndhwc)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->y_md, 5, yd, dnnl_f32, dnnl_ndhwc)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->xc_md, 5, xd, cdt, dnnl_ndhwc)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->yc_md, 5, yd, cdt, dnnl_ndhwc)) ||
        (st = dnnl_memory_desc_init_by_tag(
             &p->w_md, 5, wd, k->w_dt == HL_BF16 ? dnnl_bf16 : dnnl_f32, dnnl_oidhw)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->dwu_md, 5, wd, dnnl_f32, dnnl_oidhw)) ||
        (st = dnnl_memory_desc_init_by_tag(&p->db_md, 1, bd, dnnl_f32, dnnl_a)) ||
        (st = dnnl_memory_desc_init_by_tag(&wany, 5, wd, cdt, dnnl_format_tag_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&dwany, 5, wd, dnnl_f32, dnnl_format_tag_any)))
        return st;
    /* the backward primitives are made from a forward one (the hint); a direction oneDNN has no
     * primitive for stays NULL (our GEMM runs it) */
    dnnl_convolution_desc_t fd, bdd, bwd;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    st = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                            &p->xc_md, &wany, &p->db_md, &p->yc_md, strides, pad_l,
                                            pad_r);
    if (st == dnnl_success && dnnl_primitive_desc_create(&fpd, &fd, attr, eng, NULL))
        return dnnl_success; /* no forward: neither direction */
    if (st == dnnl_success && k->dx &&
        !dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, &p->x_md, &wany,
                                                  &p->yc_md, strides, pad_l, pad_r) &&
        !dnnl_primitive_desc_create(&pd, &bdd, attr, eng, fpd)) {
        p->wd_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        st = make_prim(pd, "data", &p->bwd_d, &p->pad_bytes);
        dnnl_primitive_desc_destroy(pd), pd = NULL;
        if (st == dnnl_success && p->bwd_d)
            st = hl_cpu_dnnl_reorder_make(eng, &p->w_md, &p->wd_md, attr, &p->w_reorder,
                                          &p->pad_bytes);
    }
    if (st == dnnl_success && k->dw &&
        !dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &p->xc_md,
                                                     &dwany, k->db ? &p->db_md : NULL, &p->yc_md,
                                                     strides, pad_l, pad_r) &&
        !dnnl_primitive_desc_create(&pd, &bwd, attr, eng, fpd)) {
        p->dw_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
        st = make_prim(pd, "weights", &p->bwd_w, &p->pad_bytes);
        dnnl_primitive_desc_destroy(pd), pd = NULL;
        if (st == dnnl_success && p->bwd_w)
            st = hl_cpu_dnnl_reorder_make(eng, &p->dw_md, &p->dwu_md, attr, &p->dw_reorder,
                                          &p->pad_bytes);
    }
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (st == dnnl_success && (p->bwd_d || p->bwd_w))
        st = hl_cpu_dnnl_reorder_make(eng, &p->y_md, &p->yc_md, attr, &p->y_reorder, &p->pad_bytes);
    if (st == dnnl_success && p->bwd_w)
        st = hl_cpu_dnnl_reorder_make(eng, &p->x_md, &p->xc_md, attr, &p->x_reorder, &p->pad_bytes);
    dnnl_dims_t padd = {(int64_t)(p->pad_bytes ? p->pad_bytes : 1)};
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&p->pad_md, 1, padd, dnnl_u8, dnnl_a);
    return st;
}

static hl_status cbw_new(hl_cpu *cpu, const void *key, void **obj, hl_error *err) {
    cbw_prim *p = calloc(1, sizeof *p);
    if (!p) return hl_fail(err, HELIOS_ERR_OOM, "conv3d_backward: out of memory (primitive)");
    p->key = *(const cbw_key *)key;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    /* oneDNN sizes its thread partitioning from omp_get_max_threads() at creation */
    const int saved = omp_get_max_threads();
    omp_set_num_threads(p->key.nthr);
    if (st == dnnl_success) st = cbw_build(p, hl_cpu_engine(cpu), attr);
    omp_set_num_threads(saved);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        cbw_destroy(p);
        free(p);
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "conv3d_backward: oneDNN primitive: %s",
                       dnnl_status2str(st));
    }
    *obj = p;
    return HL_OK;
}

static void cbw_free(void *obj) {
    cbw_destroy(obj);
    free(obj);
}

static size_t al64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* from (md_from) -> to (md_to) through reorder r. */
static hl_status reorder(const hl_ctx *ctx, const cbw_prim *p, dnnl_primitive_t r,
                         const dnnl_memory_desc_t *md_from, const void *from,
                         const dnnl_memory_desc_t *md_to, void *to, void *pad) {
    return hl_cpu_dnnl_reorder_run(hl_cpu_of(ctx), r, md_from, from, md_to, to, &p->pad_md, pad,
                                   p->key.nthr, "conv3d_backward: reorder", ctx->err);
}

static hl_status cbw_run(const hl_ctx *ctx, const cbw_prim *p, const float *x, const hl_tensor *w,
                         const float *dy, float *dx, float *dw, float *db) {
    hl_cpu *cpu = hl_cpu_of(ctx);
    const int nthr = p->key.nthr;
    const size_t nw = (size_t)(p->key.O * p->key.C * p->key.kt * p->key.kh * p->key.kw);
    const size_t b_wd = p->bwd_d ? al64(dnnl_memory_desc_get_size(&p->wd_md)) : 0,
                 b_dw = p->bwd_w ? al64(dnnl_memory_desc_get_size(&p->dw_md)) : 0,
                 b_dwu = p->dw_reorder ? al64(nw * sizeof(float)) : 0,
                 b_db = al64((size_t)p->key.O * sizeof(float)),
                 b_xc = p->x_reorder ? al64(dnnl_memory_desc_get_size(&p->xc_md)) : 0,
                 b_yc = p->y_reorder ? al64(dnnl_memory_desc_get_size(&p->yc_md)) : 0;
    char *buf = hl_cpu_scratch(cpu, HL_SLOT_CONVB_W, b_wd + b_dw + b_dwu + b_db + b_xc + b_yc);
    void *pad = hl_cpu_scratch(cpu, HL_SLOT_CONVB_PAD, p->pad_bytes);
    if (!buf || !pad) return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d_backward: out of memory");
    char *wd = buf, *dwb = wd + b_wd, *dwu = dwb + b_dw, *dbb = dwu + b_dwu, *xc = dbb + b_db,
         *yc = xc + b_xc;
    const void *dyc = dy, *xcv = x, *wsrc = w->data;
    if (p->y_reorder) HL_TRY(reorder(ctx, p, p->y_reorder, &p->y_md, dy, &p->yc_md, yc, pad));
    if (p->y_reorder) dyc = yc;
    if (p->bwd_d) {
        if (p->w_reorder)
            HL_TRY(reorder(ctx, p, p->w_reorder, &p->w_md, w->data, &p->wd_md, wd, pad));
        if (p->w_reorder) wsrc = wd;
        hl_dnnl_arg a[4] = {{DNNL_ARG_DIFF_DST, &p->yc_md, dyc},
                            {DNNL_ARG_WEIGHTS, &p->wd_md, wsrc},
                            {DNNL_ARG_DIFF_SRC, &p->x_md, dx},
                            {DNNL_ARG_SCRATCHPAD, &p->pad_md, pad}};
        HL_TRY(hl_cpu_dnnl_run(cpu, p->bwd_d, a, 4, nthr, "conv3d_backward: data", ctx->err));
    }
    if (p->bwd_w) {
        if (p->x_reorder) HL_TRY(reorder(ctx, p, p->x_reorder, &p->x_md, x, &p->xc_md, xc, pad));
        if (p->x_reorder) xcv = xc;
        hl_dnnl_arg a[5] = {{DNNL_ARG_SRC, &p->xc_md, xcv},
                            {DNNL_ARG_DIFF_DST, &p->yc_md, dyc},
                            {DNNL_ARG_DIFF_WEIGHTS, &p->dw_md, dwb},
                            {DNNL_ARG_DIFF_BIAS, &p->db_md, p->key.db ? dbb : NULL},
                            {DNNL_ARG_SCRATCHPAD, &p->pad_md, pad}};
        HL_TRY(hl_cpu_dnnl_run(cpu, p->bwd_w, a, 5, nthr, "conv3d_backward: weights", ctx->err));
        const float *g = (const float *)dwb, *gb = (const float *)dbb;
        if (p->dw_reorder)
            HL_TRY(reorder(ctx, p, p->dw_reorder, &p->dw_md, dwb, &p->dwu_md, dwu, pad));
        if (p->dw_reorder) g = (const float *)dwu;
        if (dw)
            for (size_t i = 0; i < nw; i++) dw[i] += g[i];
        if (db)
            for (int64_t o = 0; o < p->key.O; o++) db[o] += gb[o];
    }
    return HL_OK;
}

hl_status hl_cpu_conv3d_backward_dnnl(const hl_ctx *ctx, const hl_conv3d_shape *s,
                                      const hl_conv_geom *g, const float *x, const hl_tensor *w,
                                      const float *dy, float *dx, float *dw, float *db, int *done) {
    *done = 0;
    cbw_key key;
    memset(&key, 0, sizeof key); /* padding bytes take part in the cache's memcmp */
    key.N = g->N, key.C = g->C, key.T = g->T, key.H = g->H, key.W = g->W;
    key.O = g->O, key.kt = g->kt, key.kh = g->kh, key.kw = g->kw;
    memcpy(key.stride, s->stride, sizeof key.stride);
    memcpy(key.pad, s->pad, sizeof key.pad);
    key.w_dt = w->dtype, key.dx = dx != NULL, key.dw = dw || db, key.db = db != NULL;
    /* the forward's precision: bf16 weights compute in bf16 where oneDNN has the kernels */
    key.c_dt = w->dtype == HL_BF16 && hl_cpu_bf16_gemm(hl_cpu_of(ctx)) ? HL_BF16 : HL_F32;
    key.nthr = hl_cpu_nthr_for((double)g->N * g->O * g->C * g->kt * g->kh * g->kw * g->To * g->Ho *
                               g->Wo);
    void *obj = NULL;
    HL_TRY(hl_cpu_cache_get(hl_cpu_of(ctx), HL_PRIM_CONV_BWD, &key, sizeof key, cbw_new, cbw_free,
                            &obj, ctx->err));
    const cbw_prim *p = obj;
    *done = (p->bwd_d ? HL_CONVB_DX : 0) | (p->bwd_w ? HL_CONVB_DW : 0);
    return *done ? cbw_run(ctx, p, x, w, dy, dx, dw, db) : HL_OK;
}

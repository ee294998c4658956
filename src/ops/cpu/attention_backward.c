/* cpu attention backward: per head, the probabilities recomputed block by block of query rows
 * with oneDNN matmuls, never an Sq x Sk buffer.
 *
 * Plan (matmul operands in the compute dtype dt, as the forward's: float32, or bf16 with float32
 * accumulation, as bf16 training runs attention's backward elsewhere too; the softmax, dS and D
 * are formed in float32 either way):
 *   1. q, dout (zero-padded to whole blocks), k, v are split per head into dense copies in dt
 *      (hl_cpu_att_pack_heads, sequential reads); D_i = Σ_d dout[i, d]·out[i, d] per head and row
 *      from the float32 inputs;
 *   2. one task per head (OpenMP, dynamic: a head's tasks never share an output, so the result is
 *      the same whatever the thread count), zeroing its dK, dV accumulators, then per block of bq
 *      query rows, with single-threaded matmuls:
 *        S  = Q_b·Kᵀ [bq, Sk];  T = scale·S + bias + key_bias, P = softmax(T) (the forward's row
 *             functions: clamps and exact zeros for masked keys, hl_cpu_att_bias_row and
 *             hl_cpu_att_exp_row_shifted);
 *        dP = dO_b·Vᵀ [bq, Sk];  dS = P ⊙ (dP - D)  (dbias[h, i, :] += dS row i);
 *             bf16: P normalised, dS formed and both rounded into bf16 copies for the three
 *             matmuls below in one pass over the row (p_ds_row_bf16);
 *        dQ_b = dS·K [bq, hd] -> dq = scale·dQ_b;
 *        dK += dSᵀ·Q_b, dV += Pᵀ·dO_b  [Sk, hd]  (transposed-A matmuls with a sum post-op; bf16
 *             where the CPU has AMX: our GEMM's Aᵀ·B form on the bf16 dS and P, hl_gemm_bf16x);
 *      padding rows of the last block have P = dS = 0 and so add nothing;
 *   3. dk = scale·dK and dv = dV into the strided outputs.
 * Memory: the copies in dt (q, dout, k, v: (2·Sq_pad + 2·Sk)·H·hd values) and per thread
 * 2·bq·Sk + bq·hd + 2·Sk·hd floats, a head's k and v in the matmuls' blocked layouts (three
 * copies of Sk·hd values in dt) and, for bf16, 2·bq·Sk bf16. Parallel over heads only: H = 1
 * runs on one thread.
 * Measured (2-core AMX Xeon, the 1.3B block's self-attention, Sq = Sk = 2304, 12 heads x 128,
 * and its cross-attention over 512 text tokens, both in the bf16 training step; per-op times):
 * float32 operands 392 ms, 9.4x the bf16 forward's 42 ms; bf16 operands 197 ms; k, v blocked
 * once per head 170 ms; dK, dV by our GEMM 156 ms (oneDNN's two transposed-A matmuls took 2.5x
 * the time of its two S-shaped plain ones, 108 against 43 ms of one thread's time); query
 * blocks of 256 rows 140 ms; P and dS in one pass, rounded there, and packed from bf16 by our
 * GEMM 120-130 ms (the thread-time of each part, before and after: docs/design.md). */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/gemm/gemm.h"
#include "ops/cpu/vec_math.h"

typedef struct attb_plan {
    int64_t Sq, Sk, Sq_pad, bq, nblk;
    int H, hd, nthr;
    hl_dtype dt; /* of the matmul operands: HL_F32 or HL_BF16 */
    int ours_kv; /* dK, dV by our AMX GEMM (bf16 only, where the CPU has AMX) */
    size_t esz;
    float scale;
    const float *bias, *key_bias;
    hl_mm *s_mm;            /* [bq, hd]·[Sk, hd]ᵀ -> [bq, Sk] (S and dP) */
    hl_mm *dq_mm;           /* [bq, Sk]·[Sk, hd] -> [bq, hd] */
    hl_mm *kv_mm;           /* [bq, Sk]ᵀ·[bq, hd] -> += [Sk, hd] */
    char *q, *dout, *k, *v; /* per head in dt: q, dout [Sq_pad][hd], k, v [Sk][hd] */
    float *D;               /* per head [Sq_pad] */
    char *thr;              /* per-thread buffers */
    size_t thr_stride, pad_bytes;
    float *dq, *dk, *dv, *dbias;
    int64_t lddq, lddk, lddv;
} attb_plan;

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Thread buffers: P, dS [bq][Sk], dQ [bq][hd], dK, dV [Sk][hd], the oneDNN scratchpad, the
 * matmuls' P and dS in dt: bf16 copies [bq][Sk] (float32: P and dS themselves), and the head's
 * k and v reordered once into the blocked layouts of the matmuls that read them as B (every
 * query block reuses them; a plain B is repacked inside every call, as in the forward). */
typedef struct {
    float *p, *ds, *dqb, *dk, *dv;
    void *pad, *pt, *dst;
    void *kbs, *vbs, *kbq; /* k_h, v_h blocked for s_mm, k_h blocked for dq_mm */
} attb_bufs;

static size_t attb_carve(const attb_plan *p, char *base, attb_bufs *b) {
    const size_t sp = round_up((size_t)(p->bq * p->Sk) * 4, 64),
                 sq = round_up((size_t)(p->bq * p->hd) * 4, 64),
                 sk = round_up((size_t)(p->Sk * p->hd) * 4, 64), pad = round_up(p->pad_bytes, 64),
                 st = p->dt == HL_BF16 ? round_up((size_t)(p->bq * p->Sk) * 2, 64) : 0,
                 ps = round_up(hl_cpu_mm_packed_b_size(p->s_mm), 64),
                 pq = round_up(hl_cpu_mm_packed_b_size(p->dq_mm), 64);
    const size_t fixed = 2 * sp + sq + 2 * sk + pad + 2 * st;
    if (b) {
        b->p = (float *)base;
        b->ds = (float *)(base + sp);
        b->dqb = (float *)(base + 2 * sp);
        b->dk = (float *)(base + 2 * sp + sq);
        b->dv = (float *)(base + 2 * sp + sq + sk);
        b->pad = base + 2 * sp + sq + 2 * sk;
        b->pt = st ? base + 2 * sp + sq + 2 * sk + pad : (void *)b->p;
        b->dst = st ? base + 2 * sp + sq + 2 * sk + pad + st : (void *)b->ds;
        b->kbs = base + fixed;
        b->vbs = base + fixed + ps;
        b->kbq = base + fixed + 2 * ps;
    }
    return fixed + 2 * ps + pq;
}

/* float32 operands: one row's P = e·inv in place (p holds the row's exponentials, inv is 1 /
 * their sum) and, with ds (NULL: not wanted; it holds dP, overwritten), dS = P ⊙ (dP - D),
 * dbias row += dS: one pass instead of two. */
static void p_ds_row(float *p, float inv, float *ds, int64_t n, float D, float *dbias) {
    int64_t j = 0;
#ifdef HL_CPU_AVX512
    const __m512 vi = _mm512_set1_ps(inv), vd = _mm512_set1_ps(D);
    for (; j + 16 <= n; j += 16) {
        const __m512 pv = _mm512_mul_ps(_mm512_loadu_ps(p + j), vi);
        _mm512_storeu_ps(p + j, pv);
        if (!ds) continue;
        const __m512 v = _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_loadu_ps(ds + j), vd));
        _mm512_storeu_ps(ds + j, v);
        if (dbias) _mm512_storeu_ps(dbias + j, _mm512_add_ps(_mm512_loadu_ps(dbias + j), v));
    }
#endif
    for (; j < n; j++) {
        p[j] *= inv;
        if (!ds) continue;
        ds[j] = p[j] * (ds[j] - D);
        if (dbias) dbias[j] += ds[j];
    }
}

/* bf16 operands: one row's P = e·inv (e: the row's exponentials, inv: 1 / their sum), rounded
 * into pt (NULL: not wanted), and with dp (NULL: not wanted) dS = P ⊙ (dP - D) rounded into dst,
 * dbias row += dS in float32: the values of ds_row on the normalised float32 P, rounded as
 * hl_cpu_f32_to_bf16 rounds, in one pass instead of three. */
static void p_ds_row_bf16(const float *e, float inv, const float *dp, float D, int64_t n,
                          hl_bf16 *pt, hl_bf16 *dst, float *dbias) {
    int64_t j = 0;
#ifdef HL_CPU_AVX512
    const __m512 vi = _mm512_set1_ps(inv), vd = _mm512_set1_ps(D);
    for (; j + 16 <= n; j += 16) {
        const __m512 pv = _mm512_mul_ps(_mm512_loadu_ps(e + j), vi);
        if (pt) _mm256_storeu_si256((__m256i *)(pt + j), hl_v_to_bf16(pv));
        if (!dp) continue;
        const __m512 v = _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_loadu_ps(dp + j), vd));
        _mm256_storeu_si256((__m256i *)(dst + j), hl_v_to_bf16(v));
        if (dbias) _mm512_storeu_ps(dbias + j, _mm512_add_ps(_mm512_loadu_ps(dbias + j), v));
    }
#endif
    for (; j < n; j++) {
        const float pv = e[j] * inv;
        if (pt) pt[j] = hl_f32_to_bf16(pv);
        if (!dp) continue;
        const float v = pv * (dp[j] - D);
        dst[j] = hl_f32_to_bf16(v);
        if (dbias) dbias[j] += v;
    }
}

/* dst[r·ld + d] = scale·src[r·hd + d] for rows x hd. */
static void store_scaled(const float *src, int64_t rows, int hd, float scale, float *dst,
                         int64_t ld) {
    for (int64_t r = 0; r < rows; r++)
        for (int d = 0; d < hd; d++) dst[r * ld + d] = scale * src[r * hd + d];
}

static hl_status head_task(const attb_plan *p, int tid, int h, hl_error *err) {
    attb_bufs b;
    attb_carve(p, p->thr + (size_t)tid * p->thr_stride, &b);
    const int64_t Sq = p->Sq, Sk = p->Sk, bq = p->bq;
    const int hd = p->hd;
    const size_t es = p->esz;
    const char *qh = p->q + (size_t)(h * p->Sq_pad * hd) * es,
               *oh = p->dout + (size_t)(h * p->Sq_pad * hd) * es;
    const char *kh = p->k + (size_t)(h * Sk * hd) * es, *vh = p->v + (size_t)(h * Sk * hd) * es;
    const int bf16 = p->dt == HL_BF16;
    const float *Dh = p->D + (size_t)h * p->Sq_pad;
    const int need_ds = p->dq || p->dk || p->dbias;
    if (p->dk) memset(b.dk, 0, (size_t)(Sk * hd) * sizeof *b.dk);
    if (p->dv) memset(b.dv, 0, (size_t)(Sk * hd) * sizeof *b.dv);
    HL_TRY(hl_cpu_mm_pack_b(p->s_mm, tid, kh, b.kbs, b.pad, err));
    if (need_ds) HL_TRY(hl_cpu_mm_pack_b(p->s_mm, tid, vh, b.vbs, b.pad, err));
    if (p->dq) HL_TRY(hl_cpu_mm_pack_b(p->dq_mm, tid, kh, b.kbq, b.pad, err));
    for (int64_t blk = 0; blk < p->nblk; blk++) {
        const int64_t i0 = blk * bq, rows = Sq - i0 < bq ? Sq - i0 : bq;
        const char *qb = qh + (size_t)(i0 * hd) * es, *ob = oh + (size_t)(i0 * hd) * es;
        float inv[256]; /* 1 / each row's sum: P is normalised with dS (bq <= 256) */
        /* the exponentials of P */
        HL_TRY(hl_cpu_mm_run(p->s_mm, tid, qb, b.kbs, NULL, b.p, b.pad, err));
        for (int64_t r = 0; r < rows; r++) {
            float *pr = b.p + r * Sk;
            const float *bias = p->bias ? p->bias + ((int64_t)h * Sq + i0 + r) * Sk : NULL;
            float mx = hl_cpu_att_bias_row(pr, Sk, p->scale, bias, p->key_bias);
            inv[r] = 1.0f / hl_cpu_att_exp_row_shifted(pr, Sk, mx, HL_F32, pr, NULL);
        }
        if (rows < bq) memset(b.p + rows * Sk, 0, (size_t)((bq - rows) * Sk) * sizeof *b.p);
        /* P and dS in one pass (bf16: rounded there) */
        if (need_ds) HL_TRY(hl_cpu_mm_run(p->s_mm, tid, ob, b.vbs, NULL, b.ds, b.pad, err));
        for (int64_t r = 0; r < rows; r++) {
            float *dbias = p->dbias ? p->dbias + ((int64_t)h * Sq + i0 + r) * Sk : NULL;
            if (bf16)
                p_ds_row_bf16(b.p + r * Sk, inv[r], need_ds ? b.ds + r * Sk : NULL, Dh[i0 + r], Sk,
                              p->dv ? (hl_bf16 *)b.pt + r * Sk : NULL, (hl_bf16 *)b.dst + r * Sk,
                              dbias);
            else
                p_ds_row(b.p + r * Sk, inv[r], need_ds ? b.ds + r * Sk : NULL, Sk, Dh[i0 + r],
                         dbias);
        }
        if (rows < bq) {
            const size_t tail = (size_t)((bq - rows) * Sk) * es;
            memset((char *)b.pt + (size_t)(rows * Sk) * es, 0, tail);
            memset((char *)b.dst + (size_t)(rows * Sk) * es, 0, tail);
        }
        if (p->dq) {
            HL_TRY(hl_cpu_mm_run(p->dq_mm, tid, b.dst, b.kbq, NULL, b.dqb, b.pad, err));
            store_scaled(b.dqb, rows, hd, p->scale, p->dq + i0 * p->lddq + (int64_t)h * hd,
                         p->lddq);
        }
        if (p->ours_kv) { /* A = the bf16 dS and P, transposed */
            if (p->dk && hl_gemm_bf16x(HL_GEMM_AMX, 1, 1, 0, Sk, hd, bq, HL_BF16, b.dst, Sk,
                                       HL_BF16, qb, hd, 1, b.dk, hd, NULL) != 0)
                return hl_fail(err, HELIOS_ERR_OOM, "out of memory in dK");
            if (p->dv && hl_gemm_bf16x(HL_GEMM_AMX, 1, 1, 0, Sk, hd, bq, HL_BF16, b.pt, Sk, HL_BF16,
                                       ob, hd, 1, b.dv, hd, NULL) != 0)
                return hl_fail(err, HELIOS_ERR_OOM, "out of memory in dV");
            continue;
        }
        if (p->dk) HL_TRY(hl_cpu_mm_run(p->kv_mm, tid, b.dst, qb, NULL, b.dk, b.pad, err));
        if (p->dv) HL_TRY(hl_cpu_mm_run(p->kv_mm, tid, b.pt, ob, NULL, b.dv, b.pad, err));
    }
    if (p->dk) store_scaled(b.dk, Sk, hd, p->scale, p->dk + (int64_t)h * hd, p->lddk);
    if (p->dv) store_scaled(b.dv, Sk, hd, 1.0f, p->dv + (int64_t)h * hd, p->lddv);
    return HL_OK;
}

/* D[h][i] = Σ_d dout[i, h·hd + d]·out[i, h·hd + d] (rows Sq..Sq_pad-1: 0). */
static void row_dots(const attb_plan *p, const float *out, int64_t ldo, const float *dout,
                     int64_t lddo) {
#pragma omp parallel for schedule(static) if (p->Sq * p->H * p->hd >= (1 << 15))
    for (int64_t i = 0; i < p->Sq_pad; i++)
        for (int h = 0; h < p->H; h++) {
            float s = 0.0f;
            if (i < p->Sq) {
                const float *a = out + i * ldo + (int64_t)h * p->hd,
                            *g = dout + i * lddo + (int64_t)h * p->hd;
                int d = 0;
#ifdef HL_CPU_AVX512
                __m512 acc = _mm512_setzero_ps();
                for (; d + 16 <= p->hd; d += 16)
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(g + d), acc);
                s = _mm512_reduce_add_ps(acc);
#endif
                for (; d < p->hd; d++) s += a[d] * g[d];
            }
            p->D[(size_t)h * p->Sq_pad + i] = s;
        }
}

static hl_status attb_oom(const hl_ctx *ctx, const attb_plan *p) {
    return hl_fail(ctx->err, HELIOS_ERR_OOM,
                   "attention_backward: out of memory (Sq=%lld Sk=%lld H=%d hd=%d)",
                   (long long)p->Sq, (long long)p->Sk, p->H, p->hd);
}

/* Primitives, scratch and the packed inputs; with the lock held. */
static hl_status attb_plan_make(const hl_ctx *ctx, attb_plan *p, const float *q, int64_t ldq,
                                const float *k, int64_t ldk, const float *v, int64_t ldv,
                                const float *out, int64_t ldo, const float *dout, int64_t lddo) {
    hl_cpu *cpu = hl_cpu_of(ctx);
    hl_mm_key ks = {
        .M = p->bq, .N = p->Sk, .K = p->hd, .dt = p->dt, .blayout = HL_MM_B_BLOCKED_NK, .nthr = 1};
    hl_mm_key kq = {
        .M = p->bq, .N = p->hd, .K = p->Sk, .dt = p->dt, .blayout = HL_MM_B_BLOCKED_KN, .nthr = 1};
    hl_mm_key kkv = {.M = p->Sk,
                     .N = p->hd,
                     .K = p->bq,
                     .dt = p->dt,
                     .blayout = HL_MM_B_KN,
                     .nthr = 1,
                     .atrans = 1,
                     .accumulate = 1};
    HL_TRY(hl_cpu_dnnl_init(cpu, p->nthr, ctx->err));
    HL_TRY(hl_cpu_mm_get(cpu, &ks, &p->s_mm, ctx->err));
    HL_TRY(hl_cpu_mm_get(cpu, &kq, &p->dq_mm, ctx->err));
    HL_TRY(hl_cpu_mm_get(cpu, &kkv, &p->kv_mm, ctx->err));
    p->pad_bytes = hl_cpu_mm_scratchpad_size(p->s_mm);
    if (hl_cpu_mm_scratchpad_size(p->dq_mm) > p->pad_bytes)
        p->pad_bytes = hl_cpu_mm_scratchpad_size(p->dq_mm);
    if (hl_cpu_mm_scratchpad_size(p->kv_mm) > p->pad_bytes)
        p->pad_bytes = hl_cpu_mm_scratchpad_size(p->kv_mm);

    const size_t nq = round_up((size_t)((int64_t)p->H * p->Sq_pad * p->hd) * p->esz, 64),
                 nk = round_up((size_t)((int64_t)p->H * p->Sk * p->hd) * p->esz, 64),
                 nd = round_up((size_t)((int64_t)p->H * p->Sq_pad) * 4, 64);
    p->thr_stride = round_up(attb_carve(p, NULL, NULL), 4096);
    char *buf = hl_cpu_scratch(cpu, HL_SLOT_ATTB,
                               2 * nq + 2 * nk + nd + p->thr_stride * (size_t)p->nthr);
    if (!buf) return attb_oom(ctx, p);
    p->q = buf;
    p->dout = buf + nq;
    p->k = buf + 2 * nq;
    p->v = buf + 2 * nq + nk;
    p->D = (float *)(buf + 2 * nq + 2 * nk);
    p->thr = buf + 2 * nq + 2 * nk + nd;
    hl_cpu_att_pack_heads(q, ldq, p->Sq, p->Sq_pad, p->H, p->hd, p->dt, p->q);
    hl_cpu_att_pack_heads(dout, lddo, p->Sq, p->Sq_pad, p->H, p->hd, p->dt, p->dout);
    hl_cpu_att_pack_heads(k, ldk, p->Sk, p->Sk, p->H, p->hd, p->dt, p->k);
    hl_cpu_att_pack_heads(v, ldv, p->Sk, p->Sk, p->H, p->hd, p->dt, p->v);
    row_dots(p, out, ldo, dout, lddo);
    return HL_OK;
}

hl_status hl_cpu_attention_biased_backward(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                           const float *q, int64_t ldq, const float *k, int64_t ldk,
                                           const float *v, int64_t ldv, float scale,
                                           const float *bias, const float *key_bias,
                                           hl_dtype compute, const float *out, int64_t ldo,
                                           const float *dout, int64_t lddo, float *dq, int64_t lddq,
                                           float *dk, int64_t lddk, float *dv, int64_t lddv,
                                           float *dbias) {
    attb_plan p = {.Sq = Sq,
                   .Sk = Sk,
                   .H = H,
                   .hd = hd,
                   .scale = scale,
                   .bias = bias,
                   .key_bias = key_bias,
                   .dq = dq,
                   .dk = dk,
                   .dv = dv,
                   .dbias = dbias,
                   .lddq = lddq,
                   .lddk = lddk,
                   .lddv = lddv};
    /* blocks: P and dS of one block within 8 MiB, a multiple of 16 rows, at most 256. Taller
     * blocks make dK and dV's matmuls longer in k, and their [Sk, hd] float32 accumulators are
     * read and written once per block (1.2 MB each at the 1.3B shape): that pays more than P and
     * dS staying in L2 (1 MiB: 48-row blocks at Sk 2304, 157-167 ms for the bf16 step's two
     * attention backwards; 8 MiB: 256 rows, 138-142 ms; f32 2-3% less) */
    int64_t bq_max = ((int64_t)8 << 20) / (8 * Sk) / 16 * 16;
    if (bq_max < 16) bq_max = 16;
    if (bq_max > 256) bq_max = 256;
    p.nblk = (Sq + bq_max - 1) / bq_max;
    p.bq = (int64_t)round_up((size_t)((Sq + p.nblk - 1) / p.nblk), 16);
    p.Sq_pad = p.nblk * p.bq;
    int nthr = hl_cpu_nthr_for(5.0 * (double)Sq * Sk * H * hd);
    p.nthr = nthr < H ? nthr : H;
    if (p.nthr < 1) p.nthr = 1;

    hl_cpu *cpu = hl_cpu_of(ctx);
    hl_cpu_lock(cpu);
    p.dt = compute == HL_BF16 && hl_cpu_bf16_gemm(cpu) ? HL_BF16 : HL_F32; /* as the forward */
    p.esz = hl_dtype_size(p.dt);
    p.ours_kv = p.dt == HL_BF16 && hl_gemm_kernel_available(HL_GEMM_AMX) &&
                hl_gemm_mode_get() != HL_GEMM_MODE_ONEDNN; /* HELIOS_GEMM=onednn: theirs */
    hl_status st = attb_plan_make(ctx, &p, q, ldq, k, ldk, v, ldv, out, ldo, dout, lddo);
    hl_error first = {0};
    if (st == HL_OK) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.nthr)
        for (int h = 0; h < H; h++) {
            hl_status s;
#pragma omp atomic read
            s = st;
            if (s != HL_OK) continue;
            hl_error e = {0};
            s = head_task(&p, omp_get_thread_num(), h, &e);
            if (s != HL_OK) {
#pragma omp critical(hl_attention_backward_error)
                if (st == HL_OK) {
                    first = e;
#pragma omp atomic write
                    st = s;
                }
            }
        }
        if (st != HL_OK) st = hl_fail(ctx->err, st, "attention_backward: %s", first.msg);
    } else if (st != HELIOS_ERR_OOM) {
        hl_error_prefix(ctx->err, "attention_backward");
    }
    hl_cpu_unlock(cpu);
    return st;
}

/* cpu attention: softmax(scale · q_h k_hᵀ) v_h per head, in query blocks, on oneDNN matmuls.
 *
 * Plan (compute dtype dt = BF16 or F32; bf16 rounds q, k, v and the probabilities):
 *   1. q, k, v are converted to dt and split per head, row by row (sequential reads):
 *      q [H][Sq_pad][hd] (Sq padded with zero rows to whole query blocks, so that every block
 *      runs the same primitive), k, v [H][Sk][hd];
 *   2. k_h, v_h of every head are reordered once into oneDNN's blocked B layout: every query
 *      block reuses them, where a plain B would be repacked by the brgemm kernel on every call;
 *   3. per (head, block of bq queries), on one thread:  S = Q_blk · k_hᵀ [bq, Sk] f32;
 *      P = exp(scale·S - rowmax) in dt, l = rowsum in f32;  O = P · v_h [bq, hd];  out = O / l.
 *      With additive biases (hl_attention_biased) the softmax first forms, in place in S,
 *      T = scale·S + bias[h, i, :] + key_bias (float32, clamped to >= -FLT_MAX so that a masked
 *      key's -FLT_MAX plus a negative bias cannot overflow to -inf), then P = exp(T - rowmax)
 *      with arguments below -86 giving exactly 0 (exp_row_shifted), so masked keys get 0 and no
 *      inf - inf can arise even when every key of a row is masked (then all T are -FLT_MAX, the
 *      weights uniform: what the reference and PyTorch compute too).
 * Memory: the dt copies of q, k, v (and k, v blocked) plus threads x bq x Sk; no Sq x Sk buffer.
 *
 * Measured on this 2-core AMX Xeon (bf16, Sq = Sk = 2304, H = 12, hd = 128, medians of runs on
 * a shared machine, so +-10%):
 *   - threads over (head, block) tasks with single-threaded matmuls: 43 ms; one block at a time,
 *     oneDNN threading each matmul and OpenMP the softmax: 53 ms;
 *   - blocked k, v: 43 ms; plain k, v (repacked inside every matmul call): 52 ms;
 *   - softmax with one accumulator chain and the accurate exp: 17 ms of each thread's time; with
 *     4 max chains, 2 sum chains, a bf16-grade exp2 and vcvtneps2bf16: 5.6 ms (total 28 ms);
 *   - bq 32 ~ 64 < 128 < 96 ~ 256 (29.4, 30.3, 33, 34-39, 37 ms): the scores and probabilities
 *     of a block should stay in the 2 MiB L2, hence the 1 MiB budget in choose_blocks;
 *   - converting q per block inside the task (no packed copy) and reordering k, v by oneDNN
 *     straight from the float32 head slices: 29-34 ms against 27-30 ms for step 1 + 2 as here:
 *     a head slice is 512 bytes every 6 KiB, and reading it per task misses the TLB where the
 *     row-by-row pass streams;
 *   - tasks ordered head-major (consecutive blocks reuse k_h, v_h from L2): 28.8 ms;
 *     block-major (consecutive tasks share q and out rows): 32-33 ms. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/vec_math.h"

typedef struct att_plan {
    int64_t Sq, Sk, Sq_pad, bq, nblk;
    int H, hd;
    hl_dtype dt;
    size_t esz;
    float scale;
    const float *bias;     /* [H, Sq, Sk] or NULL */
    const float *key_bias; /* [Sk] or NULL */
    int nthr;              /* OpenMP threads */
    hl_mm *qk, *pv;        /* S = Q·Kᵀ and O = P·V, single-threaded primitives */
    char *q, *k, *v;       /* in dt, per head: q [H][Sq_pad][hd], k, v [H][Sk][hd] */
    char *kb, *vb;         /* k_h, v_h blocked, per head */
    size_t kb_head, vb_head;
    char *blk; /* per-thread block buffers */
    size_t blk_stride;
    char *pad; /* per-thread oneDNN scratchpads */
    size_t pad_stride;
    float *out;
    int64_t ldo;
} att_plan;

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* ---- packing --------------------------------------------------------------------------------- */

/* x [S, H·hd] (rows ld apart) -> dst [H][S_dst][hd] in dt, rows S..S_dst-1 zero; parallel
 * over rows, which are read in order. */
void hl_cpu_att_pack_heads(const float *x, int64_t ld, int64_t S, int64_t S_dst, int H, int hd,
                           hl_dtype dt, char *dst) {
    const size_t esz = hl_dtype_size(dt);
#pragma omp parallel for schedule(static) if (S * H * hd >= (1 << 15))
    for (int64_t s = 0; s < S; s++)
        for (int h = 0; h < H; h++) {
            const float *src = x + s * ld + (int64_t)h * hd;
            char *d = dst + (size_t)(((int64_t)h * S_dst + s) * hd) * esz;
            if (dt == HL_BF16) hl_cpu_f32_to_bf16(src, (hl_bf16 *)d, hd);
            else memcpy(d, src, (size_t)hd * esz);
        }
    if (S_dst > S)
        for (int h = 0; h < H; h++)
            memset(dst + (size_t)(((int64_t)h * S_dst + S) * hd) * esz, 0,
                   (size_t)((S_dst - S) * hd) * esz);
}

/* ---- softmax --------------------------------------------------------------------------------- */

/* max_j scale·s[j] over n values: scale·max s, or scale·min s for a negative scale. */
static float row_max_scaled(const float *s, int64_t n, float scale) {
    const int neg = scale < 0;
    int64_t j = 0;
    float m = neg ? INFINITY : -INFINITY;
#ifdef HL_CPU_AVX512
    /* four independent chains: one vmaxps chain is latency-bound at 4 cycles a vector */
    __m512 m0 = _mm512_set1_ps(m), m1 = m0, m2 = m0, m3 = m0;
    if (neg) {
        for (; j + 64 <= n; j += 64) {
            m0 = _mm512_min_ps(m0, _mm512_loadu_ps(s + j));
            m1 = _mm512_min_ps(m1, _mm512_loadu_ps(s + j + 16));
            m2 = _mm512_min_ps(m2, _mm512_loadu_ps(s + j + 32));
            m3 = _mm512_min_ps(m3, _mm512_loadu_ps(s + j + 48));
        }
        for (; j + 16 <= n; j += 16) m0 = _mm512_min_ps(m0, _mm512_loadu_ps(s + j));
        m = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_min_ps(m0, m1), _mm512_min_ps(m2, m3)));
    } else {
        for (; j + 64 <= n; j += 64) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + j));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + j + 16));
            m2 = _mm512_max_ps(m2, _mm512_loadu_ps(s + j + 32));
            m3 = _mm512_max_ps(m3, _mm512_loadu_ps(s + j + 48));
        }
        for (; j + 16 <= n; j += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + j));
        m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    }
#endif
    for (; j < n; j++) m = neg ? fminf(m, s[j]) : fmaxf(m, s[j]);
    return m * scale;
}

#ifdef HL_CPU_AVX512
/* e^(scale·s - mx) for the bf16 path, as 2^t with t = s·(scale·log2 e) - mx·log2 e in one FMA,
 * t = n + f, |f| <= 1/2, 2^f by its degree-5 Taylor polynomial in f·ln2 (truncation 2.4e-6
 * relative, plus |t|·2^-24 from rounding t): far below the 2^-8 of the bf16 result. */
static inline __m512 exp2_bf16_grade(__m512 s, __m512 k, __m512 b) {
    /* t <= 0 and finite for finite scores (no clamp: a huge negative n just gives 0 below) */
    __m512 t = _mm512_fmsub_ps(s, k, b);
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    /* coefficients ln2^k / k! */
    __m512 p = _mm512_set1_ps(1.3333558146428443e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m256i to_bf16_fast(__m512 x) {
#ifdef __AVX512BF16__
    /* vcvtneps2bf16: RNE like hl_f32_to_bf16, but subnormals flush to 0, which for a
     * probability (< 1.2e-38 next to a row sum >= 1) changes nothing */
    return (__m256i)_mm512_cvtneps_pbh(x);
#else
    return hl_v_to_bf16(x);
#endif
}
#endif

/* p[j] = exp(scale·s[j] - mx) stored in dt (p may alias s when dt is F32); returns the sum of
 * the float32 values. */
static float exp_row(const float *s, int64_t n, float scale, float mx, hl_dtype dt, void *p) {
    int64_t j = 0;
    float sum = 0.0f;
#ifdef HL_CPU_AVX512
    if (dt == HL_BF16) {
        const __m512 k = _mm512_set1_ps(scale * 1.44269504088896341f);
        const __m512 b = _mm512_set1_ps(mx * 1.44269504088896341f);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        hl_bf16 *pb = p;
        for (; j + 32 <= n; j += 32) {
            __m512 e0 = exp2_bf16_grade(_mm512_loadu_ps(s + j), k, b);
            __m512 e1 = exp2_bf16_grade(_mm512_loadu_ps(s + j + 16), k, b);
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            _mm256_storeu_si256((__m256i *)(pb + j), to_bf16_fast(e0));
            _mm256_storeu_si256((__m256i *)(pb + j + 16), to_bf16_fast(e1));
        }
        sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    } else {
        const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(mx);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        float *pf = p;
        for (; j + 32 <= n; j += 32) {
            __m512 e0 = hl_v_exp(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), vs, vm));
            __m512 e1 = hl_v_exp(_mm512_fmsub_ps(_mm512_loadu_ps(s + j + 16), vs, vm));
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            _mm512_storeu_ps(pf + j, e0);
            _mm512_storeu_ps(pf + j + 16, e1);
        }
        sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    }
#endif
    for (; j < n; j++) {
        float e = expf(s[j] * scale - mx);
        sum += e;
        if (dt == HL_BF16) ((hl_bf16 *)p)[j] = hl_f32_to_bf16(e);
        else ((float *)p)[j] = e;
    }
    return sum;
}

static float softmax_row(const float *s, int64_t n, float scale, hl_dtype dt, void *p) {
    return exp_row(s, n, scale, row_max_scaled(s, n, scale), dt, p);
}

/* ---- softmax with additive biases ------------------------------------------------------------ */

/* s[j] <- scale·s[j] + b[j] + kb[j] clamped to [-FLT_MAX, FLT_MAX], in place (b, kb may be
 * NULL); returns the maximum. The clamp keeps every value finite (a masked key's -FLT_MAX plus a
 * negative bias would round to -inf), so the maximum is finite and T - max never is inf - inf. */
float hl_cpu_att_bias_row(float *s, int64_t n, float scale, const float *b, const float *kb) {
    int64_t j = 0;
    float m = -FLT_MAX;
#ifdef HL_CPU_AVX512
    const __m512 vs = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-FLT_MAX),
                 hi = _mm512_set1_ps(FLT_MAX);
    __m512 m0 = lo, m1 = lo;
    for (; j + 32 <= n; j += 32) {
        __m512 x0 = _mm512_mul_ps(_mm512_loadu_ps(s + j), vs);
        __m512 x1 = _mm512_mul_ps(_mm512_loadu_ps(s + j + 16), vs);
        if (b) {
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(b + j));
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(b + j + 16));
        }
        if (kb) {
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(kb + j));
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(kb + j + 16));
        }
        /* max(x, lo) returns lo for a NaN x: garbage in, but never a NaN out of the softmax;
         * the upper clamp keeps an overflowed +inf from making T - max = inf - inf */
        x0 = _mm512_min_ps(_mm512_max_ps(x0, lo), hi);
        x1 = _mm512_min_ps(_mm512_max_ps(x1, lo), hi);
        _mm512_storeu_ps(s + j, x0);
        _mm512_storeu_ps(s + j + 16, x1);
        m0 = _mm512_max_ps(m0, x0);
        m1 = _mm512_max_ps(m1, x1);
    }
    m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
#endif
    for (; j < n; j++) {
        float x = s[j] * scale;
        if (b) x += b[j];
        if (kb) x += kb[j];
        x = x > -FLT_MAX ? (x < FLT_MAX ? x : FLT_MAX) : -FLT_MAX; /* NaN -> -FLT_MAX, as above */
        s[j] = x;
        if (x > m) m = x;
    }
    return m;
}

/* p[j] = exp(t[j] - mx) in dt (p may alias t for F32), t[j] <= mx, both finite; returns the sum
 * of the float32 values. pf: NULL or n floats to prefetch meanwhile (a later bias row).
 * Arguments below EXP_ZERO give an exact 0: the exponential is evaluated at max(x, EXP_ZERO) and
 * masked, so a masked key (t = -FLT_MAX, t - mx down to -inf) never makes a NaN, and no result
 * lands in the subnormal range, where vscalefps takes a microcode assist (measured: with 1/8 of
 * the keys masked, S = 512, 64 heads of 64, 12.6 ms against 7.9 ms unmasked when the masked keys
 * underflowed through the subnormals). Dropping weights below e^-86 = 4e-38 changes nothing next
 * to a row sum >= 1. */
#define EXP_ZERO (-86.0f)
float hl_cpu_att_exp_row_shifted(const float *t, int64_t n, float mx, hl_dtype dt, void *p,
                                 const float *pf) {
    int64_t j = 0;
    float sum = 0.0f;
#ifdef HL_CPU_AVX512
    const __m512 vm = _mm512_set1_ps(mx), lo = _mm512_set1_ps(EXP_ZERO);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    if (dt == HL_BF16) {
        const __m512 k = _mm512_set1_ps(1.44269504088896341f), z = _mm512_setzero_ps();
        hl_bf16 *pb = p;
        for (; j + 32 <= n; j += 32) {
            if (pf) __builtin_prefetch(pf + j, 0, 2), __builtin_prefetch(pf + j + 16, 0, 2);
            __m512 x0 = _mm512_sub_ps(_mm512_loadu_ps(t + j), vm);
            __m512 x1 = _mm512_sub_ps(_mm512_loadu_ps(t + j + 16), vm);
            __mmask16 k0 = _mm512_cmp_ps_mask(x0, lo, _CMP_GE_OQ);
            __mmask16 k1 = _mm512_cmp_ps_mask(x1, lo, _CMP_GE_OQ);
            /* 2^(x·log2 e), x >= -86: n >= -125, a normal result */
            __m512 e0 = _mm512_maskz_mov_ps(k0, exp2_bf16_grade(_mm512_max_ps(x0, lo), k, z));
            __m512 e1 = _mm512_maskz_mov_ps(k1, exp2_bf16_grade(_mm512_max_ps(x1, lo), k, z));
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            _mm256_storeu_si256((__m256i *)(pb + j), to_bf16_fast(e0));
            _mm256_storeu_si256((__m256i *)(pb + j + 16), to_bf16_fast(e1));
        }
    } else {
        float *pout = p;
        for (; j + 32 <= n; j += 32) {
            if (pf) __builtin_prefetch(pf + j, 0, 2), __builtin_prefetch(pf + j + 16, 0, 2);
            __m512 x0 = _mm512_sub_ps(_mm512_loadu_ps(t + j), vm);
            __m512 x1 = _mm512_sub_ps(_mm512_loadu_ps(t + j + 16), vm);
            __mmask16 k0 = _mm512_cmp_ps_mask(x0, lo, _CMP_GE_OQ);
            __mmask16 k1 = _mm512_cmp_ps_mask(x1, lo, _CMP_GE_OQ);
            __m512 e0 = _mm512_maskz_mov_ps(k0, hl_v_exp(_mm512_max_ps(x0, lo)));
            __m512 e1 = _mm512_maskz_mov_ps(k1, hl_v_exp(_mm512_max_ps(x1, lo)));
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            _mm512_storeu_ps(pout + j, e0);
            _mm512_storeu_ps(pout + j + 16, e1);
        }
    }
    sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#endif
    for (; j < n; j++) {
        float x = t[j] - mx;
        float e = x >= EXP_ZERO ? expf(x) : 0.0f;
        sum += e;
        if (dt == HL_BF16) ((hl_bf16 *)p)[j] = hl_f32_to_bf16(e);
        else ((float *)p)[j] = e;
    }
    return sum;
}

/* softmax_row with biases; s (the scores) is overwritten. */
static float softmax_row_biased(float *s, int64_t n, float scale, const float *b, const float *kb,
                                hl_dtype dt, void *p, const float *pf) {
    return hl_cpu_att_exp_row_shifted(s, n, hl_cpu_att_bias_row(s, n, scale, b, kb), dt, p, pf);
}

/* ---- one block ------------------------------------------------------------------------------- */

typedef struct blk_bufs {
    float *scores; /* [bq][Sk] */
    void *probs;   /* [bq][Sk] in dt (== scores for F32) */
    float *o;      /* [bq][hd] */
    float *rsum;   /* [bq] */
} blk_bufs;

/* Carves thread tid's buffers (or, with base NULL, returns the bytes they need). */
static size_t blk_carve(const att_plan *p, char *base, blk_bufs *r) {
    size_t ss = round_up((size_t)(p->bq * p->Sk) * 4, 64);
    size_t sp = p->dt == HL_BF16 ? round_up((size_t)(p->bq * p->Sk) * 2, 64) : 0;
    size_t so = round_up((size_t)(p->bq * p->hd) * 4, 64);
    if (r) {
        r->scores = (float *)base;
        r->probs = sp ? (void *)(base + ss) : (void *)r->scores;
        r->o = (float *)(base + ss + sp);
        r->rsum = (float *)(base + ss + sp + so);
    }
    return ss + sp + so + round_up((size_t)p->bq * 4, 64);
}

/* out rows [i0, i0 + rows) of head h = O / l. */
static void write_rows(const att_plan *p, const blk_bufs *b, int h, int64_t i0, int64_t rows) {
    for (int64_t r = 0; r < rows; r++) {
        float *dst = p->out + (i0 + r) * p->ldo + (int64_t)h * p->hd;
        const float *src = b->o + r * p->hd;
        float rs = b->rsum[r];
        for (int d = 0; d < p->hd; d++) dst[d] = src[d] * rs;
    }
}

/* The bias rows are read once, from memory (H·Sq·Sk floats: 64 MiB for umT5 at 512 tokens),
 * so exp_row_shifted prefetches (into L2) the row this many rows ahead, one cache line per
 * 16 exponentials. Measured at S = 512, 64 heads of 64, bf16, bias and mask (medians of runs on
 * the shared 2-core machine): no prefetch 13.2-14.3 ms; the next row's 32 lines prefetched in a
 * burst before each row 10.1-11.5 ms; interleaved with the exponentials 10.1-10.9 ms; 2 to 16
 * rows ahead all alike. Without biases 7.3-8.2 ms: what remains is about the time of reading
 * 64 MiB on this machine (2.1-3.2 ms with both cores). */
enum { BIAS_PREFETCH_ROWS = 4 };

static hl_status run_block(const att_plan *p, int tid, int h, int64_t blk, hl_error *err) {
    blk_bufs b;
    blk_carve(p, p->blk + (size_t)tid * p->blk_stride, &b);
    void *pad = p->pad + (size_t)tid * p->pad_stride;
    int64_t i0 = blk * p->bq, rows = p->Sq - i0 < p->bq ? p->Sq - i0 : p->bq;

    const char *q = p->q + (size_t)(((int64_t)h * p->Sq_pad + i0) * p->hd) * p->esz;
    HL_TRY(hl_cpu_mm_run(p->qk, tid, q, p->kb + (size_t)h * p->kb_head, NULL, b.scores, pad, err));
    if (p->bias || p->key_bias) {
        const float *bias = p->bias ? p->bias + ((int64_t)h * p->Sq + i0) * p->Sk : NULL;
        for (int64_t r = 0; r < rows; r++) {
            void *pr = (char *)b.probs + (size_t)(r * p->Sk) * p->esz;
            const float *pf = bias && r + BIAS_PREFETCH_ROWS < rows
                                  ? bias + (r + BIAS_PREFETCH_ROWS) * p->Sk
                                  : NULL;
            b.rsum[r] = 1.0f / softmax_row_biased(b.scores + r * p->Sk, p->Sk, p->scale,
                                                  bias ? bias + r * p->Sk : NULL, p->key_bias,
                                                  p->dt, pr, pf);
        }
    } else {
        for (int64_t r = 0; r < rows; r++) {
            void *pr = (char *)b.probs + (size_t)(r * p->Sk) * p->esz;
            b.rsum[r] = 1.0f / softmax_row(b.scores + r * p->Sk, p->Sk, p->scale, p->dt, pr);
        }
    }
    /* padding rows need no softmax, but P·V reads them: zeros keep never-written memory out */
    if (rows < p->bq)
        memset((char *)b.probs + (size_t)(rows * p->Sk) * p->esz, 0,
               (size_t)((p->bq - rows) * p->Sk) * p->esz);
    HL_TRY(hl_cpu_mm_run(p->pv, tid, b.probs, p->vb + (size_t)h * p->vb_head, NULL, b.o, pad, err));
    write_rows(p, &b, h, i0, rows);
    return HL_OK;
}

/* ---- plan ------------------------------------------------------------------------------------ */

/* Query block size: scores (f32) and probabilities of one block within ~1 MiB, about half of
 * this machine's 2 MiB L2 per core; a multiple of 16 (AMX tile rows), chosen to split Sq into
 * nearly equal blocks. */
static void choose_blocks(att_plan *p) {
    int64_t per_row = p->Sk * (int64_t)(4 + (p->dt == HL_BF16 ? 2 : 0));
    int64_t bq_max = ((int64_t)1 << 20) / per_row / 16 * 16;
    if (bq_max < 16) bq_max = 16;
    if (bq_max > 512) bq_max = 512;
    p->nblk = (p->Sq + bq_max - 1) / bq_max;
    p->bq = (int64_t)round_up((size_t)((p->Sq + p->nblk - 1) / p->nblk), 16);
    p->Sq_pad = p->nblk * p->bq;
}

static hl_status oom(const hl_ctx *ctx, const att_plan *p) {
    return hl_fail(ctx->err, HELIOS_ERR_OOM,
                   "attention: out of memory (Sq=%lld Sk=%lld H=%d hd=%d)", (long long)p->Sq,
                   (long long)p->Sk, p->H, p->hd);
}

/* Primitives and scratch; with the lock held. */
static hl_status make_plan(const hl_ctx *ctx, att_plan *p) {
    hl_mm_key qk = {
        .M = p->bq, .N = p->Sk, .K = p->hd, .dt = p->dt, .blayout = HL_MM_B_BLOCKED_NK, .nthr = 1};
    hl_mm_key pv = {
        .M = p->bq, .N = p->hd, .K = p->Sk, .dt = p->dt, .blayout = HL_MM_B_BLOCKED_KN, .nthr = 1};
    hl_cpu *cpu = hl_cpu_of(ctx);
    hl_status st = hl_cpu_dnnl_init(cpu, p->nthr, ctx->err);
    if (st == HL_OK) st = hl_cpu_mm_get(cpu, &qk, &p->qk, ctx->err);
    if (st == HL_OK) st = hl_cpu_mm_get(cpu, &pv, &p->pv, ctx->err);
    if (st != HL_OK) {
        hl_error_prefix(ctx->err, "attention");
        return st;
    }

    size_t q_bytes = round_up((size_t)((int64_t)p->H * p->Sq_pad * p->hd) * p->esz, 64);
    size_t kv_bytes = round_up((size_t)((int64_t)p->H * p->Sk * p->hd) * p->esz, 64);
    p->kb_head = round_up(hl_cpu_mm_packed_b_size(p->qk), 64);
    p->vb_head = round_up(hl_cpu_mm_packed_b_size(p->pv), 64);
    char *buf = hl_cpu_scratch(cpu, HL_SLOT_ATT_QKV,
                               q_bytes + 2 * kv_bytes + (p->kb_head + p->vb_head) * (size_t)p->H);
    size_t pad = hl_cpu_mm_scratchpad_size(p->qk);
    if (hl_cpu_mm_scratchpad_size(p->pv) > pad) pad = hl_cpu_mm_scratchpad_size(p->pv);
    p->pad_stride = round_up(pad ? pad : 64, 4096);
    p->blk_stride = round_up(blk_carve(p, NULL, NULL), 4096);
    p->pad = hl_cpu_scratch(cpu, HL_SLOT_ATT_PAD, p->pad_stride * (size_t)p->nthr);
    p->blk = hl_cpu_scratch(cpu, HL_SLOT_ATT_BLK, p->blk_stride * (size_t)p->nthr);
    if (!buf || !p->pad || !p->blk) return oom(ctx, p);
    p->q = buf;
    p->k = p->q + q_bytes;
    p->v = p->k + kv_bytes;
    p->kb = p->v + kv_bytes;
    p->vb = p->kb + p->kb_head * (size_t)p->H;
    return HL_OK;
}

/* Reorders k_h and v_h of head h into the blocked layout, on thread tid. */
static hl_status block_kv(const att_plan *p, int tid, int h, hl_error *err) {
    void *pad = p->pad + (size_t)tid * p->pad_stride;
    size_t head = (size_t)(p->Sk * p->hd) * p->esz;
    HL_TRY(hl_cpu_mm_pack_b(p->qk, tid, p->k + h * head, p->kb + (size_t)h * p->kb_head, pad, err));
    return hl_cpu_mm_pack_b(p->pv, tid, p->v + h * head, p->vb + (size_t)h * p->vb_head, pad, err);
}

/* Runs n tasks over the threads (any thread may take any task: each is computed the same way
 * whoever runs it), stopping at the first failure, whose message goes to err. */
static hl_status run_tasks(const att_plan *p, int64_t n,
                           hl_status (*task)(const att_plan *, int, int64_t, hl_error *),
                           hl_error *err) {
    hl_status st = HL_OK;
    hl_error first = {0};
#pragma omp parallel for schedule(dynamic, 1) num_threads(p->nthr)
    for (int64_t t = 0; t < n; t++) {
        hl_status s;
#pragma omp atomic read
        s = st;
        if (s != HL_OK) continue;
        hl_error e = {0};
        s = task(p, omp_get_thread_num(), t, &e);
        if (s != HL_OK) {
#pragma omp critical(hl_attention_error)
            if (st == HL_OK) {
                first = e;
#pragma omp atomic write
                st = s;
            }
        }
    }
    if (st != HL_OK) return hl_fail(err, st, "attention: %s", first.msg);
    return HL_OK;
}

static hl_status kv_task(const att_plan *p, int tid, int64_t h, hl_error *err) {
    return block_kv(p, tid, (int)h, err);
}

static hl_status block_task(const att_plan *p, int tid, int64_t t, hl_error *err) {
    return run_block(p, tid, (int)(t / p->nblk), t % p->nblk, err);
}

hl_status hl_cpu_attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                  const float *q, int64_t ldq, const float *k, int64_t ldk,
                                  const float *v, int64_t ldv, float scale, const float *bias,
                                  const float *key_bias, hl_dtype compute, float *out,
                                  int64_t ldo) {
    hl_cpu *cpu = hl_cpu_of(ctx);
    hl_cpu_lock(cpu);
    if (compute == HL_BF16 && !hl_cpu_bf16_gemm(cpu)) compute = HL_F32; /* no bf16 kernels here */
    hl_cpu_unlock(cpu);
    att_plan p = {.Sq = Sq,
                  .Sk = Sk,
                  .H = H,
                  .hd = hd,
                  .dt = compute,
                  .esz = hl_dtype_size(compute),
                  .scale = scale,
                  .bias = bias,
                  .key_bias = key_bias,
                  .nthr = hl_cpu_nthr_for(2.0 * (double)Sq * Sk * H * hd),
                  .out = out,
                  .ldo = ldo};
    if (p.nthr < 1) p.nthr = 1;
    choose_blocks(&p);

    hl_cpu_lock(cpu);
    hl_status st = make_plan(ctx, &p);
    if (st == HL_OK) {
        hl_cpu_att_pack_heads(q, ldq, Sq, p.Sq_pad, H, hd, compute, p.q);
        hl_cpu_att_pack_heads(k, ldk, Sk, Sk, H, hd, compute, p.k);
        hl_cpu_att_pack_heads(v, ldv, Sk, Sk, H, hd, compute, p.v);
        st = run_tasks(&p, H, kv_task, ctx->err);
    }
    if (st == HL_OK) st = run_tasks(&p, (int64_t)H * p.nblk, block_task, ctx->err);
    hl_cpu_unlock(cpu);
    return st;
}

/* AVX-512 float32 math for the cpu kernels: exp, tanh, bf16 rounding, horizontal sums.
 *
 * Everything here is static inline and exists only when the compiler targets AVX-512
 * (HL_CPU_AVX512); the kernels keep a scalar loop (libm) for the tail and for other targets.
 *
 * exp: Cody-Waite reduction x = n·ln2 + r, |r| <= ln2/2, e^r by its degree-7 Taylor polynomial
 * (truncation r^8/8! <= 5.2e-9 relative), 2^n applied with vscalefps (exact, and it overflows to
 * inf / underflows through subnormals to 0 like expf). About 2 ulp.
 * tanh: |x| < 0.625: the [5/4] Padé approximant x(945 + 105x² + x⁴)/(945 + 420x² + 15x⁴), i.e.
 * Lambert's continued fraction for tanh cut after the term 9 (relative error <= 7.5e-10 on
 * [0, 0.625]); |x| >= 0.625: 1 - 2/(e^{2|x|} + 1), where the subtraction loses less than one bit
 * (tanh >= 0.55). Sign restored at the end. Max relative error 1.6e-7 against libm's double tanh
 * (test_ops). gelu_tanh uses the equivalent logistic form instead (see pointwise.c). */
#ifndef HL_CPU_VEC_MATH_H
#define HL_CPU_VEC_MATH_H

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define HL_CPU_AVX512 1
#include <immintrin.h>

static inline __m512 hl_v_exp(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693147182464599609375f); /* float(ln 2) */
    const __m512 ln2_lo = _mm512_set1_ps(-1.904654299957768e-09f);  /* ln 2 - ln2_hi */
    /* Clamp so r stays finite: e^88.73 is about FLT_MAX, e^-104 is below the smallest subnormal.
     * min/max return their second operand for a NaN, so a NaN x passes through. */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(88.8f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    /* Horner, coefficients 1/k!. */
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 hl_v_tanh(__m512 x) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_andnot_ps(sign, x); /* |x| */
    /* small: Padé in z = x² */
    __m512 z = _mm512_mul_ps(a, a);
    __m512 num = _mm512_fmadd_ps(_mm512_add_ps(z, _mm512_set1_ps(105.0f)), z,
                                 _mm512_set1_ps(945.0f));
    __m512 den = _mm512_fmadd_ps(_mm512_fmadd_ps(z, _mm512_set1_ps(15.0f), _mm512_set1_ps(420.0f)),
                                 z, _mm512_set1_ps(945.0f));
    __m512 small = _mm512_div_ps(_mm512_mul_ps(a, num), den);
    /* large: 1 - 2/(e^{2a} + 1); e^{2a} = inf for a > 44 gives exactly 1 */
    __m512 e = hl_v_exp(_mm512_add_ps(a, a));
    __m512 large = _mm512_sub_ps(
        _mm512_set1_ps(1.0f),
        _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    __mmask16 use_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    __m512 t = _mm512_mask_blend_ps(use_small, large, small);
    /* a NaN compares false and took the large path, where it stayed NaN; restore the sign */
    return _mm512_or_ps(t, _mm512_and_ps(x, sign));
}

/* 16 floats -> 16 bf16, round to nearest even; NaN -> quiet NaN (same as hl_f32_to_bf16).
 * Integer rounding rather than vcvtneps2bf16, which flushes subnormal inputs to zero. */
static inline __m256i hl_v_to_bf16(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    __mmask16 nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
    __m512i quiet = _mm512_or_si512(u, _mm512_set1_epi32(0x00400000));
    __m512i r = _mm512_mask_blend_epi32(nan, rounded, quiet);
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

static inline __m512 hl_v_from_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

#endif /* AVX-512 */

#endif

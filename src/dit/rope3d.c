/* 3D rotary tables (spec §1.4). A head's hd/2 channel pairs are split over the axes: the first
 * rope_dim[0]/2 pairs rotate with the frame index, the next rope_dim[1]/2 with the row, the last
 * rope_dim[2]/2 with the column. Angles are float32, as the reference computes them. */
#include <math.h>

#include "dit/dit.h"

/* 1 / theta^(2k/d) in float32, the order of operations of the reference. */
static float axis_freq(double theta, int d, int k) {
    float e = (float)(2 * k) / (float)d;
    return 1.0f / powf((float)theta, e);
}

/* Frequencies and axis of every pair j of a head. */
typedef struct rope_axes {
    float freq[2048];
    unsigned char axis[2048]; /* 0 = t, 1 = y, 2 = x */
    int half;
} rope_axes;

static void rope_axes_init(const hl_dit_config *c, rope_axes *r) {
    int j = 0;
    for (int a = 0; a < 3; a++)
        for (int k = 0; k < c->rope_dim[a] / 2; k++, j++) {
            r->freq[j] = axis_freq(c->rope_theta, c->rope_dim[a], k);
            r->axis[j] = (unsigned char)a;
        }
    r->half = j;
}

/* cos/sin of one token at position (t, y, x) into row (cos[half], sin[half]); acc adds instead. */
static void rope_token(const rope_axes *r, float t, float y, float x, float *row, int acc) {
    for (int j = 0; j < r->half; j++) {
        float pos = r->axis[j] == 0 ? t : r->axis[j] == 1 ? y : x;
        float phi = r->freq[j] * pos;
        if (acc) {
            row[j] += cosf(phi);
            row[r->half + j] += sinf(phi);
        } else {
            row[j] = cosf(phi);
            row[r->half + j] = sinf(phi);
        }
    }
}

void hl_dit_rope_grid(const hl_dit_config *c, int64_t T, const int64_t *idx, int64_t H, int64_t W,
                      float *rope) {
    rope_axes r;
    rope_axes_init(c, &r);
    float *row = rope;
    for (int64_t t = 0; t < T; t++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++, row += c->head_dim)
                rope_token(&r, (float)(idx ? idx[t] : t), (float)y, (float)x, row, 0);
}

static int64_t clamp_i(int64_t i, int64_t n) { return i < n ? i : n - 1; }

void hl_dit_rope_pooled(const hl_dit_config *c, int64_t T, const int64_t *idx, int64_t H, int64_t W,
                        int k, float *rope) {
    rope_axes r;
    rope_axes_init(c, &r);
    int64_t To = (T + k - 1) / k, Ho = (H + k - 1) / k, Wo = (W + k - 1) / k;
    float inv = 1.0f / (float)(k * k * k);
    float *row = rope;
    for (int64_t t = 0; t < To; t++)
        for (int64_t y = 0; y < Ho; y++)
            for (int64_t x = 0; x < Wo; x++, row += c->head_dim) {
                for (int j = 0; j < c->head_dim; j++) row[j] = 0.0f;
                /* replicate padding: positions past the end repeat the last one */
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++)
                        for (int d = 0; d < k; d++) {
                            int64_t ti = clamp_i(t * k + a, T);
                            rope_token(&r, (float)(idx ? idx[ti] : ti),
                                       (float)clamp_i(y * k + b, H), (float)clamp_i(x * k + d, W),
                                       row, 1);
                        }
                for (int j = 0; j < c->head_dim; j++) row[j] *= inv;
            }
}

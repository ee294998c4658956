#include "sample/history.h"

#include <stdlib.h>
#include <string.h>

hl_status hl_history_init(hl_history *h, int B, int C, int H, int W, const int sizes[3],
                          hl_error *err) {
    memset(h, 0, sizeof *h);
    if (B < 1 || C < 1 || H < 1 || W < 1 || sizes[0] < 0 || sizes[1] < 0 || sizes[2] != 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "history: bad sizes (B %d, C %d, %dx%d, [%d, %d, %d])", B, C, H, W, sizes[0],
                       sizes[1], sizes[2]);
    h->B = B, h->C = C, h->H = H, h->W = W;
    h->n_long = sizes[0], h->n_mid = sizes[1], h->n_1x = sizes[2];
    h->total = sizes[0] + sizes[1] + sizes[2];
    size_t plane = (size_t)H * (size_t)W, bc = (size_t)B * (size_t)C;
    h->frames = calloc(bc * (size_t)h->total * plane, sizeof(float));
    h->anchor = calloc(bc * plane, sizeof(float));
    if (!h->frames || !h->anchor) {
        hl_history_free(h);
        return hl_fail(err, HELIOS_ERR_OOM, "history: out of memory");
    }
    return HL_OK;
}

void hl_history_free(hl_history *h) {
    free(h->frames);
    free(h->anchor);
    h->frames = h->anchor = NULL;
}

void hl_history_append(hl_history *h, const float *x, int F) {
    size_t plane = (size_t)h->H * (size_t)h->W;
    int keep = F >= h->total ? 0 : h->total - F; /* old frames that stay */
    int take = F >= h->total ? h->total : F;     /* new frames that enter (the last ones of x) */
    for (int bc = 0; bc < h->B * h->C; bc++) {
        float *win = h->frames + (size_t)bc * (size_t)h->total * plane;
        const float *src = x + ((size_t)bc * (size_t)F + (size_t)(F - take)) * plane;
        memmove(win, win + (size_t)(h->total - keep) * plane, (size_t)keep * plane * sizeof(float));
        memcpy(win + (size_t)keep * plane, src, (size_t)take * plane * sizeof(float));
    }
    h->generated += F;
}

void hl_history_set_anchor(hl_history *h, const float *x, int F, int frame) {
    size_t plane = (size_t)h->H * (size_t)h->W;
    for (int bc = 0; bc < h->B * h->C; bc++)
        memcpy(h->anchor + (size_t)bc * plane, x + ((size_t)bc * (size_t)F + (size_t)frame) * plane,
               plane * sizeof(float));
    h->has_anchor = true;
}

/* dst[b, c, 0:n] = window[b, c, first:first+n] for every (b, c). */
static void copy_frames(const hl_history *h, int first, int n, float *dst, int dst_frames,
                        int dst_first) {
    size_t plane = (size_t)h->H * (size_t)h->W;
    for (int bc = 0; bc < h->B * h->C; bc++)
        memcpy(dst + ((size_t)bc * (size_t)dst_frames + (size_t)dst_first) * plane,
               h->frames + ((size_t)bc * (size_t)h->total + (size_t)first) * plane,
               (size_t)n * plane * sizeof(float));
}

bool hl_history_layout_parse(const char *s, hl_history_layout *out) {
    if (s && !strcmp(s, "compressed")) *out = HL_HISTORY_COMPRESSED;
    else if (s && !strcmp(s, "uncompressed")) *out = HL_HISTORY_UNCOMPRESSED;
    else return false;
    return true;
}

static hl_status inputs_alloc(const hl_history *h, int F, hl_history_inputs *in, hl_error *err) {
    size_t plane = (size_t)h->H * (size_t)h->W, bc = (size_t)h->B * (size_t)h->C;
    size_t nl = (size_t)(in->n_long ? in->n_long : 1), nm = (size_t)(in->n_mid ? in->n_mid : 1);
    in->F = F;
    in->lat_long = malloc(bc * nl * plane * sizeof(float));
    in->lat_mid = malloc(bc * nm * plane * sizeof(float));
    in->lat_short = malloc(bc * (size_t)in->n_short * plane * sizeof(float));
    in->idx_long = malloc(nl * sizeof(int64_t));
    in->idx_mid = malloc(nm * sizeof(int64_t));
    in->idx_short = malloc((size_t)in->n_short * sizeof(int64_t));
    in->idx_cur = malloc((size_t)F * sizeof(int64_t));
    if (!in->lat_long || !in->lat_mid || !in->lat_short || !in->idx_long || !in->idx_mid ||
        !in->idx_short || !in->idx_cur) {
        hl_history_inputs_free(in);
        return hl_fail(err, HELIOS_ERR_OOM, "history: out of memory");
    }
    return HL_OK;
}

hl_status hl_history_inputs_build_layout(const hl_history *h, int F, hl_history_layout layout,
                                         hl_history_inputs *in, hl_error *err) {
    memset(in, 0, sizeof *in);
    bool flat = layout == HL_HISTORY_UNCOMPRESSED;
    in->n_long = flat ? 0 : h->n_long;
    in->n_mid = flat ? 0 : h->n_mid;
    in->n_short = flat ? 1 + h->total : 2;
    HL_TRY(inputs_alloc(h, F, in, err));
    size_t plane = (size_t)h->H * (size_t)h->W, bc = (size_t)h->B * (size_t)h->C;
    int ns = in->n_short;
    copy_frames(h, 0, in->n_long, in->lat_long, in->n_long, 0);
    copy_frames(h, in->n_long, in->n_mid, in->lat_mid, in->n_mid, 0);
    /* the short tier after its anchor: the newest frame, or (uncompressed) the whole window */
    copy_frames(h, h->total - (ns - 1), ns - 1, in->lat_short, ns, 1);
    for (size_t i = 0; i < bc; i++) /* short[:, :, 0] = the anchor (zeros until one is set) */
        memcpy(in->lat_short + i * (size_t)ns * plane, h->anchor + i * plane,
               plane * sizeof(float));
    /* indices: 0 = anchor, then long, mid, 1x, current, in that order; the uncompressed layout
     * keeps each frame's index, so only the patch size of the older frames changes */
    for (int i = 0; i < in->n_long; i++) in->idx_long[i] = 1 + i;
    for (int i = 0; i < in->n_mid; i++) in->idx_mid[i] = 1 + h->n_long + i;
    in->idx_short[0] = 0;
    for (int i = 1; i < ns; i++) in->idx_short[i] = h->total - (ns - 1) + i;
    for (int i = 0; i < F; i++) in->idx_cur[i] = h->total + 1 + i;
    return HL_OK;
}

hl_status hl_history_inputs_build(const hl_history *h, int F, hl_history_inputs *in,
                                  hl_error *err) {
    return hl_history_inputs_build_layout(h, F, HL_HISTORY_COMPRESSED, in, err);
}

float *hl_history_inputs_frame(const hl_history_inputs *in, int n_long, int n_mid, int n_short,
                               int i, int *T, int *t) {
    if (i > 0 && i <= n_long) {
        *T = n_long, *t = i - 1;
        return in->lat_long;
    }
    if (i > n_long && i <= n_long + n_mid) {
        *T = n_mid, *t = i - 1 - n_long;
        return in->lat_mid;
    }
    *T = n_short, *t = i == 0 ? 0 : i - n_long - n_mid;
    return in->lat_short;
}

void hl_history_inputs_free(hl_history_inputs *in) {
    free(in->lat_long), free(in->lat_mid), free(in->lat_short);
    free(in->idx_long), free(in->idx_mid), free(in->idx_short), free(in->idx_cur);
    memset(in, 0, sizeof *in);
}

/* The multi-term memory of the chunk loop (spec §2.4-2.5, §1.5): a fixed window of the last
 * `total` = long + mid + 1x generated latent frames plus a first-frame anchor. The window never
 * grows with the video: appending a chunk shifts it. Each chunk the transformer sees
 *   long  = window[0 : long]               RoPE frames 1 .. long
 *   mid   = window[long : long + mid]      RoPE frames long+1 .. long+mid
 *   short = [anchor, window[total - 1]]    RoPE frames 0, total
 *   current chunk                          RoPE frames total+1 .. total+F
 * with a zero anchor until one is set (T2V chunk 0). The uncompressed layout (an ablation: no
 * multi-term memory, spec §5.1's "standard" run) gives the transformer the same frames at the
 * short tier's 1x2x2 patches instead, long and mid empty:
 *   short = [anchor, window[0 : total]]    RoPE frames 0, 1 .. total (the same indices)
 * so every history frame keeps the RoPE index it has in the compressed layout. */
#ifndef HL_HISTORY_H
#define HL_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef struct hl_history {
    int B, C, H, W; /* latent batch, channels, height, width */
    int n_long, n_mid, n_1x, total;
    float *frames; /* [B, C, total, H, W], zeros until filled */
    float *anchor; /* [B, C, 1, H, W] */
    bool has_anchor;
    int64_t generated; /* latent frames appended so far (what the video holds) */
} hl_history;

/* sizes = {long, mid, 1x} (the pipelines' history_sizes [16, 2, 1]); 1x must be 1 (spec §2.5). */
hl_status hl_history_init(hl_history *h, int B, int C, int H, int W, const int sizes[3],
                          hl_error *err);
void hl_history_free(hl_history *h);

/* Appends F frames x [B, C, F, H, W] (the window keeps the last `total`). */
void hl_history_append(hl_history *h, const float *x, int F);
/* anchor = x[:, :, frame] of x [B, C, F, H, W]. */
void hl_history_set_anchor(hl_history *h, const float *x, int F, int frame);

typedef enum hl_history_layout {
    HL_HISTORY_COMPRESSED = 0, /* long, mid, short = [anchor, newest] (the released models) */
    HL_HISTORY_UNCOMPRESSED,   /* long, mid empty; short = [anchor, every window frame] */
} hl_history_layout;

/* "compressed" / "uncompressed" (the key's value in configs and model_index.json); false for
 * anything else. */
bool hl_history_layout_parse(const char *s, hl_history_layout *out);

/* The transformer's history inputs for a chunk of F frames, contiguous (B, C, T, H, W) copies.
 * A tier with no frames still has a buffer of one frame (never read), so no pointer is NULL. */
typedef struct hl_history_inputs {
    float *lat_long, *lat_mid, *lat_short;             /* [B, C, n_long|n_mid|n_short, H, W] */
    int64_t *idx_long, *idx_mid, *idx_short, *idx_cur; /* RoPE frame indices; idx_cur [F] */
    int F;
    int n_long, n_mid, n_short; /* frames per tier (set by the builders; 0 in hand-made inputs) */
} hl_history_inputs;

/* The compressed layout. */
hl_status hl_history_inputs_build(const hl_history *h, int F, hl_history_inputs *in, hl_error *err);
hl_status hl_history_inputs_build_layout(const hl_history *h, int F, hl_history_layout layout,
                                         hl_history_inputs *in, hl_error *err);
void hl_history_inputs_free(hl_history_inputs *in);

/* History frame i (RoPE order: 0 = the anchor, then oldest to newest) of inputs with tiers of
 * n_long, n_mid, n_short frames, for batch row 0: the tier's tensor, its frame count *T and the
 * frame's index *t in it. The short tier holds the anchor and the newest n_short - 1 frames, so
 * the one rule serves both layouts (compressed: n_short 2; uncompressed: n_long = n_mid = 0).
 * i in [0, n_long + n_mid + n_short). */
float *hl_history_inputs_frame(const hl_history_inputs *in, int n_long, int n_mid, int n_short,
                               int i, int *T, int *t);

#endif

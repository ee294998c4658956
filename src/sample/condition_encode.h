/* The VAE encodes of I2V / V2V as the reference pipelines make them (oracle README §9.4):
 *   I2V: the image alone (1 frame), then a fake video of the image repeated (F-1)·4+1 times;
 *   V2V: frame 0 alone, then each window of (F-1)·4+1 frames of the last n·((F-1)·4+1) frames,
 *        every encode with fresh causal caches.
 * The moments feed sample/prepare.c. */
#ifndef HL_CONDITION_ENCODE_H
#define HL_CONDITION_ENCODE_H

#include "vae/vae.h"

#define HL_COND_MAX_ENCODES 64

typedef struct hl_cond_moments {
    int n;                         /* encodes: 2 for I2V, 1 + chunks for V2V */
    float *m[HL_COND_MAX_ENCODES]; /* (1, 2z, T_lat, h, w) each */
} hl_cond_moments;

/* image (3, H, W) or video (3, T, H, W) in [-1, 1] (exactly one non-NULL); F latent frames per
 * chunk. V2V keeps at most HL_COND_MAX_ENCODES - 1 windows (the newest).
 * A video may come without its middle: frame 0, then the last T - 1 frames of a video of
 * T + skipped frames (a tail read, helios_video_read_tail). keep_windows > 0 encodes only the
 * newest keep_windows windows (the others get zero moments: enough when their latents leave
 * the history before they are used; 0 = encode all). Windows needed but skipped are an error. */
hl_status hl_condition_encode(const hl_ctx *ctx, hl_vae *vae, const float *image,
                              const float *video, int T, int skipped, int keep_windows, int H,
                              int W, int F, hl_cond_moments *out);
void hl_cond_moments_free(hl_cond_moments *m);

#endif

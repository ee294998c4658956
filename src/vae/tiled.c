/* Tiled encode / decode (diffusers AutoencoderKLWan.enable_tiling, tiled_encode, tiled_decode):
 * overlapping spatial tiles run independently (fresh caches each), then, in raster order, each
 * tile's first rows are blended with the tile above and its first columns with the tile to the
 * left, linearly over the overlap; the blend writes into the tiles themselves, so a later tile
 * blends with already blended neighbours, as the reference's in-place blend_v / blend_h do.
 * Each tile keeps its top-left stride x stride part; the parts are concatenated and cropped.
 * Glue code on small tensors, plain loops (the tiles themselves go through the ops). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vae/vae_internal.h"

typedef struct tile {
    float *x; /* (C, T, h, w) */
    int64_t h, w;
} tile;

typedef struct tile_grid {
    int64_t nr, nc, C, T;
    tile *t; /* [nr * nc] */
} tile_grid;

static void grid_free(tile_grid *g) {
    if (g->t)
        for (int64_t i = 0; i < g->nr * g->nc; i++) free(g->t[i].x);
    free(g->t);
}

/* b[..., y, :] = a[..., a.h - e + y, :]·(1 - y/e) + b[..., y, :]·(y/e), y < e = min(a.h, b.h, extent). */
static void blend_v(int64_t C, int64_t T, const tile *a, tile *b, int64_t extent) {
    int64_t e = a->h < b->h ? a->h : b->h;
    if (extent < e) e = extent;
    for (int64_t ct = 0; ct < C * T; ct++)
        for (int64_t y = 0; y < e; y++) {
            float wa = (float)(1.0 - (double)y / (double)e), wb = (float)((double)y / (double)e);
            const float *ra = a->x + (ct * a->h + a->h - e + y) * a->w;
            float *rb = b->x + (ct * b->h + y) * b->w;
            for (int64_t x = 0; x < b->w && x < a->w; x++) {
                float pa = ra[x] * wa, pb = rb[x] * wb;
                rb[x] = pa + pb;
            }
        }
}

/* The same along the width: b[..., x] = a[..., a.w - e + x]·(1 - x/e) + b[..., x]·(x/e). */
static void blend_h(int64_t C, int64_t T, const tile *a, tile *b, int64_t extent) {
    int64_t e = a->w < b->w ? a->w : b->w;
    if (extent < e) e = extent;
    for (int64_t ct = 0; ct < C * T; ct++)
        for (int64_t y = 0; y < b->h && y < a->h; y++) {
            const float *ra = a->x + (ct * a->h + y) * a->w;
            float *rb = b->x + (ct * b->h + y) * b->w;
            for (int64_t x = 0; x < e; x++) {
                float wa = (float)(1.0 - (double)x / (double)e),
                      wb = (float)((double)x / (double)e);
                float pa = ra[a->w - e + x] * wa, pb = rb[x] * wb;
                rb[x] = pa + pb;
            }
        }
}

/* Blends the grid in raster order, keeps the [:stride_h, :stride_w] part of each tile, and writes
 * the concatenation cropped to out_h x out_w into out (C, T, out_h, out_w), clamped to [lo, hi]. */
static void assemble(tile_grid *g, int64_t blend_hgt, int64_t blend_wid, int64_t stride_h,
                     int64_t stride_w, int64_t out_h, int64_t out_w, float lo, float hi,
                     float *out) {
    int64_t oy = 0;
    for (int64_t i = 0; i < g->nr; i++) {
        int64_t ox = 0, rows = 0;
        for (int64_t j = 0; j < g->nc; j++) {
            tile *t = &g->t[i * g->nc + j];
            if (i > 0) blend_v(g->C, g->T, &g->t[(i - 1) * g->nc + j], t, blend_hgt);
            if (j > 0) blend_h(g->C, g->T, &g->t[i * g->nc + j - 1], t, blend_wid);
            int64_t ch = t->h < stride_h ? t->h : stride_h, cw = t->w < stride_w ? t->w : stride_w;
            for (int64_t ct = 0; ct < g->C * g->T; ct++)
                for (int64_t y = 0; y < ch && oy + y < out_h; y++)
                    for (int64_t x = 0; x < cw && ox + x < out_w; x++) {
                        float v = t->x[(ct * t->h + y) * t->w + x];
                        out[(ct * out_h + oy + y) * out_w + ox + x] = v < lo ? lo : v > hi ? hi : v;
                    }
            ox += cw;
            rows = ch;
        }
        oy += rows;
    }
}

/* Copies the window [y0, y0 + h) x [x0, x0 + w) of src (C, T, H, W) into dst (C, T, h, w). */
static void crop(const float *src, int64_t CT, int64_t H, int64_t W, int64_t y0, int64_t x0,
                 int64_t h, int64_t w, float *dst) {
    for (int64_t ct = 0; ct < CT; ct++)
        for (int64_t y = 0; y < h; y++)
            memcpy(dst + (ct * h + y) * w, src + (ct * H + y0 + y) * W + x0,
                   (size_t)w * sizeof(float));
}

static hl_status check_tiling(const hl_ctx *ctx, const hl_vae_config *c, const hl_vae_tiling *tl) {
    int r = c->spatial_ratio;
    if (!tl || tl->tile_min_h < r || tl->tile_min_w < r || tl->tile_stride_h < r ||
        tl->tile_stride_w < r)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE tiling: tile sizes and strides must be at least the spatial ratio %d",
                       r);
    return HL_OK;
}

static int64_t count_tiles(int64_t n, int64_t stride) { return (n + stride - 1) / stride; }

void hl_vae_tiled_latent_shape(const hl_vae_config *c, const hl_vae_tiling *tl, int64_t T,
                               int64_t H, int64_t W, int64_t *T_lat, int64_t *h, int64_t *w) {
    hl_vae_latent_shape(c, T, H, W, T_lat, h, w);
    if (!(W > tl->tile_min_w || H > tl->tile_min_h)) return; /* untiled */
    int64_t r = c->spatial_ratio, ls_h = tl->tile_stride_h / r, ls_w = tl->tile_stride_w / r;
    /* the concatenation of the tiles' stride parts, cropped to H / r x W / r */
    int64_t sum_h = 0, sum_w = 0, t, th, tw;
    for (int64_t i = 0; i < H; i += tl->tile_stride_h) {
        hl_vae_latent_shape(c, 1, H - i < tl->tile_min_h ? H - i : tl->tile_min_h, 1, &t, &th, &tw);
        sum_h += th < ls_h ? th : ls_h;
    }
    for (int64_t j = 0; j < W; j += tl->tile_stride_w) {
        hl_vae_latent_shape(c, 1, 1, W - j < tl->tile_min_w ? W - j : tl->tile_min_w, &t, &th, &tw);
        sum_w += tw < ls_w ? tw : ls_w;
    }
    *h = sum_h < H / r ? sum_h : H / r;
    *w = sum_w < W / r ? sum_w : W / r;
}

hl_status hl_vae_encode_tiled(const hl_ctx *ctx, hl_vae *v, const hl_vae_tiling *tl, int64_t T,
                              int64_t H, int64_t W, const float *video, float *moments,
                              int64_t *T_lat, int64_t *h, int64_t *w) {
    const hl_vae_config *c = &v->cfg;
    HL_TRY(check_tiling(ctx, c, tl));
    hl_vae_tiled_latent_shape(c, tl, T, H, W, T_lat, h, w);
    if (!(W > tl->tile_min_w || H > tl->tile_min_h))
        return hl_vae_encode(ctx, v, 1, T, H, W, video, moments);
    int64_t r = c->spatial_ratio, Cin = c->in_channels, Z2 = 2 * (int64_t)c->z_dim;
    tile_grid g = {count_tiles(H, tl->tile_stride_h), count_tiles(W, tl->tile_stride_w), Z2, *T_lat,
                   NULL};
    if (!(g.t = calloc((size_t)(g.nr * g.nc), sizeof *g.t)))
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE tiled encode: out of memory");
    float *px = NULL;
    hl_status st = HL_OK;
    for (int64_t i = 0; i < g.nr && st == HL_OK; i++)
        for (int64_t j = 0; j < g.nc && st == HL_OK; j++) {
            int64_t y0 = i * tl->tile_stride_h, x0 = j * tl->tile_stride_w;
            int64_t ph = H - y0 < tl->tile_min_h ? H - y0 : tl->tile_min_h;
            int64_t pw = W - x0 < tl->tile_min_w ? W - x0 : tl->tile_min_w, tt;
            tile *t = &g.t[i * g.nc + j];
            hl_vae_latent_shape(c, T, ph, pw, &tt, &t->h, &t->w);
            free(px);
            px = malloc((size_t)(Cin * T * ph * pw) * sizeof *px);
            t->x = malloc((size_t)(Z2 * tt * t->h * t->w) * sizeof *t->x);
            if (!px || !t->x) {
                st = hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE tiled encode: out of memory");
                break;
            }
            if (tt != g.T) {
                st = hl_fail(ctx->err, HELIOS_ERR_INTERNAL,
                             "VAE tiled encode: tiles disagree on frames");
                break;
            }
            crop(video, Cin * T, H, W, y0, x0, ph, pw, px);
            st = hl_vae_encode(ctx, v, 1, T, ph, pw, px, t->x);
        }
    free(px);
    if (st == HL_OK) {
        int64_t lmin_h = tl->tile_min_h / r, lmin_w = tl->tile_min_w / r;
        int64_t ls_h = tl->tile_stride_h / r, ls_w = tl->tile_stride_w / r;
        assemble(&g, lmin_h - ls_h, lmin_w - ls_w, ls_h, ls_w, *h, *w, -INFINITY, INFINITY,
                 moments);
    }
    grid_free(&g);
    return st;
}

hl_status hl_vae_decode_tiled(const hl_ctx *ctx, hl_vae *v, const hl_vae_tiling *tl, int64_t T_lat,
                              int64_t h, int64_t w, const float *z, float *video) {
    const hl_vae_config *c = &v->cfg;
    HL_TRY(check_tiling(ctx, c, tl));
    int64_t r = c->spatial_ratio, lmin_h = tl->tile_min_h / r, lmin_w = tl->tile_min_w / r;
    if (!(w > lmin_w || h > lmin_h)) return hl_vae_decode(ctx, v, 1, T_lat, h, w, z, video);
    int64_t ls_h = tl->tile_stride_h / r, ls_w = tl->tile_stride_w / r, Z = c->z_dim;
    int64_t F = hl_vae_decoded_frames(c, T_lat), O = v->decoder.conv_out.w.shape[0];
    tile_grid g = {count_tiles(h, ls_h), count_tiles(w, ls_w), O, F, NULL};
    if (!(g.t = calloc((size_t)(g.nr * g.nc), sizeof *g.t)))
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE tiled decode: out of memory");
    float *zt = NULL;
    hl_status st = HL_OK;
    for (int64_t i = 0; i < g.nr && st == HL_OK; i++)
        for (int64_t j = 0; j < g.nc && st == HL_OK; j++) {
            int64_t y0 = i * ls_h, x0 = j * ls_w;
            int64_t lh = h - y0 < lmin_h ? h - y0 : lmin_h, lw = w - x0 < lmin_w ? w - x0 : lmin_w;
            tile *t = &g.t[i * g.nc + j];
            t->h = lh * r, t->w = lw * r;
            free(zt);
            zt = malloc((size_t)(Z * T_lat * lh * lw) * sizeof *zt);
            t->x = malloc((size_t)(O * F * t->h * t->w) * sizeof *t->x);
            if (!zt || !t->x) {
                st = hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE tiled decode: out of memory");
                break;
            }
            crop(z, Z * T_lat, h, w, y0, x0, lh, lw, zt);
            st = hl_vae_decode_one(ctx, v, T_lat, lh, lw, zt, t->x, -INFINITY,
                                   INFINITY); /* unclamped */
        }
    free(zt);
    if (st == HL_OK) {
        memset(video, 0,
               (size_t)(O * F * h * r * w * r) * sizeof *video); /* gaps stay 0, not garbage */
        assemble(&g, tl->tile_min_h - tl->tile_stride_h, tl->tile_min_w - tl->tile_stride_w,
                 tl->tile_stride_h, tl->tile_stride_w, h * r, w * r, -1.0f, 1.0f, video);
    }
    grid_free(&g);
    return st;
}

/* LoRA adapters for training the transformer (issue 10): rank r, alpha, on every linear layer and
 * the patch embeddings, as the official Helios training applies them (docs/training.md, "LoRA").
 *
 * For each target weight W0 [N, K] (a Conv3d weight [out, in, kt, kh, kw] is W0 flattened to
 * [out, in * kt * kh * kw], its memory layout unchanged) the adapter is A [r, K], B [N, r] and
 *
 *     W = W0 + s * B A,    s = alpha / r.
 *
 * The adapters of all targets live in one flat f32 buffer with its own layout (train/params.h),
 * named and shaped as diffusers saves a PEFT transformer LoRA (pytorch_lora_weights.safetensors):
 *     transformer.<module>.lora_A.weight   [r, K]              (Linear)   [r, in, kt, kh, kw] (Conv3d)
 *     transformer.<module>.lora_B.weight   [N, r]              (Linear)   [out, r, 1, 1, 1]   (Conv3d)
 * in the model layout's order, A before B. The optimizer, the EMA and the loop's checkpoints work
 * on that buffer only; the model's own buffer is frozen (its gradients are read, never applied).
 *
 * A training step, exact through merged weights:
 *
 *   hl_lora l;  hl_lora_new(&l, &model_layout, w, rank, alpha, NULL, err);  // W0 copied from w
 *   float *ad = calloc(l.layout.total, 4), *gad = calloc(l.layout.total, 4);
 *   hl_lora_init_adapters(&l, ad, rng);            // A ~ U(-1/sqrt(K), 1/sqrt(K)), B = 0
 *   ... each step:
 *   hl_lora_apply(&l, ad, w);                      // W = W0 + s B A in the model buffer
 *   memset(gw, 0, ...);  forward, backward         // full dW into the model's gradient view gw
 *   hl_lora_grads(&l, ad, gw, gad);                // gad += dL/dA, dL/dB from dW
 *   AdamW over (ad, gad)
 *
 * with dL/dA = s B^T dW and dL/dB = s dW A^T. Every output element is one double sum in a fixed
 * order, whatever the thread count (core/parallel.h splits rows), so results are reproducible.
 *
 * Memory: W0 is kept as a second f32 copy of every target (the model buffer holds W), and the
 * backward materialises the full dW; a fused low-rank backward that never forms dW (needed for
 * the 14B) is future work. */
#ifndef HL_TRAIN_LORA_H
#define HL_TRAIN_LORA_H

#include <stdint.h>

#include "core/error.h"
#include "sample/rng.h"
#include "train/params.h"

#define HL_LORA_PREFIX "transformer."
#define HL_LORA_MAX_RANK 4096

typedef struct hl_lora_target {
    size_t param;         /* index of W in the model layout */
    int64_t n, k;         /* W viewed as [n, k] */
    int64_t w_off;        /* offset of W in the model buffer */
    int64_t a_off, b_off; /* offsets of A [r, k] and B [n, r] in the adapter buffer */
    int64_t base_off;     /* offset of W0 in base (when kept) */
} hl_lora_target;

typedef struct hl_lora {
    int rank;
    double alpha, scale; /* scale = alpha / rank */
    hl_params layout;    /* the adapter tensors (names as above) */
    size_t n_targets;
    hl_lora_target *t; /* in model-layout order */
    float *base;       /* W0 of every target back to back, or NULL (hl_lora_merge needs none) */
    int64_t base_total;
} hl_lora;

/* Whether parameter p of a model layout can carry an adapter: a ".weight" of two or more
 * dimensions (Linear and Conv weights). Norm gains (1-D), biases, scale_shift_table and
 * history_key_scale never do. */
int hl_lora_eligible(const hl_param *p);

/* Whether module name (the parameter name without ".weight") matches glob pattern (`*` any run of
 * characters, dots included; `?` one character). */
int hl_lora_glob(const char *pattern, const char *name);

/* Builds the adapters' layout for the eligible parameters of model whose module name matches one
 * of targets (NULL-terminated glob list; NULL: every eligible parameter, the official choice).
 * 1 <= rank <= HL_LORA_MAX_RANK, alpha > 0 and finite. A pattern that matches no eligible parameter is an error (a
 * typo would otherwise train nothing). w0: the model buffer to copy W0 from (model->total floats),
 * or NULL to keep no copy (then only hl_lora_merge and hl_lora_save can be used). */
hl_status hl_lora_new(hl_lora *l, const hl_params *model, const float *w0, int rank, double alpha,
                      const char *const *targets, hl_error *err);
void hl_lora_free(hl_lora *l);

/* PEFT's default initialisation (init_lora_weights=True): A by kaiming_uniform_(a=sqrt(5)), i.e.
 * U(-1/sqrt(K), 1/sqrt(K)) with K the fan-in (in * kt * kh * kw for a Conv3d), one torch.rand draw
 * per A in layout order; B = 0, so the adapted model starts as the base model. */
void hl_lora_init_adapters(const hl_lora *l, float *ad, hl_rng *rng);

/* W = W0 + s B A for every target, written into the model buffer w (needs l->base). Each element
 * is rounded once: (float)(W0 + s * sum_j B[n,j] A[j,k]) with the sum in double. */
hl_status hl_lora_apply(const hl_lora *l, const float *ad, float *w, hl_error *err);

/* gad += dL/dA = s B^T dW and dL/dB = s dW A^T for every target, from the model's gradient
 * buffer gw (dW at each target's offset; the gradients of non-targets are ignored). */
void hl_lora_grads(const hl_lora *l, const float *ad, const float *gw, float *gad);

/* W += s B A permanently, in whatever the model buffer w holds (the base weights of an exported
 * model); on a buffer holding W0 it gives hl_lora_apply's bits. */
void hl_lora_merge(const hl_lora *l, const float *ad, float *w);

/* Writes the adapters ad as a safetensors file (names and shapes above, F32), atomically (temp
 * file, fsync, rename), with metadata "helios.lora.rank", "helios.lora.alpha",
 * "helios.lora.targets" (the module names, comma-separated) and diffusers'
 * "lora_adapter_metadata" ({"transformer.r", "transformer.lora_alpha",
 * "transformer.target_modules"}), so a PEFT loader gets the scale right. */
hl_status hl_lora_save(const char *path, const hl_lora *l, const float *ad, hl_error *err);

/* Reads an adapter file against a model layout: rank and alpha from the helios metadata (or, when
 * absent, the rank from the tensors and alpha from diffusers' metadata, else alpha = rank, PEFT's
 * reading of a file without one); the targets are the modules the file names (with or without the
 * "transformer." prefix). Every tensor must be a lora_A / lora_B of an eligible parameter of model,
 * in pairs, shaped for it and the rank, of a float dtype; anything else is HELIOS_ERR_FORMAT naming
 * the file and the tensor. On success *l is built as hl_lora_new(model, w0) would (w0 may be NULL)
 * and *ad is a new malloc'ed adapter buffer (l->layout.total floats). */
hl_status hl_lora_load(const char *path, const hl_params *model, const float *w0, hl_lora *l,
                       float **ad, hl_error *err);

#endif

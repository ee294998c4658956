/* The optimizer over flat float32 buffers (train/params.h): AdamW as torch.optim.AdamW, global-norm
 * gradient clipping as torch.nn.utils.clip_grad_norm_, the learning-rate schedule of diffusers'
 * get_scheduler, and an exponential moving average of the weights as diffusers' EMAModel.
 *
 * Every update is element-wise over contiguous slices of the buffers (core/parallel.h), and the
 * gradient norm sums fixed blocks of HL_NORM_BLOCK elements in double and adds the block sums in
 * order, so every result is the same bits whatever the thread count. */
#ifndef HL_TRAIN_ADAMW_H
#define HL_TRAIN_ADAMW_H

#include <stdint.h>

#include "core/error.h"

typedef struct hl_adamw_config {
    double beta1, beta2; /* torch defaults 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* decoupled: p *= 1 - lr * weight_decay before the Adam step */
} hl_adamw_config;

/* The moments of n parameters and the number of steps taken (torch's state["step"]). */
typedef struct hl_adamw {
    int64_t n;
    int64_t step;
    float *m, *v; /* exp_avg, exp_avg_sq: [n] each, zero at the start */
} hl_adamw;

hl_status hl_adamw_init(hl_adamw *s, int64_t n, hl_error *err);
void hl_adamw_free(hl_adamw *s);

/* One step with learning rate lr, exactly torch.optim.AdamW's single-tensor path in float32:
 *   step += 1
 *   p *= 1 - lr * wd
 *   m += (1 - b1) (g - m)           (exp_avg.lerp_(g, 1 - b1))
 *   v  = b2 v + (1 - b2) g g
 *   p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
 * with the scalar factors computed in double and rounded to float32, as torch does. */
void hl_adamw_step(hl_adamw *s, const hl_adamw_config *c, double lr, float *params,
                   const float *grads);
/* The same step on parameters [begin, end) only (their moments likewise); the others, weight
 * decay included, are left exactly as they are. The step count advances once. */
void hl_adamw_step_range(hl_adamw *s, const hl_adamw_config *c, double lr, float *params,
                         const float *grads, int64_t begin, int64_t end);

#define HL_NORM_BLOCK 65536

/* The L2 norm of g[0..n) (block sums in double). */
double hl_grad_norm(const float *g, int64_t n);
/* torch.nn.utils.clip_grad_norm_(max_norm): returns the norm before clipping; when it exceeds
 * max_norm, scales g by max_norm / (norm + 1e-6). max_norm <= 0 only measures. */
double hl_clip_grad_norm(float *g, int64_t n, double max_norm);

typedef enum hl_lr_kind {
    HL_LR_CONSTANT = 0, /* "constant" (with warm-up: diffusers' constant_with_warmup) */
    HL_LR_COSINE,       /* "cosine": half a cosine from lr to min_lr over the steps after warm-up */
} hl_lr_kind;

typedef struct hl_lr_schedule {
    hl_lr_kind kind;
    double lr, min_lr;
    int64_t warmup; /* steps of linear warm-up */
    int64_t total;  /* optimizer steps of the run (cosine) */
} hl_lr_schedule;

/* The learning rate of the optimizer step with 0-based index `step`, as diffusers' LambdaLR
 * schedules give it: warm-up lr * step / warmup for step < warmup (so the first step has lr 0
 * when warmup > 0), then lr (constant) or
 *   min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (step - warmup) / max(1, total - warmup)))
 * (cosine; min_lr = 0 is get_cosine_schedule_with_warmup with half a cycle), never below min_lr
 * after the end. */
double hl_lr_at(const hl_lr_schedule *s, int64_t step);

/* ema += (1 - decay) (p - ema), element-wise (EMAModel's s_param.sub_((1 - decay) * (s - p))). */
void hl_ema_update(float *ema, const float *params, int64_t n, double decay);

#endif

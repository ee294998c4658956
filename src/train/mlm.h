/* Masked-token prediction (BERT's masked language modelling) for training the UMT5 encoder from
 * scratch: the "mlm" objective (train/objective.h). The spec gives no text-encoder objective; this
 * is the standard encoder-only one (Devlin et al. 2019, §3.1; transformers'
 * DataCollatorForLanguageModeling), with T5's tied head.
 *
 * Corruption of one token sequence (hl_mlm_corrupt): of the n candidate positions (the caption's
 * tokens that are not control pieces: </s> and padding are never chosen), K = max(1,
 * round(mask_prob · n)) distinct ones are chosen uniformly (a partial Fisher-Yates shuffle); each
 * chosen token becomes mask_id with probability mask_token_prob, a uniformly drawn word piece with
 * probability random_token_prob, and stays as it is otherwise. Draws, all from the sample's
 * generator, in this order: K u64 for the shuffle, then per chosen position (in increasing
 * position order) one rand_f32 u and one u64 r (both always drawn, so the stream does not depend
 * on the outcomes). BERT draws a Bernoulli per token; a fixed K keeps every sample's loss defined
 * (K >= 1).
 *
 * Loss (hl_mlm_loss): logits [K, V] = (d_model^-1/2 · h) · shared.weightᵀ at the chosen positions
 * (h: the encoder's last_hidden_state, after its final norm), cross-entropy against the original
 * tokens, mean over the K positions. The d_model^-1/2 is T5's rule for its tied head
 * (T5ForConditionalGeneration rescales before a tied lm_head): without it the logits of
 * unit-RMS hidden states against N(0, 1) embeddings have a standard deviation of sqrt(d_model) and
 * the softmax starts saturated. No new parameters: the head is the embedding. */
#ifndef HL_TRAIN_MLM_H
#define HL_TRAIN_MLM_H

#include <stdint.h>

#include "ops/ops.h"
#include "sample/rng.h"

typedef struct hl_mlm_params {
    double mask_prob;         /* share of candidate tokens chosen (0.15) */
    double mask_token_prob;   /* of the chosen: replaced by mask_id (0.8) */
    double random_token_prob; /* of the chosen: replaced by a random word piece (0.1) */
    int64_t mask_id;
    const int64_t *words; /* the ids a random replacement is drawn from (n_words >= 1) */
    int64_t n_words;
} hl_mlm_params;

/* ids [L] -> in [L] (the corrupted input), pos [K] (increasing) and target [K] (the original
 * ids there); cand [n] lists the candidate positions (increasing, n >= 1). pos and target hold
 * room for n. *K = the number chosen. */
void hl_mlm_corrupt(const hl_mlm_params *p, hl_rng *rng, const int64_t *ids, int64_t L,
                    const int64_t *cand, int64_t n, int64_t *in, int64_t *pos, int64_t *target,
                    int64_t *K);

/* *loss = mean_k CE(logits_k, target_k), logits [K, V] = (scale · h[k]) · Eᵀ, E = shared.weight
 * [V, D]. dh [K, D] = ∂loss/∂h (overwritten); dE [V, D] += ∂loss/∂E (NULL: not computed). */
hl_status hl_mlm_loss(const hl_ctx *ctx, const hl_tensor *E, float scale, int64_t K, const float *h,
                      const int64_t *target, double *loss, float *dh, float *dE);

#endif

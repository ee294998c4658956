/* Prompt -> embeddings, as the pipelines' encode_prompt (spec §5.4): prompt cleaning, the T5
 * tokenizer call padded to max_len, the UMT5 encoder with the attention mask, rows past the mask
 * length zeroed. The encoder weights are mapped on first use and can be released (low memory). */
#ifndef HL_TEXT_PROMPT_ENCODE_H
#define HL_TEXT_PROMPT_ENCODE_H

#include "text/spm.h"
#include "text/umt5.h"

typedef struct hl_text_encoder {
    char config_path[4096], weights_path[4096];
    hl_spm *spm;
    hl_umt5_config cfg; /* read and checked at open, so a bad config.json fails at load */
    hl_umt5 *umt5;      /* NULL until used, or after hl_text_encoder_release */
} hl_text_encoder;

/* text_encoder_dir: config.json + weights; tokenizer_dir: spiece.model. Reads the tokenizer and
 * validates config.json (and that every token id fits its vocab_size); the weights are mapped on
 * first use. */
hl_status hl_text_encoder_open(const char *text_encoder_dir, const char *tokenizer_dir,
                               hl_text_encoder **out, hl_error *err);
void hl_text_encoder_free(hl_text_encoder *te);
/* Unmaps the encoder weights (they are mapped again when needed). */
void hl_text_encoder_release(hl_text_encoder *te);
/* Maps the encoder weights now (hl_text_encode does it on first use). */
hl_status hl_text_encoder_load(hl_text_encoder *te, hl_error *err);
/* The embedding width (d_model). */
hl_status hl_text_encoder_dim(hl_text_encoder *te, int *dim, hl_error *err);

/* out [max_len, d_model] for one prompt. */
hl_status hl_text_encode(const hl_ctx *ctx, hl_text_encoder *te, const char *prompt, int max_len,
                         float *out);

#endif

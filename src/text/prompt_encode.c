#include "text/prompt_encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/prompt_clean.h"

hl_status hl_text_encoder_open(const char *text_encoder_dir, const char *tokenizer_dir,
                               hl_text_encoder **out, hl_error *err) {
    *out = NULL;
    hl_text_encoder *te = calloc(1, sizeof *te);
    if (!te) return hl_fail(err, HELIOS_ERR_OOM, "text encoder: out of memory");
    snprintf(te->config_path, sizeof te->config_path, "%s/config.json", text_encoder_dir);
    snprintf(te->weights_path, sizeof te->weights_path, "%s", text_encoder_dir);
    /* spiece.model when present, else a Hugging Face tokenizer.json */
    char spm_path[4096], json_path[4096];
    snprintf(spm_path, sizeof spm_path, "%s/spiece.model", tokenizer_dir);
    snprintf(json_path, sizeof json_path, "%s/tokenizer.json", tokenizer_dir);
    /* probed with stat, not fopen: opening a FIFO would wait for a writer. Anything there that is
     * not a regular file goes to the loader, which says what is wrong with it. */
    hl_status st;
    if (access(spm_path, F_OK) == 0) {
        st = hl_spm_load(spm_path, &te->spm, err);
    } else if (access(json_path, F_OK) == 0) {
        st = hl_spm_load_tokenizer_json(json_path, &te->spm, err);
    } else {
        st = hl_fail(err, HELIOS_ERR_MISSING,
                     "%s: no tokenizer (neither spiece.model nor tokenizer.json)", tokenizer_dir);
    }
    hl_json *j = NULL;
    if (st == HL_OK) st = hl_json_load_file(te->config_path, &j, err);
    if (st == HL_OK && (st = hl_umt5_config_parse(j, &te->cfg, err)) != HL_OK)
        hl_error_prefix(err, "%s", te->config_path);
    hl_json_free(j);
    /* an id past vocab_size would be refused only when the first prompt is encoded */
    if (st == HL_OK && hl_spm_get_info(te->spm)->n_pieces > te->cfg.vocab_size)
        st = hl_fail(err, HELIOS_ERR_FORMAT,
                     "%s: 'vocab_size' = %d is smaller than the tokenizer's %d pieces (%s)",
                     te->config_path, te->cfg.vocab_size, hl_spm_get_info(te->spm)->n_pieces,
                     tokenizer_dir);
    if (st != HL_OK) {
        hl_spm_free(te->spm);
        free(te);
        return st;
    }
    *out = te;
    return HL_OK;
}

void hl_text_encoder_release(hl_text_encoder *te) {
    hl_umt5_free(te->umt5);
    te->umt5 = NULL;
}

void hl_text_encoder_free(hl_text_encoder *te) {
    if (!te) return;
    hl_text_encoder_release(te);
    hl_spm_free(te->spm);
    free(te);
}

static hl_status ensure_loaded(hl_text_encoder *te, hl_error *err) {
    return te->umt5 ? HL_OK : hl_umt5_load(te->config_path, te->weights_path, &te->umt5, err);
}

hl_status hl_text_encoder_load(hl_text_encoder *te, hl_error *err) {
    return ensure_loaded(te, err);
}

hl_status hl_text_encoder_dim(hl_text_encoder *te, int *dim, hl_error *err) {
    (void)err;
    *dim = te->cfg.d_model;
    return HL_OK;
}

hl_status hl_text_encode(const hl_ctx *ctx, hl_text_encoder *te, const char *prompt, int max_len,
                         float *out) {
    if (max_len < 1)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "text encoder: max length %d", max_len);
    HL_TRY(ensure_loaded(te, ctx->err));
    char *clean = NULL;
    size_t clean_len = 0;
    int32_t *ids32 = malloc((size_t)max_len * sizeof *ids32),
            *mask32 = malloc((size_t)max_len * sizeof *mask32);
    int64_t *ids = malloc((size_t)max_len * sizeof *ids),
            *mask = malloc((size_t)max_len * sizeof *mask);
    hl_status st = ids32 && mask32 && ids && mask
                       ? HL_OK
                       : hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory");
    if (st == HL_OK)
        st = hl_prompt_clean_n(prompt ? prompt : "", prompt ? strlen(prompt) : 0, &clean,
                               &clean_len);
    if (st == HL_OK)
        st = hl_spm_encode_t5(te->spm, clean, clean_len, max_len, ids32, mask32, NULL, ctx->err);
    for (int i = 0; st == HL_OK && i < max_len; i++) ids[i] = ids32[i], mask[i] = mask32[i];
    if (st == HL_OK) st = hl_umt5_forward(ctx, te->umt5, 1, max_len, ids, mask, NULL, out);
    if (st == HL_OK) hl_umt5_zero_padding(1, max_len, te->umt5->cfg.d_model, mask, out);
    free(clean), free(ids32), free(mask32), free(ids), free(mask);
    return st;
}

/* libFuzzer target: prompt cleaning (html.unescape twice, whitespace_clean) and tokenisation of
 * arbitrary prompts with the tiny model's real umT5 spiece.model (nmt_nfkc charsmap), as
 * hl_text_encode does before the encoder runs. Checks: the cleaned text has no whitespace run and
 * no leading / trailing space, NUL-terminated and explicit-length cleaning agree, and the ids
 * keep the T5 layout. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spm_check.h"
#include "text/prompt_clean.h"

#ifndef HELIOS_FUZZ_SPIECE
#define HELIOS_FUZZ_SPIECE "tests/models/tiny-random-model/tokenizer/spiece.model"
#endif

static hl_spm *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("HELIOS_FUZZ_SPIECE");
    if (!path) path = HELIOS_FUZZ_SPIECE;
    hl_error err;
    if (hl_spm_load(path, &g_model, &err) != HL_OK) {
        fprintf(stderr, "fuzz_prompt: %s\n", err.msg);
        exit(1);
    }
    return 0;
}

static void check_clean(const char *c, size_t n) {
    if (c[n] != '\0') abort();
    if (n && (c[0] == ' ' || c[n - 1] == ' ')) abort();
    for (size_t i = 0; i < n; i++) {
        if (c[i] == '\t' || c[i] == '\n' || c[i] == '\r' || c[i] == '\v' || c[i] == '\f') abort();
        if (c[i] == ' ' && i + 1 < n && c[i + 1] == ' ') abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    char *u = NULL;
    size_t ulen = 0;
    hl_status st = hl_html_unescape(in, size, &u, &ulen);
    if (st == HL_OK && (!u || u[ulen] != '\0')) abort();
    free(u);

    char *c = NULL;
    size_t clen = 0;
    st = hl_prompt_clean_n(in, size, &c, &clen);
    if (st != HL_OK) {
        if (st != HELIOS_ERR_OOM) abort();
        return 0;
    }
    check_clean(c, clen);

    /* the NUL-terminated entry point sees the text up to its first NUL */
    char *z = malloc(size + 1);
    if (z) {
        memcpy(z, data, size);
        z[size] = '\0';
        char *c1 = NULL, *c2 = NULL;
        size_t n2 = 0;
        if (hl_prompt_clean(z, &c1) == HL_OK &&
            hl_prompt_clean_n(z, strlen(z), &c2, &n2) == HL_OK &&
            (strlen(c1) != n2 || memcmp(c1, c2, n2) != 0))
            abort();
        free(c1), free(c2), free(z);
    }

    fuzz_spm_check_text(g_model, c, clen);
    free(c);
    return 0;
}

/* Shared by the tokenizer fuzz targets: runs a model that loaded over fixed probes and over
 * fuzzer-chosen text, checking what the encoder promises (ids in range, pieces that exist, the
 * T5 layout: ids, eos, then padding with a matching mask). Any violation aborts. */
#ifndef HELIOS_FUZZ_SPM_CHECK_H
#define HELIOS_FUZZ_SPM_CHECK_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/spm.h"

static inline void fuzz_spm_check_text(const hl_spm *m, const char *text, size_t len) {
    const hl_spm_info *in = hl_spm_get_info(m);
    hl_error err;
    char *norm = NULL;
    size_t nlen = 0;
    hl_status st = hl_spm_normalize(m, text, len, &norm, &nlen, &err);
    if (st != HL_OK && st != HELIOS_ERR_OOM) abort();
    if (st == HL_OK && (!norm || norm[nlen] != '\0')) abort();
    free(norm);

    int32_t *ids = NULL;
    size_t n = 0;
    st = hl_spm_encode(m, text, len, &ids, &n, &err);
    if (st != HL_OK && st != HELIOS_ERR_OOM) abort();
    for (size_t i = 0; st == HL_OK && i < n; i++) {
        size_t plen = 0;
        if (ids[i] < 0 || ids[i] >= in->n_pieces || !hl_spm_id_to_piece(m, ids[i], &plen)) abort();
    }
    free(ids);

    enum { MAX = 24 };
    int32_t t5[MAX], mask[MAX];
    int real = -1;
    st = hl_spm_encode_t5(m, text, len, MAX, t5, mask, &real, &err);
    if (st == HL_OK) {
        if (real < 1 || real > MAX || t5[real - 1] != in->eos_id) abort();
        for (int i = 0; i < MAX; i++) {
            if (mask[i] != (i < real)) abort();
            if (i >= real && t5[i] != in->pad_id) abort();
            if (t5[i] < 0 || t5[i] >= in->n_pieces) abort();
        }
    } else if (st != HELIOS_ERR_UNSUPPORTED && st != HELIOS_ERR_OOM) {
        abort();
    }
}

/* Probes that reach the charsmap rules of the seed models and the encoder's special cases. */
static const char *const k_fuzz_probes[] = {
    "A red fox runs across a snowy mountain pass.",
    ("\357\254\201sh  \357\274\241b e\314\201 x\342\200\213\033q \342\200\246\t\343\200\200z "
     "<extra_id_0>"), /* one probe: the concatenation is meant */
    "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\xac \xe2\x96\x81 \xff\xfe\xc3",
    "   ",
    "",
};

static inline void fuzz_spm_check(const hl_spm *m, const uint8_t *text, size_t len) {
    const hl_spm_info *in = hl_spm_get_info(m);
    if (!in || in->n_pieces < 1) abort();
    for (int id = 0; id < in->n_pieces; id++) {
        size_t plen = 0;
        const char *p = hl_spm_id_to_piece(m, id, &plen);
        if (!p || p[plen] != '\0') abort();
        (void)hl_spm_piece_to_id(m, p, plen);
        (void)hl_spm_piece_score(m, id);
    }
    for (size_t i = 0; i < sizeof k_fuzz_probes / sizeof *k_fuzz_probes; i++)
        fuzz_spm_check_text(m, k_fuzz_probes[i], strlen(k_fuzz_probes[i]));
    fuzz_spm_check_text(m, (const char *)text, len);
}

#endif

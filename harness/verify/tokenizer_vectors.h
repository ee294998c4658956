/* Checking the tokenizer against the reference vectors (shared/oracle layout, README §9.3):
 * `tokenizer_vectors.safetensors` with, beside it, one `tokenizer_<M>.model` per model M named
 * by a tensor "M.ids". Used by `helios verify` and tests/test_tokenizer.c. */
#ifndef HL_TEXT_TOKENIZER_VECTORS_H
#define HL_TEXT_TOKENIZER_VECTORS_H

#include "core/error.h"
#include "verify/report.h"

/* report gets one count check per case (verify/report.h): max_abs is the number of strings (or
 * pieces, for "M.vocab") that differ of total, tol 0. file is the vector file's name; case
 * names are
 *   "prompt_clean"            hl_prompt_clean vs the stored cleaned strings
 *   "M.vocab"                 piece strings, scores and types vs M.vocab.*
 *   "M.ids"                   hl_spm_encode vs M.ids
 *   "M.t5.L<N>"               hl_spm_encode_t5 (ids and mask) vs M.t5.L<N>.*
 *   "M.clean.ids", "M.clean.t5.L<N>"   the same after hl_prompt_clean (where stored). */
/* Runs every check the directory's vectors allow. Fails (without reporting the rest) only when
 * the vector file or a model cannot be read; mismatches are reported, not errors. */
hl_status hl_tokenizer_verify(const char *dir, hl_report_fn report, void *user, hl_error *err);

#endif

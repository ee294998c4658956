/* The one report callback of every reference-vector replay in harness/verify/ (sample, pipeline,
 * tokenizer, UMT5, VAE). */
#ifndef HL_VERIFY_REPORT_H
#define HL_VERIFY_REPORT_H

/* Called once per comparison. file: the vector file's base name; case_name: what was compared.
 * The case passes when max_abs <= tol (NaN fails; INFINITY marks a comparison that could not be
 * made). total > 0 marks a count check (token ids must match exactly): max_abs is then the number
 * of the `total` items compared that differ, and tol is 0; total is 0 for every other check. */
typedef void (*hl_report_fn)(void *user, const char *file, const char *case_name, double max_abs,
                             double tol, long total);

#endif

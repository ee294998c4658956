/* The prompt cleaning of the Helios/Wan pipelines (diffusers pipeline_helios.py, prompt_clean):
 *
 *     text = ftfy.fix_text(text)                       <- NOT done here, see below
 *     text = html.unescape(html.unescape(text)).strip()
 *     text = whitespace_clean(text)                    # regex.sub(r"\s+", " ", text).strip()
 *
 * What differs from the Python:
 *   - ftfy.fix_text is not run (the reference vectors skip it too: ftfy is not packaged in the
 *     reference environment). It repairs mojibake ("cafÃ©" -> "café"), turns curly quotes into
 *     straight ones, normalizes some width/ligature forms and removes some control characters;
 *     for clean prompts it is the identity, for others the token ids can differ.
 *   - Input that is not valid UTF-8 (impossible for a Python str) is kept byte for byte: each
 *     malformed byte counts as one non-space character.
 * Everything else is exact: html.unescape with the full HTML5 entity table, its numeric rules
 * (&#0; -> U+FFFD, &#128;..&#159; -> cp1252, surrogates / > U+10FFFF -> U+FFFD, noncharacters and
 * most C0/C1 controls -> removed) and the longest-prefix rule for legacy names without ';';
 * str.strip() removes Python's whitespace (the 25 code points below plus U+001C..U+001F) from
 * both ends; `\s` of the `regex` module is exactly U+0009..000D, U+0020, U+0085, U+00A0, U+1680,
 * U+2000..200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
#ifndef HL_TEXT_PROMPT_CLEAN_H
#define HL_TEXT_PROMPT_CLEAN_H

#include <stddef.h>

#include "core/error.h"

/* One html.unescape pass over in[0..len) into a new malloc'ed NUL-terminated string. */
hl_status hl_html_unescape(const char *in, size_t len, char **out, size_t *out_len);

/* The pipeline's prompt_clean (without ftfy) of the NUL-terminated in: a new malloc'ed string.
 * Only fails with HELIOS_ERR_OOM. */
hl_status hl_prompt_clean(const char *in, char **out);
/* The same for text with explicit length (may contain NUL bytes). */
hl_status hl_prompt_clean_n(const char *in, size_t len, char **out, size_t *out_len);

#endif

/* libFuzzer target: a Hugging Face tokenizer.json (Unigram model, Precompiled normalizer with a
 * base64 charsmap, Metaspace, TemplateProcessing) from arbitrary bytes; a model that loads is
 * run over fixed probes and the input's last bytes as text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spm_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hl_spm *m = (hl_spm *)1;
    hl_error err;
    hl_status st = hl_spm_load_tokenizer_json_mem(data, size, "fuzz.json", &m, &err);
    if (st != HL_OK) {
        if (m) abort();
        if (st != HELIOS_ERR_FORMAT && st != HELIOS_ERR_UNSUPPORTED && st != HELIOS_ERR_OOM)
            abort();
        if (strncmp(err.msg, "fuzz.json", 9) != 0) abort();
        return 0;
    }
    size_t tail = size < 48 ? size : 48;
    fuzz_spm_check(m, data + size - tail, tail);
    hl_spm_free(m);
    return 0;
}

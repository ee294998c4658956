/* libFuzzer target: spiece.model (a protobuf SentencePiece ModelProto: pieces, trainer spec,
 * normalizer spec with the precompiled charsmap) from arbitrary bytes; a model that loads is
 * then run over fixed probes and over the input's last bytes as text (so the fuzzer chooses
 * the charsmap and the text it normalizes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spm_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hl_spm *m = (hl_spm *)1;
    hl_error err;
    hl_status st = hl_spm_load_mem(data, size, "fuzz.model", &m, &err);
    if (st != HL_OK) {
        if (m) abort(); /* failure leaves *out NULL */
        if (st != HELIOS_ERR_FORMAT && st != HELIOS_ERR_UNSUPPORTED && st != HELIOS_ERR_OOM)
            abort();
        if (strncmp(err.msg, "fuzz.model", 10) != 0) abort(); /* the message names the file */
        return 0;
    }
    size_t tail = size < 48 ? size : 48;
    fuzz_spm_check(m, data + size - tail, tail);
    hl_spm_free(m);
    return 0;
}

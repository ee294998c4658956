/* libFuzzer target: the safetensors validator and readers on arbitrary bytes. Besides the
 * sanitizers, it checks what hl_st_parse promises: every tensor lies inside the buffer, no two
 * overlap, and everything it accepted can be read. */
#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"

/* Reads every byte of a tensor, so ASan sees any range that leaves the input. */
static unsigned touch(const hl_st_tensor *t) {
    const volatile unsigned char *p = t->data;
    unsigned sum = 0;
    for (size_t i = 0; i < t->nbytes; i++) sum += p[i];
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hl_safetensors *st = NULL;
    hl_error err;
    if (hl_st_parse(data, size, "fuzz", &st, &err) != HL_OK) {
        if (st) abort(); /* failure must leave *out NULL */
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < st->n; i++) {
        const hl_st_tensor *t = &st->tensors[i];
        const uint8_t *p = t->data;
        if (p < data || p > data + size || t->nbytes > (size_t)(data + size - p)) abort();
        total += t->nbytes;
        if (hl_st_find(st, t->name) != t) abort(); /* names are unique */
        hl_tensor v = hl_st_view(t);
        if ((size_t)hl_tensor_numel(&v) * hl_dtype_size(t->dtype) != t->nbytes) abort();
        (void)touch(t);

        float *f = NULL;
        int64_t *iv = NULL;
        hl_status sf = hl_st_read_f32(st, t->name, -1, &f, &err);
        hl_status si = hl_st_read_i64(st, t->name, -1, &iv, &err);
        free(f);
        free(iv);
        if (sf != HL_OK && sf != HELIOS_ERR_DTYPE) abort();
        if (si != HL_OK && si != HELIOS_ERR_DTYPE) abort();
    }
    if (total > size) abort(); /* disjoint ranges cannot add up to more than the file */
    (void)hl_st_meta(st, "format");
    hl_st_close(st);
    return 0;
}

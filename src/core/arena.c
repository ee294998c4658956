#include "core/arena.h"

#include <stdlib.h>

#define HL_ALIGN 64

int hl_arena_init(hl_arena *a, size_t cap) {
    cap = (cap + HL_ALIGN - 1) & ~(size_t)(HL_ALIGN - 1);
    a->base = cap ? aligned_alloc(HL_ALIGN, cap) : NULL;
    a->cap = a->base ? cap : 0;
    a->used = a->peak = 0;
    return (cap && !a->base) ? -1 : 0;
}

void hl_arena_free(hl_arena *a) {
    free(a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}

void *hl_arena_alloc(hl_arena *a, size_t bytes) {
    size_t n = (bytes + HL_ALIGN - 1) & ~(size_t)(HL_ALIGN - 1);
    if (n < bytes || n > a->cap - a->used) return NULL;
    void *p = a->base + a->used;
    a->used += n;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

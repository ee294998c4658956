/* A bump allocator for activations: one malloc up front, 64-byte aligned pieces, freed all at
 * once (or back to a mark). Exhaustion returns NULL, never aborts. */
#ifndef HL_ARENA_H
#define HL_ARENA_H

#include <stddef.h>

typedef struct hl_arena {
    unsigned char *base;
    size_t cap, used, peak;
} hl_arena;

int hl_arena_init(hl_arena *a, size_t cap); /* 0 on success, -1 if the allocation failed */
void hl_arena_free(hl_arena *a);
void *hl_arena_alloc(hl_arena *a, size_t bytes); /* NULL when full */
static inline size_t hl_arena_mark(const hl_arena *a) { return a->used; }
static inline void hl_arena_reset(hl_arena *a, size_t mark) { a->used = mark; }

#endif

/* A generation's memory, estimated before it is spent (helios_gen_new) and checked against what
 * the process may use: RLIMIT_AS (ulimit -v) and RLIMIT_DATA against what is already in use
 * (VmSize / VmData: the mapped weights, libraries, thread stacks), and MemAvailable.
 *
 * The estimate is an upper bound, term by term, of what is allocated after the check:
 *   - latents and history: the chunk loop's buffers (chunk_loop.c) and text embeddings;
 *   - transformer: one forward's activation arena (dit.c forward_bytes) with every history
 *     frame counted at full token resolution (mid and long are really 2x and 4x compressed);
 *   - VAE decode / encode: per up block, four activation buffers of temporal_ratio frames at
 *     its width and resolution, two frames of causal cache for every cached conv at the widest
 *     level, the conv weights repacked once, and the decoded chunk / the input window;
 *   - text encoder: the UMT5 forward on max_sequence_length tokens;
 *   - oneDNN: JIT code, primitive descriptors and scratchpads, a constant plus a per-thread part;
 *   - address space only (not counted against MemAvailable): per worker thread a stack and a
 *     glibc malloc arena (64 MiB reserved each), and the output encoder's threads. Both
 *     constants are measured with the tiny test model under ulimit -v (VmPeak ~230 MiB above
 *     VmSize at the check with 2 threads).
 * The transformer, the VAE and the text encoder run one after the other and free their
 * scratch, so only the largest of them counts, on top of the latents and oneDNN. */
#ifndef HL_API_MEMORY_H
#define HL_API_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "dit/dit.h"
#include "text/umt5.h"
#include "vae/vae.h"

typedef struct hl_mem_gen {
    const hl_dit *dit;
    const hl_vae *vae;          /* NULL: none */
    const hl_umt5_config *umt5; /* NULL: prompts are not encoded */
    int latent_frames, lat_h, lat_w, n_stages, history_frames;
    int n_cond, text_len, max_len;
    bool decode, conditioned;
} hl_mem_gen;

typedef struct hl_mem_need {
    uint64_t latents, transformer, vae, vae_encode, text, backend;
    uint64_t total;         /* memory: latents + the largest stage + backend */
    uint64_t address_space; /* on top, for RLIMIT_AS / RLIMIT_DATA only: thread stacks and heaps */
} hl_mem_need;

void hl_mem_estimate(const hl_mem_gen *g, hl_mem_need *out);
/* HELIOS_ERR_OOM with the numbers when n->total more bytes would pass a limit. */
hl_status hl_mem_admit(const hl_mem_need *n, hl_error *err);

#endif

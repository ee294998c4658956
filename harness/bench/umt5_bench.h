/* Throughput of the umT5-XXL encoder (spec §5) at full size with random weights: for
 * `helios bench` and tests/bench_ops, not used by the pipeline. */
#ifndef HL_UMT5_BENCH_H
#define HL_UMT5_BENCH_H

#include "core/dtype.h"
#include "core/error.h"

/* Builds a full-size umT5-XXL encoder (d_model 4096, 24 layers, 64 heads of 64, d_ff 10240) with
 * random weights in dt (HL_BF16 or HL_F32) and times hl_umt5_forward (cpu backend, all threads
 * that hl_set_threads allows) on one sequence of `tokens` tokens with an all-ones mask.
 * *seconds: the median of reps timed forwards after one warm-up; *gflop: the GFLOPs of one
 * forward, counted as
 *   24 · (4·2·L·D·I (q, k, v, o) + 3·2·L·D·F (wi_0, wi_1, wo) + 4·L²·I (attention))
 * with L = tokens, D = 4096, I = 64·64, F = 10240 (4845 GFLOP at 512 tokens). The 24 layers share
 * one layer's weights and the embedding has a small vocabulary (see umt5_bench.c): the compute
 * of the real model in 0.39 GB of bf16 weights (0.77 GB f32) instead of 11 GB. Peak RSS at 512
 * tokens: 570 MiB (bf16), 960 MiB (f32). Everything is freed before returning. */
hl_status hl_umt5_bench(int tokens, hl_dtype dt, int reps, double *seconds, double *gflop,
                        hl_error *err);

#endif

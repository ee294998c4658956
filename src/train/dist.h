/* Data-parallel training: the few collective operations the loop needs, over MPI when helios is
 * built with it (CMake HELIOS_MPI, Debian's OpenMPI) and started by a launcher (mpirun), else a
 * single-process stub with the same results.
 *
 *   hl_dist d;
 *   HL_TRY(hl_dist_init(&d, err));      // MPI_Init only under a launcher (OMPI_COMM_WORLD_SIZE...)
 *   ... hl_train_config.dist = &d; ...  // rank r of d.world
 *   hl_dist_finalize(&d);
 *
 * Determinism: hl_dist_ordered_add_f32 never lets MPI add floats. Every rank gathers every
 * rank's buffer (MPI_Allgather, in chunks) and adds them to its accumulator itself, in rank order:
 * acc = ((acc + x_0) + x_1) + ... + x_{W-1}. The result is the same bits on every rank, whatever
 * algorithm or network MPI uses, and the same bits as one process that adds the W buffers one
 * after the other: what the loop's gradient accumulation does (train_loop.h). It moves W times
 * the buffer to every rank (an all-gather, not a ring reduce-scatter): fine for the models this
 * engine trains on CPUs, not for billions of parameters over a slow network. */
#ifndef HL_TRAIN_DIST_H
#define HL_TRAIN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct hl_dist {
    int rank, world; /* this process, of world (0 and 1 for a single process) */
    bool mpi;        /* MPI_Init was called (hl_dist_finalize calls MPI_Finalize) */
} hl_dist;

/* Whether this build has MPI. */
bool hl_dist_built_with_mpi(void);

/* Starts MPI when this process was started by an MPI launcher (the environment has
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK) and the build has MPI; else a single process.
 * Under a launcher with several processes but without MPI in the build: HELIOS_ERR_UNSUPPORTED
 * (each process would otherwise train alone). */
hl_status hl_dist_init(hl_dist *d, hl_error *err);
/* A single process (rank 0 of 1), no MPI: what a NULL hl_dist means to the loop. */
void hl_dist_single(hl_dist *d);
void hl_dist_finalize(hl_dist *d);

/* acc[i] = ((acc[i] + x_0[i]) + x_1[i]) + ... with x_r = rank r's x (n floats on every rank);
 * the same bits on every rank. x and acc may not overlap. */
hl_status hl_dist_ordered_add_f32(const hl_dist *d, float *acc, const float *x, int64_t n,
                                  hl_error *err);
/* recv[r * bytes ...] = rank r's send (bytes on every rank). */
hl_status hl_dist_allgather(const hl_dist *d, const void *send, size_t bytes, void *recv,
                            hl_error *err);
/* Rank 0's buf[0..bytes) to every rank. */
hl_status hl_dist_bcast(const hl_dist *d, void *buf, size_t bytes, hl_error *err);

#endif

#include "train/dist.h"

#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"

#ifdef HELIOS_HAVE_MPI
#include <mpi.h>
#endif

/* Floats per all-gather of hl_dist_ordered_add_f32: 4 MiB from each rank per round. */
#define CHUNK ((int64_t)1 << 20)
/* Bytes per MPI call (counts are int). */
#define MAX_BYTES ((size_t)1 << 30)

/* A launcher's world size from the environment, 0 when not started by one. */
static int launcher_world(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v) > 0 ? atoi(v) : 1;
    }
    return getenv("PMIX_RANK") ? 1 : 0;
}

void hl_dist_single(hl_dist *d) { *d = (hl_dist){0, 1, false}; }

#ifdef HELIOS_HAVE_MPI

bool hl_dist_built_with_mpi(void) { return true; }

static hl_status mpi_fail(hl_error *err, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return hl_fail(err, HELIOS_ERR_IO, "MPI %s failed: %s", what, len ? msg : "unknown error");
}

hl_status hl_dist_init(hl_dist *d, hl_error *err) {
    hl_dist_single(d);
    if (!launcher_world()) return HL_OK;
    int provided, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Init_thread");
    d->mpi = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    return HL_OK;
}

void hl_dist_finalize(hl_dist *d) {
    if (d->mpi) MPI_Finalize();
    hl_dist_single(d);
}

hl_status hl_dist_allgather(const hl_dist *d, const void *send, size_t bytes, void *recv,
                            hl_error *err) {
    if (!d || d->world == 1) {
        if (recv != send) memcpy(recv, send, bytes);
        return HL_OK;
    }
    if (bytes > MAX_BYTES)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "MPI all-gather of %zu bytes (max %zu)", bytes,
                       MAX_BYTES);
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? HL_OK : mpi_fail(err, rc, "MPI_Allgather");
}

hl_status hl_dist_bcast(const hl_dist *d, void *buf, size_t bytes, hl_error *err) {
    if (!d || d->world == 1) return HL_OK;
    for (size_t off = 0; off < bytes; off += MAX_BYTES) {
        size_t n = bytes - off < MAX_BYTES ? bytes - off : MAX_BYTES;
        int rc = MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "MPI_Bcast");
    }
    return HL_OK;
}

#else /* a single process */

bool hl_dist_built_with_mpi(void) { return false; }

hl_status hl_dist_init(hl_dist *d, hl_error *err) {
    hl_dist_single(d);
    if (launcher_world() > 1)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "started by an MPI launcher with %d processes, but this helios was built "
                       "without MPI (install Debian's libopenmpi-dev and rebuild: CMake "
                       "-DHELIOS_MPI=ON)",
                       launcher_world());
    return HL_OK;
}

void hl_dist_finalize(hl_dist *d) { hl_dist_single(d); }

hl_status hl_dist_allgather(const hl_dist *d, const void *send, size_t bytes, void *recv,
                            hl_error *err) {
    if (recv != send) memcpy(recv, send, bytes);
    return HL_OK;
}

hl_status hl_dist_bcast(const hl_dist *d, void *buf, size_t bytes, hl_error *err) { return HL_OK; }

#endif

typedef struct add_args {
    float *acc;
    const float *x;
} add_args;

static void add_slice(int64_t begin, int64_t end, void *arg) {
    const add_args *a = arg;
    for (int64_t i = begin; i < end; i++) a->acc[i] += a->x[i];
}

hl_status hl_dist_ordered_add_f32(const hl_dist *d, float *acc, const float *x, int64_t n,
                                  hl_error *err) {
    int w = d ? d->world : 1;
    if (w == 1) {
        hl_parallel_for(n, add_slice, &(add_args){acc, x});
        return HL_OK;
    }
    int64_t chunk = n < CHUNK ? n : CHUNK;
    float *all = malloc((size_t)(chunk ? chunk : 1) * (size_t)w * sizeof *all);
    if (!all) return hl_fail(err, HELIOS_ERR_OOM, "out of memory for the all-gather");
    hl_status st = HL_OK;
    for (int64_t off = 0; off < n && st == HL_OK; off += chunk) {
        int64_t m = n - off < chunk ? n - off : chunk;
        st = hl_dist_allgather(d, x + off, (size_t)m * sizeof *x, all, err);
        for (int r = 0; r < w && st == HL_OK; r++)
            hl_parallel_for(m, add_slice, &(add_args){acc + off, all + (size_t)r * (size_t)m});
    }
    free(all);
    return st;
}

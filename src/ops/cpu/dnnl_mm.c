/* The cpu backend's instance state and oneDNN plumbing: engine, streams, the primitive cache,
 * scratch buffers, matmul primitives, and the float32 -> bf16 conversion (see cpu_internal.h for
 * the threading model). */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/log.h"
#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/gemm/gemm.h"
#include "ops/cpu/vec_math.h"

/* ---- the instance ---------------------------------------------------------------------------- */

#define HL_MAX_STREAMS HELIOS_MAX_THREADS /* one stream per thread, up to the session bound */

typedef struct cache_entry {
    int kind; /* hl_cpu_prim_kind; 0: empty */
    size_t key_len;
    uint64_t hash;
    uint64_t last_use;
    unsigned char key[HL_CPU_KEY_MAX];
    void *obj;
    void (*destroy)(void *obj);
} cache_entry;

struct hl_cpu {
    pthread_mutex_t lock;
    dnnl_engine_t engine;
    dnnl_stream_t streams[HL_MAX_STREAMS];
    struct {
        void *p;
        size_t cap;
    } scratch[HL_SLOT_COUNT];
    cache_entry cache[HL_CPU_CACHE_SIZE];
    uint64_t tick;
    int bf16; /* hl_cpu_bf16_gemm: -1 not probed yet */
};

static hl_status dnnl_fail(hl_error *err, dnnl_status_t st, const char *what) {
    return hl_fail(err, HELIOS_ERR_INTERNAL, "oneDNN: %s failed: %s", what, dnnl_status2str(st));
}

static void cpu_fini(hl_backend *be) {
    hl_cpu *cpu = be->state;
    if (!cpu) return;
    for (int i = 0; i < HL_CPU_CACHE_SIZE; i++)
        if (cpu->cache[i].kind) cpu->cache[i].destroy(cpu->cache[i].obj);
    for (int i = 0; i < HL_MAX_STREAMS; i++)
        if (cpu->streams[i]) dnnl_stream_destroy(cpu->streams[i]);
    if (cpu->engine) dnnl_engine_destroy(cpu->engine);
    for (int i = 0; i < HL_SLOT_COUNT; i++) free(cpu->scratch[i].p);
    pthread_mutex_destroy(&cpu->lock);
    free(cpu);
    be->state = NULL;
}

/* The engine and the streams of be->nthreads threads (more are made on demand). */
static hl_status cpu_init(hl_backend *be, hl_error *err) {
    hl_cpu *cpu = calloc(1, sizeof *cpu);
    if (!cpu) return hl_fail(err, HELIOS_ERR_OOM, "cpu backend: out of memory");
    pthread_mutex_init(&cpu->lock, NULL);
    cpu->bf16 = -1;
    be->state = cpu;
    dnnl_status_t st = dnnl_engine_create(&cpu->engine, dnnl_cpu, 0);
    if (st != dnnl_success) {
        cpu->engine = NULL;
        cpu_fini(be);
        return dnnl_fail(err, st, "engine creation");
    }
    hl_status s = hl_cpu_dnnl_init(cpu, be->nthreads > 0 ? be->nthreads : omp_get_max_threads(),
                                   err);
    if (s != HL_OK) cpu_fini(be);
    return s;
}

hl_status hl_cpu_backend_init(hl_backend *be, hl_error *err) { return cpu_init(be, err); }
void hl_cpu_backend_fini(hl_backend *be) { cpu_fini(be); }

hl_cpu *hl_cpu_shared(void) {
    hl_backend *be = hl_backend_shared(HELIOS_BACKEND_CPU);
    return be ? be->state : NULL;
}

void hl_cpu_lock(hl_cpu *cpu) {
    if (cpu) pthread_mutex_lock(&cpu->lock);
}
void hl_cpu_unlock(hl_cpu *cpu) {
    if (cpu) pthread_mutex_unlock(&cpu->lock);
}

dnnl_engine_t hl_cpu_engine(const hl_cpu *cpu) { return cpu->engine; }
dnnl_stream_t hl_cpu_stream(const hl_cpu *cpu, int i) { return cpu->streams[i]; }

/* ---- scratch --------------------------------------------------------------------------------- */

void *hl_cpu_scratch(hl_cpu *cpu, hl_cpu_slot slot, size_t bytes) {
    if (bytes == 0) bytes = 64;
    if (cpu->scratch[slot].cap >= bytes) return cpu->scratch[slot].p;
    free(cpu->scratch[slot].p);
    cpu->scratch[slot].p = NULL;
    cpu->scratch[slot].cap = 0;
    /* Big buffers: 2 MiB aligned and transparent huge pages, to cut TLB misses in the GEMMs. */
    size_t huge = (size_t)2 << 20;
    size_t align = bytes >= huge ? huge : 64;
    size_t cap = (bytes + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, cap) != 0) return NULL;
    if (align == huge) madvise(p, cap, MADV_HUGEPAGE); /* advice only: failure is harmless */
    cpu->scratch[slot].p = p;
    cpu->scratch[slot].cap = cap;
    return p;
}

/* ---- streams --------------------------------------------------------------------------------- */

hl_status hl_cpu_dnnl_init(hl_cpu *cpu, int nstreams, hl_error *err) {
    if (nstreams < 1) nstreams = 1;
    if (nstreams > HL_MAX_STREAMS)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "oneDNN: %d threads (at most %d)", nstreams,
                       HL_MAX_STREAMS);
    for (int i = 0; i < nstreams; i++) {
        if (cpu->streams[i]) continue;
        dnnl_status_t st = dnnl_stream_create(&cpu->streams[i], cpu->engine,
                                              dnnl_stream_default_flags);
        if (st != dnnl_success) {
            cpu->streams[i] = NULL;
            return dnnl_fail(err, st, "stream creation");
        }
    }
    return HL_OK;
}

/* ---- the primitive cache --------------------------------------------------------------------- */

static uint64_t fnv1a(int kind, const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

hl_status hl_cpu_cache_get(hl_cpu *cpu, hl_cpu_prim_kind kind, const void *key, size_t key_len,
                           hl_cpu_create_fn create, void (*destroy)(void *obj), void **out,
                           hl_error *err) {
    if (key_len > HL_CPU_KEY_MAX)
        return hl_fail(err, HELIOS_ERR_INTERNAL, "primitive cache: key of %zu bytes", key_len);
    const uint64_t h = fnv1a((int)kind, key, key_len);
    cache_entry *victim = &cpu->cache[0];
    for (int i = 0; i < HL_CPU_CACHE_SIZE; i++) {
        cache_entry *e = &cpu->cache[i];
        if (e->kind == (int)kind && e->hash == h && e->key_len == key_len &&
            !memcmp(e->key, key, key_len)) {
            e->last_use = ++cpu->tick;
            *out = e->obj;
            return HL_OK;
        }
        if (e->last_use < victim->last_use) victim = e;
    }
    if (victim->kind) victim->destroy(victim->obj);
    memset(victim, 0, sizeof *victim);
    void *obj = NULL;
    HL_TRY(create(cpu, key, &obj, err));
    victim->kind = (int)kind;
    victim->key_len = key_len;
    victim->hash = h;
    memcpy(victim->key, key, key_len);
    victim->obj = obj;
    victim->destroy = destroy;
    victim->last_use = ++cpu->tick;
    *out = obj;
    return HL_OK;
}

/* ---- matmul primitives ----------------------------------------------------------------------- */

struct hl_mm {
    hl_mm_key key;
    const hl_cpu *cpu; /* engine and streams */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md, pad_md;
    size_t pad_bytes;
    dnnl_primitive_t reorder; /* blocked layouts: b_plain_md -> b_md */
    dnnl_memory_desc_t b_plain_md;
    size_t reorder_pad_bytes;
    dnnl_memory_desc_t reorder_pad_md;
};

static void mm_destroy(hl_mm *mm) {
    if (mm->prim) dnnl_primitive_destroy(mm->prim);
    if (mm->reorder) dnnl_primitive_destroy(mm->reorder);
    memset(mm, 0, sizeof *mm);
}

/* Creates the primitive (and, for a blocked B, its reorder) from a primitive descriptor. */
static dnnl_status_t mm_create_from_pd(hl_mm *mm, const_dnnl_primitive_desc_t pd) {
    mm->b_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    mm->pad_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    mm->pad_bytes = dnnl_memory_desc_get_size(&mm->pad_md);
    return dnnl_primitive_create(&mm->prim, pd);
}

static dnnl_status_t mm_create_reorder(hl_mm *mm, const_dnnl_primitive_attr_t attr) {
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&rpd, &mm->b_plain_md, mm->cpu->engine,
                                                          &mm->b_md, mm->cpu->engine, attr);
    if (st != dnnl_success) return st;
    mm->reorder_pad_md = *dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
    mm->reorder_pad_bytes = dnnl_memory_desc_get_size(&mm->reorder_pad_md);
    st = dnnl_primitive_create(&mm->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return st;
}

static hl_status mm_create(const hl_cpu *cpu, hl_mm *mm, const hl_mm_key *key, hl_error *err) {
    const dnnl_data_type_t dt = key->dt == HL_BF16 ? dnnl_bf16 : dnnl_f32;
    const int64_t M = key->M, N = key->N, K = key->K;
    dnnl_dims_t a_dims = {M, K}, a_str = {K, 1}, a_t_str = {1, M};
    dnnl_dims_t b_dims = {K, N}, b_nk_str = {1, K}, b_kn_str = {N, 1};
    dnnl_dims_t c_dims = {M, N}, c_str = {N, 1};
    dnnl_dims_t bias_dims = {1, N}, bias_str = {N, 1};
    dnnl_status_t st;
    memset(mm, 0, sizeof *mm);
    mm->key = *key;
    mm->cpu = cpu;
    dnnl_memory_desc_init_by_strides(&mm->a_md, 2, a_dims, dt, key->atrans ? a_t_str : a_str);
    dnnl_memory_desc_init_by_strides(&mm->c_md, 2, c_dims, dnnl_f32, c_str);
    dnnl_memory_desc_init_by_strides(&mm->bias_md, 2, bias_dims, dnnl_f32, bias_str);
    const int blocked = key->blayout == HL_MM_B_BLOCKED_NK || key->blayout == HL_MM_B_BLOCKED_KN;
    const int nk = key->blayout == HL_MM_B_NK || key->blayout == HL_MM_B_BLOCKED_NK;
    dnnl_memory_desc_init_by_strides(&mm->b_plain_md, 2, b_dims, dt, nk ? b_nk_str : b_kn_str);
    dnnl_memory_desc_t b_req = mm->b_plain_md;
    if (blocked) dnnl_memory_desc_init_by_tag(&b_req, 2, b_dims, dt, dnnl_format_tag_any);

    dnnl_matmul_desc_t desc;
    st = dnnl_matmul_desc_init(&desc, &mm->a_md, &b_req, key->bias ? &mm->bias_md : NULL,
                               &mm->c_md);
    if (st != dnnl_success) return dnnl_fail(err, st, "matmul descriptor");

    dnnl_primitive_attr_t attr = NULL;
    if ((st = dnnl_primitive_attr_create(&attr)) != dnnl_success)
        return dnnl_fail(err, st, "attribute creation");
    /* User scratchpad: each caller thread passes its own, so primitives can run concurrently. */
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (key->accumulate) { /* C += A·B */
        dnnl_post_ops_t po = NULL;
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
        if (po) dnnl_post_ops_destroy(po);
        if (st != dnnl_success) {
            dnnl_primitive_attr_destroy(attr);
            return dnnl_fail(err, st, "matmul sum post-op");
        }
    }

    /* oneDNN sizes its thread partitioning from omp_get_max_threads() when the descriptor is
     * created; set it to the count the primitive will run with. */
    int saved = omp_get_max_threads();
    omp_set_num_threads(key->nthr);
    dnnl_primitive_desc_t pd = NULL;
    st = dnnl_primitive_desc_create(&pd, &desc, attr, cpu->engine, NULL);
    if (st == dnnl_success) {
        st = mm_create_from_pd(mm, pd);
        dnnl_primitive_desc_destroy(pd);
        if (st == dnnl_success && blocked) st = mm_create_reorder(mm, attr);
    }
    omp_set_num_threads(saved);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        hl_status s = hl_fail(
            err, HELIOS_ERR_INTERNAL, "oneDNN: matmul %lldx%lldx%lld %s creation failed: %s",
            (long long)M, (long long)N, (long long)K, hl_dtype_name(key->dt), dnnl_status2str(st));
        mm_destroy(mm);
        return s;
    }
    return HL_OK;
}

static hl_status mm_new(hl_cpu *cpu, const void *key, void **obj, hl_error *err) {
    hl_mm *mm = malloc(sizeof *mm);
    if (!mm) return hl_fail(err, HELIOS_ERR_OOM, "oneDNN: out of memory (matmul)");
    hl_status st = mm_create(cpu, mm, key, err);
    if (st != HL_OK) {
        free(mm);
        return st;
    }
    *obj = mm;
    return HL_OK;
}

static void mm_free(void *obj) {
    mm_destroy(obj);
    free(obj);
}

hl_status hl_cpu_mm_get(hl_cpu *cpu, const hl_mm_key *key, hl_mm **out, hl_error *err) {
    if (!cpu) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "oneDNN: no cpu backend");
    hl_mm_key k; /* canonical: padding zeroed for the byte-wise compare */
    memset(&k, 0, sizeof k);
    k.M = key->M, k.N = key->N, k.K = key->K, k.dt = key->dt, k.blayout = key->blayout;
    k.bias = key->bias, k.nthr = key->nthr, k.atrans = key->atrans, k.accumulate = key->accumulate;
    void *obj = NULL;
    HL_TRY(hl_cpu_cache_get(cpu, HL_PRIM_MATMUL, &k, sizeof k, mm_new, mm_free, &obj, err));
    *out = obj;
    return HL_OK;
}

int hl_cpu_bf16_gemm(hl_cpu *cpu) {
    if (cpu->bf16 >= 0) return cpu->bf16;
    static int logged;
    const char *env = getenv("HELIOS_BF16_GEMM");
    if (env && env[0] == '0' && env[1] == 0) {
        cpu->bf16 = 0;
        if (!__atomic_exchange_n(&logged, 1, __ATOMIC_RELAXED))
            HL_INFO("cpu: HELIOS_BF16_GEMM=0: bf16 weights are converted to float32 and computed "
                    "in f32");
        return 0;
    }
    /* Without bf16 dot products in the CPU (AVX512-BF16 or AMX-BF16), oneDNN 2.6 still runs
     * bf16 on AVX-512 by emulating them, at a quarter of its f32 speed (a 4096^3 GEMM on an
     * AVX-512 Xeon without them: 62 against 256 GFLOP/s); f32 is then both faster and exact.
     * HELIOS_BF16_GEMM=1 takes the emulation anyway (to test that path on such a CPU). */
    const int forced = env && env[0] == '1' && env[1] == 0;
    const int native = forced || hl_gemm_kernel_best(1) >= HL_GEMM_AVX512_BF16;
    hl_error err = {0};
    hl_mm_key key = {.M = 32, .N = 32, .K = 32, .dt = HL_BF16, .blayout = HL_MM_B_NK, .nthr = 1};
    hl_mm probe;
    cpu->bf16 = 0;
    if (native && mm_create(cpu, &probe, &key, &err) == HL_OK) {
        mm_destroy(&probe);
        cpu->bf16 = 1;
    }
    if (!cpu->bf16 && !__atomic_exchange_n(&logged, 1, __ATOMIC_RELAXED))
        HL_INFO("cpu: %s; bf16 weights are converted to float32 and computed in f32",
                native ? "oneDNN has no bf16 GEMM on this CPU"
                       : "no bf16 dot products on this CPU (AVX512-BF16 or AMX-BF16)");
    return cpu->bf16;
}

size_t hl_cpu_mm_scratchpad_size(const hl_mm *mm) {
    return mm->pad_bytes > mm->reorder_pad_bytes ? mm->pad_bytes : mm->reorder_pad_bytes;
}

size_t hl_cpu_mm_packed_b_size(const hl_mm *mm) {
    return mm->reorder ? dnnl_memory_desc_get_size(&mm->b_md) : 0;
}

/* Executes prim with (arg, md, handle) triples; memory objects are made per call (cheap) so
 * that concurrent runs share nothing. */
typedef struct {
    int arg;
    const dnnl_memory_desc_t *md;
    const void *handle;
} mm_arg;

static hl_status execute(const hl_cpu *cpu, dnnl_primitive_t prim, int stream, const mm_arg *args,
                         int n, int nthr, hl_error *err) {
    dnnl_exec_arg_t ex[6];
    int m = 0;
    dnnl_status_t st = dnnl_success;
    for (int i = 0; i < n && st == dnnl_success; i++) {
        if (!args[i].handle) continue;
        ex[m].arg = args[i].arg;
        st = dnnl_memory_create(&ex[m].memory, args[i].md, cpu->engine, (void *)args[i].handle);
        if (st == dnnl_success) m++;
    }
    if (st == dnnl_success) st = hl_cpu_dnnl_execute(prim, cpu->streams[stream], m, ex, nthr);
    for (int i = 0; i < m; i++) dnnl_memory_destroy(ex[i].memory);
    return st == dnnl_success ? HL_OK : dnnl_fail(err, st, "matmul execution");
}

hl_status hl_cpu_mm_pack_b(const hl_mm *mm, int stream, const void *b_plain, void *packed,
                           void *scratchpad, hl_error *err) {
    if (!mm->reorder) return hl_fail(err, HELIOS_ERR_INTERNAL, "matmul: no reorder to run");
    mm_arg args[3] = {
        {DNNL_ARG_FROM, &mm->b_plain_md, b_plain},
        {DNNL_ARG_TO, &mm->b_md, packed},
        {DNNL_ARG_SCRATCHPAD, &mm->reorder_pad_md, mm->reorder_pad_bytes ? scratchpad : NULL}};
    return execute(mm->cpu, mm->reorder, stream, args, 3, mm->key.nthr, err);
}

hl_status hl_cpu_mm_run(const hl_mm *mm, int stream, const void *a, const void *b,
                        const float *bias, float *c, void *scratchpad, hl_error *err) {
    mm_arg args[5] = {{DNNL_ARG_SRC, &mm->a_md, a},
                      {DNNL_ARG_WEIGHTS, &mm->b_md, b},
                      {DNNL_ARG_BIAS, &mm->bias_md, mm->key.bias ? bias : NULL},
                      {DNNL_ARG_DST, &mm->c_md, c},
                      {DNNL_ARG_SCRATCHPAD, &mm->pad_md, mm->pad_bytes ? scratchpad : NULL}};
    return execute(mm->cpu, mm->prim, stream, args, 5, mm->key.nthr, err);
}

/* ---- conversions and vector math entry points ------------------------------------------------ */

void hl_cpu_f32_to_bf16(const float *src, hl_bf16 *dst, int64_t n) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), hl_v_to_bf16(_mm512_loadu_ps(src + i)));
#endif
    for (; i < n; i++) dst[i] = hl_f32_to_bf16(src[i]);
}

void hl_cpu_exp_f32(const float *x, float *y, int64_t n) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, hl_v_exp(_mm512_loadu_ps(x + i)));
#endif
    for (; i < n; i++) y[i] = expf(x[i]);
}

void hl_cpu_tanh_f32(const float *x, float *y, int64_t n) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, hl_v_tanh(_mm512_loadu_ps(x + i)));
#endif
    for (; i < n; i++) y[i] = tanhf(x[i]);
}

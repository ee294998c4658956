/* The process-wide table of GEMM routes (gemm.h, "routing"). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/parallel.h"
#include "ops/cpu/gemm/gemm.h"

enum { ROUTES_MAX = 256 };

static struct {
    hl_gemm_class c;
    int ours;
} g_routes[ROUTES_MAX];
static int g_n_routes;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* HELIOS_GEMM, said in the log when set (the default, ours, goes unsaid). */
static hl_gemm_mode mode_read(void) {
    static const char *const said[] = {
        [HL_GEMM_MODE_AUTO] = "our GEMM or oneDNN's, the faster per shape (timed; two runs may "
                              "differ)",
        [HL_GEMM_MODE_OURS] = "every GEMM of the linear ops runs on our kernels",
        [HL_GEMM_MODE_ONEDNN] = "every GEMM of the linear ops runs on oneDNN"};
    const char *e = getenv("HELIOS_GEMM");
    if (!e || !*e) return HL_GEMM_MODE_OURS;
    hl_gemm_mode m = !strcmp(e, "auto")     ? HL_GEMM_MODE_AUTO
                     : !strcmp(e, "onednn") ? HL_GEMM_MODE_ONEDNN
                                            : HL_GEMM_MODE_OURS;
    if (m == HL_GEMM_MODE_OURS && strcmp(e, "ours"))
        HL_WARN("HELIOS_GEMM='%s' is not ours, onednn or auto: ours", e);
    HL_INFO("cpu: HELIOS_GEMM: %s", said[m]);
    return m;
}

hl_gemm_mode hl_gemm_mode_get(void) {
    static int mode = -1;
    pthread_mutex_lock(&g_lock);
    if (mode < 0) mode = (int)mode_read();
    pthread_mutex_unlock(&g_lock);
    return (hl_gemm_mode)mode;
}

static int same(const hl_gemm_class *a, const hl_gemm_class *b) {
    return a->M == b->M && a->N == b->N && a->K == b->K && a->form == b->form &&
           a->dtype == b->dtype && a->nthr == b->nthr;
}

int hl_gemm_route_get(const hl_gemm_class *c) {
    int r = -1;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_n_routes && r < 0; i++)
        if (same(&g_routes[i].c, c)) r = g_routes[i].ours;
    pthread_mutex_unlock(&g_lock);
    return r;
}

void hl_gemm_route_put(const hl_gemm_class *c, int ours, double t_ours, double t_onednn) {
    pthread_mutex_lock(&g_lock);
    int found = 0;
    for (int i = 0; i < g_n_routes && !found; i++) found = same(&g_routes[i].c, c);
    if (!found && g_n_routes < ROUTES_MAX) {
        g_routes[g_n_routes].c = *c;
        g_routes[g_n_routes].ours = ours;
        g_n_routes++;
        HL_INFO("cpu: gemm %lldx%lldx%lld (form %d, %s, %d threads): ours %.2f ms, oneDNN %.2f ms: "
                "%s",
                (long long)c->M, (long long)c->N, (long long)c->K, c->form,
                c->dtype ? "bf16" : "f32", c->nthr, t_ours * 1e3, t_onednn * 1e3,
                ours ? "ours" : "oneDNN");
    }
    pthread_mutex_unlock(&g_lock);
}

int hl_gemm_probe(const hl_gemm_class *c, int (*run)(void *arg, int ours), void (*reset)(void *arg),
                  void *arg) {
    int st = run(arg, 0);
    if (!st && reset) reset(arg);
    if (!st) st = run(arg, 1);
    double t_o = 1e30, t_d = 1e30;
    for (int i = 0; i < 2 && !st; i++) {
        if (reset) reset(arg);
        const double t0 = hl_time();
        st = run(arg, 1);
        const double t1 = hl_time();
        if (reset) reset(arg);
        if (!st) st = run(arg, 0);
        const double t2 = hl_time();
        if (t1 - t0 < t_o) t_o = t1 - t0;
        if (t2 - t1 < t_d) t_d = t2 - t1;
    }
    if (st) return st;
    const int ours = t_o < 0.9 * t_d;
    hl_gemm_route_put(c, ours, t_o, t_d);
    if (!ours) return 0; /* oneDNN ran last */
    if (reset) reset(arg);
    return run(arg, 1);
}

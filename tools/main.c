/* helios — command-line entry: dispatches to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <unistd.h>

#include "helios.h"
#include "tools/commands.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: helios <command> [options]\n"
        "\n"
        "commands:\n"
        "  generate     make a video from a prompt with a Helios model folder\n"
        "  verify DIR   run every reference-vector file found in DIR and compare\n"
        "  bench        time the transformer block and the GEMM ceiling on this machine\n"
        "  info FILE    list the tensors of a .safetensors file (or index)\n"
        "  world        render the tiny world: video, captions and ground truth from a seed\n"
        "  eval VIDEO   measure a video against the tiny world (accuracy, drift, seams, motion)\n"
        "  train CFG    train the transformer as the JSON configuration CFG says\n"
        "  vae-stats P  measure a VAE's latents_mean / latents_std over training clips\n"
        "  convert I O  rewrite a .safetensors file in bf16 (or f32)\n"
        "  version      the library version\n"
        "  help         this text\n"
        "\n"
        "Run 'helios <command> --help' for the options of a command.\n"
        "\n"
        "environment:\n"
        "  HELIOS_LOG   error, warn, info (default) or debug: how much the library logs\n"
        "               (debug adds the kernels chosen, the memory plan and thread counts)\n"
        "  HELIOS_MODEL the model folder used when -m is not given\n"
        "  HELIOS_GEMM  ours (default), onednn or auto: the GEMM under the linear ops\n");
}

/* Idle OpenMP threads must not spin for long: on a shared machine libgomp's default (300,000
 * spins after every parallel region) burns the cores the other threads need, and made the tiny
 * model 3-5x slower with other jobs running (issue 11). libgomp reads its wait policy once, in its
 * own constructor, before main, and has no call to change it; glibc also resets the environment
 * after .preinit_array runs. So the first start sets GOMP_SPINCOUNT (bounded spinning, then
 * sleeping) and re-executes itself once. A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins; if the
 * exec fails the program runs on with libgomp's default. Programs linking libhelios set these
 * themselves (README). */
static void bounded_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "1000", 0) != 0) return;
    execv("/proc/self/exe", argv);
}

/* A training step (and a generated chunk) frees its activations and allocates the same sizes
 * again: glibc's defaults hand buffers over its dynamic mmap threshold back to the kernel and
 * trim the heap top, so every step page-faults its whole tape in again. On the 2-core VM that
 * was ~40% of a stage-2 step of the tiny model at 128x128 (527 ms in turn, 754 ms packed; 331 and
 * 291 ms with the memory kept). Buffers up to 32 MiB (glibc's limit for the threshold) stay in
 * the heap, and up to 1 GiB of freed heap is kept for the next step. */
static void keep_heap(void) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

/* HELIOS_LOG: the library's log level (its debug lines are otherwise out of a CLI user's reach). */
static void log_level_from_env(void) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    const char *e = getenv("HELIOS_LOG");
    if (!e || !*e) return;
    for (int i = 0; i < 4; i++)
        if (!strcmp(e, names[i])) {
            helios_log_level_set((helios_log_level)i);
            return;
        }
    fprintf(stderr, "helios: HELIOS_LOG='%s' is not error, warn, info or debug: info\n", e);
}

int main(int argc, char **argv) {
    bounded_spin(argv);
    keep_heap();
    log_level_from_env();
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("helios %s\n", helios_version());
        return 0;
    }
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify")) return cmd_verify(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "world")) return cmd_world(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "vae-stats")) return cmd_vae_stats(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    fprintf(stderr, "helios: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}

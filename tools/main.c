/* helios — command-line entry: dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

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
        "  version      the library version\n"
        "  help         this text\n"
        "\n"
        "Run 'helios <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
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
    fprintf(stderr, "helios: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}

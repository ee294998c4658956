/* helios info — lists the tensors of a checkpoint: a .safetensors file, an index, or a folder. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/weights.h"
#include "tools/commands.h"

static void info_usage(FILE *f) {
    fprintf(
        f, "usage: helios info PATH\n"
           "\n"
           "Lists every tensor of PATH, one per line: name, dtype, shape and the file holding it,\n"
           "then the count. PATH is a .safetensors file, a *.safetensors.index.json, or a folder\n"
           "holding either. The whole header is validated first; a malformed file is an error.\n");
}

int cmd_info(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        info_usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        info_usage(stderr);
        return 2;
    }
    hl_error err;
    hl_error_clear(&err);
    hl_weights *w;
    if (hl_weights_open(argv[1], &w, &err) != HL_OK) {
        fprintf(stderr, "helios info: %s\n", err.msg);
        return 1;
    }
    size_t count = 0;
    unsigned long long bytes = 0;
    for (size_t f = 0; f < w->n_files; f++) {
        const hl_safetensors *st = w->files[f];
        for (size_t i = 0; i < st->n; i++) {
            const hl_st_tensor *t = &st->tensors[i];
            char shape[256];
            printf("%s %s %s %s\n", t->name, hl_dtype_name(t->dtype),
                   hl_shape_str(t->ndim, t->shape, shape, sizeof shape), st->path);
            count++;
            bytes += t->nbytes;
        }
    }
    printf("%zu tensor%s, %llu bytes, in %zu file%s\n", count, count == 1 ? "" : "s", bytes,
           w->n_files, w->n_files == 1 ? "" : "s");
    hl_weights_close(w);
    if (fflush(stdout) != 0) {
        perror("helios info: stdout");
        return 1;
    }
    return 0;
}

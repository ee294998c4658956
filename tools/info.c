/* helios info — lists the tensors of a checkpoint: a .safetensors file, an index, or a folder. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "helios.h"
#include "tools/args.h"
#include "tools/commands.h"

static void info_usage(FILE *f) {
    fprintf(
        f, "usage: helios info PATH\n"
           "\n"
           "Lists every tensor of PATH, one per line: name, dtype, shape and the file holding it,\n"
           "then the count. PATH is a .safetensors file, a *.safetensors.index.json, or a folder\n"
           "holding either. The whole header is validated first; a malformed file is an error.\n");
}

typedef struct info_totals {
    size_t count;
    unsigned long long bytes;
} info_totals;

/* "[a, b, c]", as hl_shape_str. */
static int print_tensor(const helios_tensor_info *t, void *user) {
    info_totals *n = user;
    char shape[256];
    int k = snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < t->ndim && k < (int)sizeof shape; d++)
        k += snprintf(shape + k, sizeof shape - k, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    if (k < (int)sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
    printf("%s %s %s %s\n", t->name, t->dtype, shape, t->file);
    n->count++;
    n->bytes += t->nbytes;
    return 0;
}

int cmd_info(int argc, char **argv) {
    args a;
    args_init(&a, "helios info", argc, argv);
    const char *path = NULL;
    int rc = 0;
    while (!rc && args_next(&a)) {
        if (args_is(&a, "-h", "--help")) {
            info_usage(stdout);
            return 0;
        } else if (a.opt[0] == '-') {
            rc = args_fail(&a, "unknown option '%s' (see --help)", a.opt);
        } else if (path) {
            rc = args_fail(&a, "one PATH only ('%s' and '%s')", path, a.opt);
        } else {
            path = a.opt;
        }
    }
    if (rc) return rc;
    if (!path) {
        info_usage(stderr);
        return 2;
    }
    helios_session_params sp;
    helios_session_params_init(&sp);
    helios_session *s;
    if (helios_session_new(&sp, &s) != HELIOS_OK) {
        fprintf(stderr, "helios info: %s\n", helios_session_new_error());
        return 1;
    }
    info_totals n = {0};
    int n_files = 0;
    if (helios_checkpoint_list(s, path, print_tensor, &n, &n_files) != HELIOS_OK) {
        fprintf(stderr, "helios info: %s\n", helios_session_error(s));
        helios_session_free(s);
        return 1;
    }
    helios_session_free(s);
    printf("%zu tensor%s, %llu bytes, in %d file%s\n", n.count, n.count == 1 ? "" : "s", n.bytes,
           n_files, n_files == 1 ? "" : "s");
    if (fflush(stdout) != 0) {
        perror("helios info: stdout");
        return 1;
    }
    return 0;
}

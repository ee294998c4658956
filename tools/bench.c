#include <stdio.h>

#include "tools/commands.h"

int cmd_bench(int argc, char **argv) {
    fprintf(stderr, "helios bench: not implemented yet\n");
    return 2;
}

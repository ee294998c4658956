#include <stdio.h>

#include "tools/commands.h"

int cmd_verify(int argc, char **argv) {
    fprintf(stderr, "helios verify: not implemented yet\n");
    return 2;
}

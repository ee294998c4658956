#include <stdio.h>

#include "tools/commands.h"

int cmd_info(int argc, char **argv) {
    fprintf(stderr, "helios info: not implemented yet\n");
    return 2;
}

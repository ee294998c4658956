/* The model folder the CLI uses when none is named (helios generate, helios bench --only e2e). */
#ifndef HL_TOOLS_MODEL_DEFAULT_H
#define HL_TOOLS_MODEL_DEFAULT_H

#include <stddef.h>

/* $HELIOS_MODEL, else the shipped tiny Distilled model beside the binary (<dir of the
 * binary>/../models/helios-tiny: build/helios in a checkout), else its installed copy. buf
 * receives the path chosen and is returned; NULL when none is a folder. */
const char *default_model(char *buf, size_t n);

/* Where default_model looked, for the error when it found nothing ("neither $HELIOS_MODEL nor
 * ..."). */
const char *default_model_places(void);

#endif

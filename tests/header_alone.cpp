// helios.h on its own, as C++11 (-std=c++11 -Wall -Werror): it must compile as C++ and give the
// functions C linkage (test_header.sh checks the object's undefined symbols are unmangled).
#include "helios.h"

static_assert(HELIOS_VERSION_MAJOR >= 0, "version macros");

const char *header_probe();
const char *header_probe() {
    helios_gen_params gp;
    helios_gen_params_init(&gp);
    helios_session *s = nullptr;
    helios_session_free(s);
    return gp.num_frames > 0 ? helios_version() : HELIOS_VERSION_STRING;
}

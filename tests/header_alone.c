/* helios.h on its own, as C11 (-std=c11 -Wall -Wextra -pedantic -Werror): it must include what
 * it uses and use nothing outside the standard. Compiled, not run, by test_header.sh. */
#include "helios.h"

#if !defined(HELIOS_VERSION_MAJOR) || !defined(HELIOS_VERSION_MINOR) || \
    !defined(HELIOS_VERSION_PATCH)
#error "version macros missing"
#endif

const char *header_probe(void);
const char *header_probe(void) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    helios_gen_params gp;
    helios_gen_params_init(&gp);
    helios_video_writer_params wp;
    helios_video_writer_params_init(&wp);
    helios_tensor_info ti = {0};
    (void)ti;
    helios_log_level_set(HELIOS_LOG_WARN);
    return sp.n_threads == 0 ? helios_version() : helios_status_str(HELIOS_ERR_INVALID_ARG);
}

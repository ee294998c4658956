#!/bin/sh
# include/helios.h compiles on its own as C11 and as C++11, warning-free, and declares its
# functions with C linkage. usage: test_header.sh INCLUDE_DIR TESTS_DIR [CC] [CXX]
set -u
inc=$1 src=$2 cc=${3:-gcc} cxx=${4:-g++}
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0
$cc -std=c11 -Wall -Wextra -pedantic -Werror -I"$inc" -c "$src/header_alone.c" -o "$T/c.o" &&
    echo "ok   helios.h as C11 ($cc -std=c11 -Wall -Wextra -pedantic -Werror)" ||
    { echo "FAIL helios.h as C11"; fail=1; }
if ! command -v "$cxx" >/dev/null 2>&1; then
    echo "SKIP helios.h as C++11: no $cxx (scripts/deps.sh installs g++)"
    [ $fail -eq 0 ] && exit 77
    exit 1
fi
if $cxx -std=c++11 -Wall -Wextra -pedantic -Werror -I"$inc" -c "$src/header_alone.cpp" -o "$T/cxx.o"; then
    echo "ok   helios.h as C++11 ($cxx -std=c++11 -Wall -Wextra -pedantic -Werror)"
    if nm -u "$T/cxx.o" | grep -q ' helios_version$' && nm -u "$T/cxx.o" | grep -q ' helios_gen_params_init$'; then
        echo "ok   C linkage (unmangled helios_* symbols)"
    else
        echo "FAIL C linkage: the C++ object references mangled names"; nm -u "$T/cxx.o"; fail=1
    fi
else
    echo "FAIL helios.h as C++11"; fail=1
fi
exit $fail

#!/bin/sh
# Every C/C++ source of the tree is formatted as .clang-format says (clang-format-14, Debian's
# clang-format package, installed by scripts/deps.sh): `clang-format -i FILE` fixes a failure.
# Tables that read better by hand sit between /* clang-format off */ and /* clang-format on */.
# usage: test_format.sh SOURCE_DIR
set -u
cd "$1" || exit 1
if ! command -v clang-format >/dev/null 2>&1; then
    echo "SKIP no clang-format (scripts/deps.sh installs it)"
    exit 77
fi
files=$(find include src tools harness tests fuzz -name '*.c' -o -name '*.h' -o -name '*.cpp' | sort)
n=$(echo "$files" | wc -l)
bad=$(echo "$files" | xargs clang-format --dry-run 2>&1 | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: warning: code should be clang-formatted.*/\1/p' | sort -u)
if [ -n "$bad" ]; then
    for f in $bad; do echo "FAIL $f is not clang-formatted (clang-format -i $f)"; done
    echo "$(($n - $(echo "$bad" | wc -l))) passed, $(echo "$bad" | wc -l) failed"
    exit 1
fi
echo "$n passed, 0 failed"

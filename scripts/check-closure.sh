#!/usr/bin/env bash
# check-closure.sh BUILD_DIR... — every header, library and tool a configured-and-built helios
# build resolved comes from a Debian package that scripts/deps.sh installs, or that one of those
# pulls in through Depends/Pre-Depends (not Recommends, which deps.sh does not install), or an
# Essential package. Fails naming the file and its package otherwise: a build that works only
# because a package happens to be on this machine.
#
# What "resolved" means: the headers in the compiler's dependency output (CMakeFiles/**/*.d),
# the files named in CMake's cache (FILEPATH entries: compiler, libraries, pkg-config) and on the
# link lines (link.txt), and the programs the tests run (ffprobe, ffmpeg, mpiexec).
# Needs only bash, awk and dpkg (it also runs inside the fresh root of scripts/fresh-root.sh).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || {
    echo "usage: $0 BUILD_DIR..." >&2
    exit 2
}
command -v dpkg-query >/dev/null || {
    echo "closure: SKIP: dpkg not found (the check is for Debian, which scripts/deps.sh targets)"
    exit 77
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- the files the build resolved ----------------------------------------------------------
for b in "$@"; do
    b=$(cd "$b" && pwd)
    [ -f "$b/CMakeCache.txt" ] || {
        echo "closure: $b is not a configured build directory" >&2
        exit 2
    }
    find "$b" -name '*.d' -path '*CMakeFiles*' -exec cat {} + |
        tr ' \\' '\n\n' | sed -n 's/:$//; /^\//p'
    sed -n 's/^[A-Za-z0-9_]*:FILEPATH=\(\/.*\)$/\1/p' "$b/CMakeCache.txt"
    find "$b" -name link.txt -exec cat {} + | tr ' ' '\n' | sed -n '/^\//p'
done >"$tmp/raw"
for tool in ffprobe ffmpeg mpiexec; do command -v "$tool" >>"$tmp/raw" || true; done
# Our own sources and build outputs are not packages' files.
builds=()
for b in "$@"; do builds+=("$(cd "$b" && pwd)/"); done
sort -u "$tmp/raw" | awk -v s="$src/" '{ if (index($0, s) != 1) print }' | while read -r f; do
    for b in "${builds[@]}"; do case $f in "$b"*) continue 2 ;; esac; done
    [ -f "$f" ] && echo "$f"
done >"$tmp/files"
[ -s "$tmp/files" ] || {
    echo "closure: no resolved files found under $* (not built yet?)" >&2
    exit 2
}

# ---- which package owns each file ------------------------------------------------------------
# dpkg knows a file by the path its package ships; on a merged-/usr system the build may see it
# through /lib or /usr/lib, or through a symlink (cc -> /etc/alternatives/cc -> gcc-12). Each
# file gets its candidate names in order (as seen, fully resolved, each with /usr added or
# removed); the first that a package lists wins.
xargs -d '\n' readlink -f <"$tmp/files" | paste "$tmp/files" - | awk -F'\t' '
    function both(f, p) {
        print f "\t" p
        if (p ~ /^\/usr\/(lib|bin|sbin)\//) print f "\t" substr(p, 5)
        else if (p ~ /^\/(lib|lib64|bin|sbin)\//) print f "\t/usr" p
    }
    { both($1, $1); both($1, $2) }' >"$tmp/cands"
# The dpkg database: /var/lib/dpkg/info/PKG[:ARCH].list holds the paths PKG installed.
awk -F'\t' '
    FILENAME != ARGV[ARGC - 1] {
        if (FNR == 1) { pkg = FILENAME; sub(/.*\//, "", pkg); sub(/\.list$/, "", pkg); sub(/:.*/, "", pkg) }
        owner[$0] = pkg; next
    }
    { if (!($1 in done)) { if ($2 in owner) { done[$1] = 1; print $1 "\t" owner[$2] } else want[$1] = 1 } }
    END { for (f in want) if (!(f in done)) print f > "/dev/stderr" }
' /var/lib/dpkg/info/*.list "$tmp/cands" >"$tmp/owned" 2>"$tmp/unowned"

# ---- the packages deps.sh brings: its list, closed over Depends and Pre-Depends -------------
bash "$src/scripts/deps.sh" --list >"$tmp/roots"
dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Essential}|${Pre-Depends}, ${Depends}|${Provides}\n' >"$tmp/db"
awk -F'|' '
    FILENAME == ARGV[1] { root[$1] = 1; next }
    $1 !~ /^ii/ { next }
    {
        p = $2; inst[p] = 1; dep[p] = $4
        if ($3 == "yes") root[p] = 1
        n = split($5, pv, ", ")
        for (i = 1; i <= n; i++) { v = pv[i]; sub(/ .*/, "", v); if (v != "") prov[v] = prov[v] " " p }
    }
    END {
        for (p in root) if (p in inst) { ok[p] = 1; q[++t] = p }
        for (h = 1; h <= t; h++) {
            n = split(dep[q[h]], d, ", ")
            for (i = 1; i <= n; i++) {
                m = split(d[i], alt, " [|] ")
                for (j = 1; j <= m; j++) {
                    a = alt[j]; sub(/ .*/, "", a); sub(/:.*/, "", a)
                    if (a == "") continue
                    cand = (a in inst) ? a : ""
                    if (a in prov) cand = cand prov[a]
                    k = split(cand, c, " ")
                    for (l = 1; l <= k; l++) if (!(c[l] in ok)) { ok[c[l]] = 1; q[++t] = c[l] }
                }
            }
        }
        for (p in ok) print p
    }' "$tmp/roots" "$tmp/db" | sort >"$tmp/allowed"

# ---- verdict ---------------------------------------------------------------------------------
status=0
nfiles=$(wc -l <"$tmp/files")
npk=$(cut -f2 "$tmp/owned" | sort -u | wc -l)
while IFS=$'\t' read -r f pkg; do
    if ! grep -qxF "$pkg" "$tmp/allowed"; then
        echo "closure: FAIL: $f is in package $pkg, which scripts/deps.sh neither installs nor pulls in through Depends" >&2
        status=1
    fi
done <"$tmp/owned"
while read -r f; do
    echo "closure: FAIL: $f belongs to no Debian package (installed by hand?)" >&2
    status=1
done <"$tmp/unowned"
if [ $status -eq 0 ]; then
    echo "closure: $nfiles files from $npk packages, all installed by scripts/deps.sh or its Depends ($(wc -l <"$tmp/allowed") packages)"
fi
exit $status

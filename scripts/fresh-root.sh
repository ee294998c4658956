#!/usr/bin/env bash
# fresh-root.sh — runs the README's two commands in a minimal Debian 12 root made from Debian's
# packages alone, so that a missing install step in scripts/deps.sh fails here even when the host
# already has the package (the host CI machine may hold what someone installed by hand).
#
#   1. a minimal bookworm root (debootstrap --variant=minbase) is made once and kept as a tarball
#      outside the repository ($HELIOS_FRESH_ROOT_CACHE, default /var/cache/helios/fresh-root);
#      every run unpacks a new copy of it, so nothing from an earlier run leaks into the next;
#   2. a clean clone of the repository's HEAD is copied into it (committed files only);
#   3. inside it (chroot in a private mount namespace: /proc, /sys, /dev are mounted there and
#      vanish with the namespace) it runs `bash scripts/run.sh` and then `bash scripts/test.sh`
#      with the fuzz time shortened (HELIOS_FUZZ_SECONDS, default 10 here);
#   4. the copy is deleted.
# When ../shared/oracle exists beside the repository it is bind-mounted read-only beside the
# clone, so test.sh verifies it there too, as it does in CI.
#
# The Debian mirror is the one this machine's apt already uses (its sources are copied into the
# root); HELIOS_DEBIAN_MIRROR overrides it. Needs root (debootstrap, chroot, mount).
#
# usage: scripts/fresh-root.sh            environment: HELIOS_FRESH_ROOT_CACHE, HELIOS_FUZZ_SECONDS,
#                                         HELIOS_FRESH_ROOT_REFRESH=1 (rebuild the cached base),
#                                         HELIOS_FRESH_ROOT_KEEP=1 (keep the root for inspection)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${HELIOS_FRESH_ROOT_CACHE:-/var/cache/helios/fresh-root}
base_tar=$cache/bookworm-minbase.tar
fuzz_secs=${HELIOS_FUZZ_SECONDS:-10}
t0=$(date +%s)

say() { echo "fresh-root: $*"; }
die() {
    echo "fresh-root: error: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
for tool in git unshare chroot tar; do
    command -v "$tool" >/dev/null || die "'$tool' not found"
done

# The host's Debian mirror: the first deb822 URIs line (or one-line "deb URL") of a bookworm entry.
mirror() {
    if [ -n "${HELIOS_DEBIAN_MIRROR:-}" ]; then
        echo "$HELIOS_DEBIAN_MIRROR"
        return
    fi
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             /Suites:[^\n]*bookworm([ \n]|$)/ && /Types:[^\n]*deb([ \n]|$)/ {
                 for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, w, " "); print w[2]; exit }
             }' "$f"
    done | head -n 1 | grep . && return
    awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 | grep . && return
    die "no Debian bookworm mirror in this machine's apt sources; set HELIOS_DEBIAN_MIRROR"
}

make_base() {
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap (a tool of this check, not of helios)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    local url dir
    url=$(mirror)
    dir=$(mktemp -d /var/tmp/helios-base.XXXXXX)
    say "debootstrap --variant=minbase bookworm (cold: a few minutes)"
    if ! debootstrap --variant=minbase bookworm "$dir" "$url" >"$dir.log" 2>&1; then
        tail -n 20 "$dir.log" >&2
        rm -rf --one-file-system "$dir"
        die "debootstrap failed (log: $dir.log)"
    fi
    rm -f "$dir.log"
    mkdir -p "$cache"
    tar -C "$dir" -cf "$base_tar.part" .
    mv "$base_tar.part" "$base_tar" # complete or absent
    rm -rf --one-file-system "$dir"
}

if [ "${HELIOS_FRESH_ROOT_REFRESH:-0}" = 1 ] || [ ! -s "$base_tar" ]; then
    make_base
else
    say "using the cached base $base_tar"
fi

root=$(mktemp -d /var/tmp/helios-fresh-root.XXXXXX)
cleanup() {
    if [ "${HELIOS_FRESH_ROOT_KEEP:-0}" = 1 ]; then
        say "kept $root"
        return
    fi
    # The mounts lived in the namespace of the chroot run and are gone with it; refuse to delete
    # anything that is still mounted all the same.
    if grep -q " $root/" /proc/self/mounts; then
        echo "fresh-root: $root still has mounts; not deleting it" >&2
        return
    fi
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT

tar -C "$root" -xf "$base_tar"
# apt inside reaches the same mirror as the host's apt, with the same trust anchors.
rm -f "$root/etc/apt/sources.list"
printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$(mirror)" >"$root/etc/apt/sources.list.d/debian.sources"
# A mirror snapshot may be older than a Release file's Valid-Until.
echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99helios-fresh-root"
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

mkdir -p "$root/src"
git clone -q --no-local "$repo" "$root/src/helios"
# The reference vectors beside the repository (../shared/oracle), read-only, as CI has them.
shared=""
[ -d "$repo/../shared/oracle" ] && shared=$(cd "$repo/../shared" && pwd) && mkdir -p "$root/src/shared"
say "clean clone of $(git -C "$repo" rev-parse --short HEAD) copied in; base ready in $(($(date +%s) - t0)) s"

# Inside: a private mount namespace, then chroot. env -i: only what a fresh login would have.
inner='set -e
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/dev/shm"
mount -t tmpfs tmpfs "$R/tmp"
if [ -n "$S" ]; then mount --bind "$S" "$R/src/shared" && mount -o remount,bind,ro "$R/src/shared"; fi
exec chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 CI=true HELIOS_FUZZ_SECONDS="$F" /bin/bash -c "
      set -e; cd /src/helios
      t0=\$(date +%s); echo \"fresh-root: == bash scripts/run.sh\"
      bash scripts/run.sh
      t1=\$(date +%s); echo \"fresh-root: run.sh passed in \$((t1 - t0)) s\"
      echo \"fresh-root: == bash scripts/test.sh\"
      bash scripts/test.sh
      echo \"fresh-root: test.sh passed in \$((\$(date +%s) - t1)) s\""'
status=0
R=$root F=$fuzz_secs S=$shared unshare --mount --propagation private bash -c "$inner" || status=$?
if [ $status -ne 0 ]; then
    say "FAILED (exit $status) after $(($(date +%s) - t0)) s"
    exit $status
fi
say "passed in $(($(date +%s) - t0)) s"

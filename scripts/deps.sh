#!/usr/bin/env bash
# Installs helios' build and test dependencies from Debian 12 packages (see README
# "Dependencies"). Does nothing for packages already installed. Installs without Recommends, so
# everything the build needs must be named here or be in a Depends of what is named here
# (scripts/check-closure.sh checks that; scripts/fresh-root.sh proves it on a bare Debian).
#
# usage: scripts/deps.sh          install what is missing
#        scripts/deps.sh --list   print the package names, one per line
set -euo pipefail
pkgs=(
  cmake gcc make pkg-config   # build
  g++                         # the test that compiles include/helios.h as C++
  clang-format                # the test that the sources follow .clang-format (clang-format-14)
  libdnnl-dev                 # oneDNN: bf16/f32 GEMM (matmul) and convolution on CPU
  clang libclang-rt-14-dev    # libFuzzer + sanitizer runtimes for the fuzz targets
  libomp-14-dev               # OpenMP for clang (the fuzz build; gcc brings its own libgomp)
  # FFmpeg libraries: decode input images/videos (PNG/JPEG/WebP/MP4/WebM/MKV...), resize with
  # swscale, encode MP4 (H.264 via libx264) and PNG frames. The ffmpeg package adds the ffprobe
  # CLI that test_media uses to check the MP4s it writes (the test skips that check without it).
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
  # Optional: data-parallel training over MPI (helios train under mpirun; CMake HELIOS_MPI=AUTO
  # builds without it when absent). openmpi-bin has mpirun, which test_train_mpi runs.
  libopenmpi-dev openmpi-bin
)
if [ "${1:-}" = --list ]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages installed"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
log=$(mktemp /tmp/helios-deps.XXXXXX.log)
if ! { $SUDO apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "deps: apt-get failed (full log: $log)" >&2
  exit 1
fi
echo "deps: installed ${#missing[@]} packages (apt log: $log)"

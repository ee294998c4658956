#!/usr/bin/env bash
# Installs helios' build dependencies from Debian 12 packages (see README "Dependencies").
# Does nothing for packages already installed.
set -euo pipefail
pkgs=(
  cmake gcc make pkg-config   # build
  libdnnl-dev                 # oneDNN: bf16/f32 GEMM (matmul) on CPU, AMX/AVX-512 kernels
  clang libclang-rt-14-dev    # libFuzzer + sanitizer runtimes for the fuzz targets
  # FFmpeg libraries: decode input images/videos (PNG/JPEG/WebP/MP4/WebM/MKV...), resize with
  # swscale, encode MP4 (H.264 via libx264) and PNG frames. The ffmpeg package adds the ffprobe
  # CLI that test_media uses to check the MP4s it writes (the test skips that check without it).
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all installed"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

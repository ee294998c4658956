#!/usr/bin/env bash
# quickstart.sh [PROMPT] — the README's first command: installs the Debian packages
# (scripts/deps.sh; nothing when they are there), builds the helios binary alone (Release, into
# build/), and writes out.mp4: 132 frames (5.5 s at 24 fps) of PROMPT, generated at 64x64 by the
# shipped tiny Distilled model (models/helios-tiny), which helios trained on its own tiny world.
# Prompts are captions of that world (docs/world.md): shapes, colours, motions, a background.
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"a large yellow star orbits and a small white circle bounces on a maroon background"}
bash scripts/deps.sh
start=$(date +%s)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target helios
built=$(date +%s)
./build/helios generate -p "$prompt" -o out.mp4
done_at=$(date +%s)
echo "quickstart: built in $((built - start)) s, generated in $((done_at - built)) s: out.mp4"
echo "quickstart: more with ./build/helios generate --help (a longer video: --seconds 60)"

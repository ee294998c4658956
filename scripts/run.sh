#!/usr/bin/env bash
# The main job: install dependencies, build, check the engine against the reference vectors the
# repository carries, and benchmark it on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
./build/helios verify tests/vectors
./build/helios bench

#!/usr/bin/env bash
# Configures and builds ringtune into build/ (Release with debug line info, ccache, Ninja).
# Usage: scripts/build.sh [extra cmake args]. Idempotent; reruns are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${RINGTUNE_BUILD_JOBS:-$(nproc)}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
elif [ $# -gt 0 ]; then
  cmake -S . -B build "$@"
fi
cmake --build build -j "$jobs"

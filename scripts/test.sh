#!/usr/bin/env bash
# The README's test command: installs dependencies (apt-get), builds, runs the whole test suite
# through ctest (unit, reference, CLI and multi-process tests). Exit code 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh --test
bash scripts/build.sh
# One BLAS/OpenMP thread per test process: tests run two at a time on small machines.
export OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd build
ctest --output-on-failure -j "${RINGTUNE_TEST_JOBS:-2}" --timeout 900 "$@"

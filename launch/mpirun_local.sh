#!/usr/bin/env bash
# One node, N ranks: runs `ringtune train CONFIG [key=value ...]` on every rank with OpenMPI's
# mpirun, one rank per GPU (or, on CPU, one per core group), each rank bound to its cores.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/mpirun_local.sh [options] CONFIG [key=value ...]

Runs `ringtune train CONFIG [key=value ...]` on N ranks of this machine.

options:
  -n, --np N          ranks (default: the number of GPUs, or on CPU the number of cores)
  -t, --threads T     OMP_NUM_THREADS per rank (default: cores / N, at least 1)
  -b, --bind WHAT     core | numa | socket | none (default: core on CPU, numa with GPUs;
                      none when N x T exceeds the cores, with --oversubscribe)
      --binary PATH   the ringtune binary (default: $RINGTUNE_BIN or build/ringtune)
      --dry-run       print the mpirun command instead of running it
  -h, --help          this text
Extra mpirun options: MPIRUN_ARGS="--report-bindings ..." launch/mpirun_local.sh ...
As root, OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 are set for you (OpenMPI refuses root otherwise).
USAGE
}

here=$(cd "$(dirname "$0")" && pwd)
binary=${RINGTUNE_BIN:-$(dirname "$here")/build/ringtune}
np="" threads="" bind="" dry_run=0
while [ $# -gt 0 ]; do
  case $1 in
    -n|--np) np=$2; shift 2 ;;
    -t|--threads) threads=$2; shift 2 ;;
    -b|--bind) bind=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "mpirun_local.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 1 ]; then usage >&2; exit 2; fi
config=$1; shift

cores=$(nproc)
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
[ -n "$np" ] || { if [ "$gpus" -gt 0 ]; then np=$gpus; else np=$cores; fi; }
[ -n "$threads" ] || threads=$(( cores / np > 0 ? cores / np : 1 ))
if ! [[ $np =~ ^[1-9][0-9]*$ && $threads =~ ^[1-9][0-9]*$ ]]; then
  echo "mpirun_local.sh: -n and -t take positive integers (got '$np', '$threads')" >&2; exit 2
fi

mpi_opts=(-np "$np" -x OMP_NUM_THREADS="$threads")
if [ $(( np * threads )) -gt "$cores" ]; then
  [ "$bind" = "" ] || [ "$bind" = none ] ||
    echo "mpirun_local.sh: $np ranks x $threads threads > $cores cores: binding disabled" >&2
  mpi_opts+=(--oversubscribe --bind-to none)
else
  [ -n "$bind" ] || { if [ "$gpus" -gt 0 ]; then bind=numa; else bind=core; fi; }
  case $bind in
    core) mpi_opts+=(--map-by "slot:PE=$threads" --bind-to core) ;;
    numa|socket) mpi_opts+=(--map-by "$bind" --bind-to "$bind") ;;
    none) mpi_opts+=(--bind-to none) ;;
    *) echo "mpirun_local.sh: --bind takes core, numa, socket or none (got '$bind')" >&2; exit 2 ;;
  esac
fi
# Forward the variables that tune NCCL and ringtune (local ranks inherit the environment anyway;
# -x makes it explicit and survives a switch to a hostfile).
# shellcheck source=launch/mpirun_common.sh
. "$here/mpirun_common.sh"
run_train mpirun_local.sh 'NCCL_[A-Z0-9_]+|RINGTUNE_[A-Z0-9_]+|CUDA_VISIBLE_DEVICES' "$@"

#!/usr/bin/env bash
# Several nodes from an OpenMPI hostfile: runs `ringtune train CONFIG [key=value ...]` on every
# rank, K ranks per node (one per GPU), the NCCL / OpenMPI network settings forwarded to all nodes.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/mpirun_hostfile.sh -f HOSTFILE [options] CONFIG [key=value ...]

HOSTFILE lines: `node01 slots=8` (slots = ranks on that node; one line per node). The ringtune
binary, CONFIG and the data must be at the same paths on every node (a shared file system).

options:
  -f, --hostfile F    the hostfile (required)
  -n, --np N          ranks in all (default: the sum of slots in the hostfile)
  -p, --per-node K    ranks per node (default: the slots of each line)
  -t, --threads T     OMP_NUM_THREADS per rank (default 4)
  -i, --iface IF      network interface for MPI and NCCL's bootstrap (e.g. eth0, ib0): sets
                      btl_tcp_if_include, oob_tcp_if_include and NCCL_SOCKET_IFNAME
      --binary PATH   the ringtune binary (default: $RINGTUNE_BIN or build/ringtune)
      --dry-run       print the mpirun command instead of running it
  -h, --help          this text
Extra mpirun options: MPIRUN_ARGS="--mca btl self,vader,tcp ..." launch/mpirun_hostfile.sh ...
USAGE
}

here=$(cd "$(dirname "$0")" && pwd)
binary=${RINGTUNE_BIN:-$(dirname "$here")/build/ringtune}
hostfile="" np="" per_node="" threads=4 iface="" dry_run=0
while [ $# -gt 0 ]; do
  case $1 in
    -f|--hostfile) hostfile=$2; shift 2 ;;
    -n|--np) np=$2; shift 2 ;;
    -p|--per-node) per_node=$2; shift 2 ;;
    -t|--threads) threads=$2; shift 2 ;;
    -i|--iface) iface=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "mpirun_hostfile.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 1 ] || [ -z "$hostfile" ]; then usage >&2; exit 2; fi
[ -r "$hostfile" ] || { echo "mpirun_hostfile.sh: cannot read hostfile $hostfile" >&2; exit 2; }
config=$1; shift

# Sum of slots (a host line without slots= counts one), comments and blank lines skipped.
slots=$(awk '{sub(/#.*/, "")} NF { n = 1; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { split($i, a, "="); n = a[2] } s += n } END { print s + 0 }' "$hostfile")
[ -n "$np" ] || np=$slots
if ! [[ $np =~ ^[1-9][0-9]*$ ]]; then echo "mpirun_hostfile.sh: no ranks (hostfile has $slots slots)" >&2; exit 2; fi

mpi_opts=(--hostfile "$hostfile" -np "$np" -x OMP_NUM_THREADS="$threads" -x PATH)
[ -z "${LD_LIBRARY_PATH:-}" ] || mpi_opts+=(-x LD_LIBRARY_PATH)
if [ -n "$per_node" ]; then
  mpi_opts+=(--map-by "ppr:$per_node:node:PE=$threads" --bind-to core)
else
  mpi_opts+=(--map-by "slot:PE=$threads" --bind-to core)
fi
if [ -n "$iface" ]; then
  export NCCL_SOCKET_IFNAME=$iface
  mpi_opts+=(--mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface")
fi
# shellcheck source=launch/mpirun_common.sh
. "$here/mpirun_common.sh"
run_train mpirun_hostfile.sh 'NCCL_[A-Z0-9_]+|RINGTUNE_[A-Z0-9_]+' "$@"

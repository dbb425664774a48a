#!/usr/bin/env bash
# What the collective watchdog (distributed/watchdog.h) costs per step: the small LoRA job of
# tests/multihost/tiny_job.sh on 2 ranks, with the watchdog off (distributed.timeout_s 0), at the
# default (600 s: a heartbeat every 5 s) and at 1 s (a heartbeat every 0.1 s), runs interleaved
# (off, 600, 1, off, ...) so that drift in the machine's load falls on all three alike.
#
#   bench/watchdog_overhead.sh [-r REPEATS] [-s STEPS] [RINGTUNE_BINARY]
# Prints per setting the mean step time (steps 11..STEPS, from metrics.jsonl's elapsed_s) of each
# run, their median, and the difference from "off"; then what the training thread's bookkeeping
# costs per call (build/bench/bench_progress), the part that cannot hide in run-to-run noise.
set -u -o pipefail
repeats=3
steps=200
while getopts "r:s:h" opt; do
  case $opt in
    r) repeats=$OPTARG ;;
    s) steps=$OPTARG ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
root=$(cd "$(dirname "$0")/.." && pwd)
rt=$(realpath "${1:-$root/build/ringtune}")
# shellcheck source=../tests/multihost/tiny_job.sh
source "$root/tests/multihost/tiny_job.sh"
work=$(mktemp -d /tmp/ringtune-wdbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
tiny_job_make "$work" "$rt" "$root" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

step_ms() {  # mean ms per step after the first 10 (start-up and the first checkpoint excluded)
  python3 - "$1/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
t = {r["step"]: r["elapsed_s"] for r in rows}
last = max(t)
print(f"{1000 * (t[last] - t[10]) / (last - 10):.2f}")
PY
}

declare -A times
for i in $(seq 1 "$repeats"); do
  for t in 0 600 1; do
    out=$work/run-$t-$i
    mpirun --oversubscribe --bind-to none -np 2 "$rt" train "$work/cfg.yaml" output_dir="$out" max_steps="$steps" \
      checkpoint_every_n_steps=1000 distributed.timeout_s=$t > "$out.log" 2>&1 || { tail -n 5 "$out.log"; exit 1; }
    times[$t]="${times[$t]:-} $(step_ms "$out")"
  done
done
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
off=$(median ${times[0]})
echo "watchdog cost, 2 ranks, $steps steps of the tiny LoRA job, $repeats runs each (ms per step):"
for t in 0 600 1; do
  m=$(median ${times[$t]})
  label=$([ $t = 0 ] && echo "off (timeout_s 0)" || echo "timeout_s $t")
  printf "  %-20s runs:%s  median %s  vs off %+.2f%%\n" "$label" "${times[$t]}" "$m" \
    "$(awk -v a="$m" -v b="$off" 'BEGIN { print 100 * (a - b) / b }')"
done
bp=$(dirname "$rt")/bench/bench_progress
[ -x "$bp" ] && echo "training-thread bookkeeping: $("$bp")"

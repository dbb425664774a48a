#!/usr/bin/env bash
# Multi-host tests of `ringtune train` on one machine: three hosts h1, h2, h3 as network
# namespaces joined by a bridge (hosts.sh), OpenMPI across them over TCP, one rank per host.
#
#   tests/multihost/run.sh [RINGTUNE_BINARY]   (default build/ringtune; exit 77: skipped, with why)
#
# Cases (a LoRA run on a small model made by init-model, 200 of the quickstart's chats):
#   1. two hosts give the single-host two-rank result (per-step losses within 1e-5 relative, the
#      distributed tests' tolerance);
#   2. elastic: three hosts stopped by SIGTERM (exit 143, a checkpoint), resumed on one host, end
#      with the single-process result;
#   3. every process of one host killed (its ranks and OpenMPI's daemon): every rank ends within
#      30 s, and the run resumes to the single-host three-rank result;
#   4. a partition (one host's link down) with distributed.timeout_s 8: every rank ends within the
#      timeout + 10 s, each rank's log naming the stalled collective, and mpirun ends too (its
#      daemon on the cut-off host never answers: the ranks' helpers end it); the run resumes;
#   5. the link down for 4 s and up again (timeout 30 s): the run finishes with the result of the
#      uninterrupted run.
# Everything the test creates (namespaces, /etc/netns/<ns>/, its work directory) is removed at
# exit, on failure, Ctrl-C or TERM. Prints one line per case with the times measured.
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rt=$(realpath "${1:-$root/build/ringtune}")
[ -x "$rt" ] || { echo "multihost: no ringtune binary at $rt"; exit 1; }
rt_comm=$(basename "$rt" | cut -c1-15)  # the ranks' command name, as /proc/PID/comm has it
# shellcheck source=hosts.sh
source "$here/hosts.sh"
# shellcheck source=tiny_job.sh
source "$here/tiny_job.sh"
mh_up 3
up=$?
[ $up = 77 ] && exit 77
[ $up = 0 ] || { echo "multihost: setting up the namespaces failed"; exit 1; }

work=$MH_DIR/work
mkdir -p "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# ---- the model, the data, the configuration (tiny_job.sh)
mh_fg tiny_job_make "$work" "$rt" "$root" || exit 1

train1() { OMP_NUM_THREADS=1 "$rt" train "$work/cfg.yaml" output_dir="$1" "${@:2}"; }
trainN() {  # ranks on this host (the machine's own namespace)
  local np=$1 out=$2; shift 2
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
    mpirun --oversubscribe --bind-to none -np "$np" "$rt" train "$work/cfg.yaml" output_dir="$out" "$@"
}
hosts_train() {  # HOSTLIST OUT [key=value...]: one rank per host
  local hosts=$1 out=$2; shift 2
  local np; np=$(echo "$hosts" | tr ',' '\n' | wc -l)
  mh_mpirun -np "$np" --host "$(echo "$hosts" | sed 's/\([^,]*\)/\1:1/g')" -x OMP_NUM_THREADS=1 \
    ${MH_ENV:+-x $MH_ENV} "$rt" train "$work/cfg.yaml" output_dir="$out" "$@"
}
ranks_alive() {  # ringtune processes left in the hosts' namespaces
  local h n=0
  for h in "${MH_HOSTS[@]}"; do n=$((n + $(mh_pids "$h" "$rt_comm" | wc -l))); done
  echo $n
}
show_logs() { for f in "$1"/rank*.log "$1".log; do [ -f "$f" ] && { echo "--- $f"; tail -n 5 "$f"; }; done; }

# ---- references on one host
mh_fg train1 "$work/ref1" > "$work/ref1.log" 2>&1 || { cat "$work/ref1.log"; echo "FAIL: reference run"; exit 1; }
mh_fg trainN 2 "$work/ref2" > "$work/ref2.log" 2>&1 || { cat "$work/ref2.log"; echo "FAIL: 2-rank reference"; exit 1; }
mh_fg trainN 3 "$work/ref3" > "$work/ref3.log" 2>&1 || { cat "$work/ref3.log"; echo "FAIL: 3-rank reference"; exit 1; }

# ---- 1. two hosts = one host
t0=$(now)
if mh_fg hosts_train h1,h2 "$work/two" > "$work/two.log" 2>&1; then
  if r=$(same_losses "$work/two" "$work/ref2"); then
    echo "ok 1 two hosts = one host (2 ranks): $r; $(secs "$t0" "$(now)") s"
  else fail "1 two hosts differ from one host: $r"; fi
else show_logs "$work/two"; cat "$work/two.log"; fail "1 two-host run failed"; fi

# ---- 2. elastic: 3 hosts, SIGTERM after step 12 -> exit 143; resumed on 1 host
MH_ENV=RINGTUNE_TEST_TERM_AT_STEP=12 mh_fg hosts_train h1,h2,h3 "$work/elastic" > "$work/elastic.log" 2>&1
rc=$?
if [ $rc = 143 ] && [ -f "$work/elastic/checkpoints/latest" ]; then
  if mh_fg train1 "$work/elastic" > "$work/elastic2.log" 2>&1; then
    if r=$(same_losses "$work/elastic" "$work/ref1"); then
      echo "ok 2 elastic resume 3 hosts -> 1 host (stopped at step 12, exit 143): $r"
    else fail "2 elastic resume differs: $r"; fi
  else tail -n 5 "$work/elastic2.log"; fail "2 resume on one host failed"; fi
else tail -n 20 "$work/elastic.log"; fail "2 three-host run stopped by SIGTERM: exit $rc, checkpoint: $(cat "$work/elastic/checkpoints/latest" 2>/dev/null)"; fi

# ---- 3. every process of host h2 killed
hosts_train h1,h2,h3 "$work/kill" > "$work/kill.log" 2>&1 &
pid=$!
if wait_steps "$work/kill" 7 $pid; then
  t0=$(now)
  for p in $(mh_pids h2); do kill -9 "$p"; done
  for i in $(seq 1 600); do
    [ "$(ranks_alive)" = 0 ] && ! kill -0 $pid 2>/dev/null && break
    sleep 0.05
  done
  t_end=$(secs "$t0" "$(now)")
  alive=$(ranks_alive)
  if kill -0 $pid 2>/dev/null; then kill -9 $pid; fi
  wait $pid
  rc=$?
  if [ "$alive" != 0 ] || awk -v t="$t_end" 'BEGIN { exit !(t > 30) }'; then
    fail "3 host h2 killed: $alive rank(s) still running after $t_end s"
  else
    at=$(steps_done "$work/kill")
    if mh_fg hosts_train h1,h2,h3 "$work/kill" > "$work/kill2.log" 2>&1 && r=$(same_losses "$work/kill" "$work/ref3"); then
      echo "ok 3 every process of h2 killed at step $at: all ranks and mpirun (exit $rc) ended in $t_end s; resumed: $r"
    else tail -n 5 "$work/kill2.log"; fail "3 resume after killing h2: ${r:-run failed}"; fi
  fi
else wait $pid; cat "$work/kill.log"; fail "3 the run did not start"; fi

# ---- 4. partition: h2's link down, distributed.timeout_s 8
timeout_s=8
hosts_train h1,h2,h3 "$work/part" distributed.timeout_s=$timeout_s > "$work/part.log" 2>&1 &
pid=$!
if wait_steps "$work/part" 7 $pid; then
  mh_link h2 down
  t0=$(now)
  for i in $(seq 1 800); do
    [ "$(ranks_alive)" = 0 ] && break
    sleep 0.05
  done
  t_ranks=$(secs "$t0" "$(now)")
  alive=$(ranks_alive)
  # mpirun (on h1) with the link still down: it waits for h2's daemon until the ranks' watchdog
  # helpers end it (20 s after their abort, distributed/watchdog.cpp).
  for i in $(seq 1 1200); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  t_mpirun=$(secs "$t0" "$(now)")
  mpirun_left=no
  if kill -0 $pid 2>/dev/null; then mpirun_left="yes, still running $t_mpirun s after the partition"; kill -9 $pid; fi
  mh_link h2 up
  wait $pid
  rc=$?
  named=0
  for r in 0 1 2; do
    grep -q "watchdog: rank $r (host h[123]) waited .* s in [a-z_]* (" "$work/part/rank$r.log" 2>/dev/null &&
      named=$((named + 1))
  done
  if [ "$mpirun_left" != no ]; then
    fail "4 partition: mpirun $mpirun_left"
  elif [ "$alive" != 0 ] || awk -v t="$t_ranks" -v m=$((timeout_s + 10)) 'BEGIN { exit !(t > m) }'; then
    show_logs "$work/part"; fail "4 partition: $alive rank(s) still running after $t_ranks s (timeout $timeout_s s)"
  elif [ $named = 0 ]; then
    show_logs "$work/part"; fail "4 partition: no rank log names the stalled collective"
  else
    at=$(steps_done "$work/part")
    line=$(grep -h "watchdog: rank" "$work"/part/rank*.log | head -n 1 | sed 's/.*watchdog:/watchdog:/')
    if mh_fg hosts_train h1,h2,h3 "$work/part" > "$work/part2.log" 2>&1 && r=$(same_losses "$work/part" "$work/ref3"); then
      echo "ok 4 partition of h2 after step $at (timeout ${timeout_s} s): every rank ended in $t_ranks s, $named of 3 rank logs name the collective; mpirun ended $t_mpirun s after the partition, the link still down (exit $rc); resumed: $r"
      echo "     $line"
    else tail -n 5 "$work/part2.log"; fail "4 resume after the partition: ${r:-run failed}"; fi
  fi
else wait $pid; cat "$work/part.log"; fail "4 the run did not start"; fi

# ---- 5. the link down for 4 s, then up (timeout 30 s): the run continues
hosts_train h1,h2,h3 "$work/blip" distributed.timeout_s=30 > "$work/blip.log" 2>&1 &
pid=$!
if wait_steps "$work/blip" 7 $pid; then
  mh_link h2 down
  sleep 4
  mh_link h2 up
  t0=$(now)
  wait $pid
  rc=$?
  if [ $rc = 0 ] && r=$(same_losses "$work/blip" "$work/ref3"); then
    echo "ok 5 link of h2 down 4 s and up: the run finished (exit 0) $(secs "$t0" "$(now)") s after; $r"
  else show_logs "$work/blip"; tail -n 5 "$work/blip.log"; fail "5 after the link came back: exit $rc ${r:-}"; fi
else wait $pid; cat "$work/blip.log"; fail "5 the run did not start"; fi

[ $failures = 0 ] && echo "multihost: all cases passed" || echo "multihost: $failures case(s) failed"
exit $((failures > 0))

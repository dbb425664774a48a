#!/usr/bin/env bash
# launch/slurm.sbatch under a real Slurm: a one-node cluster on this machine (munged, slurmctld,
# slurmd from Debian's slurm-wlm, all in a temporary directory, stopped by pid at exit).
#
#   tests/slurm/run.sh [RINGTUNE_BINARY]   (default build/ringtune; exit 77: skipped, with why)
#
# Cases (the small LoRA job of tests/multihost/tiny_job.sh, 2 tasks):
#   1. `sbatch launch/slurm.sbatch CONFIG` runs to completion (job exit code 0:0);
#   2. a job sent `scancel --signal=TERM` (what --signal=TERM@N does before a time limit) writes a
#      checkpoint and ends with ringtune's exit code 143 (the job's ExitCode 143:0);
#   3. the job submitted again resumes from that checkpoint and ends with the losses of job 1.
# The exit codes come from `scontrol show job` and the jobcomp/filetxt record: `sacct` needs
# slurmdbd and a database, which this one-node test does not run.
# Needs: root, slurm-wlm and munge (apt-get install slurm-wlm munge), srun's pmix plugin.
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rt=$(realpath "${1:-$root/build/ringtune}")
[ -x "$rt" ] || { echo "slurm: no ringtune binary at $rt"; exit 1; }
# shellcheck source=../multihost/tiny_job.sh
source "$root/tests/multihost/tiny_job.sh"

[ "$(id -u)" = 0 ] || { echo "SKIP: the Slurm test runs its daemons as root"; exit 77; }
for c in slurmctld slurmd munged sbatch srun scontrol scancel; do
  command -v $c >/dev/null || { echo "SKIP: no $c (apt-get install slurm-wlm munge)"; exit 77; }
done

dir=$(mktemp -d /tmp/ringtune-slurm.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'cleanup; trap - EXIT; exit 130' INT
trap 'cleanup; trap - EXIT; exit 143' TERM
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# ---- the cluster: munge with a key of its own, then slurmctld and slurmd in the foreground
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/jobs"
chmod 700 "$dir/munge"
head -c 1024 /dev/urandom > "$dir/munge/munge.key"
chmod 400 "$dir/munge/munge.key"
munged --foreground --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" \
  > "$dir/munge/out.log" 2>&1 &
pids+=($!)
host=$(hostname -s)
cpus=$(nproc --all)  # not plain nproc: it obeys OMP_NUM_THREADS, which ctest sets to 1
# Ports away from the defaults (6817/6818), so a Slurm already on the machine is not disturbed.
port=$((27000 + $$ % 1000))
cat > "$dir/slurm.conf" <<CONF
ClusterName=ringtune-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1000))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MinJobAge=3600
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$dir/slurm.conf
for _ in $(seq 1 50); do [ -S "$dir/munge/munge.sock" ] && break; sleep 0.1; done
slurmctld -D -f "$SLURM_CONF" > "$dir/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" > "$dir/slurmd.out" 2>&1 &
pids+=($!)
up=0
for _ in $(seq 1 100); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then up=1; break; fi
  sleep 0.2
done
if [ $up = 0 ]; then
  for f in munge/munged.log slurmctld.log slurmd.log slurmctld.out slurmd.out; do
    echo "--- $f"; tail -n 8 "$dir/$f" 2>/dev/null
  done
  echo "slurm: the one-node cluster did not come up"
  exit 1
fi
echo "slurm: one-node cluster up ($(sinfo -V), node $host, $cpus CPUs, srun --mpi: $(srun --mpi=list 2>&1 | tr -s ' \n' ' '))"

# ---- the job
work=$dir/jobs
tiny_job_make "$work" "$rt" "$root" || exit 1
# launch/slurm.sbatch asks for 2 nodes x 8 GPUs: on this one CPU node, 2 tasks of 1 CPU and no GPU.
submit() {  # OUT [sbatch option...] -> job id
  local out=$1; shift
  RINGTUNE_BIN=$rt sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 \
    --output="$work/job-%j.out" "$@" "$root/launch/slurm.sbatch" "$work/cfg.yaml" output_dir="$out"
}
job_state() { scontrol show job "$1" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' | cut -d= -f2; }
job_exit() { scontrol show job "$1" 2>/dev/null | grep -oE ' ExitCode=[0-9]+:[0-9]+' | cut -d= -f2; }
wait_job() {  # JOB SECONDS: until it is no longer pending or running (cancelled if it is then)
  local i s
  for i in $(seq 1 $(($2 * 5))); do
    s=$(job_state "$1")
    case "$s" in PENDING | RUNNING | COMPLETING | CONFIGURING | "") sleep 0.2 ;; *) return 0 ;; esac
  done
  echo "job $1 still $s after $2 s: $(scontrol show job "$1" | grep -oE 'Reason=[^ ]+')"
  scancel "$1"
  return 1
}

# 1. to completion
t0=$(date +%s)
j1=$(submit "$work/full")
if wait_job "$j1" 300 && [ "$(job_exit "$j1")" = 0:0 ] && [ "$(steps_done "$work/full")" = 120 ]; then
  echo "ok 1 sbatch launch/slurm.sbatch: job $j1 $(job_state "$j1"), ExitCode $(job_exit "$j1"), 120 steps on 2 tasks in $(($(date +%s) - t0)) s"
else
  tail -n 20 "$work/job-$j1.out"; fail "1 job $j1: $(job_state "$j1") ExitCode $(job_exit "$j1"), $(steps_done "$work/full") steps"
fi

# 2. scancel --signal=TERM mid-run
j2=$(submit "$work/stopped")
for _ in $(seq 1 1200); do
  [ "$(steps_done "$work/stopped")" -ge 12 ] && break
  case "$(job_state "$j2")" in PENDING | RUNNING | CONFIGURING | "") sleep 0.1 ;; *) break ;; esac
done
scancel --signal=TERM "$j2"
wait_job "$j2" 120
code=$(job_exit "$j2")
ck=$(cat "$work/stopped/checkpoints/latest" 2>/dev/null)
if [ "$code" = 143:0 ] && [ -n "$ck" ] && grep -q "stop requested: checkpoint" "$work/job-$j2.out"; then
  echo "ok 2 scancel --signal=TERM: job $j2 $(job_state "$j2"), ExitCode $code, checkpoint $ck after step $(steps_done "$work/stopped") of 120"
  echo "     jobcomp/filetxt record: $(grep -h "JobId=$j2 " "$dir/jobcomp.txt" 2>/dev/null | grep -oE ' (JobState|ExitCode)=[^ ]+' | tr '\n' ' ')"
else
  tail -n 20 "$work/job-$j2.out"; fail "2 job $j2 after TERM: $(job_state "$j2") ExitCode $code, checkpoint '$ck'"
fi

# 3. submitted again: resumes and ends as job 1
j3=$(submit "$work/stopped")
if wait_job "$j3" 300 && [ "$(job_exit "$j3")" = 0:0 ] && r=$(same_losses "$work/stopped" "$work/full"); then
  from=$(grep -ho "resumed from [^ ]* at step [0-9]*" "$work/job-$j3.out" | head -n 1)
  echo "ok 3 resubmitted: job $j3 ExitCode 0:0, $from; against job 1: $r"
else
  tail -n 20 "$work/job-$j3.out"; fail "3 job $j3: $(job_state "$j3") ExitCode $(job_exit "$j3") ${r:-}"
fi

[ $failures = 0 ] && echo "slurm: all cases passed" || echo "slurm: $failures case(s) failed"
exit $((failures > 0))

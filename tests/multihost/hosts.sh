# Hosts for multi-host tests on one machine: Linux network namespaces joined by a bridge.
# Source this file, then:
#   mh_up N            create hosts h1..hN (namespaces $MH_NS-h1.., addresses 10.77.0.1..N/24 on
#                      eth0, a bridge in a switch namespace $MH_NS-sw; nothing in the machine's own
#                      network namespace changes); returns 77 with a reason when namespaces cannot be
#                      made (not root, no `ip`, a container without the right)
#   mh_mpirun ARGS...  mpirun started on h1 with the hosts as nodes (an rsh agent that enters the
#                      host's namespace, with its own UTS namespace named after the host), TCP and
#                      OOB on the test subnet only, hwloc's shared-memory topology path off
#   mh_link HOST up|down   the host's link (down: a partition of that host)
#   mh_pids HOST [NAME]    pids of the processes in the host's namespace (named NAME if given)
#   mh_fg CMD...       runs CMD in the background and waits for it, so that INT or TERM reach the
#                      trap at once (bash defers a trap until a foreground command ends); mh_down
#                      stops it first
#   mh_down            kills what runs in the namespaces (their processes were started by the test),
#                      deletes the namespaces and /etc/netns/<ns>/; runs at exit, Ctrl-C or TERM
# Host names resolve inside the namespaces through /etc/netns/<ns>/hosts (ip netns exec
# bind-mounts it over /etc/hosts there; the machine's /etc/hosts is never touched).
MH_NS="rtmh$$"
MH_HOSTS=()
MH_DIR=""
MH_MADE_ETC_NETNS=0
MH_FG_PID=""

mh_skip() { echo "SKIP: $*"; return 77; }

mh_up() {
  local n=$1 k ns
  [ "$(id -u)" = 0 ] || { mh_skip "multi-host tests need root (network namespaces)"; return; }
  command -v ip >/dev/null || { mh_skip "no ip command (apt-get install iproute2)"; return; }
  command -v unshare >/dev/null || { mh_skip "no unshare command (util-linux)"; return; }
  trap mh_down EXIT
  trap 'mh_down; exit 130' INT
  trap 'mh_down; exit 143' TERM
  if ! ip netns add "$MH_NS-sw" 2>/tmp/mh_err.$$; then
    local why; why=$(cat /tmp/mh_err.$$); rm -f /tmp/mh_err.$$
    mh_skip "cannot create a network namespace here: $why"; return
  fi
  rm -f /tmp/mh_err.$$
  MH_DIR=$(mktemp -d /tmp/ringtune-mh.XXXXXX)
  [ -d /etc/netns ] || MH_MADE_ETC_NETNS=1
  ip -n "$MH_NS-sw" link add br0 type bridge || return 1
  ip -n "$MH_NS-sw" link set br0 up || return 1
  ip -n "$MH_NS-sw" link set lo up
  local hosts=""
  for k in $(seq 1 "$n"); do hosts+="10.77.0.$k h$k"$'\n'; done
  for k in $(seq 1 "$n"); do
    ns="$MH_NS-h$k"
    ip netns add "$ns" || return 1
    MH_HOSTS+=("h$k")
    ip -n "$MH_NS-sw" link add "p$k" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$MH_NS-sw" link set "p$k" master br0 up || return 1
    ip -n "$ns" addr add "10.77.0.$k/24" dev eth0 || return 1
    ip -n "$ns" link set eth0 up || return 1
    ip -n "$ns" link set lo up || return 1
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n%s' "$hosts" > "/etc/netns/$ns/hosts"
  done
  # The rsh agent: mpirun calls it as `agent HOST COMMAND...` (the command is one shell string).
  cat > "$MH_DIR/agent.sh" <<AGENT
#!/bin/sh
host=\$1; shift
exec ip netns exec "$MH_NS-\$host" unshare --uts sh -c "hostname \$host; \$*"
AGENT
  chmod +x "$MH_DIR/agent.sh"
  for k in $(seq 1 "$n"); do ip netns exec "$MH_NS-h1" ping -c1 -W2 "10.77.0.$k" >/dev/null 2>&1 ||
    ip netns exec "$MH_NS-h1" bash -c "echo > /dev/tcp/10.77.0.$k/1" 2>/dev/null; done
  return 0
}

mh_mpirun() {
  ip netns exec "$MH_NS-h1" unshare --uts sh -c 'hostname h1; exec "$@"' sh \
    env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun --mca plm_rsh_agent "$MH_DIR/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
      --mca rtc '^hwloc' --mca btl self,vader,tcp \
      --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
      --bind-to none --oversubscribe "$@"
}

mh_fg() {
  "$@" &
  MH_FG_PID=$!
  wait "$MH_FG_PID"
  local rc=$?
  MH_FG_PID=""
  return $rc
}

mh_link() { ip -n "$MH_NS-$1" link set eth0 "$2"; }

mh_pids() {
  local p
  for p in $(ip netns pids "$MH_NS-$1" 2>/dev/null); do
    if [ -z "${2:-}" ] || [ "$(cat /proc/$p/comm 2>/dev/null)" = "$2" ]; then echo "$p"; fi
  done
}

mh_down() {
  local h ns p
  trap - EXIT INT TERM
  if [ -n "$MH_FG_PID" ] && kill -TERM "$MH_FG_PID" 2>/dev/null; then  # a run in this namespace
    for _ in $(seq 1 50); do kill -0 "$MH_FG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$MH_FG_PID" 2>/dev/null
  fi
  for h in sw "${MH_HOSTS[@]}"; do
    ns="$MH_NS-$h"
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  for h in "${MH_HOSTS[@]}" sw; do
    ns="$MH_NS-$h"
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  [ "$MH_MADE_ETC_NETNS" = 1 ] && rmdir /etc/netns 2>/dev/null
  [ -n "$MH_DIR" ] && rm -rf "$MH_DIR"
  MH_HOSTS=()
  return 0
}

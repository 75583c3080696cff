#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd (Debian's
# slurm-wlm 22.05) with their configuration, key, state and logs all in DIR.
#   scripts/slurm_cluster.sh start DIR   starts the daemons, waits until the node takes jobs and
#                                        prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm_cluster.sh stop DIR    stops the daemons this script started, by their pids
# Runs as root without systemd or cgroups: processes are tracked by their parent pids
# (proctrack/linuxproc), tasks are not bound (task/none), nothing is accounted. The ports are
# chosen from this script's pid, so two clusters on one machine do not meet.
# start exits non-zero with the reason on stderr when a daemon cannot start.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
(($# == 2)) || usage
action=$1
dir=$2

# Stops the daemons by the pids they were started with, all at once; SIGKILL after 10 s.
stop() {
  local name pids=() pid i
  for name in slurmd slurmctld munged; do
    [[ -f "$dir/$name.pid" ]] || continue
    pid=$(<"$dir/$name.pid")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$dir/$name.pid"
  done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 100; ++i)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Fails with the daemon's last lines when it is not running (in the foreground the daemons log
# to stderr too, which goes to DIR/NAME.out).
require_running() {
  local name=$1
  if ! kill -0 "$(<"$dir/$name.pid")" 2>/dev/null; then
    echo "slurm_cluster.sh: $name exited at start; the end of $dir/$name.out:" >&2
    tail -n 5 "$dir/$name.out" >&2 || true
    stop
    exit 1
  fi
}

start() {
  local tool
  for tool in munged slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || {
      echo "slurm_cluster.sh: $tool is not installed (bash scripts/setup.sh --tests installs it)" >&2
      exit 1
    }
  done
  if [[ $(id -u) -ne 0 ]]; then
    echo "slurm_cluster.sh: slurmd must run as root (it starts jobs as their users)" >&2
    exit 1
  fi
  mkdir -p "$dir"/{munge,state,spool}
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir/munge"  # clients need to reach the socket

  # munge: a fresh key and a socket of this cluster's own.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --foreground --force --key-file="$dir/munge/munge.key" \
    --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --seed-file="$dir/munge/munge.seed" --log-file="$dir/munge.log" >"$dir/munged.out" 2>&1 &
  echo $! >"$dir/munged.pid"
  local i
  for ((i = 0; i < 50; ++i)); do
    [[ -S $dir/munge/munge.socket ]] && break
    sleep 0.1
  done
  require_running munged

  local port=$((20000 + ($$ % 10000) * 2))
  local host cpus
  host=$(hostname)
  cpus=$(nproc)
  cat >"$dir/slurm.conf" <<CONF
ClusterName=vitscope-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd.daemon.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=vitscope-node NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=vitscope-node Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$dir/slurm.conf"

  # -D: in the foreground of their own background shells, so $! is the daemon's pid.
  slurmctld -D -i -f "$SLURM_CONF" >"$dir/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.pid"
  slurmd -D -N vitscope-node -f "$SLURM_CONF" >"$dir/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.pid"

  # The node takes jobs once slurmctld reports it idle (about two seconds here).
  local state=""
  for ((i = 0; i < 150; ++i)); do
    require_running slurmctld
    require_running slurmd
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 0.2
  done
  if [[ $state != idle ]]; then
    echo "slurm_cluster.sh: the node is '${state:-unknown}', not idle, after 30 s; the end of $dir/slurmd.out:" >&2
    tail -n 5 "$dir/slurmd.out" >&2 || true
    stop
    exit 1
  fi
  echo "export SLURM_CONF=$SLURM_CONF"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac

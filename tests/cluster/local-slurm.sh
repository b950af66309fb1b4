#!/usr/bin/env bash
# A one-node SLURM on this machine for the tests: munged + slurmctld + slurmd.
#
#   tests/cluster/local-slurm.sh start    # idempotent: starts only what is not running
#   tests/cluster/local-slurm.sh status   # exit 0 when sinfo answers and the node is up
#   tests/cluster/local-slurm.sh stop     # stops only the daemons this script started (by PID)
#
# Needs root and Debian's slurm-wlm and munge packages (apt-get install -y slurm-wlm munge).
# The PIDs it started are listed in $PACABENCH_SLURM_STATE (default /tmp/pacabench-slurm)/pids;
# stop kills those PIDs and nothing else. It writes /etc/slurm/slurm.conf only when that file is
# missing or was written by this script (marked on its first line); any other config is refused.
# No accounting (sacct does not work): pacabench status must not need it.
set -euo pipefail

STATE="${PACABENCH_SLURM_STATE:-/tmp/pacabench-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by pacabench tests/cluster/local-slurm.sh"
CPUS="${PACABENCH_SLURM_CPUS:-$(nproc)}"

log() { echo "local-slurm: $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

is_ours() {  # is_ours NAME PID: the PID is alive and still that daemon (not a recycled PID)
    alive "$2" && [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]
}

write_conf() {
    if [ -f "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARK"; then
        log "$CONF exists and was not written by this script; refusing to touch it"
        exit 1
    fi
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    cat >"$CONF" <<EOF
$MARK
ClusterName=pacabench-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

pid_of() { [ -f "$1" ] && cat "$1" 2>/dev/null || true; }

record() { echo "$1 $2" >>"$STATE/pids"; }

wait_pidfile() {  # wait_pidfile FILE: the PID a daemonising daemon wrote, once it is alive
    for _ in $(seq 50); do
        local p
        p=$(pid_of "$1")
        if alive "$p"; then echo "$p"; return 0; fi
        sleep 0.2
    done
    return 1
}

start_munge() {
    if munge_ok; then return 0; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    local p
    p=$(wait_pidfile /run/munge/munged.pid) || { log "munged did not start"; exit 1; }
    record munged "$p"
    munge_ok || { log "munge does not answer"; exit 1; }
}

start_daemon() {  # start_daemon NAME PIDFILE CMD...
    local name=$1 pidfile=$2
    shift 2
    if alive "$(pid_of "$pidfile")"; then return 0; fi
    "$@"
    local p
    p=$(wait_pidfile "$pidfile") || { log "$name did not start (see $STATE/$name.log)"; exit 1; }
    record "$name" "$p"
}

node_up() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

start() {
    command -v slurmctld >/dev/null || { log "slurm-wlm is not installed"; exit 1; }
    mkdir -p "$STATE"
    write_conf
    start_munge
    start_daemon slurmctld "$STATE/slurmctld.pid" slurmctld
    start_daemon slurmd "$STATE/slurmd.pid" slurmd -N localhost
    for _ in $(seq 60); do
        if node_up; then log "up: $(sinfo -h -o '%P %a %D %T')"; return 0; fi
        scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        sleep 0.5
    done
    log "node did not come up; sinfo says: $(sinfo -h -N 2>&1 || true)"
    exit 1
}

stop() {
    [ -f "$STATE/pids" ] || { log "nothing started by this script"; return 0; }
    # slurmd, slurmctld, then munged: reverse order of start
    tac "$STATE/pids" | while read -r name pid; do
        if is_ours "$name" "$pid"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -9 "$pid" 2>/dev/null || true
            log "stopped $name ($pid)"
        fi
    done
    rm -f "$STATE/pids"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) node_up && sinfo ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, for development and CI.
#
#   sudo scripts/slurm-up.sh          # or as root
#
# What it does (each step is skipped when already done, so running it twice is fine):
#   1. installs Debian's slurm-wlm and munge when sbatch or munged is missing;
#   2. makes a random munge key (/etc/munge/munge.key, owner munge, mode 400) when there is none;
#   3. starts munged as the munge user;
#   4. writes /etc/slurm/slurm.conf for this host (its CPUs and memory, one partition "main");
#   5. starts slurmctld and slurmd, and waits until `sinfo` shows the node idle.
#
# Settings (environment):
#   LAB_SLURM_STATE   folder for Slurm's state, spool, logs and pid files (default /var/lib/lab-slurm)
#   LAB_SLURM_FORCE=1 overwrite an /etc/slurm/slurm.conf that this script did not write
#
# Finished jobs: Slurm keeps a finished job for MinJobAge seconds (`scontrol show job` answers);
# every finished job is also written to $LAB_SLURM_STATE/log/jobcomp.txt (JobCompType=jobcomp/filetxt).
# `sacct` does not work here: it needs slurmdbd, which this cluster does not run.
#
# Stop it with scripts/slurm-down.sh.
set -euo pipefail

STATE="${LAB_SLURM_STATE:-/var/lib/lab-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# Written by the lab's scripts/slurm-up.sh (one-node development cluster)."

say() { printf 'slurm-up: %s\n' "$*"; }
die() { printf 'slurm-up: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run this as root (it writes /etc/slurm and /etc/munge and starts the Slurm daemons)"

alive() {  # alive PIDFILE: the pid in the file is a running process
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# 1. packages ------------------------------------------------------------------------------------
if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null || ! command -v slurmd >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y slurm-wlm munge >/dev/null || { apt-get update >/dev/null && apt-get install -y slurm-wlm munge >/dev/null; }
fi
PATH="$PATH:/usr/sbin:/sbin"

# 2. munge key -----------------------------------------------------------------------------------
install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "making a random munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

# 3. munged --------------------------------------------------------------------------------------
if alive /run/munge/munged.pid && munge -n </dev/null | unmunge >/dev/null 2>&1; then
    say "munged is already running (pid $(cat /run/munge/munged.pid))"
else
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- munged
    for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged did not start (see /var/log/munge/munged.log)"
    say "started munged (pid $(cat /run/munge/munged.pid))"
fi

# 4. slurm.conf ----------------------------------------------------------------------------------
HOST="$(hostname -s)"
CPUS="$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all)"  # all online CPUs, whatever the caller's affinity
MEM_MB="$(free -m | awk '/^Mem:/ {print $2}')"
MEM_MB=$(( MEM_MB * 9 / 10 ))          # a bit less than the machine has, so slurmd accepts it
install -d -m 755 "$STATE" "$STATE/state" "$STATE/spool" "$STATE/log" "$STATE/run"

NEW_CONF="$(cat <<EOF
$MARK
ClusterName=lab
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# a finished job stays visible to "scontrol show job" for MinJobAge seconds ...
MinJobAge=120
# ... and is written to this file for good (sacct would need slurmdbd, which is not run here)
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# cancel: SIGTERM, then SIGKILL after KillWait seconds
KillWait=10
InactiveLimit=0
Waittime=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)"

CHANGED=0
if [ -e "$CONF" ] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
    [ "${LAB_SLURM_FORCE:-0}" = 1 ] || die "$CONF exists and was not written by this script; set LAB_SLURM_FORCE=1 to replace it"
fi
if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
    install -d -m 755 /etc/slurm
    printf '%s\n' "$NEW_CONF" > "$CONF.tmp"
    chmod 644 "$CONF.tmp"
    mv -f "$CONF.tmp" "$CONF"
    CHANGED=1
    say "wrote $CONF (node $HOST: $CPUS CPUs, ${MEM_MB} MB; partition main; state in $STATE)"
else
    say "$CONF is up to date"
fi

# 5. slurmctld and slurmd ------------------------------------------------------------------------
if [ "$CHANGED" = 1 ]; then   # a new config: restart what is running so that it takes effect
    for d in slurmd slurmctld; do
        if alive "$STATE/run/$d.pid"; then
            pid="$(cat "$STATE/run/$d.pid")"
            say "restarting $d (pid $pid) for the new config"
            kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
fi

if alive "$STATE/run/slurmctld.pid"; then
    say "slurmctld is already running (pid $(cat "$STATE/run/slurmctld.pid"))"
else
    rm -f "$STATE/run/slurmctld.pid"
    slurmctld
    for _ in $(seq 50); do alive "$STATE/run/slurmctld.pid" && break; sleep 0.1; done
    alive "$STATE/run/slurmctld.pid" || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
    say "started slurmctld (pid $(cat "$STATE/run/slurmctld.pid"))"
fi

if alive "$STATE/run/slurmd.pid"; then
    say "slurmd is already running (pid $(cat "$STATE/run/slurmd.pid"))"
else
    rm -f "$STATE/run/slurmd.pid"
    slurmd
    for _ in $(seq 50); do alive "$STATE/run/slurmd.pid" && break; sleep 0.1; done
    alive "$STATE/run/slurmd.pid" || die "slurmd did not start (see $STATE/log/slurmd.log)"
    say "started slurmd (pid $(cat "$STATE/run/slurmd.pid"))"
fi

# wait (at most about 30 s) until the node is idle, or busy with jobs
state=""
for _ in $(seq 60); do
    state="$(sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mix|alloc) say "node $HOST is $state; partition main is up (try: sbatch --wrap 'sleep 1')" ;;
    *) die "node $HOST did not become idle within 30 s (sinfo says '${state:-nothing}'; see $STATE/log/)" ;;
esac

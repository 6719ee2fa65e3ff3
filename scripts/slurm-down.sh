#!/usr/bin/env bash
# Stop the one-node Slurm cluster that scripts/slurm-up.sh started: cancel every job, then stop
# slurmd, slurmctld and munged by their pids. Running it when nothing runs is fine.
#
#   LAB_SLURM_STATE   the folder slurm-up.sh used (default /var/lib/lab-slurm)
#   LAB_SLURM_KEEP_MUNGE=1   leave munged running
set -uo pipefail

STATE="${LAB_SLURM_STATE:-/var/lib/lab-slurm}"
PATH="$PATH:/usr/sbin:/sbin"

say() { printf 'slurm-down: %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "slurm-down: run this as root" >&2; exit 1; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {  # stop NAME PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL
    local name="$1" pidfile="$2" pid
    if ! alive "$pidfile"; then
        say "$name is not running"
        rm -f "$pidfile"
        return 0
    fi
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        say "killed $name (pid $pid) after 10 s"
    else
        say "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

if alive "$STATE/run/slurmctld.pid" && command -v scancel >/dev/null; then
    jobs="$(squeue -h -o '%i' 2>/dev/null | wc -l)"
    if [ "$jobs" -gt 0 ]; then
        # shellcheck disable=SC2046
        scancel --quiet $(squeue -h -o '%i' 2>/dev/null) 2>/dev/null || true
        # give slurmd a moment to end the jobs' processes (SIGTERM, then SIGKILL after KillWait)
        for _ in $(seq 150); do [ "$(squeue -h -o '%i' 2>/dev/null | wc -l)" -eq 0 ] && break; sleep 0.1; done
        say "cancelled $jobs job(s)"
    fi
fi

stop slurmd "$STATE/run/slurmd.pid"
stop slurmctld "$STATE/run/slurmctld.pid"
if [ "${LAB_SLURM_KEEP_MUNGE:-0}" = 1 ]; then
    say "left munged running"
else
    stop munged /run/munge/munged.pid
fi

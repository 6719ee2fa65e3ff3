"""Cancel a queued or running job (its whole process tree, SIGTERM then SIGKILL) and delete a finished run.

A run on Slurm is cancelled with ``scancel`` (Slurm ends every process of the job on every node), and is
deleted only once Slurm no longer queues or runs its job (a job that has ended may still be listed by
``scontrol`` for a few minutes; nothing of it runs any more, so it does not hold the delete back).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import time
from typing import Any

from lib.errors import RunError
from lib.registry import access
from lib.registry import backend as backends
from lib.registry.access import CLI_POLICY, Actor, Policy, cli_actor
from lib.registry.reconcile import _reconcile
from lib.store import rundir, slots
from lib.util.fmt import num

TRASH_PREFIX = ".trash-"


CANCEL_GRACE_S = 10.0      # SIGTERM, then SIGKILL after this many seconds


# ---------------------------------------------------------------------------------------------------
# Cancel and delete
# ---------------------------------------------------------------------------------------------------
def _group_members(pgid: int, run: dict) -> list:
    """Live processes of process group ``pgid`` that belong to this run (never another group that reused the id)."""
    import psutil
    members = []
    launch_ct = num(run.get("launch_create_time")) or num(run.get("create_time"))
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if launch_ct is not None and proc.create_time() < launch_ct - 1.0:
                continue  # older than our job: not ours
            if proc.pid == pgid and launch_ct is not None and abs(proc.create_time() - launch_ct) > 1.0:
                return []  # the group leader is a different process: the id was reused
            members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def process_group_alive(run_dir: str | os.PathLike) -> list[int]:
    """Pids of the run's processes still alive: its process group and the job's descendants (checks, tests)."""
    run = rundir.read_run_info(run_dir)
    if backends.run_backend(run) == backends.SLURM:
        return []  # its processes live on the cluster's nodes; Slurm tracks them (see slurm_job_active)
    if not (run.get("pgid") or run.get("launch_pid") or run.get("pid")):
        return []
    return sorted(p.pid for p in _JobProcesses(run).members())


class _JobProcesses:
    """The processes of one run, to stop them.

    A job the registry launched leads its own process group (``pgid == launch_pid``): the group is
    signalled as a whole, DataLoader workers included. Processes that left the group are followed as
    the leader's descendants: torchrun starts every rank in a session of its own. A job started some
    other way (``python -m lib.train`` from a shell or a script) shares the group of whoever started
    it, so then only the job's own process tree is signalled, never the group (it may hold the shell).
    """

    def __init__(self, run: dict):
        self.run = run
        pgid, launch = run.get("pgid"), run.get("launch_pid")
        self.group = pgid if isinstance(pgid, int) and pgid > 0 and pgid == launch else None
        if self.group:
            self.leader, self.leader_ct = launch, num(run.get("launch_create_time"))
        else:
            self.leader, self.leader_ct = run.get("pid"), num(run.get("create_time"))
        self.tree: dict[int, Any] = {}
        self._follow_tree()

    def _follow_tree(self) -> None:
        import psutil
        if self.leader_ct is None and not self.group:
            return  # a process we cannot identify for sure is never signalled
        if slots.process_alive(self.leader, self.leader_ct):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.leader)
                for p in (proc, *proc.children(recursive=True)):
                    self.tree.setdefault(p.pid, p)

    def members(self) -> list:
        import psutil
        self._follow_tree()  # children started since we last looked
        found = {p.pid: p for p in _group_members(self.group, self.run)} if self.group else {}
        for pid, proc in self.tree.items():
            with contextlib.suppress(psutil.Error):
                if pid not in found and proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    found[pid] = proc
        return list(found.values())

    def leader_alive(self) -> bool:
        return slots.process_alive(self.leader, self.leader_ct)

    def signal(self, sig: int, run_id: str, *, leader_only: bool = False) -> None:
        import psutil
        try:
            if leader_only:
                if self.leader_alive():
                    os.kill(self.leader, sig)
                return
            if self.group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.group, sig)
            for proc in self.members():
                if self.group is None or os.getpgid(proc.pid) != self.group:
                    with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                        proc.send_signal(sig)
        except ProcessLookupError:
            pass
        except (PermissionError, psutil.AccessDenied):
            raise RunError(f"not allowed to stop run {run_id}: its process belongs to another user; ask them or an "
                           "admin to cancel it") from None


def _stop(job: _JobProcesses, grace_s: float, run_id: str) -> bool:
    """SIGTERM the job first, then everything left of it, SIGKILL after ``grace_s``. True when SIGKILL was needed.

    The job (or the torchrun agent) goes first so that it can stop cleanly: it records ``cancelled``
    and shuts its DataLoader workers down itself. Were the workers signalled at the same moment, the
    job could see "DataLoader worker killed by signal" first and record a failure instead.
    """
    end = time.monotonic() + max(0.0, grace_s)
    if job.leader_alive():
        job.signal(signal.SIGTERM, run_id, leader_only=True)
        leader_end = min(end, time.monotonic() + max(0.0, grace_s) * 0.7)
        while time.monotonic() < leader_end and job.leader_alive():
            time.sleep(0.05)
    if job.members():
        job.signal(signal.SIGTERM, run_id)
        while job.members() and time.monotonic() < end:
            time.sleep(0.05)
    if not job.members():
        return False
    job.signal(signal.SIGKILL, run_id)
    end = time.monotonic() + 10.0
    while job.members() and time.monotonic() < end:
        time.sleep(0.1)
    return True


def cancel(run_dir: str | os.PathLike, *, grace_s: float = CANCEL_GRACE_S, by: str = "",
           actor: Actor | None = None, policy: Policy | None = None) -> dict:
    """Stop a queued or running run: SIGTERM to the job, then to its whole process group, SIGKILL after
    ``grace_s`` seconds. The run ends ``cancelled``. Returns its status. Permission is checked now."""
    run_dir = rundir.checked_run_dir(run_dir)
    access.require(access.why_not_manage(run_dir, actor or cli_actor(), policy or CLI_POLICY))
    with rundir.run_lock(run_dir) as held:
        if not held:
            raise RunError(f"cannot lock run {run_dir.name} (is the runs directory read-only?)")
        status = _reconcile(run_dir, rundir.read_status(run_dir), locked=True)
        state = status.get("state")
        if state not in rundir.ACTIVE_STATES:
            raise RunError(f"run {run_dir.name} is already {state}; only a queued or running run can be cancelled")
        run = rundir.read_run_info(run_dir)
        if backends.run_backend(run, status) == backends.SLURM:
            return _cancel_slurm(run_dir, status, by=by)
        host = run.get("host")
        if host and host != socket.gethostname():
            raise RunError(f"run {run_dir.name} runs on host {host}; cancel it there "
                           f"(python -m lib.runs cancel {run_dir.name})")
        deadline = time.monotonic() + 5.0
        while not slots.run_processes(run, status) and time.monotonic() < deadline:
            time.sleep(0.1)  # a launch in progress: wait for its pid
            run = rundir.read_run_info(run_dir)
        job = _JobProcesses(run)
        killed = _stop(job, grace_s, run_dir.name) if job.members() else False
        now = time.time()
        fresh = rundir.read_status(run_dir)
        if fresh.get("state") in rundir.ACTIVE_STATES:
            how = (f"stopped with SIGKILL after it ignored SIGTERM for {grace_s:g} s" if killed
                   else "stopped before it could record it")
            rundir.update_status(run_dir, state="cancelled", finished_at=now,
                                 exit_code=-signal.SIGKILL if killed else None, queue_position=None, error={
                                     "type": "Cancelled", "message": f"cancelled by request ({how})",
                                     "hint": "resume it to continue from the newest checkpoint"})
        if by:
            rundir.update_status(run_dir, cancelled_by=by)
        return _reconcile(run_dir, rundir.read_status(run_dir), locked=True)


SLURM_END_TIMEOUT_S = 120.0   # how long cancel waits for Slurm to end every process of the job


def _cancel_slurm(run_dir, status: dict, *, by: str = "") -> dict:
    """Cancel a run on Slurm (the caller holds the run's lock): record the request, ``scancel`` the job
    (every process of it on every node gets SIGTERM, SIGKILL after the cluster's KillWait), wait until
    Slurm no longer runs any of it, and end the run ``cancelled``."""
    from lib.registry import slurm
    deadline = time.monotonic() + 10.0
    run = rundir.read_run_info(run_dir)
    while not run.get("slurm_job_id") and time.monotonic() < deadline:
        time.sleep(0.1)  # a submission in progress: wait for its job id
        run = rundir.read_run_info(run_dir)
    job_id = run.get("slurm_job_id")
    now = time.time()
    rundir.update_status(run_dir, cancel_requested_at=now, **({"cancelled_by": by} if by else {}))
    info = None
    if job_id:
        slurm.cancel(job_id)
        end = time.monotonic() + SLURM_END_TIMEOUT_S
        info = slurm.job_state(job_id)
        while info is not None and info["slurm_state"] in slurm.ACTIVE_SLURM_STATES:
            if time.monotonic() > end:
                raise RunError(f"Slurm has not ended job {job_id} of run {run_dir.name} after "
                               f"{SLURM_END_TIMEOUT_S:g} s; the cancel is recorded and the run will show as "
                               f"cancelled once Slurm has ended it (squeue -j {job_id})")
            time.sleep(0.25)
            info = slurm.job_state(job_id)
    fresh = rundir.read_status(run_dir)
    if fresh.get("state") in rundir.ACTIVE_STATES:
        how = "Slurm ended the job before it could record it" if job_id else "it was never submitted to Slurm"
        rundir.update_status(run_dir, state="cancelled", finished_at=time.time(), queue_position=None,
                             cancel_requested_at=now, slurm_state=(info or {}).get("slurm_state"),
                             slurm_end_checked=True, error={
                                 "type": "Cancelled", "message": f"cancelled by request ({how})",
                                 "hint": "resume it to continue from the newest checkpoint"})
    else:
        # written again now that the job is gone: a heartbeat of the job may have raced the first write
        rundir.update_status(run_dir, slurm_end_checked=True, cancel_requested_at=now,
                             **({"slurm_state": info["slurm_state"]} if info else {}))
    return _reconcile(run_dir, rundir.read_status(run_dir), locked=True)


def slurm_job_active(run_dir) -> str | None:
    """The id of the run's Slurm job while Slurm still queues or runs it (ending included), else None.
    Slurm not answering is a RunError."""
    run = rundir.read_run_info(run_dir)
    job_id = run.get("slurm_job_id") or rundir.read_status(run_dir).get("slurm_job_id")
    if backends.run_backend(run) != backends.SLURM or not job_id:
        return None
    from lib.registry import slurm
    return str(job_id) if slurm.is_active(job_id) else None


def delete(run_dir: str | os.PathLike, *, actor: Actor | None = None, policy: Policy | None = None) -> None:
    """Remove a run that is not queued or running (never follows a symlink out of the runs directory).
    Permission is checked now."""
    run_dir = rundir.checked_run_dir(run_dir)
    access.require(access.why_not_manage(run_dir, actor or cli_actor(), policy or CLI_POLICY))
    root = run_dir.parent
    with rundir.run_lock(run_dir) as held:
        if not held:
            raise RunError(f"cannot lock run {run_dir.name} (is the runs directory read-only?)")
        status = _reconcile(run_dir, rundir.read_status(run_dir), locked=True)
        if status.get("state") in rundir.ACTIVE_STATES:
            raise RunError(f"run {run_dir.name} is {status.get('state')}; cancel it before deleting it")
        try:
            job_id = slurm_job_active(run_dir)
        except RunError as exc:
            raise RunError(f"cannot delete run {run_dir.name} now: {exc}") from None
        if job_id:
            raise RunError(f"Slurm still runs job {job_id} of run {run_dir.name}; wait until it has ended "
                           f"(squeue -j {job_id}), then delete the run")
        trash = root / f"{TRASH_PREFIX}{run_dir.name}-{secrets.token_hex(4)}"
        os.rename(run_dir, trash)  # atomic: the run disappears from every list at once
    shutil.rmtree(trash, ignore_errors=True)  # rmtree never follows symlinks inside the tree

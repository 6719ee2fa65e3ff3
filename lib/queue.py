"""The device queue: at most N jobs train at once per device, first come first served.

Nothing here lives in memory: each job process waits for its own turn by looking at the runs
directory. A device has N slot files under ``<runs_dir>/.queue/``; a job holds one with an
exclusive ``flock`` for as long as its process lives, so a slot held by a dead process frees
itself. Among the waiting runs for a device, only the one queued first may take a free slot.

Limits: ``LAB_MAX_JOBS_CPU`` (default 1) and ``LAB_MAX_JOBS_PER_GPU`` (default 1, times the number
of GPUs).
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from lib import rundir

POLL_S = 1.0


def device_limit(device: str) -> int:
    if device == "cuda":
        try:
            import torch
            gpus = max(1, torch.cuda.device_count())
        except Exception:  # pragma: no cover
            gpus = 1
        return max(1, int(os.environ.get("LAB_MAX_JOBS_PER_GPU", "1"))) * gpus
    return max(1, int(os.environ.get("LAB_MAX_JOBS_CPU", "1")))


def process_alive(pid: int | None, create_time: float | None = None) -> bool:
    """True when ``pid`` runs and (if given) was created at ``create_time`` (guards against pid reuse)."""
    if not pid:
        return False
    import psutil
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 1.0:
            return False
        return True
    except (psutil.Error, ValueError):
        return False


def waiting_runs(runs_dir: Path, device: str) -> list[Path]:
    """Live queued runs for ``device``, in queue order (queued_at, then run id)."""
    found = []
    for run_dir in rundir.iter_run_dirs(runs_dir):
        status = rundir.read_status(run_dir)
        if status.get("state") != "queued" or status.get("device", device) != device:
            continue
        run = rundir.read_json(run_dir / rundir.RUN) or {}
        if not process_alive(status.get("pid") or run.get("pid"), run.get("create_time")
                             if run.get("pid") == status.get("pid") else None):
            continue
        found.append((float(status.get("queued_at") or 0.0), run_dir.name, run_dir))
    return [p for *_, p in sorted(found)]


def _try_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def acquire_slot(runs_dir: Path, run_dir: Path, *, device: str = "cpu", poll_s: float = POLL_S) -> int:
    """Wait (updating ``queue_position`` in status.json) until a slot is free and it is our turn.

    Returns the open, locked slot file descriptor; keep it open for the life of the job.
    """
    qdir = Path(runs_dir) / ".queue"
    qdir.mkdir(parents=True, exist_ok=True)
    limit = device_limit(device)
    last_position = None
    while True:
        queue = waiting_runs(Path(runs_dir), device)
        names = [p.name for p in queue]
        position = names.index(run_dir.name) if run_dir.name in names else 0
        if position == 0:
            for k in range(limit):
                fd = _try_lock(qdir / f"{device}-{k}.slot")
                if fd is not None:
                    return fd
        if position != last_position:
            rundir.update_status(run_dir, queue_position=position + 1, heartbeat=time.time())
            last_position = position
        else:
            rundir.update_status(run_dir, heartbeat=time.time())
        time.sleep(poll_s)

"""The device queue: at most N jobs train at once per device, first come first served.

Nothing here lives in memory: each job process waits for its own turn by looking at the runs
directory, so a queued job starts by itself when the device frees, with no app page open and no
server running. A device has N slot files under ``<runs_dir>/.queue/<host>/``; a job holds one with
an exclusive ``flock`` for as long as its process lives, so a slot held by a process that died (even
``kill -9``) frees itself: the kernel drops the lock with the process.

Order: among the live queued runs for a device on this host, only the one queued first may take a
free slot (``enqueued_at``, the time the registry launched or resumed it; else the job's own
``queued_at``; then the run id). A run waiting for its turn writes its place (1 = next) into
``queue_position`` in status.json.

Limits: ``LAB_MAX_JOBS_CPU`` (default 1) and ``LAB_MAX_JOBS_PER_GPU`` (default 1, times the number
of GPUs). Several hosts may share one runs directory (a network file system): each host has its own
slots and its own queue, because a device belongs to one machine.
"""
from __future__ import annotations

import fcntl
import os
import re
import socket
import time
from pathlib import Path

from lib.store import rundir

POLL_S = 1.0
QUEUE_DIR = ".queue"
ANY_DEVICE = "*"  # a queued run whose job has not said yet which device it will use


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(str(os.environ.get(name, default)).strip()))
    except ValueError:
        return default


def device_limit(device: str) -> int:
    """How many jobs may train at once on ``device`` ("cpu" or "cuda") on this host."""
    if device == "cuda":
        try:
            import torch
            gpus = max(1, torch.cuda.device_count())
        except Exception:  # noqa: BLE001 - no torch / broken driver
            gpus = 1
        return _env_int("LAB_MAX_JOBS_PER_GPU", 1) * gpus
    return _env_int("LAB_MAX_JOBS_CPU", 1)


def hostname() -> str:
    return socket.gethostname()


def _host_dirname(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", host or "localhost")[:100] or "localhost"


def process_alive(pid: int | None, create_time: float | None = None) -> bool:
    """True when ``pid`` runs on this host and (if given) was created at ``create_time``.

    Comparing the creation time guards against a recycled pid. A zombie counts as dead (it has
    exited). A process we may not inspect counts as alive: we cannot prove it is gone.
    """
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
    except psutil.ZombieProcess:
        return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    except (psutil.Error, ValueError, TypeError, OverflowError):
        return False


def run_processes(run: dict, status: dict | None = None) -> list[tuple[int, float | None]]:
    """(pid, create_time) pairs that belong to a run: the job itself and the process the launcher started."""
    out: list[tuple[int, float | None]] = []
    for pid_key, ct_key in (("pid", "create_time"), ("launch_pid", "launch_create_time")):
        pid = run.get(pid_key)
        if isinstance(pid, int) and pid > 0 and all(pid != p for p, _ in out):
            ct = run.get(ct_key)
            out.append((pid, float(ct) if isinstance(ct, (int, float)) else None))
    if not out and not run.get("launch_started_at") and status:  # no launch record: a job started by hand
        pid = status.get("pid")
        if isinstance(pid, int) and pid > 0:
            out.append((pid, None))
    return out


def run_host(run: dict) -> str:
    return str(run.get("host") or hostname())


def run_is_alive(run: dict, status: dict | None = None) -> bool:
    """Any process of the run still alive (on this host)."""
    return any(process_alive(pid, ct) for pid, ct in run_processes(run, status))


def _queue_key(status: dict, run_id: str) -> tuple:
    t = status.get("enqueued_at") or status.get("queued_at") or status.get("created_at") or 0.0
    try:
        t = float(t)
    except (TypeError, ValueError):
        t = 0.0
    return (t, run_id)


def waiting_runs(runs_dir: Path, device: str, *, host: str | None = None) -> list[Path]:
    """Live queued runs on this host that wait for ``device`` (or have not named one yet), in queue order."""
    host = host or hostname()
    found = []
    for run_dir in rundir.iter_run_dirs(runs_dir):
        status = rundir.read_status(run_dir)
        if status.get("state") != "queued":
            continue
        run_device = status.get("device") or ANY_DEVICE
        if device != ANY_DEVICE and run_device not in (device, ANY_DEVICE):
            continue
        if run_device == ANY_DEVICE and (rundir.read_config(run_dir).get("num_nodes") or 1) > 1:
            continue  # still waiting for its other machines (rendezvous): it holds no place in this queue
        run = rundir.read_json(run_dir / rundir.RUN, default={}) or {}
        if run_host(run) != host or not run_is_alive(run, status):
            continue
        found.append((*_queue_key(status, run_dir.name), run_dir))
    return [p for *_, p in sorted(found, key=lambda x: (x[0], x[1]))]


def queue_position(runs_dir: Path, run_dir: Path) -> int | None:
    """1 for the next run to start on its device, 2 for the one after, ...; None when not waiting."""
    run_dir = Path(run_dir)
    status = rundir.read_status(run_dir)
    if status.get("state") != "queued":
        return None
    devices = [status["device"]] if status.get("device") else ["cpu", "cuda"]  # undecided: its best place
    places = []
    for device in devices:
        names = [p.name for p in waiting_runs(Path(runs_dir), device)]
        if run_dir.name in names:
            places.append(names.index(run_dir.name) + 1)
    return min(places) if places else None


def _try_lock(path: Path):
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        writable = True
    except PermissionError:  # a slot file another user created: a read-only descriptor can hold a flock too
        fd = os.open(path, os.O_RDONLY)
        writable = False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    if writable:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
    return fd


def slot_dir(runs_dir: Path, host: str | None = None) -> Path:
    return Path(runs_dir) / QUEUE_DIR / _host_dirname(host or hostname())


def max_poll_s() -> float:
    """Longest pause between two looks at the queue while a job waits (``LAB_QUEUE_POLL_MAX_S``, default 10)."""
    try:
        return max(0.5, float(os.environ.get("LAB_QUEUE_POLL_MAX_S", "10")))
    except ValueError:
        return 10.0


def acquire_slot(runs_dir: Path, run_dir: Path, *, device: str = "cpu", poll_s: float = POLL_S) -> int:
    """Wait (updating ``queue_position`` in status.json) until a slot is free and it is our turn.

    Returns the open, locked slot file descriptor; keep it open for the life of the job (the lock
    goes away with the process, however it ends).
    """
    qdir = slot_dir(runs_dir)
    qdir.mkdir(parents=True, exist_ok=True)
    limit = device_limit(device)
    run_dir = Path(run_dir)
    last_position = None
    wait = poll_s
    while True:
        names = [p.name for p in waiting_runs(Path(runs_dir), device)]
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
        # Back off while waiting: a queue of jobs does not rescan the runs folder every second.
        time.sleep(wait)
        wait = min(max_poll_s(), wait * 1.5) if position else poll_s

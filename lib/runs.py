"""The run registry: launch training jobs, list them, and cancel, resume or delete them.

The runs directory is the only source of truth (see :mod:`lib.rundir`): nothing is kept in memory,
so several app servers, on one host or several sharing a network file system, can use one runs
directory, and a job never depends on a browser tab or on the app server staying up.

Launch
    :func:`launch` makes a run directory with a server-made id, writes ``config.json`` and a
    ``queued`` ``status.json``, and starts ``python -m lib.train --run-dir DIR`` as a detached
    process: an argv list (never a shell), its own session and process group
    (``start_new_session``), stdin closed, stdout and stderr appended to the run's ``stdout.log``.
    ``run.json`` records the argv, pid, process group, process creation time, host and user.
    The job then waits for its turn on its device by itself (:mod:`lib.queue`).

No zombies
    The process that launches a job (the Streamlit server, which lives on) starts a small daemon
    thread per job that waits for it. That collects the exit status the moment the job ends, so
    no zombie is left behind, and it tells us *how* a job ended when it died without writing its
    own final state (for example ``killed by signal SIGKILL``). When the launcher exits first (the
    CLI, or a server restart) the job is re-parented to init, which reaps it. A double fork would
    also avoid zombies but would throw the exit status away.

Reconciliation
    :func:`get_status` and :func:`list_runs` check every ``queued``/``running`` run against its
    process (pid and creation time, so a recycled pid is noticed). A run whose process is gone
    becomes ``failed`` with "process ended unexpectedly", the signal or exit code when this process
    saw it end, and the tail of its log. A live run whose heartbeat is older than
    ``LAB_STALL_AFTER_S`` (default 120 s) is shown as ``stalled`` (derived, never written). A run
    started on another host is never judged by its pid, only by its heartbeat. Writes are atomic,
    happen only when the job's process is gone (so they never race with the job's own writes),
    re-read the status under a per-run lock first, and never replace a final state the job wrote.

Cancel, resume, delete
    :func:`cancel` sends SIGTERM to the job first (so it records ``cancelled`` and shuts its
    DataLoader workers down itself), then to its whole process group and descendants (DataLoader
    workers, torchrun ranks, which run in sessions of their own), then SIGKILL after a grace period
    (10 s). :func:`resume` relaunches a failed or cancelled run with
    ``--resume`` (the job continues from its newest complete checkpoint). :func:`delete` removes a
    run that is not queued or running.

CLI: ``python -m lib.runs {launch,list,show,cancel,resume,delete} --runs-dir DIR ...``
(run it with ``--help``).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from lib import queue, rundir
from lib.config import PRESETS, TrainConfig, preset
from lib.errors import ConfigError, LabError, RunError

REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL_STATES = ("finished", "failed", "cancelled")
RESUMABLE_STATES = ("failed", "cancelled")
LOCK_FILE = ".registry.lock"
TRASH_PREFIX = ".trash-"
DEFAULT_STALL_AFTER_S = 120.0
LAUNCH_GRACE_S = 60.0      # a run with no process recorded yet is "starting" for this long
CANCEL_GRACE_S = 10.0      # SIGTERM, then SIGKILL after this many seconds
LOG_TAIL_BYTES = 2000

# Exit statuses of jobs this process started and reaped: pid -> (create_time, returncode).
_EXITS: dict[int, tuple[float | None, int]] = {}
_CHILDREN: dict[int, float | None] = {}  # jobs this process started that its reaper threads still wait for
_EXITS_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------
def stall_after_s() -> float:
    """Heartbeat age after which a live job is shown as stalled (``LAB_STALL_AFTER_S``)."""
    try:
        value = float(os.environ.get("LAB_STALL_AFTER_S", DEFAULT_STALL_AFTER_S))
        return value if value > 0 else DEFAULT_STALL_AFTER_S
    except ValueError:
        return DEFAULT_STALL_AFTER_S


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid (containers)
        return str(os.getuid())


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _checked_run_dir(run_dir: str | os.PathLike) -> Path:
    """A run directory given as a path, checked like an id from outside (no symlinks, inside its runs dir)."""
    path = Path(run_dir)
    return rundir.resolve_run_dir(path.parent, path.name)


def run_path(runs_dir: str | os.PathLike, run_id: str) -> Path:
    """The directory of run ``run_id`` (refuses anything that is not a server-made id, and symlinks)."""
    return rundir.resolve_run_dir(runs_dir, run_id)


def read_run_info(run_dir: str | os.PathLike) -> dict:
    data = rundir.read_json(Path(run_dir) / rundir.RUN, default={})
    return data if isinstance(data, dict) else {}


def read_config_dict(run_dir: str | os.PathLike) -> dict:
    data = rundir.read_json(Path(run_dir) / rundir.CONFIG, default={})
    return data if isinstance(data, dict) else {}


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The run's TrainConfig (for clone and resume)."""
    return TrainConfig.load(Path(run_dir) / rundir.CONFIG)


@contextlib.contextmanager
def _run_lock(run_dir: Path, *, blocking: bool = True, timeout: float = 30.0,
              give_up: bool = False) -> Iterator[bool]:
    """Serialise registry changes to one run across processes and hosts (flock on a file in the run dir).

    Yields True when the lock is held; False when it could not be taken (read-only runs directory,
    busy and not ``blocking``, or still busy after ``timeout`` with ``give_up``). The job never takes this lock: the registry only writes status
    for a run whose process is gone.
    """
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    held = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except OSError:
                if not blocking:
                    break
                if time.monotonic() > deadline:
                    if give_up:
                        break
                    raise RunError(f"run {run_dir.name} is busy (another cancel, resume or delete is in progress); "
                                   "try again in a moment") from None
                time.sleep(0.05)
        yield held
    finally:
        if held:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ---------------------------------------------------------------------------------------------------
# Launch and resume
# ---------------------------------------------------------------------------------------------------
def job_command(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False) -> list[str]:
    """The exact argv the job runs with (one process, or torchrun for several)."""
    from lib.train import job_argv
    return job_argv(config, Path(run_dir), resume=resume)


def create_run(runs_dir: str | os.PathLike, config: TrainConfig, *, owner: str | None = None) -> Path:
    """A new run directory with ``config.json`` and a ``queued`` status, ready to launch."""
    if not isinstance(config, TrainConfig):
        raise ConfigError({"config": "expected a TrainConfig"})
    if owner is not None and owner != config.owner:
        config = config.replace(owner=str(owner))
    errors = config.validate()
    if errors:
        raise ConfigError(errors)
    run_dir = rundir.create_run_dir(Path(runs_dir).expanduser().resolve())
    now = time.time()
    rundir.atomic_write_text(run_dir / rundir.CONFIG, config.to_json())
    rundir.atomic_write_json(run_dir / rundir.STATUS, {
        "state": "queued", "step": 0, "total_steps": None, "created_at": now, "queued_at": now,
        "enqueued_at": now, "owner": config.owner, "queue_position": None, "error": None})
    return run_dir


def _reap(proc: subprocess.Popen, create_time: float | None, run_dir: Path) -> None:
    """Wait for a job this process started, remember how it ended, and reconcile its status at once."""
    try:
        code = proc.wait()
    except Exception:  # noqa: BLE001 - nothing sensible to do in a daemon thread
        with _EXITS_LOCK:
            _CHILDREN.pop(proc.pid, None)
        return
    with _EXITS_LOCK:
        _EXITS[proc.pid] = (create_time, code)
        _CHILDREN.pop(proc.pid, None)
        while len(_EXITS) > 1000:
            _EXITS.pop(next(iter(_EXITS)))
    with contextlib.suppress(Exception):
        if run_dir.is_dir():
            get_status(run_dir)


def _start_job(run_dir: Path, config: TrainConfig, *, resume: bool, launched_by: str,
               status_changes: dict | None = None) -> dict:
    """Start the job detached and record it in run.json.

    Order matters for readers on other servers: run.json (no process yet, launch just started) is
    written first, then ``status_changes`` (resume: back to queued), then the process starts. A reader
    that sees a queued state therefore never pairs it with an old, dead pid.
    """
    import psutil
    argv = job_command(config, run_dir, resume=resume)
    now = time.time()
    previous = read_run_info(run_dir)
    history = list(previous.get("history") or []) if isinstance(previous.get("history"), list) else []
    if previous.get("pid") or previous.get("launch_pid"):
        history.append({k: previous.get(k) for k in ("argv", "pid", "pgid", "create_time", "host", "user",
                                                     "created_at", "launched_by")})
    info = {"argv": argv, "pid": None, "pgid": None, "create_time": None, "launch_pid": None,
            "launch_create_time": None, "host": socket.gethostname(), "user": _user(), "created_at": now,
            "launch_started_at": now, "launched_by": launched_by, "resume": resume, "history": history[-20:]}
    rundir.atomic_write_json(run_dir / rundir.RUN, info)
    if status_changes:
        rundir.update_status(run_dir, **status_changes)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    try:
        with open(run_dir / rundir.LOG, "ab") as log:
            if resume:
                log.write(f"\n[lab] resume requested by {launched_by} at {time.ctime(now)}\n".encode())
                log.flush()
            proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, env=env)
    except OSError as exc:
        rundir.update_status(run_dir, state="failed", finished_at=time.time(), exit_code=None,
                             error={"type": "LaunchError", "message": f"could not start the job: {exc}",
                                    "hint": "check that Python and the lab are installed on this machine"})
        raise RunError(f"could not start the training job: {exc}") from None
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = None
    with _EXITS_LOCK:
        _CHILDREN[proc.pid] = create_time
    threading.Thread(target=_reap, args=(proc, create_time, run_dir), name=f"reap-{run_dir.name}",
                     daemon=True).start()
    launched = {"pid": proc.pid, "pgid": proc.pid, "create_time": create_time, "launch_pid": proc.pid,
                "launch_create_time": create_time}
    # The job merges its own pid/pgid/create_time into run.json as it starts; keep whatever it wrote.
    current = read_run_info(run_dir)
    for key, value in launched.items():
        if current.get(key) is None or key.startswith("launch_"):
            current[key] = value
    for key, value in info.items():
        current.setdefault(key, value)
    rundir.atomic_write_json(run_dir / rundir.RUN, current)
    return current


def launch(config: TrainConfig, runs_dir: str | os.PathLike | None = None, *, owner: str | None = None,
           launched_by: str = "api") -> Path:
    """Create a run for ``config`` and start its job in the background. Returns the run directory."""
    runs_dir = Path(runs_dir).expanduser().resolve() if runs_dir else rundir.default_runs_dir()
    run_dir = create_run(runs_dir, config, owner=owner)
    _start_job(run_dir, load_config(run_dir), resume=False, launched_by=launched_by)
    return run_dir


def resume(run_dir: str | os.PathLike, *, launched_by: str = "api") -> Path:
    """Relaunch a failed or cancelled run with ``--resume``: it continues from its newest complete checkpoint."""
    run_dir = _checked_run_dir(run_dir)
    with _run_lock(run_dir) as held:
        if not held:
            raise RunError(f"cannot lock run {run_dir.name} (is the runs directory read-only?)")
        status = _reconcile(run_dir, rundir.read_status(run_dir), locked=True)
        state = status.get("state")
        if state not in RESUMABLE_STATES:
            raise RunError(f"run {run_dir.name} is {state}; only a failed or cancelled run can be resumed")
        config = load_config(run_dir)
        now = time.time()
        _start_job(run_dir, config, resume=True, launched_by=launched_by, status_changes=dict(
            state="queued", queued_at=now, enqueued_at=now, queue_position=None, error=None, exit_code=None,
            finished_at=None, pid=None, resumed_at=now, resumes=int(status.get("resumes") or 0) + 1, heartbeat=None))
    return run_dir


# ---------------------------------------------------------------------------------------------------
# Status reconciliation
# ---------------------------------------------------------------------------------------------------
def _exit_description(processes: list[tuple[int, float | None]]) -> tuple[str, int | None]:
    # A job this process started has just ended: give its reaper thread a moment to collect the exit status.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        with _EXITS_LOCK:
            waiting = any(pid in _CHILDREN and pid not in _EXITS for pid, _ in processes)
        if not waiting:
            break
        time.sleep(0.02)
    with _EXITS_LOCK:
        for pid, ct in processes:
            known = _EXITS.get(pid)
            if known and (ct is None or known[0] is None or abs(known[0] - ct) <= 1.0):
                code = known[1]
                if code < 0:
                    try:
                        name = signal.Signals(-code).name
                    except ValueError:
                        name = f"signal {-code}"
                    return f"killed by signal {name}", code
                return f"exited with code {code} without recording a result", code
    return "killed or crashed; its exit status is not known here", None


def _liveness(run_dir: Path, status: dict, run: dict, now: float) -> str:
    """'alive', 'dead', 'starting' (launch in progress) or 'elsewhere' (another host: cannot tell)."""
    if run.get("host") and run.get("host") != socket.gethostname():
        return "elsewhere"
    processes = queue.run_processes(run, status)
    if processes:
        return "alive" if any(queue.process_alive(pid, ct) for pid, ct in processes) else "dead"
    started = _num(run.get("launch_started_at")) or _num(status.get("enqueued_at")) or _num(
        status.get("created_at"))
    if started is None:
        try:
            started = (run_dir / rundir.STATUS).stat().st_mtime
        except OSError:
            started = now
    return "starting" if now - started < LAUNCH_GRACE_S else "dead"


def _mark_dead(run_dir: Path, run: dict, status: dict, now: float) -> dict:
    processes = queue.run_processes(run, status)
    how, code = _exit_description(processes)
    never_started = not processes
    message = ("the job never started (no process was recorded for it)" if never_started
               else f"process ended unexpectedly ({how})")
    tail = rundir.tail_text(run_dir / rundir.LOG, LOG_TAIL_BYTES)
    error = {"type": "ProcessEnded", "message": message,
             "hint": "Resume the run to continue from its newest complete checkpoint. The end of its log "
                     "(below) may say why it stopped.", "log_tail": tail}
    return rundir.update_status(run_dir, state="failed", finished_at=now, exit_code=code, error=error,
                                queue_position=None, reconciled_at=now, reconciled_by=socket.gethostname())


def _reconcile(run_dir: Path, status: dict, *, now: float | None = None, stall_after: float | None = None,
               locked: bool = False, write: bool = True) -> dict:
    """The status as it really is (see the module docstring). Writes ``failed`` for a run whose process is gone."""
    now = time.time() if now is None else now
    stall_after = stall_after_s() if stall_after is None else stall_after
    status = dict(status or {})
    if not status:
        status = {"state": "unknown"}
    state = status.get("state")
    derived: dict[str, Any] = {"stalled": False, "heartbeat_age_s": None, "host": None}
    if state in rundir.ACTIVE_STATES:
        run = read_run_info(run_dir)
        derived["host"] = run.get("host")
        live = _liveness(run_dir, status, run, now)
        if live == "dead" and write:
            if locked:
                fresh = rundir.read_status(run_dir)
                if fresh.get("state") in rundir.ACTIVE_STATES:
                    # re-check with what is on disk now (a resume may have started a new process)
                    run = read_run_info(run_dir)
                    live = _liveness(run_dir, fresh, run, now)
                    status = _mark_dead(run_dir, run, fresh, now) if live == "dead" else fresh
                else:
                    status = fresh  # the job (or another server) already wrote its final state
            else:
                # a moment's wait covers another reconciler; a cancel or resume holds it longer
                with _run_lock(run_dir, timeout=1.0, give_up=True) as held:
                    if held:
                        return _reconcile(run_dir, status, now=now, stall_after=stall_after, locked=True)
                # someone else is changing this run right now (a cancel about to record "cancelled", a
                # resume, a delete): leave the state to them and show it as it is on disk for now
                live = "changing"
        elif live == "dead":
            how, code = _exit_description(queue.run_processes(run, status))
            status = {**status, "state": "failed", "exit_code": code,
                      "error": {"type": "ProcessEnded", "message": f"process ended unexpectedly ({how})",
                                "hint": "", "log_tail": rundir.tail_text(run_dir / rundir.LOG, LOG_TAIL_BYTES)}}
        state = status.get("state")
        if state in rundir.ACTIVE_STATES and live in ("alive", "elsewhere", "starting", "changing"):
            signs = [_num(status.get(k)) for k in ("heartbeat", "started_at", "queued_at", "enqueued_at")]
            signs.append(_num(run.get("launch_started_at")))
            beat = max((t for t in signs if t is not None), default=None)  # the latest sign of life
            if beat is not None:
                derived["heartbeat_age_s"] = max(0.0, now - beat)
                derived["stalled"] = live in ("alive", "elsewhere") and now - beat > stall_after
    if state == "queued":
        pos = queue.queue_position(run_dir.parent, run_dir)
        status["queue_position"] = pos if pos is not None else status.get("queue_position")
    else:
        status["queue_position"] = None
    status.update(derived)
    status["run_id"] = run_dir.name
    status["display_state"] = "stalled" if status["stalled"] else str(state or "unknown")
    status.setdefault("step", 0)
    status.setdefault("total_steps", None)
    status.setdefault("error", None)
    return status


def get_status(run_dir: str | os.PathLike, *, now: float | None = None, stall_after: float | None = None) -> dict:
    """status.json reconciled against the job's process, plus derived keys.

    Always has ``state``, ``step``, ``total_steps``, ``queue_position``, ``error``, ``run_id``, and the
    derived ``stalled`` (bool), ``display_state`` (``state`` or ``"stalled"``) and ``heartbeat_age_s``.
    """
    run_dir = Path(run_dir)
    return _reconcile(run_dir, rundir.read_status(run_dir), now=now, stall_after=stall_after)


# ---------------------------------------------------------------------------------------------------
# The run list
# ---------------------------------------------------------------------------------------------------
_BEST_CACHE: dict[str, tuple[int, int, float | None]] = {}


def best_eval_accuracy(run_dir: str | os.PathLike) -> float | None:
    """The best ``eval_accuracy`` among the run's evaluation events (metrics.jsonl), cached by file size."""
    path = Path(run_dir) / rundir.METRICS
    try:
        st = path.stat()
    except OSError:
        return None
    hit = _BEST_CACHE.get(str(path))
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    best = None
    from lib.logs import read_jsonl as read_incrementally  # reads only what was appended since last time
    for row in read_incrementally(path):
        if row.get("event") == "eval":
            acc = _num(row.get("eval_accuracy"))
            if acc is not None and (best is None or acc > best):
                best = acc
    _BEST_CACHE[str(path)] = (st.st_size, st.st_mtime_ns, best)
    return best


def summarize(run_dir: str | os.PathLike, status: dict | None = None, *, now: float | None = None) -> dict:
    """One row of the run list (see :func:`list_runs`)."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = status if status is not None else get_status(run_dir, now=now)
    config = read_config_dict(run_dir)
    label = str(config.get("run_name") or "").strip() or (
        f"{config.get('model', '?')} on {config.get('dataset', '?')}" if config else run_dir.name)
    state = str(status.get("state") or "unknown")
    step = int(_num(status.get("step")) or 0)
    total = _num(status.get("total_steps"))
    total = int(total) if total else None
    progress = (1.0 if state == "finished" else min(1.0, step / total)) if total else (
        1.0 if state == "finished" else None)
    started = _num(status.get("started_at"))
    finished = _num(status.get("finished_at"))
    duration = None
    if started is not None:
        end = finished if state in TERMINAL_STATES and finished else now
        duration = max(0.0, end - started)
    best = best_eval_accuracy(run_dir)
    if best is None and isinstance(status.get("final_metrics"), dict):
        best = _num(status["final_metrics"].get("eval_accuracy"))
    return {
        "id": run_dir.name, "run_id": run_dir.name, "path": str(run_dir), "label": label,
        "owner": str(config.get("owner") or status.get("owner") or ""), "state": state,
        "display_state": status.get("display_state") or state, "stalled": bool(status.get("stalled")),
        "step": step, "total_steps": total, "progress": progress, "model": str(config.get("model", "")),
        "dataset": str(config.get("dataset", "")), "task": str(config.get("task", "")),
        "created_at": _num(status.get("created_at")), "started_at": started, "finished_at": finished,
        "duration_s": duration, "best_eval_accuracy": best, "queue_position": status.get("queue_position"),
        "error": status.get("error") if isinstance(status.get("error"), dict) else None, "status": status,
    }


def list_runs(runs_dir: str | os.PathLike | None = None, *, now: float | None = None) -> list[dict]:
    """Every run under ``runs_dir``, newest first, reconciled. Each item: id, label, owner, state,
    display_state, stalled, step, total_steps, progress (0..1), model, dataset, created_at, started_at,
    finished_at, duration_s, best_eval_accuracy, queue_position, error, and the full ``status``."""
    runs_dir = Path(runs_dir) if runs_dir else rundir.default_runs_dir()
    now = time.time() if now is None else now
    rows = []
    for run_dir in rundir.iter_run_dirs(runs_dir):
        try:
            rows.append(summarize(run_dir, get_status(run_dir, now=now), now=now))
        except OSError:
            continue  # deleted while we looked
    rows.sort(key=lambda r: r["id"], reverse=True)  # ids start with the UTC creation time
    return rows


# ---------------------------------------------------------------------------------------------------
# Cancel and delete
# ---------------------------------------------------------------------------------------------------
def _group_members(pgid: int, run: dict) -> list:
    """Live processes of process group ``pgid`` that belong to this run (never another group that reused the id)."""
    import psutil
    members = []
    launch_ct = _num(run.get("launch_create_time")) or _num(run.get("create_time"))
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
    run = read_run_info(run_dir)
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
            self.leader, self.leader_ct = launch, _num(run.get("launch_create_time"))
        else:
            self.leader, self.leader_ct = run.get("pid"), _num(run.get("create_time"))
        self.tree: dict[int, Any] = {}
        self._follow_tree()

    def _follow_tree(self) -> None:
        import psutil
        if self.leader_ct is None and not self.group:
            return  # a process we cannot identify for sure is never signalled
        if queue.process_alive(self.leader, self.leader_ct):
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
        return queue.process_alive(self.leader, self.leader_ct)

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


def cancel(run_dir: str | os.PathLike, *, grace_s: float = CANCEL_GRACE_S, by: str = "") -> dict:
    """Stop a queued or running run: SIGTERM to the job, then to its whole process group, SIGKILL after
    ``grace_s`` seconds. The run ends ``cancelled``. Returns its status."""
    run_dir = _checked_run_dir(run_dir)
    with _run_lock(run_dir) as held:
        if not held:
            raise RunError(f"cannot lock run {run_dir.name} (is the runs directory read-only?)")
        status = _reconcile(run_dir, rundir.read_status(run_dir), locked=True)
        state = status.get("state")
        if state not in rundir.ACTIVE_STATES:
            raise RunError(f"run {run_dir.name} is already {state}; only a queued or running run can be cancelled")
        run = read_run_info(run_dir)
        host = run.get("host")
        if host and host != socket.gethostname():
            raise RunError(f"run {run_dir.name} runs on host {host}; cancel it there "
                           f"(python -m lib.runs cancel {run_dir.name})")
        deadline = time.monotonic() + 5.0
        while not queue.run_processes(run, status) and time.monotonic() < deadline:
            time.sleep(0.1)  # a launch in progress: wait for its pid
            run = read_run_info(run_dir)
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


def delete(run_dir: str | os.PathLike) -> None:
    """Remove a run that is not queued or running (never follows a symlink out of the runs directory)."""
    run_dir = _checked_run_dir(run_dir)
    root = run_dir.parent
    with _run_lock(run_dir) as held:
        if not held:
            raise RunError(f"cannot lock run {run_dir.name} (is the runs directory read-only?)")
        status = _reconcile(run_dir, rundir.read_status(run_dir), locked=True)
        if status.get("state") in rundir.ACTIVE_STATES:
            raise RunError(f"run {run_dir.name} is {status.get('state')}; cancel it before deleting it")
        trash = root / f"{TRASH_PREFIX}{run_dir.name}-{secrets.token_hex(4)}"
        os.rename(run_dir, trash)  # atomic: the run disappears from every list at once
    shutil.rmtree(trash, ignore_errors=True)  # rmtree never follows symlinks inside the tree


# ---------------------------------------------------------------------------------------------------
# Access control (used by the pages when authentication is configured; the CLI is local and trusted)
# ---------------------------------------------------------------------------------------------------
def _norm(name: Any) -> str:
    return str(name or "").strip().casefold()


def can_manage(run_dir: str | os.PathLike, user: str | None, admins: Iterable[str] = ()) -> bool:
    """May ``user`` cancel, resume or delete this run? Its owner and admins may; nobody else."""
    who = _norm(user)
    if not who:
        return False
    if who in {_norm(a) for a in admins or ()}:
        return True
    config = read_config_dict(run_dir)
    owner = _norm(config.get("owner") or rundir.read_status(run_dir).get("owner"))
    return bool(owner) and owner == who


def can_launch(user: str | None, launchers: Iterable[str] | None = None, admins: Iterable[str] = ()) -> bool:
    """May ``user`` launch runs? Admins may; with a ``launchers`` list only those people, otherwise any signed-in user."""
    who = _norm(user)
    if not who:
        return False
    if who in {_norm(a) for a in admins or ()}:
        return True
    if launchers is None:
        return True
    return who in {_norm(x) for x in launchers}


# ---------------------------------------------------------------------------------------------------
# Checks before launch (the Train page calls these; nothing here starts a process)
# ---------------------------------------------------------------------------------------------------
def _hub_model_cached(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(model_id, "config.json")
        return isinstance(found, str)
    except Exception:  # noqa: BLE001
        return False


def _hub_dataset_cached(dataset_id: str) -> bool:
    try:
        from lib import data
        finder = getattr(data, "_hub_cache_candidates", None)
        return bool(finder and finder(dataset_id))
    except Exception:  # noqa: BLE001
        return False


def looks_like_local_path(text: str) -> bool:
    """A typed path: starts with /, ./, ../ or ~, or names something that exists here.

    "org/name" is a Hub id unless such a folder exists (lib.paths.looks_like_path calls every text
    with a slash a path, which would turn Hub ids like "stanfordnlp/imdb" into missing folders).
    """
    from lib import hub
    text = text.strip()
    if text.startswith(("/", "./", "../", "~")):
        return True
    if hub.looks_like_hub_id(text):
        return os.path.exists(text)
    return "/" in text or os.sep in text


def preflight(config: TrainConfig, *, timeout: float = 4.0) -> dict[str, str]:
    """Problems a launch would hit at once, as {field: message}: unreachable Hub ids, missing local paths.

    Takes at most about ``timeout`` seconds (one Hub probe, cached for a minute).
    """
    from lib import hub
    from lib.config import BUNDLED_MODEL, DEMO_DATASET, TINY_MODEL
    from lib.paths import check_local_path
    errors: dict[str, str] = {}

    def hub_problem(kind: str, name: str) -> str | None:
        ok, reason = hub.hub_reachable(timeout=timeout)
        return None if ok else hub.unavailable_message(kind, name, reason)

    model = config.model.strip()
    if model not in (BUNDLED_MODEL, "minilm", TINY_MODEL):
        if looks_like_local_path(model):
            try:
                path = check_local_path(model, "model")
                if not path.is_dir():
                    errors["model"] = f"the model path {model!r} is not a folder; give a folder saved with save_pretrained"
            except LabError as exc:
                errors["model"] = str(exc)
        elif hub.looks_like_hub_id(model):
            if not _hub_model_cached(model):
                problem = hub_problem("model", model)
                if problem:
                    errors["model"] = problem
        else:
            errors["model"] = (f"model {model!r} is neither '{BUNDLED_MODEL}', a Hub id like 'bert-base-uncased', "
                               "nor a local folder path (start local paths with / or ./)")
    dataset = config.dataset.strip()
    if dataset != DEMO_DATASET:
        if looks_like_local_path(dataset):
            try:
                check_local_path(dataset, "data")
            except LabError as exc:
                errors["dataset"] = str(exc)
        elif hub.looks_like_hub_id(dataset):
            if not _hub_dataset_cached(dataset):
                problem = hub_problem("dataset", dataset)
                if problem:
                    errors["dataset"] = problem
        else:
            errors["dataset"] = (f"the data set {dataset!r} is neither 'demo', a Hub id like 'imdb', nor a local "
                                 "path (start local paths with /, ./ or ~)")
    if config.test_file.strip():
        try:
            check_local_path(config.test_file.strip(), "test file")
        except LabError as exc:
            errors["test_file"] = str(exc)
    return errors


KNOWN_TRAIN_SIZES = {"imdb": 25000, "stanfordnlp/imdb": 25000}


def estimate_train_samples(config: TrainConfig) -> int | None:
    """Training reviews the job will see (for the step preview), or None when it cannot be known cheaply."""
    from lib.config import DEMO_DATASET
    dataset = config.dataset.strip()
    n: int | None = None
    if dataset == DEMO_DATASET:
        try:
            from lib.data import demo_reviews
            n = demo_reviews()["train"].num_rows
        except Exception:  # noqa: BLE001
            n = None
    elif dataset in KNOWN_TRAIN_SIZES:
        n = KNOWN_TRAIN_SIZES[dataset]
    elif looks_like_local_path(dataset):
        try:
            from lib.data import read_table
            path = Path(dataset).expanduser()
            if path.is_file():
                rows = len(read_table(path, text_column=config.text_column))
                n = rows if config.test_file.strip() else rows - max(1, round(rows * config.eval_fraction))
        except Exception:  # noqa: BLE001
            n = None
    if n is not None and config.max_train_samples is not None:
        n = min(n, config.max_train_samples)
    elif n is None and config.max_train_samples is not None:
        n = config.max_train_samples  # an upper bound; exact when the data has at least that many
    return n


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _progress_text(row: dict) -> str:
    if row["total_steps"]:
        return f"{row['step']}/{row['total_steps']}"
    if row["state"] == "queued" and row.get("queue_position"):
        return f"queue #{row['queue_position']}"
    return "-"


def _print_table(rows: list[dict]) -> None:
    headers = ["ID", "STATE", "PROGRESS", "OWNER", "MODEL", "DATASET", "STARTED", "DURATION", "BEST ACC", "LABEL"]
    table = [[r["id"], r["display_state"], _progress_text(r), r["owner"] or "-", r["model"], r["dataset"],
              _fmt_time(r["started_at"]), _fmt_duration(r["duration_s"]),
              f"{r['best_eval_accuracy']:.4f}" if r["best_eval_accuracy"] is not None else "-", r["label"]]
             for r in rows]
    clean = [[str(c).replace("\n", " ").replace("\t", " ")[:60] for c in row] for row in table]
    widths = [max([len(h)] + [len(row[i]) for row in clean]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in clean:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib.runs", description="Launch, list, cancel, resume and delete "
                                "training runs in a shared runs directory.")
    p.add_argument("--runs-dir", default=None, help="the runs directory (default $LAB_RUNS_DIR or ./runs)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--runs-dir", default=argparse.SUPPRESS, help="the runs directory")
        return sp

    sp = add("launch", "start a training run in the background and print its id (last line)")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset (default: demo)")
    src.add_argument("--config", metavar="FILE.json", help="a saved TrainConfig (for example a run's config.json)")
    sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field (repeatable)")
    sp.add_argument("--owner", default=None, help="who launches it (default: the config's owner, else your user name)")
    sp = add("list", "list the runs, newest first")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp = add("show", "show one run's status")
    sp.add_argument("run_id")
    sp.add_argument("--json", action="store_true", help="print the status object as JSON")
    sp = add("cancel", "stop a queued or running run")
    sp.add_argument("run_id")
    sp.add_argument("--grace", type=float, default=CANCEL_GRACE_S, help="seconds between SIGTERM and SIGKILL")
    sp = add("resume", "continue a failed or cancelled run from its newest complete checkpoint")
    sp.add_argument("run_id")
    sp = add("delete", "delete a run that is not queued or running")
    sp.add_argument("run_id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs_dir = Path(args.runs_dir).expanduser().resolve() if args.runs_dir else rundir.default_runs_dir()
    try:
        if args.command == "launch":
            config = TrainConfig.load(args.config) if args.config else preset(args.preset or "demo")
            config = config.with_overrides(args.overrides)
            owner = args.owner if args.owner is not None else (config.owner or _user())
            run_dir = launch(config, runs_dir, owner=owner, launched_by=f"cli:{_user()}")
            print(f"launched run {run_dir.name} in {runs_dir} (log: {run_dir / rundir.LOG})", file=sys.stderr)
            print(run_dir.name)
        elif args.command == "list":
            rows = list_runs(runs_dir)
            if args.json:
                print(rundir.dumps([{k: v for k, v in r.items() if k != "status"} for r in rows], indent=2))
            elif rows:
                _print_table(rows)
            else:
                print(f"no runs in {runs_dir}", file=sys.stderr)
        elif args.command == "show":
            run_dir = run_path(runs_dir, args.run_id)
            status = get_status(run_dir)
            if args.json:
                print(rundir.dumps(status, indent=2))
            else:
                row = summarize(run_dir, status)
                for key in ("id", "label", "owner", "display_state", "model", "dataset"):
                    print(f"{key.replace('display_', ''):>10}: {row[key]}")
                print(f"{'progress':>10}: {_progress_text(row)}")
                print(f"{'started':>10}: {_fmt_time(row['started_at'])}  duration {_fmt_duration(row['duration_s'])}")
                if row["best_eval_accuracy"] is not None:
                    print(f"{'best acc':>10}: {row['best_eval_accuracy']:.4f}")
                if row["error"]:
                    print(f"{'error':>10}: {row['error'].get('message', '')}")
                    if row["error"].get("hint"):
                        print(f"{'hint':>10}: {row['error']['hint']}")
        elif args.command == "cancel":
            status = cancel(run_path(runs_dir, args.run_id), grace_s=max(0.0, args.grace), by=f"cli:{_user()}")
            print(f"run {args.run_id}: {status.get('state')}")
        elif args.command == "resume":
            run_dir = resume(run_path(runs_dir, args.run_id), launched_by=f"cli:{_user()}")
            print(f"resumed run {run_dir.name}", file=sys.stderr)
            print(run_dir.name)
        elif args.command == "delete":
            delete(run_path(runs_dir, args.run_id))
            print(f"deleted run {args.run_id}")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI prints a short message, never a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

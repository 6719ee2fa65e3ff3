"""A run's state reconciled against its process, and the :class:`RunView` every page and the CLI show.

A ``queued``/``running`` run whose process is gone (pid and creation time checked) becomes ``failed``
with how it ended and its log tail; a live run without a recent heartbeat shows as ``stalled``
(derived, never written). Writes happen only when the job's process is gone, under the run's lock.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lib.config import run_label
from lib.registry.notes import read_notes
from lib.store import jsonl, rundir, slots
from lib.util.fmt import num

DEFAULT_STALL_AFTER_S = 120.0
LAUNCH_GRACE_S = 60.0      # a run with no process recorded yet is "starting" for this long
# Exit statuses of jobs this process started and reaped: pid -> (create_time, returncode).
_EXITS: dict[int, tuple[float | None, int]] = {}
_CHILDREN: dict[int, float | None] = {}  # jobs this process started that its reaper threads still wait for
_EXITS_LOCK = threading.Lock()


LOG_TAIL_BYTES = 2000


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
    processes = slots.run_processes(run, status)
    if processes:
        return "alive" if any(slots.process_alive(pid, ct) for pid, ct in processes) else "dead"
    started = num(run.get("launch_started_at")) or num(status.get("enqueued_at")) or num(
        status.get("created_at"))
    if started is None:
        try:
            started = (run_dir / rundir.STATUS).stat().st_mtime
        except OSError:
            started = now
    return "starting" if now - started < LAUNCH_GRACE_S else "dead"


def _mark_dead(run_dir: Path, run: dict, status: dict, now: float) -> dict:
    processes = slots.run_processes(run, status)
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
        run = rundir.read_run_info(run_dir)
        derived["host"] = run.get("host")
        live = _liveness(run_dir, status, run, now)
        if live == "dead" and write:
            if locked:
                fresh = rundir.read_status(run_dir)
                if fresh.get("state") in rundir.ACTIVE_STATES:
                    # re-check with what is on disk now (a resume may have started a new process)
                    run = rundir.read_run_info(run_dir)
                    live = _liveness(run_dir, fresh, run, now)
                    status = _mark_dead(run_dir, run, fresh, now) if live == "dead" else fresh
                else:
                    status = fresh  # the job (or another server) already wrote its final state
            else:
                # a moment's wait covers another reconciler; a cancel or resume holds it longer
                with rundir.run_lock(run_dir, timeout=1.0, give_up=True) as held:
                    if held:
                        return _reconcile(run_dir, status, now=now, stall_after=stall_after, locked=True)
                # someone else is changing this run right now (a cancel about to record "cancelled", a
                # resume, a delete): leave the state to them and show it as it is on disk for now
                live = "changing"
        elif live == "dead":
            how, code = _exit_description(slots.run_processes(run, status))
            status = {**status, "state": "failed", "exit_code": code,
                      "error": {"type": "ProcessEnded", "message": f"process ended unexpectedly ({how})",
                                "hint": "", "log_tail": rundir.tail_text(run_dir / rundir.LOG, LOG_TAIL_BYTES)}}
        state = status.get("state")
        if state in rundir.ACTIVE_STATES and live in ("alive", "elsewhere", "starting", "changing"):
            signs = [num(status.get(k)) for k in ("heartbeat", "started_at", "queued_at", "enqueued_at")]
            signs.append(num(run.get("launch_started_at")))
            beat = max((t for t in signs if t is not None), default=None)  # the latest sign of life
            if beat is not None:
                derived["heartbeat_age_s"] = max(0.0, now - beat)
                derived["stalled"] = live in ("alive", "elsewhere") and now - beat > stall_after
    if state == "queued":
        pos = slots.queue_position(run_dir.parent, run_dir)
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
    for row in jsonl.read_jsonl(path):  # reads only what was appended since last time
        if row.get("event") == "eval":
            acc = num(row.get("eval_accuracy"))
            if acc is not None and (best is None or acc > best):
                best = acc
    _BEST_CACHE[str(path)] = (st.st_size, st.st_mtime_ns, best)
    return best


@dataclass(frozen=True)
class RunView:
    """Everything a page or the CLI shows about one run, built from its files in one place.

    ``state`` is what the job (or reconciliation) wrote; ``display_state`` is ``state`` or ``"stalled"``
    for a live run that has not shown a sign of life for a while. ``progress`` is 0..1 (None while the
    total is unknown). ``status`` and ``config`` are the reconciled status.json and config.json dicts.
    """

    run_id: str
    path: Path
    label: str
    owner: str
    state: str
    display_state: str
    stalled: bool
    step: int
    total_steps: int | None
    progress: float | None
    model: str
    dataset: str
    task: str
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    best_eval_accuracy: float | None
    queue_position: int | None
    error: dict | None
    final_metrics: dict
    status: dict = field(repr=False)
    config: dict = field(repr=False)
    note: str = ""                 # notes.json (lib.registry.notes): user text, shown as text
    tags: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in rundir.ACTIVE_STATES

    @property
    def terminal(self) -> bool:
        return self.state in rundir.TERMINAL_STATES

    def to_json(self) -> dict:
        """A JSON-ready dict (``python -m lib.runs show --json``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["path"] = str(self.path)
        out["tags"] = list(self.tags)
        return out


def view(run_dir: str | os.PathLike, status: dict | None = None, *, now: float | None = None) -> RunView:
    """The :class:`RunView` of one run (its status reconciled unless ``status`` is given)."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = status if status is not None else get_status(run_dir, now=now)
    config = rundir.read_config(run_dir)
    state = str(status.get("state") or "unknown")
    step = int(num(status.get("step")) or 0)
    total = num(status.get("total_steps"))
    total = int(total) if total else None
    if state == "finished":
        progress = 1.0
    else:
        progress = min(1.0, step / total) if total else None
    started = num(status.get("started_at"))
    finished = num(status.get("finished_at"))
    duration = None
    if started is not None:
        end = finished if state in rundir.TERMINAL_STATES and finished else now
        duration = max(0.0, end - started)
    final = status.get("final_metrics") if isinstance(status.get("final_metrics"), dict) else {}
    best = best_eval_accuracy(run_dir)
    if best is None:
        best = num(final.get("eval_accuracy"))
    position = status.get("queue_position")
    notes = read_notes(run_dir)
    return RunView(
        run_id=run_dir.name, path=run_dir, label=run_label(config, run_dir.name),
        owner=str(config.get("owner") or status.get("owner") or ""), state=state,
        display_state=str(status.get("display_state") or state), stalled=bool(status.get("stalled")),
        step=step, total_steps=total, progress=progress, model=str(config.get("model", "")),
        dataset=str(config.get("dataset", "")), task=str(config.get("task", "")),
        created_at=num(status.get("created_at")) or num(status.get("queued_at")), started_at=started,
        finished_at=finished, duration_s=duration, best_eval_accuracy=best,
        queue_position=position if isinstance(position, int) else None,
        error=status.get("error") if isinstance(status.get("error"), dict) else None,
        final_metrics=final, status=status, config=config, note=notes["note"], tags=tuple(notes["tags"]))


def list_runs(runs_dir: str | os.PathLike | None = None, *, now: float | None = None) -> list[RunView]:
    """Every run under ``runs_dir``, newest first, each reconciled against its process."""
    runs_dir = Path(runs_dir) if runs_dir else rundir.default_runs_dir()
    now = time.time() if now is None else now
    rows = []
    for run_dir in rundir.iter_run_dirs(runs_dir):
        try:
            rows.append(view(run_dir, get_status(run_dir, now=now), now=now))
        except OSError:
            continue  # deleted while we looked
    rows.sort(key=lambda r: r.run_id, reverse=True)  # ids start with the UTC creation time
    return rows

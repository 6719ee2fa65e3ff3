"""A run's state reconciled against its process, and the :class:`RunView` every page and the CLI show.

A ``queued``/``running`` run whose process is gone (pid and creation time checked) becomes ``failed``
with how it ended and its log tail; a live run without a recent heartbeat shows as ``stalled``
(derived, never written). Writes happen only when the job's process is gone, under the run's lock.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lib.config import run_label
from lib.registry import backend as backends
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
               locked: bool = False, write: bool = True, slurm_answer: tuple[dict, str | None] | None = None) -> dict:
    """The status as it really is (see the module docstring). Writes ``failed`` for a run whose process is gone.

    A run on Slurm is judged by what Slurm says about its job, never by a pid (``slurm_answer``: the
    run list's one batched answer, ``(states by job id, error)``; None: ask Slurm for this run alone).
    """
    now = time.time() if now is None else now
    stall_after = stall_after_s() if stall_after is None else stall_after
    status = dict(status or {})
    if not status:
        status = {"state": "unknown"}
    state = status.get("state")
    derived: dict[str, Any] = {"stalled": False, "heartbeat_age_s": None, "host": None,
                               "backend": backends.run_backend(None, status)}
    slurm_queue_position = None
    run: dict = {}
    if derived["backend"] == backends.SLURM or state in rundir.ACTIVE_STATES:
        run = rundir.read_run_info(run_dir)
        derived["backend"] = backends.run_backend(run, status)
    on_slurm = derived["backend"] == backends.SLURM
    if on_slurm:
        derived.update(_slurm_derived(run, status))
    if on_slurm and _slurm_recheck_cancelled(status):
        status, note = _slurm_cancelled_check(run_dir, status, run, now, locked=locked, write=write,
                                              slurm_answer=slurm_answer)
        derived["slurm_note"] = note
        derived.update({k: v for k, v in _slurm_derived(run, status).items() if k != "slurm_note"})
        state = status.get("state")
    if state in rundir.ACTIVE_STATES:
        derived["host"] = run.get("host")
        if on_slurm:
            status, live, extra = _slurm_liveness(run_dir, status, run, now, locked=locked, write=write,
                                                  slurm_answer=slurm_answer)
            if live == "relock":   # the job has ended: write that under the run's lock
                with rundir.run_lock(run_dir, timeout=1.0, give_up=True) as held:
                    if held:
                        return _reconcile(run_dir, status, now=now, stall_after=stall_after, locked=True,
                                          slurm_answer=slurm_answer)
                live = "changing"  # someone else is changing this run right now: leave it to them
            slurm_queue_position = extra.pop("queue_position", None)
            derived.update(extra)
        else:
            live = _liveness(run_dir, status, run, now)
        if live == "dead" and write and not on_slurm:
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
        elif live == "dead" and not on_slurm:
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
                if on_slurm and (state != "running" or derived.get("slurm_state") not in (None, "RUNNING")):
                    derived["stalled"] = False   # waiting in Slurm's queue is not a stall
    if state == "queued" and on_slurm:
        status["queue_position"] = slurm_queue_position
    elif state == "queued":
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


# ---------------------------------------------------------------------------------------------------
# Runs on Slurm
# ---------------------------------------------------------------------------------------------------
def _slurm_derived(run: dict, status: dict) -> dict:
    """What the run's own files say about its Slurm job (job id, nodes, Slurm's last recorded state)."""
    return {"slurm_job_id": run.get("slurm_job_id") or status.get("slurm_job_id"),
            "slurm_state": status.get("slurm_state"), "slurm_reason": status.get("slurm_reason"),
            "nodes": run.get("slurm_nodes") or status.get("slurm_nodes") or "", "slurm_note": None}


def _ask_slurm(job_id: str, slurm_answer) -> tuple[dict | None, str | None]:
    """(Slurm's state of the job or None when Slurm does not know it, None) or (None, why Slurm did not answer)."""
    from lib.errors import RunError
    from lib.registry import slurm
    if slurm_answer is not None:
        states, error = slurm_answer
        if error:
            return None, error
        if job_id in states:
            return states[job_id], None
    try:
        return slurm.job_state(job_id), None
    except RunError as exc:
        return None, str(exc)


def _not_answering(error: str) -> str:
    return f"Slurm did not answer, so this shows what the run's own files say: {error}"


def _slurm_end(info: dict | None, job_id: str | None, status: dict) -> tuple[str, str, dict]:
    """(state, message, extra status keys) for a run whose Slurm job has ended (or is unknown to Slurm)."""
    from lib.registry import slurm
    if not job_id:
        return "failed", "the job was never submitted to Slurm (the launch was interrupted)", {}
    if info is None:
        return "failed", slurm.lost_reason(job_id), {"slurm_state": None, "slurm_reason": None}
    extra = {"slurm_state": info["slurm_state"], "slurm_reason": info["reason"], "exit_code": info.get("exit_code")}
    if info.get("nodes"):
        extra["slurm_nodes"] = info["nodes"]
    if status.get("cancel_requested_at") and info["slurm_state"] in ("CANCELLED", "COMPLETED", "FAILED"):
        return "cancelled", "cancelled by request (Slurm ended the job)", extra
    if info["state"] == slurm.FINISHED:
        return "failed", (f"Slurm reports job {job_id} as completed, but the run did not record an end "
                          f"(its log may say why)"), extra
    return "failed", info["reason"] or f"Slurm reports job {job_id} as {info['slurm_state']}", extra


def _write_slurm_end(run_dir: Path, job_id: str | None, state: str, message: str, extra: dict, now: float) -> dict:
    tail = rundir.tail_text(run_dir / rundir.LOG, LOG_TAIL_BYTES)
    if state == "cancelled":
        error = {"type": "Cancelled", "message": message, "hint": "resume it to continue from the newest checkpoint"}
    else:
        error = {"type": "SlurmJobEnded", "message": message, "slurm_job_id": job_id,
                 "hint": "Resume the run to continue from its newest complete checkpoint. The end of its log "
                         "(below) may say more.", "log_tail": tail}
    # (no slurm_end_checked: should the job still record "cancelled" on its way out, the next read looks again)
    return rundir.update_status(run_dir, state=state, finished_at=now, error=error, queue_position=None,
                                reconciled_at=now, reconciled_by=socket.gethostname(), **extra)


def _slurm_liveness(run_dir: Path, status: dict, run: dict, now: float, *, locked: bool, write: bool,
                    slurm_answer) -> tuple[dict, str, dict]:
    """For a queued or running run on Slurm: (status, liveness, derived keys).

    Liveness is ``alive`` (Slurm queues or runs the job), ``starting`` (being submitted), ``elsewhere``
    (Slurm did not answer: the files are shown as they are),
    ``relock`` (the job ended: call again holding the run's lock) or ``ended`` (the end was written, or is
    shown).
    """
    from lib.registry import slurm
    job_id = run.get("slurm_job_id") or status.get("slurm_job_id")
    extra: dict[str, Any] = {}
    info = None
    if not job_id:
        started = num(run.get("launch_started_at")) or num(status.get("enqueued_at")) or num(status.get("created_at"))
        if started is None or now - started < LAUNCH_GRACE_S:
            return status, "starting", extra
    else:
        info, error = _ask_slurm(str(job_id), slurm_answer)
        if error:
            extra["slurm_note"] = _not_answering(error)
            return status, "elsewhere", extra
        if info and info["slurm_state"] in slurm.ACTIVE_SLURM_STATES:
            extra.update(slurm_state=info["slurm_state"], slurm_reason=info["reason"],
                         queue_position=info.get("queue_position"))
            if info.get("nodes"):
                extra["nodes"] = info["nodes"]
            return status, "alive", extra
    state, message, keys = _slurm_end(info, job_id, status)
    if not write:
        shown = {**status, "state": state, "error": {"type": "SlurmJobEnded", "message": message}, **keys}
        return shown, "ended", {k: v for k, v in keys.items() if k.startswith("slurm_")}
    if not locked:
        return status, "relock", extra
    fresh = rundir.read_status(run_dir)
    fresh_job = rundir.read_run_info(run_dir).get("slurm_job_id") or fresh.get("slurm_job_id")
    if fresh.get("state") not in rundir.ACTIVE_STATES or fresh_job != job_id:
        return fresh, "ended", {}   # the job wrote its own end meanwhile, or a resume submitted a new job
    written = _write_slurm_end(run_dir, job_id, state, message, keys, now)
    return written, "ended", {k: v for k, v in keys.items() if k.startswith("slurm_")}


def _slurm_recheck_cancelled(status: dict) -> bool:
    """A run the job itself recorded as ``cancelled`` (it got SIGTERM) without a cancel from the lab:
    Slurm may have ended it (time limit, memory, preemption, an scancel outside the lab)."""
    return (status.get("state") == "cancelled" and not status.get("cancel_requested_at")
            and not status.get("slurm_end_checked") and bool(status.get("slurm_job_id")))


def _slurm_cancelled_check(run_dir: Path, status: dict, run: dict, now: float, *, locked: bool, write: bool,
                           slurm_answer) -> tuple[dict, str | None]:
    """Turn such a run into ``failed`` with Slurm's reason once Slurm says how its job ended."""
    from lib.registry import slurm
    job_id = str(run.get("slurm_job_id") or status.get("slurm_job_id"))
    info, error = _ask_slurm(job_id, slurm_answer)
    if error:
        return status, _not_answering(error)
    if info and info["slurm_state"] in slurm.ACTIVE_SLURM_STATES:
        return status, None            # still ending: look again next time
    if info is None or info["state"] == slurm.FINISHED:
        changes = {"slurm_end_checked": True}
    else:
        changes = {"state": "failed", "slurm_state": info["slurm_state"], "slurm_reason": info["reason"],
                   "slurm_end_checked": True, "error": {
                       "type": "SlurmJobEnded", "message": info["reason"] or f"Slurm ended job {job_id}",
                       "slurm_job_id": job_id, "hint": "Resume the run to continue from its newest complete "
                       "checkpoint.", "log_tail": rundir.tail_text(run_dir / rundir.LOG, LOG_TAIL_BYTES)}}
    if not write:
        return {**status, **changes}, None
    with contextlib.ExitStack() as stack:
        if not locked:
            held = stack.enter_context(rundir.run_lock(run_dir, timeout=1.0, give_up=True))
            if not held:
                return status, None
        fresh = rundir.read_status(run_dir)
        if not _slurm_recheck_cancelled(fresh) or str(fresh.get("slurm_job_id")) != job_id:
            return fresh, None
        return rundir.update_status(run_dir, reconciled_at=now, reconciled_by=socket.gethostname(), **changes), None


def _slurm_jobs_to_ask(run_dir: Path) -> str | None:
    """The Slurm job id the run list must ask about for this run (None: the files are enough)."""
    status = rundir.read_status(run_dir)
    if status.get("state") not in rundir.ACTIVE_STATES and not _slurm_recheck_cancelled(status):
        return None
    run = rundir.read_run_info(run_dir)
    if backends.run_backend(run, status) != backends.SLURM:
        return None
    job_id = run.get("slurm_job_id") or status.get("slurm_job_id")
    return str(job_id) if job_id else None


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
    backend: str = "local"
    slurm_job_id: str | None = None
    slurm_state: str | None = None
    slurm_reason: str | None = None
    nodes: str = ""
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
        final_metrics=final, status=status, config=config,
        backend=str(status.get("backend") or backends.LOCAL),
        slurm_job_id=str(status["slurm_job_id"]) if status.get("slurm_job_id") else None,
        slurm_state=status.get("slurm_state"), slurm_reason=status.get("slurm_reason"),
        nodes=str(status.get("nodes") or status.get("slurm_nodes") or ""),
        note=notes["note"], tags=tuple(notes["tags"]))


def _slurm_answer(run_dirs: list[Path]) -> tuple[dict, str | None] | None:
    """One batched question to Slurm for every run on Slurm that needs it: (states by job id, error)."""
    from lib.errors import RunError
    ids = []
    for run_dir in run_dirs:
        try:
            job_id = _slurm_jobs_to_ask(run_dir)
        except OSError:
            continue
        if job_id:
            ids.append(job_id)
    if not ids:
        return None
    from lib.registry import slurm
    try:
        return slurm.job_states(ids), None
    except RunError as exc:
        return {}, str(exc)


def list_runs(runs_dir: str | os.PathLike | None = None, *, now: float | None = None) -> list[RunView]:
    """Every run under ``runs_dir``, newest first, each reconciled against its process."""
    runs_dir = Path(runs_dir) if runs_dir else rundir.default_runs_dir()
    now = time.time() if now is None else now
    rows = []
    run_dirs = list(rundir.iter_run_dirs(runs_dir))
    answer = _slurm_answer(run_dirs)
    for run_dir in run_dirs:
        try:
            status = _reconcile(run_dir, rundir.read_status(run_dir), now=now, slurm_answer=answer)
            rows.append(view(run_dir, status, now=now))
        except OSError:
            continue  # deleted while we looked
    rows.sort(key=lambda r: r.run_id, reverse=True)  # ids start with the UTC creation time
    return rows

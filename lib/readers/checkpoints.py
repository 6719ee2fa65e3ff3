"""What the Runs page says about each checkpoint: step, metrics, size, whether rotation keeps it, the best.

Checkpoints are described from ``trainer_state.json`` (JSON), ``metrics.jsonl`` and file sizes; no
pickle inside a checkpoint is ever opened.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lib.job.steps import rotate_checkpoints
from lib.readers.metrics import metric_series
from lib.store import jsonl, rundir
from lib.store.checkpoint_folders import checkpoint_folders, folder_size, has_weights
from lib.util.fmt import num

_STATE_CACHE: dict[str, tuple[int, int, dict | None]] = {}


def clear_cache() -> None:
    """Forget cached trainer states (tests and cold-start benchmarks)."""
    _STATE_CACHE.clear()


def read_trainer_state(path: str | os.PathLike) -> dict | None:
    """A checkpoint's trainer_state.json (give the checkpoint folder or the file), or None.
    Cached by size and modification time (a long run's log history makes it megabytes of JSON)."""
    path = Path(path)
    if path.is_dir():
        path = path / "trainer_state.json"
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = str(path)
    hit = _STATE_CACHE.get(key)
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return hit[2]
    data = rundir.read_json(path)
    data = data if isinstance(data, dict) else None
    if len(_STATE_CACHE) >= jsonl.MAX_CACHED_FILES:
        _STATE_CACHE.pop(next(iter(_STATE_CACHE)), None)
    _STATE_CACHE[key] = (st.st_size, st.st_mtime_ns, data)
    return data


_TOP_KEY_RE = {name: re.compile(rb'^  "' + name.encode() + rb'": (.*?),?\r?$', re.MULTILINE)
               for name in ("best_model_checkpoint", "epoch", "global_step")}


def trainer_state_summary(path: str | os.PathLike) -> dict | None:
    """global_step, epoch, best_model_checkpoint and whether the file is whole, read from the first and
    last bytes of trainer_state.json only (transformers writes it with sorted keys, so these come
    before the long log history). Falls back to parsing the whole file for other layouts."""
    path = Path(path)
    if path.is_dir():
        path = path / "trainer_state.json"
    try:
        with rundir.open_nofollow(path, "rb") as fh:
            head = fh.read(4096)
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64))
            tail = fh.read()
    except OSError:
        return None
    found = {}
    for name, rx in _TOP_KEY_RE.items():
        m = rx.search(head)
        if m:
            try:
                found[name] = json.loads(m.group(1).decode("utf-8", errors="replace"))
            except ValueError:
                pass
    if not isinstance(found.get("global_step"), int):
        state = read_trainer_state(path)
        if state is None:
            return {"complete": False, "global_step": None, "epoch": None, "best_model_checkpoint": None}
        return {"complete": "global_step" in state, "global_step": state.get("global_step"),
                "epoch": state.get("epoch"), "best_model_checkpoint": state.get("best_model_checkpoint")}
    whole = head.lstrip().startswith(b"{") and tail.rstrip().endswith(b"}")
    return {"complete": whole, "global_step": found["global_step"], "epoch": found.get("epoch"),
            "best_model_checkpoint": found.get("best_model_checkpoint")}


# ---------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    name: str
    step: int
    path: Path
    on_disk: bool
    complete: bool
    epoch: float | None
    size_bytes: int
    metrics: dict[str, float]
    kept: bool          # survives save_total_limit rotation (now, and at the next save for a live run)
    best: bool
    note: str


def best_metric_key(config: dict) -> tuple[str, bool]:
    """(eval metric key, greater is better) for the run's metric_for_best_model."""
    metric = str(config.get("metric_for_best_model") or "accuracy")
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    return key, not key.endswith("loss")


def list_checkpoints(run_dir: str | os.PathLike, status: dict | None = None) -> list[Checkpoint]:
    """Every checkpoint the run saved (from the save events and the folder), oldest first.

    Eval metrics come from metrics.jsonl (or the checkpoint's trainer_state.json); ``best`` marks
    the checkpoint on disk with the best ``metric_for_best_model``; ``kept`` says whether
    ``save_total_limit`` keeps it (for a live run: also after the next save).
    """
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    status = status if isinstance(status, dict) else rundir.read_status(run_dir)
    series = metric_series(run_dir)
    folders = dict(checkpoint_folders(run_dir))
    saves = {int(r["step"]): r for r in series.save if num(r.get("step")) is not None}
    evals = {int(r["step"]): r for r in series.eval if num(r.get("step")) is not None}
    key, greater = best_metric_key(config)
    limit = config.get("save_total_limit")
    limit = int(limit) if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None

    states: dict[int, dict | None] = {s: trainer_state_summary(p) for s, p in folders.items()}
    items: list[Checkpoint] = []
    for step in sorted(set(saves) | set(folders)):
        path = folders.get(step, run_dir / rundir.CHECKPOINTS / f"checkpoint-{step}")
        tstate = states.get(step)
        metrics = {k: float(v) for k, v in (evals.get(step) or {}).items()
                   if str(k).startswith("eval_") and num(v) is not None}
        if not metrics and tstate and tstate["complete"]:  # not in metrics.jsonl: the checkpoint's own history
            for entry in (read_trainer_state(path) or {}).get("log_history") or []:
                if isinstance(entry, dict) and num(entry.get("step")) == step:
                    metrics.update({k: float(v) for k, v in entry.items()
                                    if str(k).startswith("eval_") and num(v) is not None})
        epoch = num((saves.get(step) or {}).get("epoch"))
        if epoch is None and tstate:
            epoch = num(tstate.get("epoch"))
        on_disk = step in folders
        complete = bool(on_disk and tstate and tstate["complete"] and has_weights(path))
        items.append(Checkpoint(name=f"checkpoint-{step}", step=step, path=path, on_disk=on_disk,
                                complete=complete, epoch=epoch,
                                size_bytes=folder_size(path) if on_disk else 0, metrics=metrics,
                                kept=on_disk, best=False, note=""))

    # Best: the trainer's own choice when it tracked one, else the best metric among those on disk.
    best_step = None
    for tstate in states.values():
        name = (tstate or {}).get("best_model_checkpoint")
        if isinstance(name, str) and Path(name).name.startswith("checkpoint-"):
            try:
                best_step = int(Path(name).name.split("-", 1)[1])
            except ValueError:
                pass
    if best_step is None or best_step not in folders:
        scored = [(c.metrics[key], c.step) for c in items if c.on_disk and key in c.metrics]
        if scored:
            best_step = min(scored, key=lambda x: (-x[0] if greater else x[0], x[1]))[1]  # ties: earliest
    load_best = bool(config.get("load_best_model_at_end"))
    live = str(status.get("state")) in rundir.ACTIVE_STATES
    on_disk_steps = [c.step for c in items if c.on_disk]
    after_next = set(rotate_checkpoints(on_disk_steps + [max(on_disk_steps, default=0) + 1], limit,
                            best_step if load_best else None)) if live else set(on_disk_steps)
    for c in items:
        c.best = c.step == best_step and c.on_disk
        if not c.on_disk:
            c.kept = False
            c.note = "deleted by save_total_limit" if limit else "no longer on disk"
        elif not c.complete:
            c.note = "incomplete (being written, or torn by a crash)"
        if c.on_disk:
            c.kept = c.step in after_next
            if not c.kept:
                c.note = "removed at the next save (save_total_limit)"
            elif c.best and load_best:
                c.note = "best: kept by load_best_model_at_end"
    return items

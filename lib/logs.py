"""Tolerant, fast readers of what a run leaves on disk: metrics, progress, checkpoints, predictions.

Everything here reads files that another process may be writing right now, so every reader
accepts a torn last line, corrupt lines, missing files and a run with nothing logged yet, and
none of them raises for a damaged file: it returns what can be read.

``metrics.jsonl`` is read incrementally. For each file the reader remembers the byte offset it has
parsed up to and the rows parsed so far; when the file grew it reads only the new bytes, when it
shrank or was replaced (another inode, different first bytes) it starts over, and when size and
modification time are unchanged it returns the cached rows without reading anything. A run with
10,000 logged steps is parsed once, then costs one ``stat`` per refresh.

Nothing here unpickles anything: checkpoints are described from ``trainer_state.json`` (JSON) and
file sizes; ``optimizer.pt``, ``training_args.bin`` and friends are never opened.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lib import rundir

try:  # optional: about 3x faster parsing of large metric files; the standard library works too
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

TERMINAL_STATES = ("finished", "failed", "cancelled")
_HEAD_BYTES = 64


# ---------------------------------------------------------------------------------------------------
# Incremental JSON-lines reader
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    offset: int            # bytes parsed so far (always just after a newline)
    head: bytes            # the file's first bytes, to notice a file rewritten in place
    rows: list             # parsed rows (a new list object whenever rows are added)
    version: int           # bumps whenever ``rows`` changes
    derived: dict = field(default_factory=dict)  # caches built from ``rows`` (keyed by name)


_CACHE: dict[str, _Entry] = {}
_CACHE_LOCK = threading.Lock()
_MAX_CACHED_FILES = 512     # metrics files: a few MB each even at 10,000 lines
_BIG_CACHE: dict[str, _Entry] = {}
_MAX_BIG_FILES = 4          # eval predictions hold every review's text: keep only the latest few
_versions = iter(range(1, 1 << 62))


def _parse_lines(chunk: bytes) -> list[dict]:
    """JSON objects from complete lines; corrupt lines and non-objects are skipped."""
    if not chunk or chunk.isspace():
        return []
    body = b"[" + chunk.rstrip(b"\n").replace(b"\n", b",") + b"]"  # all lines as one JSON array: fast
    try:
        rows = _orjson.loads(body) if _orjson is not None else json.loads(body.decode("utf-8", errors="replace"))
        return [r for r in rows if isinstance(r, dict)]
    except ValueError:  # orjson.JSONDecodeError is a ValueError too
        pass
    out: list[dict] = []  # a bad or blank line: parse line by line and drop the bad ones
    for line in chunk.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8", errors="replace"))
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _read_jsonl_entry(path: str | os.PathLike, big: bool = False) -> _Entry | None:
    cache, limit = (_BIG_CACHE, _MAX_BIG_FILES) if big else (_CACHE, _MAX_CACHED_FILES)
    key = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(key)
    except OSError:
        with _CACHE_LOCK:
            cache.pop(key, None)
        return None
    with _CACHE_LOCK:
        entry = cache.pop(key, None)  # re-inserted below: the dict's order is least recently used first
        if entry is not None:
            cache[key] = entry
    if entry is not None and (entry.dev, entry.ino) == (st.st_dev, st.st_ino) \
            and entry.size == st.st_size and entry.mtime_ns == st.st_mtime_ns:
        return entry  # unchanged: no read at all
    try:
        with open(key, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
            start = 0
            if entry is not None and (entry.dev, entry.ino) == (st.st_dev, st.st_ino) \
                    and st.st_size >= entry.offset and st.st_size > entry.size \
                    and head[:len(entry.head)] == entry.head:
                start = entry.offset  # grown: read only the new bytes
            fh.seek(start)
            chunk = fh.read(max(0, st.st_size - start))
    except OSError:
        return entry
    last_newline = chunk.rfind(b"\n")
    complete = chunk[:last_newline + 1] if last_newline >= 0 else b""  # a torn last line waits
    new_rows = _parse_lines(complete)
    if start and entry is not None:
        rows = entry.rows + new_rows if new_rows else entry.rows
        changed = bool(new_rows)
    else:
        rows, changed = new_rows, True
    fresh = _Entry(dev=st.st_dev, ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                   offset=start + len(complete), head=head[:min(_HEAD_BYTES, start + len(complete))],
                   rows=rows,
                   version=next(_versions) if (changed or entry is None) else entry.version,
                   derived={} if (changed or entry is None) else entry.derived)
    with _CACHE_LOCK:
        cache.pop(key, None)
        while len(cache) >= limit:
            cache.pop(next(iter(cache)))
        cache[key] = fresh
    return fresh


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every complete, valid JSON-object line of ``path`` (cached; treat the list as read-only).

    A missing file gives ``[]``; a torn last line is left for the next call; corrupt lines are skipped.
    """
    entry = _read_jsonl_entry(path)
    return entry.rows if entry is not None else []


def jsonl_version(path: str | os.PathLike) -> int:
    """A number that changes whenever the parsed rows of ``path`` change (0 for a missing file)."""
    entry = _read_jsonl_entry(path)
    return entry.version if entry is not None else 0


def _derived(path: Path, name: str, build, big: bool = False):
    """Cache ``build(rows)`` alongside the parsed rows of ``path``; rebuilt when the rows change."""
    entry = _read_jsonl_entry(path, big)
    if entry is None:
        return build([])
    cached = entry.derived.get(name)
    if cached is None:
        cached = build(entry.rows)
        entry.derived[name] = cached
    return cached


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _BIG_CACHE.clear()
    _STATE_CACHE.clear()
    _CONFIG_CACHE.clear()


# ---------------------------------------------------------------------------------------------------
# Small JSON files
# ---------------------------------------------------------------------------------------------------
def read_config(run_dir: str | os.PathLike) -> dict:
    """config.json as a plain dict ({} when missing or damaged)."""
    data = rundir.read_json(Path(run_dir) / rundir.CONFIG, default={})
    return data if isinstance(data, dict) else {}


def read_baseline(run_dir: str | os.PathLike) -> dict | None:
    """The TF-IDF baseline scored on the run's eval split, or None."""
    data = rundir.read_json(Path(run_dir) / rundir.BASELINE)
    return data if isinstance(data, dict) and _num(data.get("accuracy")) is not None else None


_STATE_CACHE: dict[str, tuple[int, int, dict | None]] = {}


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
    if len(_STATE_CACHE) >= _MAX_CACHED_FILES:
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
        with open(path, "rb") as fh:
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


def log_tail(run_dir: str | os.PathLike, max_bytes: int = 6000) -> str:
    return rundir.tail_text(Path(run_dir) / rundir.LOG, max_bytes=max_bytes)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------------
# Status and the run list
# ---------------------------------------------------------------------------------------------------
def get_status(run_dir: str | os.PathLike) -> dict:
    """status.json, reconciled against the live process by the run registry when it is available."""
    try:
        from lib import runs as registry
        getter = getattr(registry, "get_status", None)
    except ImportError:
        getter = None
    if getter is not None:
        try:
            status = getter(Path(run_dir))
            if isinstance(status, dict):
                return status
        except Exception:  # noqa: BLE001 - never let the registry break a read-only view
            pass
    return rundir.read_status(run_dir)


@dataclass
class RunSummary:
    run_id: str
    path: Path
    state: str
    owner: str
    label: str
    model: str
    dataset: str
    created_at: float | None
    step: int
    total_steps: int | None
    error: dict | None
    final_metrics: dict
    stalled: bool = False

    @property
    def active(self) -> bool:
        return self.state in rundir.ACTIVE_STATES


_CONFIG_CACHE: dict[str, tuple[int, dict]] = {}


def _config_cached(run_dir: Path) -> dict:
    path = run_dir / rundir.CONFIG
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return {}
    hit = _CONFIG_CACHE.get(str(path))
    if hit and hit[0] == mtime:
        return hit[1]
    data = read_config(run_dir)
    _CONFIG_CACHE[str(path)] = (mtime, data)
    return data


def summarize_run(run_dir: str | os.PathLike, status: dict | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    status = status if isinstance(status, dict) else get_status(run_dir)
    config = _config_cached(run_dir)
    label = str(config.get("run_name") or "").strip() or (
        f"{config.get('model', '?')} on {config.get('dataset', '?')}" if config else run_dir.name)
    owner = str(config.get("owner") or status.get("owner") or "")
    created = _num(status.get("created_at")) or _num(status.get("queued_at"))
    return RunSummary(
        run_id=run_dir.name, path=run_dir, state=str(status.get("state") or "unknown"), owner=owner,
        label=label, model=str(config.get("model", "")), dataset=str(config.get("dataset", "")),
        created_at=created, step=int(_num(status.get("step")) or 0),
        total_steps=int(_num(status.get("total_steps"))) if _num(status.get("total_steps")) else None,
        error=status.get("error") if isinstance(status.get("error"), dict) else None,
        final_metrics=status.get("final_metrics") if isinstance(status.get("final_metrics"), dict) else {},
        stalled=bool(status.get("stalled")))


def list_runs(runs_dir: str | os.PathLike) -> list[RunSummary]:
    """Every run under ``runs_dir``, newest first, with its state reconciled by the run registry
    (``lib.runs.get_status``: a run whose process died shows as failed) when it is available."""
    out = []
    for path in rundir.iter_run_dirs(runs_dir):
        try:
            out.append(summarize_run(path, get_status(path)))
        except OSError:
            continue  # deleted while we looked
    out.sort(key=lambda r: r.run_id, reverse=True)  # run ids start with the UTC launch time
    return out


# ---------------------------------------------------------------------------------------------------
# Metrics: rows, chart series, progress
# ---------------------------------------------------------------------------------------------------
def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All rows of metrics.jsonl (cached and incremental; read-only list)."""
    return read_jsonl(Path(run_dir) / rundir.METRICS)


@dataclass
class MetricSeries:
    """The rows of one run split by event, one row per step (a resumed run's re-logged steps replace
    the earlier ones), sorted by step."""
    log: list[dict]
    eval: list[dict]
    save: list[dict]
    end: list[dict]
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def column(self, event: str, key: str) -> tuple[list, list]:
        """(rows, values) of ``event`` rows that have a finite number under ``key``."""
        rows, values = [], []
        isfinite = math.isfinite
        for r in getattr(self, event):
            v = r.get(key)
            if (type(v) is float or type(v) is int) and isfinite(v):  # not bool, not NaN/inf
                rows.append(r)
                values.append(float(v))
        return rows, values

    def xy(self, event: str, key: str, axis: str = "step") -> tuple[list, list]:
        """(x values, y values) of ``key`` in ``event`` rows, as a chart plots them. Memoized: the
        series is rebuilt whenever metrics.jsonl gains rows, so this never goes stale."""
        k = (event, key, axis)
        if k not in self._memo:
            rows, values = self.column(event, key)
            self._memo[k] = (x_values(rows, axis), values)
        return self._memo[k]


def _build_series(rows: list[dict]) -> MetricSeries:
    # Fast path: steps only grow within each event (a run that was never resumed).
    out: dict[str, list[dict]] = {"log": [], "eval": [], "save": [], "end": []}
    last = {"log": -1, "eval": -1, "save": -1, "end": -1}
    for row in rows:
        event = row.get("event")
        step = row.get("step")
        if event not in out or type(step) is not int:
            break
        if step <= last[event]:
            break
        last[event] = step
        out[event].append(row)
    else:
        return MetricSeries(**out)
    by: dict[str, dict[int, dict]] = {"log": {}, "eval": {}, "save": {}, "end": {}}
    for row in rows:
        event = row.get("event")
        if event not in by:
            event = "eval" if any(str(k).startswith("eval_") for k in row) else "log"
        step = _num(row.get("step"))
        if step is None:
            continue
        by[event][int(step)] = row  # later rows win: a resumed run re-logs the steps after its checkpoint
    return MetricSeries(**{k: [v[s] for s in sorted(v)] for k, v in by.items()})


def metric_series(run_dir: str | os.PathLike) -> MetricSeries:
    return _derived(Path(run_dir) / rundir.METRICS, "series", _build_series)


X_AXES = {"step": "step", "epoch": "epoch", "time": "elapsed_s"}


def x_values(rows: list[dict], axis: str) -> list[float]:
    """The x coordinate of each row: step, epoch, or training time in minutes."""
    key = X_AXES.get(axis, "step")
    scale = 1 / 60.0 if axis == "time" else 1.0
    nan, isfinite = float("nan"), math.isfinite
    out = []
    for r in rows:
        v = r.get(key)
        out.append(v * scale if (type(v) is float or type(v) is int) and isfinite(v) else nan)
    return out


def ema(values: Iterable[float], smoothing: float) -> list[float]:
    """Exponential moving average with TensorBoard's start-up correction (0 = raw, 0.99 = very smooth)."""
    smoothing = min(max(float(smoothing), 0.0), 0.999)
    out, last, weight = [], 0.0, 0.0
    for v in values:
        last = last * smoothing + (1 - smoothing) * v
        weight = weight * smoothing + (1 - smoothing)
        out.append(last / weight if weight else v)
    return out


@dataclass
class Progress:
    state: str
    phase: str | None
    step: int
    total_steps: int | None
    fraction: float | None
    epoch: float | None
    num_epochs: float | None
    elapsed_s: float | None
    eta_s: float | None
    steps_per_s: float | None
    samples_per_s: float | None
    heartbeat_age_s: float | None
    queue_position: int | None
    error: dict | None
    exit_code: int | None
    stalled: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def active(self) -> bool:
        return self.state in rundir.ACTIVE_STATES


def recent_rate(log_rows: list[dict], window: int = 20) -> float | None:
    """Optimizer steps per second over the last ``window`` logged steps (training time)."""
    pts = [(_num(r.get("step")), _num(r.get("elapsed_s"))) for r in log_rows[-(window + 1):]]
    pts = [(s, t) for s, t in pts if s is not None and t is not None]
    if len(pts) < 2:
        return None
    (s0, t0), (s1, t1) = pts[0], pts[-1]
    if s1 <= s0 or t1 <= t0:
        return None
    return (s1 - s0) / (t1 - t0)


def progress(run_dir: str | os.PathLike, status: dict | None = None, now: float | None = None) -> Progress:
    """Where a run stands: state, step/total, epoch, elapsed, ETA from the recent step rate, samples/s."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = status if isinstance(status, dict) else get_status(run_dir)
    series = metric_series(run_dir)
    state = str(status.get("state") or "unknown")
    last_any = max((r for r in (series.log[-1:] + series.eval[-1:] + series.save[-1:])),
                   key=lambda r: _num(r.get("step")) or 0, default=None)
    step = int(_num(status.get("step")) or 0)
    if last_any is not None:
        step = max(step, int(_num(last_any.get("step")) or 0))
    total = _num(status.get("total_steps")) or (_num(last_any.get("total_steps")) if last_any else None)
    total = int(total) if total else None
    epoch = _num(status.get("epoch"))
    if last_any is not None and _num(last_any.get("epoch")) is not None:
        epoch = max(epoch or 0.0, float(last_any["epoch"]))
    heartbeat = _num(status.get("heartbeat"))
    elapsed = _num(status.get("elapsed_s"))
    if elapsed is None and last_any is not None:
        elapsed = _num(last_any.get("elapsed_s"))
    if state == "running":
        if elapsed is not None and heartbeat is not None:
            elapsed += max(0.0, now - heartbeat)
        elif _num(status.get("started_at")) is not None:
            elapsed = max(0.0, now - float(status["started_at"]))
    elif state == "queued":
        since = _num(status.get("queued_at")) or _num(status.get("created_at"))
        elapsed = max(0.0, now - since) if since else None
    rate = recent_rate(series.log)
    if rate is None and state == "running" and step and elapsed:
        rate = step / elapsed
    eta = None
    if state == "running" and total and rate:
        eta = max(0.0, (total - step) / rate)
    samples = [v for v in (_num(r.get("samples_per_s")) for r in series.log[-5:]) if v is not None]
    config = _config_cached(run_dir)
    num_epochs = _num(config.get("num_train_epochs"))
    if total and step >= total and state == "finished":
        fraction = 1.0
    else:
        fraction = min(1.0, step / total) if total else (1.0 if state == "finished" else None)
    qp = _num(status.get("queue_position"))
    ec = _num(status.get("exit_code"))
    return Progress(
        state=state, phase=status.get("phase") if isinstance(status.get("phase"), str) else None,
        step=step, total_steps=total, fraction=fraction, epoch=epoch, num_epochs=num_epochs,
        elapsed_s=elapsed, eta_s=eta, steps_per_s=rate,
        samples_per_s=sum(samples) / len(samples) if samples else None,
        heartbeat_age_s=max(0.0, now - heartbeat) if heartbeat else None,
        queue_position=int(qp) if qp is not None else None,
        error=status.get("error") if isinstance(status.get("error"), dict) else None,
        exit_code=int(ec) if ec is not None else None, stalled=bool(status.get("stalled")))


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def final_metrics(run_dir: str | os.PathLike, status: dict | None = None) -> dict[str, float]:
    """The run's last evaluation: status.json's final metrics, else the last eval row."""
    status = status if isinstance(status, dict) else get_status(run_dir)
    final = status.get("final_metrics")
    if isinstance(final, dict) and final:
        return {k: float(v) for k, v in final.items() if _num(v) is not None}
    series = metric_series(run_dir)
    if series.eval:
        return {k: float(v) for k, v in series.eval[-1].items() if str(k).startswith("eval_") and _num(v) is not None}
    return {}


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


def _folder_size(path: Path) -> int:
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                    elif entry.is_dir(follow_symlinks=False):
                        total += _folder_size(Path(entry.path))
                except OSError:
                    continue
    except OSError:
        pass
    return total


def _checkpoint_folders(run_dir: Path) -> dict[int, Path]:
    folder = run_dir / rundir.CHECKPOINTS
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith("checkpoint-") and entry.is_dir(follow_symlinks=False):
            try:
                found[int(entry.name.split("-", 1)[1])] = Path(entry.path)
            except ValueError:
                continue
    return found


def best_metric_key(config: dict) -> tuple[str, bool]:
    """(eval metric key, greater is better) for the run's metric_for_best_model."""
    metric = str(config.get("metric_for_best_model") or "accuracy")
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    return key, not key.endswith("loss")


def _surviving(steps: list[int], limit: int | None, best: int | None) -> set[int]:
    """Which steps transformers' rotate_checkpoints keeps: the newest, the best, then the newest others."""
    steps = sorted(steps)
    if not limit or limit <= 0 or len(steps) <= limit:
        return set(steps)
    protected = {steps[-1]} | ({best} if best in steps else set())
    keep = max(limit, len(protected))
    remaining, dropped = len(steps), set()
    for s in steps:
        if remaining <= keep:
            break
        if s not in protected:
            dropped.add(s)
            remaining -= 1
    return set(steps) - dropped


def list_checkpoints(run_dir: str | os.PathLike, status: dict | None = None) -> list[Checkpoint]:
    """Every checkpoint the run saved (from the save events and the folder), oldest first.

    Eval metrics come from metrics.jsonl (or the checkpoint's trainer_state.json); ``best`` marks
    the checkpoint on disk with the best ``metric_for_best_model``; ``kept`` says whether
    ``save_total_limit`` keeps it (for a live run: also after the next save).
    """
    run_dir = Path(run_dir)
    config = _config_cached(run_dir)
    status = status if isinstance(status, dict) else get_status(run_dir)
    series = metric_series(run_dir)
    folders = _checkpoint_folders(run_dir)
    saves = {int(r["step"]): r for r in series.save if _num(r.get("step")) is not None}
    evals = {int(r["step"]): r for r in series.eval if _num(r.get("step")) is not None}
    key, greater = best_metric_key(config)
    limit = config.get("save_total_limit")
    limit = int(limit) if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None

    states: dict[int, dict | None] = {s: trainer_state_summary(p) for s, p in folders.items()}
    items: list[Checkpoint] = []
    for step in sorted(set(saves) | set(folders)):
        path = folders.get(step, run_dir / rundir.CHECKPOINTS / f"checkpoint-{step}")
        tstate = states.get(step)
        metrics = {k: float(v) for k, v in (evals.get(step) or {}).items()
                   if str(k).startswith("eval_") and _num(v) is not None}
        if not metrics and tstate and tstate["complete"]:  # not in metrics.jsonl: the checkpoint's own history
            for entry in (read_trainer_state(path) or {}).get("log_history") or []:
                if isinstance(entry, dict) and _num(entry.get("step")) == step:
                    metrics.update({k: float(v) for k, v in entry.items()
                                    if str(k).startswith("eval_") and _num(v) is not None})
        epoch = _num((saves.get(step) or {}).get("epoch"))
        if epoch is None and tstate:
            epoch = _num(tstate.get("epoch"))
        on_disk = step in folders
        complete = bool(on_disk and tstate and tstate["complete"] and _has_weights(path))
        items.append(Checkpoint(name=f"checkpoint-{step}", step=step, path=path, on_disk=on_disk,
                                complete=complete, epoch=epoch,
                                size_bytes=_folder_size(path) if on_disk else 0, metrics=metrics,
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
    after_next = _surviving(on_disk_steps + [max(on_disk_steps, default=0) + 1], limit,
                            best_step if load_best else None) if live else set(on_disk_steps)
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


def _has_weights(path: Path) -> bool:
    try:
        return any(n.endswith(".safetensors") for n in os.listdir(path))
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------
# Eval predictions: error analysis
# ---------------------------------------------------------------------------------------------------
def _predictions_frame(rows: list[dict]):
    import numpy as np
    import pandas as pd
    clean = []
    for r in rows:
        probs = r.get("probs")
        label, pred = r.get("label"), r.get("pred")
        if not isinstance(probs, list) or len(probs) < 2 or not isinstance(label, int) or not isinstance(pred, int):
            continue
        if any(_num(p) is None for p in probs):
            continue
        text = r.get("text") if isinstance(r.get("text"), str) else ""
        clean.append((int(r.get("index", len(clean))), text, label, pred, [float(p) for p in probs]))
    if not clean:
        return pd.DataFrame(columns=["index", "text", "label", "pred", "confidence", "p_true", "p_pos",
                                     "correct", "words", "chars"])
    probs = np.array([c[4][:2] for c in clean], dtype=float)
    labels = np.array([c[2] for c in clean])
    preds = np.array([c[3] for c in clean])
    texts = [c[1] for c in clean]
    idx = np.arange(len(clean))
    df = pd.DataFrame({
        "index": [c[0] for c in clean], "text": texts, "label": labels, "pred": preds,
        "confidence": probs[idx, np.clip(preds, 0, 1)], "p_true": probs[idx, np.clip(labels, 0, 1)],
        "p_pos": probs[:, 1], "correct": labels == preds,
        "words": [len(t.split()) for t in texts], "chars": [len(t) for t in texts]})
    return df


def predictions_frame(run_dir: str | os.PathLike):
    """The eval predictions as a DataFrame: index, text, label, pred, confidence (probability of the
    predicted label), p_true, p_pos, correct, words, chars. Empty when the run has none yet."""
    return _derived(Path(run_dir) / rundir.PREDICTIONS, "frame", _predictions_frame, big=True)


def confusion_matrix(df, n_labels: int = 2) -> list[list[int]]:
    """counts[true][pred]."""
    counts = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(df["label"].tolist(), df["pred"].tolist()):
        if 0 <= t < n_labels and 0 <= p < n_labels:
            counts[t][p] += 1
    return counts


def filter_predictions(df, *, true_label: int | None = None, pred_label: int | None = None,
                       min_words: int | None = None, max_words: int | None = None,
                       only_wrong: bool = False):
    mask = df["label"] == df["label"]
    if true_label is not None:
        mask &= df["label"] == true_label
    if pred_label is not None:
        mask &= df["pred"] == pred_label
    if min_words is not None:
        mask &= df["words"] >= min_words
    if max_words is not None:
        mask &= df["words"] <= max_words
    if only_wrong:
        mask &= ~df["correct"]
    return df[mask]


def confidently_wrong(df, k: int = 10):
    """The ``k`` wrong predictions the model was surest about."""
    wrong = df[~df["correct"]] if len(df) else df
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(k)


def reliability(df, n_bins: int = 10, n_labels: int = 2) -> tuple[list[dict], float | None]:
    """Reliability diagram bins over the confidence range [1/n_labels, 1] and the expected
    calibration error (ECE = sum over bins of share × |accuracy − confidence|)."""
    if not len(df):
        return [], None
    lo_all = 1.0 / n_labels
    width = (1.0 - lo_all) / n_bins
    conf = df["confidence"].tolist()
    corr = df["correct"].tolist()
    sums = [[0, 0.0, 0] for _ in range(n_bins)]  # count, confidence sum, correct count
    for c, ok in zip(conf, corr):
        b = min(n_bins - 1, max(0, int((c - lo_all) / width + 1e-9))) if width > 0 else 0  # 0.6 is in [0.6, 0.7)
        sums[b][0] += 1
        sums[b][1] += c
        sums[b][2] += int(bool(ok))
    n = len(conf)
    bins, ece = [], 0.0
    for i, (count, csum, ok) in enumerate(sums):
        lo, hi = lo_all + i * width, lo_all + (i + 1) * width
        if count:
            confidence, accuracy = csum / count, ok / count
            ece += count / n * abs(accuracy - confidence)
        else:
            confidence = accuracy = None
        bins.append({"lo": lo, "hi": hi, "count": count, "confidence": confidence, "accuracy": accuracy})
    return bins, ece


# ---------------------------------------------------------------------------------------------------
# Comparing runs
# ---------------------------------------------------------------------------------------------------
def compare_configs(configs: dict[str, dict]) -> tuple[list[dict], set[str]]:
    """One row per config field ({"field", <run id>: value...}) and the set of fields that differ."""
    fields: list[str] = []
    for cfg in configs.values():
        for k in cfg:
            if k not in fields:
                fields.append(k)
    rows, differing = [], set()
    for f in fields:
        values = [json.dumps(cfg.get(f), sort_keys=True, default=str) for cfg in configs.values()]
        row = {"field": f}
        for run_id, cfg in configs.items():
            v = cfg.get(f, "")
            row[run_id] = v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v)
        if len(set(values)) > 1:
            differing.add(f)
        rows.append(row)
    return rows, differing

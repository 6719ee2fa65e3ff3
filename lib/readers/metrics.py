"""Metric series of a run (``metrics.jsonl``), its final metrics, TF-IDF baseline and log tail.

The readers in :mod:`lib.readers` read files that another process may be writing right now.

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

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lib.store import jsonl, rundir
from lib.store.jsonl import read_jsonl
from lib.util.fmt import num


# ---------------------------------------------------------------------------------------------------
# Small JSON files
# ---------------------------------------------------------------------------------------------------
def read_baseline(run_dir: str | os.PathLike) -> dict | None:
    """The TF-IDF baseline scored on the run's eval split, or None."""
    data = rundir.read_json(Path(run_dir) / rundir.BASELINE)
    return data if isinstance(data, dict) and num(data.get("accuracy")) is not None else None


def log_tail(run_dir: str | os.PathLike, max_bytes: int = 6000) -> str:
    return rundir.tail_text(Path(run_dir) / rundir.LOG, max_bytes=max_bytes)


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
    system: list[dict] = field(default_factory=list)  # CPU/memory/GPU readings, in the order they were taken
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
    system = [r for r in rows if r.get("event") == "system"]
    if system:
        rows = [r for r in rows if r.get("event") != "system"]
    series = _build_training_series(rows)
    series.system = system
    return series


def _build_training_series(rows: list[dict]) -> MetricSeries:
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
        step = num(row.get("step"))
        if step is None:
            continue
        by[event][int(step)] = row  # later rows win: a resumed run re-logs the steps after its checkpoint
    return MetricSeries(**{k: [v[s] for s in sorted(v)] for k, v in by.items()})


def metric_series(run_dir: str | os.PathLike) -> MetricSeries:
    return jsonl.derived(Path(run_dir) / rundir.METRICS, "series", _build_series)


SYSTEM_KEYS = ("cpu_percent", "rss_mb")


def system_series(run_dir: str | os.PathLike) -> dict[str, tuple[list, list]]:
    """The run's system readings as chart series: {key: (elapsed minutes, values)} for ``cpu_percent``,
    ``rss_mb`` and each GPU's ``gpu<i>_util`` / ``gpu<i>_mem_mb`` present in the rows ({} when none)."""
    series = metric_series(run_dir)
    keys = list(SYSTEM_KEYS)
    for row in series.system:
        for k in row:
            if str(k).startswith("gpu") and (k.endswith("_util") or k.endswith("_mem_mb")) and k not in keys:
                keys.append(k)
    out = {}
    for key in keys:
        x, y = series.xy("system", key, axis="time")
        if y:
            out[key] = (x, y)
    return out


def latest_system(run_dir: str | os.PathLike) -> dict | None:
    """The run's most recent system reading (``rss_mb``, ``cpu_percent``, ...), or None."""
    rows = metric_series(run_dir).system
    return dict(rows[-1]) if rows else None


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


def final_metrics(run_dir: str | os.PathLike, status: dict | None = None) -> dict[str, float]:
    """The run's last evaluation: status.json's final metrics, else the last eval row."""
    status = status if isinstance(status, dict) else rundir.read_status(run_dir)
    final = status.get("final_metrics")
    if isinstance(final, dict) and final:
        return {k: float(v) for k, v in final.items() if num(v) is not None}
    series = metric_series(run_dir)
    if series.eval:
        return {k: float(v) for k, v in series.eval[-1].items() if str(k).startswith("eval_") and num(v) is not None}
    return {}

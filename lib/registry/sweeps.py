"""Sweeps: one run per combination of a few settings, launched in order onto the ordinary queue.

A grid is a list of ``(field, [values])``; every combination becomes one run (the first field varies
slowest). Each run is an ordinary launch (:func:`lib.registry.launching.launch`), so permission and the
per-user quota are checked for each run as it is launched; when a quota refuses one, the runs before
it stay queued and the rest are reported as not launched. Each run's config.json records the sweep's
id (``sweep_id``) and its own grid values (``sweep_point``), so the sweep is found again by reading
the run folders: there is no sweep file to keep in step.
"""
from __future__ import annotations

import itertools
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.config import TrainConfig, apply_overrides, field_info, field_names
from lib.errors import ConfigError, LabError
from lib.registry import access
from lib.registry.access import CLI_POLICY, Actor, Policy, cli_actor
from lib.registry.quotas import QuotaExceeded

MAX_SWEEP_RUNS = 64
MAX_GRID_FIELDS = 8
# Fields a grid may not vary: who owns a run, how it is grouped, and list-valued fields (commas split values).
NOT_SWEEPABLE = ("owner", "sweep_id", "sweep_point", "label_names", "run_name")


def new_sweep_id(now: float | None = None) -> str:
    """A server-made id such as ``sweep-20260101-120000-a1b2c3`` (time + random suffix)."""
    now = time.time() if now is None else now
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{secrets.token_hex(3)}"


def parse_grid(items: list[str]) -> list[tuple[str, list[Any]]]:
    """``["learning_rate=1e-5,3e-5", "per_device_train_batch_size=8,16"]`` -> [(field, [values])], each value
    parsed by the field's type. ConfigError names every bad item."""
    grid: list[tuple[str, list[Any]]] = []
    errs: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            errs[str(item)[:60]] = f"--grid expects KEY=V1,V2,..., got {item[:80]!r}"
            continue
        key, raw = (part.strip() for part in item.split("=", 1))
        values = [v.strip() for v in raw.split(",")]
        try:
            grid.append((key, grid_values(key, values)))
        except ConfigError as exc:
            errs.update(exc.errors)
    if errs:
        raise ConfigError(errs)
    return check_grid(grid)


def grid_values(key: str, values: list[Any]) -> list[Any]:
    """The values of one grid field, parsed (text from a CLI or a form) and checked for the field."""
    if key not in field_names():
        raise ConfigError({key: f"unknown field {key[:60]!r} in the grid"})
    if key in NOT_SWEEPABLE:
        raise ConfigError({key: f"{key} cannot be swept (choose settings such as learning_rate or "
                                "per_device_train_batch_size)"})
    parsed = []
    for v in values:
        if isinstance(v, str):
            if not v.strip():
                raise ConfigError({key: f"{key} has an empty value in the grid (write values like 1e-5,3e-5)"})
            v = apply_overrides({}, [f"{key}={v}"])[key]
        if any(v == p and type(v) is type(p) for p in parsed):
            raise ConfigError({key: f"{key} lists the value {v!r} twice"})
        parsed.append(v)
    if not parsed:
        raise ConfigError({key: f"{key} needs at least one value"})
    return parsed


def check_grid(grid: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
    if not grid:
        raise ConfigError({"grid": "a sweep needs at least one --grid KEY=V1,V2"})
    keys = [k for k, _ in grid]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ConfigError({"grid": f"each field may appear once in the grid; repeated: {', '.join(dupes)}"})
    if len(grid) > MAX_GRID_FIELDS:
        raise ConfigError({"grid": f"a grid may vary at most {MAX_GRID_FIELDS} fields, got {len(grid)}"})
    total = math.prod(len(v) for _, v in grid)
    if total > MAX_SWEEP_RUNS:
        sizes = " x ".join(str(len(v)) for _, v in grid)
        raise ConfigError({"grid": f"this grid makes {total:,} runs ({sizes}); a sweep may launch at most "
                                   f"{MAX_SWEEP_RUNS}: use fewer values"})
    return grid


def grid_points(grid: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination, in order (the first field varies slowest)."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]


def point_text(point: dict[str, Any]) -> str:
    """``learning_rate=1e-05, per_device_train_batch_size=16`` (for run names and tables)."""
    return ", ".join(f"{k}={v}" for k, v in point.items())


@dataclass
class SweepPlan:
    """What a sweep will launch: one validated config per grid point, and what they add up to."""

    sweep_id: str
    grid: list[tuple[str, list[Any]]]
    points: list[dict[str, Any]]
    configs: list[TrainConfig]
    steps: list[int | None] = field(default_factory=list)  # optimizer steps per run (None: data size unknown)

    @property
    def n_runs(self) -> int:
        return len(self.configs)

    @property
    def total_steps(self) -> int | None:
        return sum(self.steps) if self.steps and all(s is not None for s in self.steps) else None


def plan_sweep(base: TrainConfig, grid: list[tuple[str, list[Any]]], *, num_train_samples: int | None = None,
               sweep_id: str | None = None) -> SweepPlan:
    """The configs of a sweep (every one validated before anything is launched). With ``num_train_samples``
    (the training split's size) each run's optimizer steps are worked out too."""
    grid = check_grid(grid)
    sweep_id = sweep_id or new_sweep_id()
    points = grid_points(grid)
    configs, errs = [], {}
    base_name = base.run_name.strip() or base.label
    for point in points:
        name = f"{base_name} [{point_text(point)}]"[:500]
        try:
            configs.append(base.replace(**point, sweep_id=sweep_id, sweep_point=dict(point), run_name=name))
        except ConfigError as exc:
            for k, msg in exc.errors.items():
                errs.setdefault(k, f"grid point {point_text(point)}: {msg}")
    if errs:
        raise ConfigError(errs)
    steps: list[int | None] = []
    if num_train_samples:
        from lib.job.steps import plan_for_config
        for c in configs:
            try:
                steps.append(plan_for_config(c, num_train_samples).total_steps)
            except ConfigError:
                steps.append(None)
    return SweepPlan(sweep_id=sweep_id, grid=grid, points=points, configs=configs, steps=steps)


def plan_from_entries(base: TrainConfig, entries: list[tuple[str, str]], *,
                      num_train_samples: int | None = None) -> SweepPlan:
    """A plan from form entries: up to three ``(field, "v1, v2, ...")`` pairs (blank fields are skipped)."""
    chosen = [(k, v) for k, v in entries if str(k or "").strip()]
    if len(chosen) > 3:
        raise ConfigError({"grid": "the form sweeps at most three fields (use python -m lib.runs sweep for more)"})
    grid = [(k, grid_values(k, [x.strip() for x in str(v or "").split(",")])) for k, v in chosen]
    return plan_sweep(base, grid, num_train_samples=num_train_samples)


@dataclass
class SweepResult:
    sweep_id: str
    launched: list[tuple[dict[str, Any], Path]]   # (grid point, run folder), in launch order
    refused: list[tuple[dict[str, Any], str]]     # (grid point, why it was not launched)


def launch_sweep(plan: SweepPlan, runs_dir: str | os.PathLike | None = None, *, owner: str | None = None,
                 launched_by: str = "api", actor: Actor | None = None, policy: Policy | None = None) -> SweepResult:
    """Launch every run of ``plan`` in order, each through the ordinary launch (permission and quota per run).

    The first refusal (a quota, or a launch that fails) stops the sweep there: the runs before it are
    launched, the rest are listed in ``refused`` with the reason. A refusal of permission itself (not signed
    in, read-only mode) raises before any run is launched.
    """
    from lib.registry.launching import launch
    actor = actor or cli_actor()
    policy = policy or CLI_POLICY
    access.require(access.why_not_launch(actor, policy))
    launched: list[tuple[dict[str, Any], Path]] = []
    refused: list[tuple[dict[str, Any], str]] = []
    for i, (point, config) in enumerate(zip(plan.points, plan.configs)):
        try:
            run_dir = launch(config, runs_dir, owner=owner, launched_by=launched_by, actor=actor, policy=policy)
        except (QuotaExceeded, LabError) as exc:  # a quota, or anything else that stops this launch: stop here
            refused.extend((p, str(exc)) for p in plan.points[i:])
            break
        launched.append((point, run_dir))
    return SweepResult(sweep_id=plan.sweep_id, launched=launched, refused=refused)


def sweep_runs(runs: list, sweep_id: str) -> list:
    """The runs (RunView rows) of one sweep, in launch order."""
    return sorted((r for r in runs if str(r.config.get("sweep_id") or "") == sweep_id),
                  key=lambda r: (r.created_at or 0.0, r.run_id))


def sweep_ids(runs: list) -> list[str]:
    """Every sweep id among ``runs``, newest first."""
    return sorted({str(r.config.get("sweep_id")) for r in runs if r.config.get("sweep_id")}, reverse=True)


def sweep_table(rows: list, metric: str = "eval_accuracy") -> dict:
    """A sweep side by side: {"fields": grid fields, "rows": [{run_id, state, <field>: value, metric}],
    "best": run_id of the best finished value of ``metric`` (lowest for a loss) or None}."""
    fields_seen: list[str] = []
    for r in rows:
        for k in (r.config.get("sweep_point") or {}):
            if k not in fields_seen:
                fields_seen.append(k)
    lower_better = "loss" in metric
    table, best, best_value = [], None, None
    for r in rows:
        point = r.config.get("sweep_point") or {}
        value = _best_metric(r, metric)
        table.append({"run_id": r.run_id, "label": r.label, "state": r.display_state,
                      **{k: point.get(k) for k in fields_seen}, metric: value})
        if value is not None and (best_value is None or (value < best_value if lower_better else value > best_value)):
            best, best_value = r.run_id, value
    return {"fields": fields_seen, "metric": metric, "rows": table, "best": best}


def _best_metric(row, metric: str) -> float | None:
    if metric == "eval_accuracy" and row.best_eval_accuracy is not None:
        return float(row.best_eval_accuracy)
    from lib.readers.metrics import metric_series
    _, values = metric_series(row.path).column("eval", metric)
    if values:
        return min(values) if "loss" in metric else max(values)
    value = row.final_metrics.get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def describe_grid_field(key: str) -> str:
    info = field_info(key)
    return info.get("help", "")

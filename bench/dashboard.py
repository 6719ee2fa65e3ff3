"""Dashboard scale: load what the Runs page needs for 50 runs × 10,000 metric lines each.

    python -m bench.dashboard                          # 50 runs × 10,000 lines in a temp dir
    python -m bench.dashboard --runs 10 --lines 2000   # smaller

A temporary runs directory is filled with synthetic but realistic runs (the files the job writes:
config.json, status.json, metrics.jsonl with log/eval/save rows as ``lib.callbacks`` writes them,
baseline.json, two checkpoints whose trainer_state.json carries the full log history, and
eval_predictions.jsonl for one run). A few runs are "running" and keep growing.

"Everything the Runs page needs" is, through ``lib.logs``:

- the run table: ``list_runs`` (status + config of every run);
- for every run: ``progress``, ``metric_series`` and the loss/accuracy series the overlay charts
  plot (``MetricSeries.xy``), ``final_metrics``, ``read_baseline``;
- ``compare_configs`` over all runs;
- for the selected run: ``list_checkpoints`` and ``predictions_frame`` (error analysis).

Timed cold (caches cleared), warm (nothing changed: served by the size/mtime cache), and live (five
running runs each appended 10 new lines: incremental reads). For comparison, also: the run table
alone, the charts' series rebuilt on every load (what ``MetricSeries.xy``'s memo saves), and
``list_checkpoints`` for *every* run.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from lib.readers import checkpoints, compare, metrics, predictions, progress
from lib.registry import reconcile
from lib.store import jsonl
from lib.util.contention import Contention

try:
    import orjson
    def _dumps(obj) -> str:
        return orjson.dumps(obj).decode()
except ImportError:  # pragma: no cover
    def _dumps(obj) -> str:
        return json.dumps(obj, separators=(",", ":"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--lines", type=int, default=10_000, help="metric lines per run")
    p.add_argument("--repeats", type=int, default=5, help="warm and live repeats (median reported)")
    p.add_argument("--running", type=int, default=5, help="runs that are still running and grow")
    p.add_argument("--eval-rows", type=int, default=2000, help="eval predictions of the selected run")
    p.add_argument("--keep", action="store_true", help="keep the generated runs directory")
    p.add_argument("--seed", type=int, default=0)
    common.add_output_args(p)
    return p


# ---------------------------------------------------------------------------------------------------
# Synthetic runs
# ---------------------------------------------------------------------------------------------------
def _log_row(step: int, total: int, t0: float, rng: random.Random) -> dict:
    frac = step / total
    return {"event": "log", "time": round(t0 + step * 0.5, 3), "step": step, "epoch": round(2 * frac, 4),
            "elapsed_s": round(step * 0.5, 3), "total_steps": total,
            "loss": round(0.69 * math.exp(-3 * frac) + 0.05 + rng.random() * 0.05, 4),
            "learning_rate": 5e-5 * (1 - frac), "grad_norm": round(1 + rng.random() * 4, 4),
            "samples_per_s": round(16 + rng.random(), 3)}


def make_runs(root: Path, n_runs: int, lines: int, running: int, eval_rows: int, seed: int) -> list[Path]:
    """Write ``n_runs`` run directories with ``lines`` metric lines each."""
    from lib.config import preset
    from lib.store import rundir
    rng = random.Random(seed)
    base_cfg = preset("demo").to_dict()
    every = 1000  # eval + save every 1,000 steps
    paths = []
    now = time.time()
    for i in range(n_runs):
        run_dir = rundir.create_run_dir(root)
        paths.append(run_dir)
        live = i < running
        total = lines  # one row per step (+ eval/save rows, counted in the lines)
        cfg = dict(base_cfg, run_name=f"synthetic run {i}", learning_rate=[1e-4, 5e-5, 3e-5][i % 3],
                   seed=i, logging_steps=1, save_total_limit=2)
        rundir.atomic_write_text(run_dir / rundir.CONFIG, json.dumps(cfg, indent=2))
        rows, step, history = [], 0, []
        while len(rows) < lines:
            step += 1
            row = _log_row(step, total, now - 3600, rng)
            rows.append(row)
            history.append({k: v for k, v in row.items() if k in ("step", "epoch", "loss", "learning_rate",
                                                                  "grad_norm")})
            if step % every == 0 and len(rows) < lines - 1:
                ev = {"event": "eval", "time": row["time"], "step": step, "epoch": row["epoch"],
                      "elapsed_s": row["elapsed_s"], "total_steps": total, "eval_loss": 0.3 + rng.random() * 0.1,
                      "eval_accuracy": 0.85 + rng.random() * 0.05, "eval_f1": 0.85 + rng.random() * 0.05,
                      "eval_precision": 0.86, "eval_recall": 0.84, "eval_roc_auc": 0.93}
                sv = {"event": "save", "time": row["time"], "step": step, "epoch": row["epoch"],
                      "elapsed_s": row["elapsed_s"], "total_steps": total, "checkpoint": f"checkpoint-{step}"}
                rows += [ev, sv]
                history.append({k: ev[k] for k in ev if k.startswith("eval_") or k in ("step", "epoch")})
        last_step = step
        with open(run_dir / rundir.METRICS, "w", encoding="utf-8") as fh:
            fh.write("\n".join(_dumps(r) for r in rows[:lines]) + "\n")
        saves = [r["step"] for r in rows[:lines] if r["event"] == "save"][-2:]
        for s in saves:
            ck = run_dir / rundir.CHECKPOINTS / f"checkpoint-{s}"
            ck.mkdir(parents=True)
            state = {"global_step": s, "epoch": 2 * s / total, "max_steps": total, "best_model_checkpoint": None,
                     "log_history": [h for h in history if h["step"] <= s]}
            (ck / "trainer_state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
            (ck / "model.safetensors").write_bytes(b"\0" * 1024)
            (ck / "optimizer.pt").write_bytes(b"\0" * 1024)
        final = {"eval_accuracy": 0.87, "eval_f1": 0.87, "eval_loss": 0.31}
        status = {"state": "running" if live else ["finished", "failed", "cancelled", "finished"][i % 4],
                  "step": last_step, "total_steps": total + (1000 if live else 0), "epoch": 1.5,
                  "heartbeat": now, "started_at": now - 3600, "created_at": now - 3700, "elapsed_s": 3600.0,
                  "exit_code": None if live else 0, "final_metrics": None if live else final}
        rundir.atomic_write_json(run_dir / rundir.STATUS, status)
        rundir.atomic_write_json(run_dir / rundir.BASELINE, {"accuracy": 0.84, "f1": 0.84, "seconds": 3.0})
        if i == n_runs - 1 and eval_rows:
            with open(run_dir / rundir.PREDICTIONS, "w", encoding="utf-8") as fh:
                for k in range(eval_rows):
                    p = rng.random()
                    fh.write(_dumps({"index": k, "text": "a synthetic review " * rng.randint(5, 60),
                                     "label": k % 2, "pred": int(p > 0.5), "probs": [1 - p, p]}) + "\n")
    return paths


# ---------------------------------------------------------------------------------------------------
# What the Runs page loads
# ---------------------------------------------------------------------------------------------------
def chart_xy(series, event: str, key: str, axis: str = "step") -> tuple[list, list]:
    """What an overlay chart plots for one run, the way the Runs page gets it: ``MetricSeries.xy``
    (memoized on the series, which lib.readers.metrics rebuilds when the rows change)."""
    return series.xy(event, key, axis)


def chart_xy_recomputed(series, event: str, key: str, axis: str = "step") -> tuple[list, list]:
    """The same values rebuilt on every call (``column`` + ``x_values``): what the memo saves."""
    rows, values = series.column(event, key)
    return metrics.x_values(rows, axis), values


def load_runs_page(runs_dir: Path, selected: Path | None, charts=chart_xy) -> dict:
    """Everything the Runs page loads; ``charts=None`` loads the run table only (no chart series)."""
    summaries = reconcile.list_runs(runs_dir)
    points = 0
    configs = {}
    for s in summaries:
        prog = progress.progress(s.path, s.status)
        if charts is not None:
            series = metrics.metric_series(s.path)
            x, loss = charts(series, "log", "loss")
            xe, acc = charts(series, "eval", "eval_accuracy")
            points += len(x) + len(xe)
        metrics.final_metrics(s.path)
        metrics.read_baseline(s.path)
        configs[s.run_id] = s.config
        assert prog.state
    compare.compare_configs(configs)
    n_checkpoints = frame_rows = 0
    if selected is not None:
        n_checkpoints = len(checkpoints.list_checkpoints(selected))
        frame_rows = len(predictions.predictions_frame(selected))
    return {"runs": len(summaries), "chart_points": points, "checkpoints": n_checkpoints, "prediction_rows": frame_rows}


def _clear_caches() -> None:
    jsonl.clear_cache()
    checkpoints.clear_cache()


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    env = common.environment()

    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        t0 = time.perf_counter()
        paths = make_runs(tmp, args.runs, args.lines, min(args.running, args.runs), args.eval_rows, args.seed)
        gen_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in tmp.rglob("metrics.jsonl"))
        common.log(f"[dashboard] generated {args.runs} runs × {args.lines:,} metric lines "
                   f"({size / 2**20:.0f} MiB of metrics.jsonl) in {gen_s:.1f} s")
        selected = paths[-1]
        import numpy  # noqa: F401 - imports are not what we time
        import pandas  # noqa: F401
        with Contention() as cont:
            _clear_caches()
            t0 = time.perf_counter()
            info = load_runs_page(tmp, selected)
            cold = time.perf_counter() - t0
            warm_times = []
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                load_runs_page(tmp, selected)
                warm_times.append(time.perf_counter() - t0)
            live_times = []
            rng = random.Random(1)
            growing = paths[:min(args.running, args.runs)]
            step = args.lines * 10
            for _ in range(max(1, args.repeats)):
                for p in growing:
                    with open(p / "metrics.jsonl", "a", encoding="utf-8") as fh:
                        for _k in range(10):
                            step += 1
                            fh.write(_dumps(_log_row(step, step + 1000, time.time(), rng)) + "\n")
                t0 = time.perf_counter()
                live_info = load_runs_page(tmp, selected)
                live_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_ck = sum(len(checkpoints.list_checkpoints(p)) for p in paths)
            all_ck = time.perf_counter() - t0
            table_times, memo_times = [], []
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                load_runs_page(tmp, selected, charts=None)
                table_times.append(time.perf_counter() - t0)
            for _ in range(max(1, args.repeats)):
                t0 = time.perf_counter()
                load_runs_page(tmp, selected, charts=chart_xy_recomputed)
                memo_times.append(time.perf_counter() - t0)
        cold_s, warm_s, live_s = round(cold, 3), round(statistics.median(warm_times), 4), round(
            statistics.median(live_times), 4)
        table_s, recomputed_s = round(statistics.median(table_times), 4), round(statistics.median(memo_times), 4)
        common.log(f"[dashboard] cold {cold_s:.3f} s, warm {warm_s:.4f} s, live (+10 lines × {len(growing)} runs) "
                   f"{live_s:.4f} s; list_checkpoints for all {args.runs} runs {all_ck:.3f} s")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = {"benchmark": "dashboard", "command": common.command_line("bench.dashboard", cli), "environment": env,
               "runs": args.runs, "lines_per_run": args.lines, "metrics_mib": round(size / 2**20, 1),
               "generate_s": round(gen_s, 2), "loaded": info, "live_loaded": live_info,
               "cold_s": cold_s, "warm_s": warm_s, "live_s": live_s, "warm_runs_s": [round(x, 4) for x in warm_times],
               "all_checkpoints_s": round(all_ck, 3), "all_checkpoints": n_ck, "contention": cont.as_dict(),
               "warm_table_only_s": table_s, "warm_recomputed_chart_series_s": recomputed_s,
               "chart_series_memoized_by_lib": hasattr(metrics.MetricSeries, "xy"),
               "targets": {"cold<=1s": cold_s <= 1.0, "warm<=1s": warm_s <= 1.0}}
    if args.keep:
        summary["runs_dir"] = str(tmp)
    common.save_json(args.out_dir, args.md_section or "dashboard", summary)
    common.update_markdown(args.md, args.md_section or "dashboard", markdown(summary),
                           variant=args.md_section)
    common.emit({k: summary[k] for k in ("runs", "lines_per_run", "cold_s", "warm_s", "live_s", "all_checkpoints_s",
                                         "warm_table_only_s", "warm_recomputed_chart_series_s", "targets")})
    return 0


def markdown(s: dict) -> str:
    env = s["environment"]
    rows = [["cold (caches cleared)", s["cold_s"], "every metrics.jsonl parsed once"],
            ["warm (nothing changed)", s["warm_s"], "size/mtime unchanged: one stat per file"],
            ["live (5 running runs grew by 10 lines)", s["live_s"], "only the new bytes are read"],
            ["warm, run table only (no chart series)", s["warm_table_only_s"], "what is left without the charts"],
            ["warm, chart series rebuilt on every load", s["warm_recomputed_chart_series_s"],
             "`column` + `x_values` each time: what `MetricSeries.xy`'s memo saves"],
            [f"list_checkpoints for all {s['runs']} runs (warm)", s["all_checkpoints_s"],
             "trainer_state.json cached by size/mtime"]]
    lines = [
        "## 5. Dashboard scale: 50 runs × 10,000 metric lines",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(env)}  ",
        f"{s['runs']} synthetic runs × {s['lines_per_run']:,} metric lines ({s['metrics_mib']} MiB of metrics.jsonl) "
        f"in a temp dir. Loaded through `lib.logs`: the run table, progress, chart series (loss and accuracy), "
        f"final metrics and baseline of every run, a config comparison of all runs, and checkpoints + eval "
        f"predictions of the selected run ({s['loaded']['chart_points']:,} chart points, through "
        f"{'`MetricSeries.xy`' if s.get('chart_series_memoized_by_lib') else '`column` + `x_values`'}).",
        "",
        common.md_table(["load", "seconds", "how"], rows),
        "",
        f"**Cold {s['cold_s']:.3f} s, warm {s['warm_s']:.4f} s** (target ≤ 1 s: "
        f"{'met' if s['targets']['cold<=1s'] and s['targets']['warm<=1s'] else 'not met'}).",
    ]
    note = common.shared_note([s["contention"]["other_cores"]], env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

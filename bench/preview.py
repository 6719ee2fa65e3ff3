"""The Train preview and the Learn calculator for any number of steps: time and memory stay flat.

    python -m bench.preview                  # 1e3 ... 1e9 optimizer steps
    python -m bench.preview --walk-up-to 1000000

For each size, the schedule the Train preview shows (log, eval and save every step, keep 2 checkpoints:
the worst case a visitor can type) is computed by ``lib.job.steps.event_schedule`` (arithmetic, bounded
lists), and, side by side in the same run up to ``--walk-up-to`` steps, by the step-by-step walk a
preview would otherwise do (one loop iteration and one event per step: what the previous version did).
Time is the best of ``--repeats``; peak memory is Python's own allocations (tracemalloc) during one call.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

from bench import common
from lib.job.steps import event_schedule, plan_steps, surviving_checkpoints


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.preview", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e3,1e4,1e5,1e6,1e7,1e8,1e9", help="optimizer steps, comma separated")
    p.add_argument("--walk-up-to", type=float, default=1e6, help="largest size also timed with the per-step walk")
    p.add_argument("--repeats", type=int, default=3)
    common.add_output_args(p)
    return p


def walk(total: int) -> tuple[int, list[int]]:
    """The per-step walk: every step visited, every event kept (as a preview without arithmetic does)."""
    events, saves = [], []
    for s in range(1, total + 1):
        kinds = ("log", "eval", "save")
        events.append((s, kinds))
        saves.append(s)
    return len(events), surviving_checkpoints(saves, 2)


def arithmetic(total: int):
    plan = plan_steps(8, 8, max_steps=total)
    return event_schedule(plan, logging_steps=1, eval_strategy="steps", eval_steps=1, save_strategy="steps",
                          save_steps=1, save_total_limit=2)


def measure(fn, repeats: int) -> tuple[float, int, object]:
    best = float("inf")
    out = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak, out


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    env = common.environment()
    rows = []
    for size in [int(float(x)) for x in args.sizes.split(",") if x.strip()]:
        t_a, m_a, sched = measure(lambda size=size: arithmetic(size), args.repeats)
        row = {"steps": size, "arithmetic_s": t_a, "arithmetic_peak_bytes": m_a, "events": sched.counts["events"],
               "listed_events": len(sched.events), "surviving": sched.surviving}
        if size <= args.walk_up_to:
            t_w, m_w, (n_events, surviving) = measure(lambda size=size: walk(size), 1)
            assert n_events == sched.counts["events"] and surviving == sched.surviving
            row.update(walk_s=t_w, walk_peak_bytes=m_w, speedup=t_w / t_a, memory_ratio=m_w / max(1, m_a))
        rows.append(row)
        common.log(f"[preview] {size:>13,} steps: arithmetic {t_a * 1e3:8.3f} ms, {m_a / 1024:8.1f} KiB"
                   + (f"; walk {row['walk_s']:.3f} s, {row['walk_peak_bytes'] / 2**20:.1f} MiB" if "walk_s" in row
                      else ""))
    summary = {"benchmark": "preview", "command": common.command_line("bench.preview", cli), "environment": env,
               "rows": rows, "largest_steps": rows[-1]["steps"], "largest_s": rows[-1]["arithmetic_s"],
               "largest_peak_bytes": rows[-1]["arithmetic_peak_bytes"]}
    common.save_json(args.out_dir, args.md_section or "preview", summary)
    common.update_markdown(args.md, args.md_section or "preview", markdown(summary), variant=args.md_section)
    common.emit({"largest_steps": summary["largest_steps"], "largest_s": summary["largest_s"],
                 "largest_peak_bytes": summary["largest_peak_bytes"]})
    return 0


def markdown(s: dict) -> str:
    rows = []
    for r in s["rows"]:
        rows.append([f"{r['steps']:,}", f"{r['arithmetic_s'] * 1e3:.3f}", f"{r['arithmetic_peak_bytes'] / 1024:.0f}",
                     f"{r['walk_s']:.3f}" if "walk_s" in r else "not run",
                     f"{r['walk_peak_bytes'] / 2**20:.1f}" if "walk_s" in r else "–",
                     f"{r['speedup']:,.0f}×" if "speedup" in r else "–"])
    return "\n".join([
        "## Train preview and Learn calculator: bounded work for any number of steps",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(s['environment'])}  ",
        "Worst case a visitor can type: log, evaluate and save at every optimizer step, keep 2 checkpoints. "
        "`event_schedule` counts events arithmetically and lists at most the first and last few hundred; the "
        "per-step walk (what a preview without arithmetic does, and what the previous version did) is timed "
        "beside it in the same run where it still fits in memory.",
        "",
        common.md_table(["optimizer steps", "arithmetic (ms)", "arithmetic peak (KiB)", "per-step walk (s)",
                         "walk peak (MiB)", "walk ÷ arithmetic"], rows),
        "",
        f"At {s['largest_steps']:,} steps the preview takes {s['largest_s'] * 1e3:.2f} ms and "
        f"{s['largest_peak_bytes'] / 1024:.0f} KiB: flat from a thousand steps to a billion.",
    ])


if __name__ == "__main__":
    sys.exit(main())

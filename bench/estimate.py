"""The pre-launch estimate against the real run: seconds per optimizer step, predicted vs measured.

    python -m bench.estimate                       # three configurations of the bundled MiniLM on IMDb
    python -m bench.estimate --data demo --train-samples 96

For each configuration, ``lib.registry.estimate.estimate`` (the dry run behind ``python -m lib.runs
estimate`` and the Train page's button) predicts seconds per optimizer step and the run's total time;
then the real job (``python -m lib.train``) trains that same configuration on a small seeded subset of
real IMDb reviews, and its own seconds per step are read back from its metrics.jsonl (the median time
between consecutive log rows, gaps holding an evaluation or a save left out). The table shows both and
their ratio (1.00 = exact); the estimate's total time is compared with the job's wall-clock time too
(which also counts Python start-up, imports and the TF-IDF baseline that the estimate leaves out).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench import common

CONFIGS = {
    "len128-b8": dict(max_length=128, per_device_train_batch_size=8),
    "len256-b8": dict(max_length=256, per_device_train_batch_size=8),
    "len128-b16": dict(max_length=128, per_device_train_batch_size=16),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="auto", choices=common.DATA_CHOICES)
    p.add_argument("--configs", default=",".join(CONFIGS), help="which configurations, comma separated")
    p.add_argument("--train-samples", type=int, default=160, help="training reviews of each real run")
    p.add_argument("--eval-samples", type=int, default=32, help="evaluation reviews of each real run")
    p.add_argument("--model", default="bundled-minilm")
    common.add_output_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    from lib.registry.estimate import actual_seconds_per_step, estimate
    choice = common.choose_data(args.data)
    env = common.environment()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        runs_dir = Path(tmp) / "runs"
        for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
            fields = dict(model=args.model, max_train_samples=args.train_samples, max_eval_samples=args.eval_samples,
                          num_train_epochs=1, logging_steps=1, eval_strategy="no", save_strategy="no",
                          system_metrics_every_s=0, tokenization_cache=False, **CONFIGS[name])
            config = common.base_config(choice, **{**_demo_fields(), **fields})
            with common.Contention() as cont_est:
                est = estimate(config, None)
            job = common.run_training_job("demo", {**choice.config_fields(), **fields}, runs_dir,
                                          Path(tmp) / f"{name}.log", timeout=900)
            actual = actual_seconds_per_step(job["run_dir"])
            row = {"config": name, **CONFIGS[name], "estimate_s_per_step": est["seconds_per_step"],
                   "actual_s_per_step": actual, "ratio": est["seconds_per_step"] / actual if actual else None,
                   "steps_measured": est["steps_measured"], "total_steps": est["total_steps"],
                   "estimate_eta_s": est["eta_s"], "job_wall_s": job["wall_s"],
                   "eta_ratio": est["eta_s"] / job["wall_s"] if job["wall_s"] else None,
                   "estimate_peak_rss_mb": est["peak_rss_mb"], "estimate_elapsed_s": est["elapsed_s"],
                   "other_cores_estimate": cont_est.as_dict().get("other_cores"),
                   "other_cores_job": job["contention"].get("other_cores")}
            rows.append(row)
            common.log(f"[estimate] {name}: estimate {row['estimate_s_per_step']:.3f} s/step, real "
                       f"{actual:.3f} s/step (ratio {row['ratio']:.2f}); ETA {row['estimate_eta_s']:.0f} s vs job "
                       f"{row['job_wall_s']:.0f} s; dry run took {row['estimate_elapsed_s']:.0f} s")
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    summary = {"benchmark": "estimate", "command": common.command_line("bench.estimate", cli), "environment": env,
               "data": choice.description, "model": args.model, "train_samples": args.train_samples, "rows": rows,
               "worst_ratio": max(ratios, key=lambda x: max(x, 1 / x)) if ratios else None}
    name = args.md_section or "estimate"
    common.save_json(args.out_dir, name, summary)
    common.update_markdown(args.md, name, markdown(summary), variant=args.md_section)
    common.emit({"rows": [{k: r[k] for k in ("config", "estimate_s_per_step", "actual_s_per_step", "ratio")}
                          for r in rows], "worst_ratio": summary["worst_ratio"]})
    return 0


def _demo_fields() -> dict:
    from lib.config import PRESETS
    return {k: v for k, v in PRESETS["demo"].items() if k not in ("run_name", "dataset", "test_file")}


def markdown(s: dict) -> str:
    rows = [[r["config"], r["max_length"], r["per_device_train_batch_size"], f"{r['estimate_s_per_step']:.3f}",
             f"{r['actual_s_per_step']:.3f}" if r["actual_s_per_step"] else "–",
             f"{r['ratio']:.2f}" if r["ratio"] else "–", r["steps_measured"],
             f"{r['estimate_eta_s']:.0f}", f"{r['job_wall_s']:.0f}", f"{r['eta_ratio']:.2f}" if r["eta_ratio"] else "–",
             f"{r['estimate_elapsed_s']:.0f}"] for r in s["rows"]]
    others = [r.get("other_cores_estimate") for r in s["rows"]] + [r.get("other_cores_job") for r in s["rows"]]
    worst = s["worst_ratio"]
    return "\n".join([
        "## The pre-launch estimate vs the real run (issue 16)",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(s['environment'])}  ",
        f"Data: {s['data']}; model `{s['model']}`, {s['train_samples']} training reviews per real run (1 epoch), "
        "dynamic padding with length-grouped batches (the demo preset's settings otherwise).",
        "",
        "The estimate (`python -m lib.runs estimate`) is a dry run of a few real optimizer steps on a sample; the "
        "real seconds per step are the job's own (median gap between log rows, one step apart). Ratio = estimate "
        "÷ real. The ETA column compares the estimate's total with the job's wall-clock time, which also holds "
        "Python start-up, imports and the TF-IDF baseline.",
        "",
        common.md_table(["config", "max_length", "batch", "estimate s/step", "real s/step", "ratio",
                         "steps timed", "ETA (s)", "job wall (s)", "ETA ÷ wall", "dry run took (s)"], rows),
        "",
        (f"Worst seconds-per-step ratio: {worst:.2f}." if worst else "") + " " + common.shared_note(others),
    ])


if __name__ == "__main__":
    sys.exit(main())

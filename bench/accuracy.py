"""Accuracy at equal budget: the project's default pipeline vs the tutorial's, and the TF-IDF baseline.

    python -m bench.accuracy                                  # both pipelines, 2,000 train / 5,000 eval
    python -m bench.accuracy --pipeline project               # one pipeline (results are kept per pipeline)
    python -m bench.accuracy --train-samples 500 --eval-samples 1000 --epochs 1   # a quicker look

Each pipeline is the real training job (``python -m lib.train``) in its own process and its own run
directory under ``bench/out/accuracy/runs``, with the same data (a seeded 2,000 training reviews, a
seeded 5,000 evaluation reviews kept in dataset order), model, seed, epochs, batch size, learning
rate and max_length. Only the two settings that make the fast path differ:

- tutorial: ``padding=longest_in_map_batch`` (``padding=True`` inside ``map``) and random batches;
- project:  ``padding=dynamic`` (the collator pads each batch) and ``group_by_length=true``.

Evaluation is the job's own (``trainer.predict`` on the eval split, as each pipeline tokenized it);
checkpoints and per-epoch evaluation are switched off in both so the wall time is training + one
evaluation. The TF-IDF + logistic-regression baseline is the one the job scores on the same split.

On 2 CPU cores this is long (MiniLM at 512 tokens): each finished pipeline is saved in
``bench/out/accuracy/<pipeline>.json`` and reused by the next invocation with the same settings
(``--force`` reruns it), so the benchmark can be run one pipeline at a time or resumed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from bench import common

PIPELINES = {
    "tutorial": {"padding": "longest_in_map_batch", "group_by_length": False, "sort_eval_by_length": False,
                 "tokenization_cache": False},
    "project": {"padding": "dynamic", "group_by_length": True, "sort_eval_by_length": True,
                "tokenization_cache": True},
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", choices=["project", "tutorial", "both"], default="both")
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--eval-samples", type=int, default=5000)
    p.add_argument("--epochs", type=float, default=1.0, help="training epochs (default 1 to keep it to about an "
                   "hour on 2 cores; the tutorial trains 2)")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--model", default="bundled-minilm")
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto")
    p.add_argument("--force", action="store_true", help="rerun pipelines that already have a saved result")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds allowed per pipeline")
    common.add_output_args(p)
    return p


def job_fields(args, choice: common.DataChoice, pipeline: str) -> dict:
    return {
        "run_name": f"bench accuracy: {pipeline} pipeline",
        "dataset": choice.dataset, "test_file": choice.test_file,
        "model": args.model, "max_length": args.max_length,
        "max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples,
        "num_train_epochs": args.epochs, "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed,
        "warmup_steps": 0, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 25,
        "report_tensorboard": False, "device": "cpu", **PIPELINES[pipeline],
    }


def settings_key(args, choice: common.DataChoice) -> dict:
    return {"data": choice.kind, "dataset": choice.dataset, "train_samples": args.train_samples,
            "eval_samples": args.eval_samples, "epochs": args.epochs, "max_length": args.max_length,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed,
            "model": args.model}


def run_pipeline(args, choice: common.DataChoice, pipeline: str, out_dir: Path) -> dict:
    job = common.run_training_job("demo", job_fields(args, choice, pipeline), out_dir / "runs",
                                  out_dir / f"{pipeline}.stdout.log", timeout=args.timeout)
    final, end, data_info = job["final"], job["end"], job["data_info"]
    return {
        "pipeline": pipeline, "settings": PIPELINES[pipeline], "run_dir": job["run_dir"],
        "accuracy": final.get("eval_accuracy"), "f1": final.get("eval_f1"),
        "precision": final.get("eval_precision"), "recall": final.get("eval_recall"),
        "roc_auc": final.get("eval_roc_auc"),
        "wall_s": job["wall_s"], "train_s": end.get("train_runtime"),
        "train_samples_per_s": end.get("train_samples_per_second"), "eval_s": final.get("eval_runtime"),
        "eval_samples_per_s": final.get("eval_samples_per_second"), "train_loss": end.get("train_loss"),
        "baseline": job["baseline"], "data_description": data_info.get("description"),
        "rows": data_info.get("rows"), "contention": job["contention"],
    }


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    choice = common.choose_data(args.data)
    out_dir = Path(args.out_dir) / "accuracy"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = common.environment()
    key = settings_key(args, choice)
    tag = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    wanted = ["project", "tutorial"] if args.pipeline == "both" else [args.pipeline]
    common.log(f"[accuracy] data: {choice.description}")
    results: dict[str, dict] = {}
    for pipeline in ("project", "tutorial"):
        path = out_dir / f"{pipeline}-{tag}.json"
        saved = json.loads(path.read_text()) if path.exists() else None
        if pipeline in wanted and (saved is None or args.force):
            res = run_pipeline(args, choice, pipeline, out_dir)
            res.update(settings_key=key, environment=env)
            common.save_json(out_dir, path.stem, res)
            saved = res
        if saved is not None:
            results[pipeline] = saved
            common.log(f"[accuracy] {pipeline}: accuracy {saved['accuracy']:.4f}, F1 {saved['f1']:.4f}, "
                       f"wall {saved['wall_s']:.0f} s (train {saved['train_s']} s, eval {saved['eval_s']} s)")

    baseline = next((res["baseline"] for res in results.values() if res.get("baseline")), {})
    summary: dict = {"benchmark": "accuracy", "command": common.command_line("bench.accuracy", cli),
                     "data": choice.kind, "data_description": choice.description,
                     "settings": key, "environment": env, "baseline": {k: baseline.get(k) for k in
                                                                       ("accuracy", "f1", "seconds")}}
    for name, res in results.items():
        summary[name] = {k: res.get(k) for k in ("accuracy", "f1", "precision", "recall", "roc_auc", "wall_s",
                                                 "train_s", "eval_s", "train_samples_per_s", "contention")}
    if "project" in results and "tutorial" in results:
        p, t = results["project"], results["tutorial"]
        summary["accuracy_delta_points"] = round((p["accuracy"] - t["accuracy"]) * 100, 2)
        summary["within_1_point"] = abs(p["accuracy"] - t["accuracy"]) <= 0.010
        summary["wall_time_ratio"] = round(t["wall_s"] / p["wall_s"], 2) if p["wall_s"] else None
        summary["train_time_ratio"] = (round(t["train_s"] / p["train_s"], 2) if p.get("train_s") and
                                       t.get("train_s") else None)
    if baseline and results:
        summary["all_beat_baseline"] = all(res["accuracy"] > baseline["accuracy"] for res in results.values())
    common.save_json(args.out_dir, args.md_section or "accuracy", summary)
    if results:
        common.update_markdown(args.md, args.md_section or "accuracy", markdown(summary, results, args),
                           variant=args.md_section)
    common.emit(summary)
    return 0


def markdown(summary: dict, results: dict, args) -> str:
    env = summary["environment"]
    s = summary["settings"]
    rows = []
    for name in ("tutorial", "project"):
        if name in results:
            res = results[name]
            rows.append([f"{name} ({'padding=True in map, random batches' if name == 'tutorial' else 'dynamic padding + length-grouped batches'})",
                         res["accuracy"], res["f1"], res["wall_s"], res["train_s"], res["eval_s"]])
    b = summary["baseline"]
    if b.get("accuracy") is not None:
        rows.append(["TF-IDF (1-2 grams) + logistic regression", b["accuracy"], b["f1"], b.get("seconds"), None, None])
    lines = [
        "## 2. Accuracy at equal budget",
        "",
        f"Command: `{summary['command']}`  ",
        f"Machine: {common.machine_line(env)}  ",
        f"Data: {summary['data_description']}; {s['train_samples']:,} seeded training reviews, "
        f"{s['eval_samples']:,} seeded evaluation reviews (dataset order). Model `{s['model']}`, "
        f"max_length {s['max_length']}, batch {s['batch_size']}, {s['epochs']:g} epoch(s), learning rate "
        f"{s['learning_rate']}, seed {s['seed']}; each pipeline is the real job (`python -m lib.train`).",
        "",
        common.md_table(["pipeline", "accuracy", "F1", "wall time (s)", "train (s)", "eval (s)"], rows),
        "",
    ]
    if "accuracy_delta_points" in summary:
        lines.append(f"Project − tutorial accuracy: {summary['accuracy_delta_points']:+.2f} points "
                     f"(target: within 1.0 → {'met' if summary['within_1_point'] else 'not met'}); "
                     f"wall time ratio tutorial/project {summary['wall_time_ratio']}×, training time ratio "
                     f"{summary['train_time_ratio']}×.")
    if "all_beat_baseline" in summary:
        lines.append(f"Both transformer pipelines beat the TF-IDF baseline: "
                     f"{'yes' if summary['all_beat_baseline'] else 'no'}.")
    note = common.shared_note([res.get("contention", {}).get("other_cores") for res in results.values()],
                              env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Teacher → student: does a 3-layer student keep the 6-layer teacher's accuracy, and how much faster is it?

    python -m bench.distill                                     # IMDb subset: 2,000 train / 1,000 eval, 256 tokens
    python -m bench.distill --teacher bench/out/accuracy/runs/<id>/model --max-length 512 --eval-samples 5000
    python -m bench.distill --train-samples 500 --eval-samples 300 --max-length 128    # quicker

Both models come from the real job (``python -m lib.train``):

1. teacher: the bundled MiniLM (6 layers) fine-tuned with the project's demo recipe on a seeded
   subset of IMDb (skipped with ``--teacher FOLDER``, e.g. the accuracy benchmark's project run);
2. student: ``--preset distill`` with ``model=teacher`` and ``student_layers=3`` (the teacher cut to
   layers 1, 3, 5), trained on the same reviews with the teacher's cached soft labels.

Both are scored by the job on the same seeded evaluation reviews. CPU inference is then measured
side by side in this process with ``lib.inference.Predictor`` (length-sorted batches of 16, as the
CSV mode; and single-review latency), alternating teacher and student for ``--rounds`` rounds and
keeping each model's best round, so a burst of load from other processes hits both alike.
Targets (issue 10): student accuracy ≥ 97 % of the teacher's, throughput ≥ 1.8× the teacher's.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import common
from lib.util.contention import Contention


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="", help="a trained model folder to use as the teacher (skips training one)")
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--teacher-epochs", type=float, default=1.0)
    p.add_argument("--student-epochs", type=float, default=2.0)
    p.add_argument("--student-layers", type=int, default=3)
    p.add_argument("--model", default="bundled-minilm", help="teacher's base model (default bundled-minilm)")
    p.add_argument("--speed-samples", type=int, default=256, help="reviews for the throughput measurement")
    p.add_argument("--latency-samples", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=float, default=6 * 3600)
    common.add_output_args(p)
    return p


def data_fields(args, choice: common.DataChoice) -> dict:
    return {"dataset": choice.dataset, "test_file": choice.test_file, "max_train_samples": args.train_samples,
            "max_eval_samples": args.eval_samples, "max_length": args.max_length, "seed": args.seed,
            "eval_strategy": "no", "save_strategy": "no", "report_tensorboard": False, "device": "cpu"}


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def teacher_job_from_folder(teacher_dir: Path, args, choice: common.DataChoice) -> dict | None:
    """When --teacher is a run's model/ folder whose run was scored on the same evaluation reviews (same
    data, eval sample, seed and max_length), its final metrics; else None (the teacher is scored here)."""
    from lib.store import rundir
    run_dir = teacher_dir.parent
    if teacher_dir.name != rundir.MODEL:
        return None
    cfg = rundir.read_json(run_dir / rundir.CONFIG) or {}
    final = rundir.read_status(run_dir).get("final_metrics") or {}
    same = (cfg.get("dataset") == choice.dataset and (cfg.get("test_file") or "") == choice.test_file
            and cfg.get("max_eval_samples") == args.eval_samples and cfg.get("seed") == args.seed
            and cfg.get("max_length") == args.max_length and cfg.get("strip_html", True) is True)
    if not same or "eval_accuracy" not in final:
        return None
    return {"final": final, "data_info": rundir.read_json(run_dir / rundir.DATA_INFO) or {},
            "wall_s": None, "config": cfg}


def speed(predictor, texts: list[str], latency_texts: list[str]) -> dict:
    t0 = time.perf_counter()
    predictor.predict(texts, batch_size=16)
    secs = time.perf_counter() - t0
    ms = [predictor.predict_one(t)["latency_ms"] for t in latency_texts]
    return {"reviews_per_s": len(texts) / secs, "seconds": secs, "p50_ms": common.percentile(ms, 50),
            "p95_ms": common.percentile(ms, 95)}


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    choice = common.choose_data(args.data)
    env = common.environment()
    out_dir = Path(args.out_dir) / "distill"
    out_dir.mkdir(parents=True, exist_ok=True)
    common.log(f"[distill] data: {choice.description}; {args.train_samples:,} train / {args.eval_samples:,} eval "
               f"reviews, max_length {args.max_length}")

    # 1. teacher
    teacher_job = None
    if args.teacher:
        teacher_dir = Path(args.teacher).expanduser().resolve()
        if not (teacher_dir / "config.json").is_file():
            raise SystemExit(f"error: --teacher {args.teacher} is not a saved model folder (no config.json)")
    else:
        fields = {"run_name": "bench distill: teacher", "model": args.model, "num_train_epochs": args.teacher_epochs,
                  **data_fields(args, choice)}
        teacher_job = common.run_training_job("demo", fields, out_dir / "runs", out_dir / "teacher.stdout.log",
                                              timeout=args.timeout)
        teacher_dir = Path(teacher_job["run_dir"]) / "model"
        common.log(f"[distill] teacher: accuracy {teacher_job['final'].get('eval_accuracy'):.4f}, "
                   f"wall {teacher_job['wall_s']:.0f} s")

    # 2. student (the job's distillation preset, teacher cut to student_layers)
    fields = {"run_name": "bench distill: student", "teacher": str(teacher_dir), "model": "teacher",
              "student_layers": args.student_layers, "num_train_epochs": args.student_epochs,
              **data_fields(args, choice)}
    student_job = common.run_training_job("distill", fields, out_dir / "runs", out_dir / "student.stdout.log",
                                          timeout=args.timeout)
    student_dir = Path(student_job["run_dir"]) / "model"
    common.log(f"[distill] student: accuracy {student_job['final'].get('eval_accuracy'):.4f}, "
               f"wall {student_job['wall_s']:.0f} s")

    # Teacher accuracy on the same eval reviews: from its run, or scored here when it came from --teacher.
    from lib.serving.predictor import Predictor
    eval_texts, eval_labels, _ = common.load_split(choice, "test", args.eval_samples, seed=args.seed)
    teacher_run = teacher_job_from_folder(teacher_dir, args, choice) if teacher_job is None else teacher_job
    if teacher_run is not None and teacher_run["data_info"].get("rows", {}).get("test") == len(eval_texts):
        teacher_acc = teacher_run["final"].get("eval_accuracy")
        teacher_f1 = teacher_run["final"].get("eval_f1")
        teacher_scored = "by the job on the same evaluation reviews"
    else:
        from lib.job.baseline import classification_metrics
        tp = Predictor(str(teacher_dir), max_length=args.max_length)
        preds = [r["label_id"] for r in tp.predict(eval_texts, batch_size=16)]
        m = classification_metrics(eval_labels, preds)
        teacher_acc, teacher_f1 = m["accuracy"], m["f1"]
        teacher_scored = "here, with lib.inference.Predictor on the same evaluation reviews"
        del tp
    student_acc = student_job["final"].get("eval_accuracy")

    # 3. CPU inference, side by side
    import random
    rng = random.Random(args.seed)
    speed_texts = rng.sample(eval_texts, min(args.speed_samples, len(eval_texts)))
    latency_texts = rng.sample(eval_texts, min(args.latency_samples, len(eval_texts)))
    teacher = Predictor(str(teacher_dir), max_length=args.max_length)
    student = Predictor(str(student_dir), max_length=args.max_length)
    for p in (teacher, student):
        p.predict(speed_texts[:16], batch_size=16)  # warm-up
    rounds: dict[str, list[dict]] = {"teacher": [], "student": []}
    with Contention() as cont:
        for _ in range(max(1, args.rounds)):
            for name, p in (("teacher", teacher), ("student", student)):
                with Contention() as c:
                    res = speed(p, speed_texts, latency_texts)
                res["other_cores"] = c.other_cores
                rounds[name].append(res)
    best = {k: max(v, key=lambda x: x["reviews_per_s"]) for k, v in rounds.items()}
    best_lat = {k: min(v, key=lambda x: x["p50_ms"]) for k, v in rounds.items()}

    def params(p) -> int:
        return sum(t.numel() for t in p.model.parameters())

    summary = {
        "benchmark": "distill", "command": common.command_line("bench.distill", cli), "data": choice.kind,
        "data_description": choice.description, "environment": env,
        "settings": {"train_samples": args.train_samples, "eval_samples": args.eval_samples,
                     "max_length": args.max_length, "teacher_epochs": args.teacher_epochs if teacher_job else None,
                     "student_epochs": args.student_epochs, "student_layers": args.student_layers, "seed": args.seed,
                     "model": args.model if teacher_job else None},
        "teacher": {"dir": str(teacher_dir), "layers": teacher.model.config.num_hidden_layers, "params": params(teacher),
                    "disk_mib": round(folder_size(teacher_dir) / 2**20, 1), "accuracy": teacher_acc, "f1": teacher_f1,
                    "scored": teacher_scored, "train_wall_s": teacher_job["wall_s"] if teacher_job else None,
                    "train_settings": {k: (teacher_run or {}).get("config", {}).get(k) for k in (
                        "max_train_samples", "num_train_epochs", "learning_rate", "per_device_train_batch_size",
                        "padding", "group_by_length")} if teacher_job is None and teacher_run else None,
                    "reviews_per_s": round(best["teacher"]["reviews_per_s"], 2),
                    "p50_ms": round(best_lat["teacher"]["p50_ms"], 2), "p95_ms": round(best_lat["teacher"]["p95_ms"], 2)},
        "student": {"dir": str(student_dir), "layers": student.model.config.num_hidden_layers, "params": params(student),
                    "disk_mib": round(folder_size(student_dir) / 2**20, 1), "accuracy": student_acc,
                    "f1": student_job["final"].get("eval_f1"), "train_wall_s": student_job["wall_s"],
                    "reviews_per_s": round(best["student"]["reviews_per_s"], 2),
                    "p50_ms": round(best_lat["student"]["p50_ms"], 2), "p95_ms": round(best_lat["student"]["p95_ms"], 2)},
        "baseline": {k: (student_job["baseline"] or {}).get(k) for k in ("accuracy", "f1")},
        "rounds": rounds, "contention": cont.as_dict(),
    }
    acc_ratio = student_acc / teacher_acc if student_acc and teacher_acc else None
    speed_ratio = best["student"]["reviews_per_s"] / best["teacher"]["reviews_per_s"]
    summary.update(accuracy_kept=round(acc_ratio, 4) if acc_ratio else None, throughput_ratio=round(speed_ratio, 3),
                   latency_ratio=round(best_lat["teacher"]["p50_ms"] / best_lat["student"]["p50_ms"], 3),
                   targets={"accuracy_kept>=0.97": bool(acc_ratio and acc_ratio >= 0.97),
                            "throughput_ratio>=1.8": speed_ratio >= 1.8})
    common.log(f"[distill] student keeps {acc_ratio:.1%} of the teacher's accuracy at {speed_ratio:.2f}× its "
               f"throughput ({summary['student']['reviews_per_s']} vs {summary['teacher']['reviews_per_s']} reviews/s)")
    common.save_json(args.out_dir, args.md_section or "distill", summary)
    common.update_markdown(args.md, args.md_section or "distill", markdown(summary),
                           variant=args.md_section)
    common.emit({"data": choice.kind, "teacher_accuracy": teacher_acc, "student_accuracy": student_acc,
                 "accuracy_kept": summary["accuracy_kept"], "throughput_ratio": summary["throughput_ratio"],
                 "latency_ratio": summary["latency_ratio"], "teacher_reviews_per_s": summary["teacher"]["reviews_per_s"],
                 "student_reviews_per_s": summary["student"]["reviews_per_s"], "targets": summary["targets"]})
    return 0


def markdown(s: dict) -> str:
    env, st = s["environment"], s["settings"]
    t, u = s["teacher"], s["student"]
    rows = [[f"teacher ({t['layers']} layers)", t["accuracy"], t["f1"], f"{t['params']:,}", t["disk_mib"],
             t["reviews_per_s"], t["p50_ms"], t["train_wall_s"]],
            [f"student ({u['layers']} layers, distilled)", u["accuracy"], u["f1"], f"{u['params']:,}", u["disk_mib"],
             u["reviews_per_s"], u["p50_ms"], u["train_wall_s"]]]
    if s["baseline"].get("accuracy") is not None:
        rows.append(["TF-IDF baseline (same split)", s["baseline"]["accuracy"], s["baseline"]["f1"], None, None, None,
                     None, None])
    if st["teacher_epochs"]:
        teacher_how = f"fine-tuned by the job ({st['teacher_epochs']:g} epoch, demo recipe)"
    elif t.get("train_settings"):
        ts = t["train_settings"]
        teacher_how = (f"given with --teacher: a run of the job (bundled MiniLM fine-tuned on {ts['max_train_samples']:,} "
                       f"of these training reviews, {ts['num_train_epochs']:g} epoch, batch "
                       f"{ts['per_device_train_batch_size']}, learning rate {ts['learning_rate']})")
    else:
        teacher_how = "given with --teacher"
    teacher_how += f"; teacher accuracy scored {t['scored']}"
    lines = [
        "## 7. Distillation: 6-layer teacher → 3-layer student (issue 10)",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(env)}  ",
        f"Data: {s['data_description']}; a modest subset so it runs on 2 cores: {st['train_samples']:,} seeded "
        f"training reviews, {st['eval_samples']:,} seeded evaluation reviews, max_length {st['max_length']}. "
        f"Teacher: {('`' + st['model'] + '` ') if st.get('model') else ''}{teacher_how}; student: `--preset distill`, the teacher cut to "
        f"{st['student_layers']} layers, {st['student_epochs']:g} epochs on the same reviews. Throughput: "
        "`Predictor.predict`, length-sorted batches of 16; latency: `predict_one`; best of the alternating rounds.",
        "",
        common.md_table(["model", "accuracy", "F1", "parameters", "disk (MiB)", "reviews/s", "p50 latency (ms)",
                         "job wall time (s)"], rows),
        "",
        f"**Student keeps {s['accuracy_kept']:.1%} of the teacher's accuracy** (target ≥ 97 %: "
        f"{'met' if s['targets']['accuracy_kept>=0.97'] else 'not met'}) **at {s['throughput_ratio']:.2f}× its CPU "
        f"throughput** (target ≥ 1.8×: {'met' if s['targets']['throughput_ratio>=1.8'] else 'not met'}); single-review "
        f"latency p50: teacher ÷ student = {s['latency_ratio']:.2f}×.",
    ]
    others = [r["other_cores"] for v in s["rounds"].values() for r in v]
    note = common.shared_note(others, env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Three classes: the fine-tuned transformer against the TF-IDF baseline at equal data.

    python -m bench.multiclass                              # 300 / 150 examples per class, 2 epochs
    python -m bench.multiclass --train-per-class 150 --eval-per-class 100 --epochs 1     # quicker

IMDb has two labels, so the three-class set is built from it, transparently, at run time (nothing is
copied into the repository; the CSV files go to bench/out/multiclass/, which git ignores):

- every example is the ending of one review (its last sentences, at most ``--words`` words) followed
  by the ending of another review;
- **negative**: two endings of negative reviews; **positive**: two endings of positive reviews;
  **mixed**: one ending of a negative and one of a positive review, in random order.

So the three classes have the same shape and length and differ only in the sentiment of their two
halves; "mixed" asks the model to notice that both opinions are there, which bag-of-words features
find hard. Training examples come from IMDb's train split, evaluation examples from its test split
(each review used once). Both models are trained and scored by the real job (``python -m lib.train``):
the bundled MiniLM fine-tuned with the demo recipe, and the TF-IDF + logistic regression baseline the
job fits on the same training split and scores on the same evaluation split.
"""
from __future__ import annotations

import argparse
import csv
import random
import re
import sys
from pathlib import Path

from bench import common

CLASSES = ("negative", "mixed", "positive")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.multiclass", description=__doc__.split("\n\n")[0])
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--eval-per-class", type=int, default=150)
    p.add_argument("--words", type=int, default=35, help="words kept from the end of each review")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--model", default="bundled-minilm")
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=float, default=3600)
    common.add_output_args(p)
    return p


def ending(text: str, words: int) -> str:
    """The last whole sentences of a review, at most ``words`` words (the last ``words`` words of one
    very long final sentence)."""
    sentences = [s for s in _SENTENCE_RE.split(" ".join(text.split())) if s]
    kept: list[str] = []
    count = 0
    for sentence in reversed(sentences):
        n = len(sentence.split())
        if kept and count + n > words:
            break
        kept.insert(0, sentence)
        count += n
    out = " ".join(kept).split()
    return " ".join(out[-words:])


def three_class_rows(texts: list[str], labels: list[int], per_class: int, words: int,
                     seed: int) -> list[tuple[str, str]]:
    """``per_class`` examples of each class (see the module docstring), shuffled; each review used once."""
    rng = random.Random(seed)
    neg = [t for t, y in zip(texts, labels) if y == 0]
    pos = [t for t, y in zip(texts, labels) if y == 1]
    rng.shuffle(neg)
    rng.shuffle(pos)
    need = 3 * per_class
    if len(neg) < need or len(pos) < need:
        raise SystemExit(f"error: {per_class} examples per class need {need} negative and {need} positive reviews; "
                         f"the split has {len(neg)} and {len(pos)}")
    neg_end = [ending(t, words) for t in neg[:need]]
    pos_end = [ending(t, words) for t in pos[:need]]
    rows = []
    for i in range(per_class):
        rows.append((f"{neg_end[2 * i]} {neg_end[2 * i + 1]}", "negative"))
        rows.append((f"{pos_end[2 * i]} {pos_end[2 * i + 1]}", "positive"))
        halves = [neg_end[2 * per_class + i], pos_end[2 * per_class + i]]
        rng.shuffle(halves)
        rows.append((" ".join(halves), "mixed"))
    rng.shuffle(rows)
    return rows


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    env = common.environment()
    choice = common.choose_data(args.data)
    out = Path(args.out_dir) / "multiclass"
    train_texts, train_labels, _ = common.load_split(choice, "train", seed=args.seed)
    test_texts, test_labels, _ = common.load_split(choice, "test", seed=args.seed)
    train_csv = write_rows(out / "train.csv", three_class_rows(train_texts, train_labels, args.train_per_class,
                                                                args.words, args.seed))
    eval_csv = write_rows(out / "eval.csv", three_class_rows(test_texts, test_labels, args.eval_per_class,
                                                              args.words, args.seed + 1))
    common.log(f"[multiclass] {3 * args.train_per_class} training and {3 * args.eval_per_class} evaluation examples "
               f"from {choice.kind}")
    fields = {"run_name": "bench: three classes", "model": args.model, "dataset": str(train_csv),
              "test_file": str(eval_csv), "num_train_epochs": args.epochs, "max_length": args.max_length,
              "eval_strategy": "no", "save_strategy": "no", "logging_steps": 20, "seed": args.seed,
              "report_tensorboard": False, "device": "cpu"}
    job = common.run_training_job("demo", fields, out / "runs", out / "job.log", timeout=args.timeout)
    info = job["data_info"]
    final, base = job["final"], job["baseline"]
    names = info.get("label_names") or list(CLASSES)
    from lib.job.baseline import class_keys
    keys = class_keys(names)
    per_class = [{"class": n, "model_f1": final.get(f"eval_f1_{k}"), "tfidf_f1": base.get(f"f1_{k}"),
                  "model_recall": final.get(f"eval_recall_{k}"), "tfidf_recall": base.get(f"recall_{k}")}
                 for n, k in zip(names, keys)]
    summary = {
        "benchmark": "multiclass", "command": common.command_line("bench.multiclass", cli), "environment": env,
        "data": choice.description, "data_kind": choice.kind, "label_names": names,
        "class_counts": info.get("class_counts"), "train_size": info.get("rows", {}).get("train"),
        "eval_size": info.get("rows", {}).get("test"), "words": args.words, "epochs": args.epochs,
        "max_length": args.max_length, "model": args.model,
        "model_metrics": {k: common.r(final.get(f"eval_{k}"), 4) for k in ("accuracy", "f1", "roc_auc")},
        "tfidf_metrics": {k: common.r(base.get(k), 4) for k in ("accuracy", "f1", "roc_auc")},
        "per_class": [{k: common.r(v, 4) for k, v in row.items()} for row in per_class],
        "job_wall_s": job["wall_s"], "train_runtime_s": common.r(job["end"].get("train_runtime"), 1),
        "tfidf_seconds": base.get("seconds"), "contention": job["contention"],
    }
    common.save_json(args.out_dir, args.md_section or "multiclass", summary)
    common.update_markdown(args.md, args.md_section or "multiclass", markdown(summary), variant=args.md_section)
    common.emit({"model_accuracy": summary["model_metrics"]["accuracy"],
                 "model_macro_f1": summary["model_metrics"]["f1"],
                 "tfidf_accuracy": summary["tfidf_metrics"]["accuracy"],
                 "tfidf_macro_f1": summary["tfidf_metrics"]["f1"], "job_wall_s": summary["job_wall_s"]})
    return 0


def markdown(s: dict) -> str:
    m, t = s["model_metrics"], s["tfidf_metrics"]
    rows = [["accuracy", m["accuracy"], t["accuracy"]], ["macro-F1", m["f1"], t["f1"]],
            ["ROC-AUC (one-vs-rest, macro)", m["roc_auc"], t["roc_auc"]]]
    per = [[p["class"], p["model_f1"], p["tfidf_f1"], p["model_recall"], p["tfidf_recall"]] for p in s["per_class"]]
    made_of = ("IMDb" if s["data_kind"] == "imdb" else "the built-in demo reviews")
    other = (s.get("contention") or {}).get("other_cores")
    own = (s.get("contention") or {}).get("own_cores")
    return "\n".join([
        "## Three classes: fine-tuned transformer vs TF-IDF at equal data",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(s['environment'])}  ",
        f"Data: a three-class set built from {made_of} at run time ({s['data']}): each example is the ending "
        f"of one review (its last sentences, at most {s['words']} words) followed by the ending of another. "
        "**negative** = two negative endings, **positive** = two positive endings, **mixed** = one of each in "
        "random order. Training examples from IMDb's train split, evaluation examples from its test split, every "
        f"review used once; {s['train_size']:,} training and {s['eval_size']:,} evaluation examples, balanced. "
        "No text is stored in the repository (the CSVs are written to bench/out/multiclass/).  ",
        f"Both models come from one run of the real job: `{s['model']}` fine-tuned with the demo recipe "
        f"({s['epochs']:g} epochs, max_length {s['max_length']}), and the TF-IDF (1-2 grams) + logistic "
        "regression baseline the job fits on the same training split and scores on the same evaluation split.",
        "",
        common.md_table(["metric (eval split)", f"{s['model']} fine-tuned", "TF-IDF baseline"], rows),
        "",
        common.md_table(["class", "F1 (model)", "F1 (TF-IDF)", "recall (model)", "recall (TF-IDF)"], per),
        "",
        f"The whole job took {s['job_wall_s']:.0f} s (training {s['train_runtime_s']} s; the baseline "
        f"{s['tfidf_seconds']} s)." + (f" Other processes kept {other:.2f} cores busy on average meanwhile and "
                                        f"the job got {own:.2f} of the {s['environment']['cpu_count']} cores, so "
                                        "its work amounts to about "
                                        f"{s['job_wall_s'] * own / s['environment']['cpu_count'] / 60:.0f} minutes on idle cores (estimated from the CPU time it got)."
                                        if isinstance(other, (int, float)) and own else ""),
    ])


if __name__ == "__main__":
    sys.exit(main())

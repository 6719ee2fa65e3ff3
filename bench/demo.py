"""The demo preset end to end, and how its model does on real reviews.

    python -m bench.demo                     # three seeds: 42, 43, 44
    python -m bench.demo --seeds 42          # one seed, a quicker look

For each seed the real training job runs the ``demo`` preset exactly as the Train page launches it
(``python -m lib.train --preset demo --set seed=N``: the bundled MiniLM on the built-in reviews), in
its own process and run directory under ``bench/out/demo/runs``. Recorded per seed: the job's wall
time, its own training time (the Trainer's ``train_runtime``) and the CPU time the job used, the
accuracy on the built-in eval split, and the TF-IDF + logistic-regression baseline the job scores on
the same split (``baseline.json``).

The eval split is split up further: the reviews as written, and their minimal revisions with the
opposite verdict (``data/demo_reviews/*_revised.jsonl``), for the model (its ``eval_predictions.jsonl``)
and for the same TF-IDF baseline refitted here on the same training reviews.

Then the exported model is served the way a person would use it from the command line,
``python -m lib.predict --model RUN/model --csv ... --out ...`` with its default settings, on a seeded
1,000 of the real IMDb test reviews (``../shared/data/imdb/test.parquet``, text as it is, ``<br />``
tags included). The sample is the same for every seed, so the seeds differ only in training. IMDb is
used only for this measurement: nothing from it is trained on or kept in the project; the sample's CSV
goes to ``bench/out/demo/`` (git-ignored). The TF-IDF baseline trained on the built-in training reviews
is scored on the same IMDb sample, and the built-in reviews are checked against every IMDb review for
shared word sequences (the longest one shared, and how many 8-word sequences are shared: common phrases
such as "one of the worst movies i've ever seen"). Without the IMDb files the real-review part is skipped.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import common
from lib.util.contention import Contention

NAME = "demo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="42,43,44", help="comma-separated training seeds (default 42,43,44)")
    p.add_argument("--imdb-samples", type=int, default=1000, help="real IMDb test reviews to predict (default 1000)")
    p.add_argument("--imdb-seed", type=int, default=42, help="seed of the IMDb sample (default 42)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per training job")
    common.add_output_args(p)
    return p


def imdb_sample(n: int, seed: int, out_dir: Path) -> Path | None:
    """A seeded sample of the IMDb test reviews as a CSV (text, label) under ``out_dir``; None without IMDb."""
    if not common.imdb_available():
        return None
    import pandas as pd
    df = pd.read_parquet(common.imdb_dir() / "test.parquet", columns=["text", "label"])
    sample = df.sample(n=min(n, len(df)), random_state=seed)
    path = out_dir / f"imdb_test_{len(sample)}_seed{seed}.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    sample.to_csv(path, index=False)
    return path


def predict_accuracy(model_dir: str, sample_csv: Path, out_csv: Path, label_names: list[str]) -> dict:
    """``python -m lib.predict`` with its defaults on the sample; accuracy against the sample's labels."""
    argv = [sys.executable, "-m", "lib.predict", "--model", model_dir, "--csv", str(sample_csv),
            "--text-column", "text", "--out", str(out_csv)]
    with Contention() as cont:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=common.ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: lib.predict failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    right = total = positive = 0
    with open(out_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            total += 1
            predicted = label_names.index(row["predicted_label"]) if row["predicted_label"] in label_names else -1
            positive += predicted == 1
            right += predicted == int(row["label"])
    return {"accuracy": right / total if total else None, "reviews": total,
            "predicted_positive_share": positive / total if total else None, "wall_s": round(wall, 1),
            "reviews_per_s": round(total / wall, 1) if wall else None, "contention": cont.as_dict()}


def _revised_texts() -> set[str]:
    import json

    from lib.sources.demo_data import DEMO_DIR, REVISED_SUFFIX
    return {json.loads(line)["text"] for path in DEMO_DIR.glob(f"*{REVISED_SUFFIX}")
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def eval_parts(run_dir: Path) -> dict:
    """The model's accuracy on the eval reviews as written and on their revisions (eval_predictions.jsonl)."""
    import json
    revised = _revised_texts()
    hits: dict[str, list[int]] = {"as_written": [], "revised": []}
    for line in (run_dir / "eval_predictions.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            hits["revised" if row["text"] in revised else "as_written"].append(int(row["pred"] == row["label"]))
    return {k: (sum(v) / len(v) if v else None) for k, v in hits.items()}


def tfidf_parts(sample_csv: Path | None) -> dict:
    """The job's TF-IDF baseline, refitted on the built-in training reviews: eval split parts and IMDb."""
    from lib.job.baseline import tfidf_baseline
    from lib.sources.data import demo_reviews
    ds = demo_reviews()
    revised = _revised_texts()
    train, test = ds["train"], ds["test"]
    out = {}
    for part, keep in (("as_written", False), ("revised", True)):
        rows = [i for i, t in enumerate(test["text"]) if (t in revised) == keep]
        out[part] = tfidf_baseline(train["text"], train["label"], [test["text"][i] for i in rows],
                                   [test["label"][i] for i in rows])["accuracy"]
    if sample_csv is not None:
        import pandas as pd
        df = pd.read_csv(sample_csv)
        out["imdb"] = tfidf_baseline(train["text"], train["label"], df["text"].astype(str).tolist(),
                                     df["label"].astype(int).tolist())["accuracy"]
    return out


def imdb_overlap(n: int = 8) -> dict:
    """Word sequences the built-in reviews share with any IMDb review: how many ``n``-word ones, and the
    longest (checked by extending the shared ``n``-grams)."""
    import json
    import re

    import pandas as pd

    from lib.sources.demo_data import DEMO_DIR
    words = re.compile(r"[a-z0-9']+")
    ours: list[list[str]] = []
    for path in sorted(DEMO_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                ours.append(words.findall(json.loads(line)["text"].lower().replace("<br />", " ")))
    grams = {" ".join(w[j:j + n]) for w in ours for j in range(len(w) - n + 1)}
    shared: set[str] = set()
    imdb_texts = []
    for split in ("train", "test"):
        for text in pd.read_parquet(common.imdb_dir() / f"{split}.parquet", columns=["text"])["text"]:
            w = words.findall(str(text).lower().replace("<br />", " "))
            found = {g for g in (" ".join(w[j:j + n]) for j in range(len(w) - n + 1)) if g in grams}
            if found:
                shared |= found
                imdb_texts.append(w)   # only reviews sharing something can share something longer
    longest = n - 1 if not shared else n
    if shared:  # grow the shared sequences one word at a time while some still match
        length = n
        while True:
            length += 1
            ours_l = {" ".join(w[j:j + length]) for w in ours for j in range(len(w) - length + 1)}
            if not any(" ".join(w[j:j + length]) in ours_l for w in imdb_texts for j in range(len(w) - length + 1)):
                break
            longest = length
    return {"n": n, "shared_ngrams": len(shared), "longest_shared_words": longest,
            "examples": sorted(shared)[:5]}


def run_seed(seed: int, out_dir: Path, sample_csv: Path | None, timeout: float) -> dict:
    job = common.run_training_job(NAME, {"seed": seed, "report_tensorboard": False}, out_dir / "runs",
                                  out_dir / f"seed{seed}.stdout.log", timeout=timeout)
    final, end, base, info = job["final"], job["end"], job["baseline"], job["data_info"]
    cont = job["contention"]
    cpu_s = round(cont["own_cores"] * cont["seconds"], 1) if cont.get("own_cores") is not None else None
    row = {"seed": seed, "run_dir": job["run_dir"], "wall_s": job["wall_s"], "train_s": end.get("train_runtime"),
           "job_cpu_s": cpu_s, "eval_accuracy": final.get("eval_accuracy"), "tfidf_accuracy": base.get("accuracy"),
           "train_reviews": base.get("train_size"), "eval_reviews": base.get("eval_size"),
           "data_description": info.get("description"), "contention": cont}
    if row["eval_accuracy"] is not None and row["tfidf_accuracy"] is not None:
        row["gap_points"] = round(100 * (row["eval_accuracy"] - row["tfidf_accuracy"]), 1)
    row["eval_parts"] = eval_parts(Path(job["run_dir"]))
    common.log(f"[demo] seed {seed}: wall {row['wall_s']} s, training {row['train_s']} s, eval "
               f"{row['eval_accuracy']}, TF-IDF {row['tfidf_accuracy']}")
    if sample_csv is not None:
        import json
        config = json.loads((Path(job["run_dir"]) / "config.json").read_text(encoding="utf-8"))
        row["imdb"] = predict_accuracy(str(Path(job["run_dir"]) / "model"), sample_csv,
                                       out_dir / f"seed{seed}.imdb_predictions.csv", list(config["label_names"]))
        common.log(f"[demo] seed {seed}: {row['imdb']['accuracy']:.3f} of {row['imdb']['reviews']} real IMDb test "
                   f"reviews right ({row['imdb']['wall_s']} s through lib.predict)")
    return row


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: --seeds must be comma-separated integers, got {args.seeds!r}") from None
    if not seeds:
        raise SystemExit("error: --seeds is empty")
    env = common.environment()
    out_dir = Path(args.out_dir) / NAME
    sample_csv = imdb_sample(args.imdb_samples, args.imdb_seed, out_dir)
    rows = [run_seed(s, out_dir, sample_csv, args.timeout) for s in seeds]
    tfidf = tfidf_parts(sample_csv)
    overlap = imdb_overlap() if sample_csv is not None else None
    from lib.config import PRESETS
    summary = {
        "benchmark": NAME, "command": common.command_line("bench.demo", cli), "environment": env,
        "preset": PRESETS[NAME], "imdb_sample": None if sample_csv is None else
        {"file": "../shared/data/imdb/test.parquet", "reviews": args.imdb_samples, "seed": args.imdb_seed},
        "rows": rows, "tfidf": tfidf, "imdb_overlap": overlap,
        "mean": {k: _mean([r.get(k) for r in rows]) for k in ("wall_s", "train_s", "job_cpu_s", "eval_accuracy",
                                                             "tfidf_accuracy", "gap_points")},
    }
    summary["mean"]["imdb_accuracy"] = _mean([(r.get("imdb") or {}).get("accuracy") for r in rows])
    for part in ("as_written", "revised"):
        summary["mean"][f"eval_{part}"] = _mean([r["eval_parts"].get(part) for r in rows])
    common.save_json(args.out_dir, args.md_section or NAME, summary)
    common.update_markdown(args.md, args.md_section or NAME, markdown(summary), variant=args.md_section)
    common.emit({"seeds": seeds, **{k: common.r(v, 4) for k, v in summary["mean"].items()}})
    return 0


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f} %"


def markdown(s: dict) -> str:
    rows, others = [], []
    for r in s["rows"]:
        imdb = r.get("imdb") or {}
        others += [r["contention"].get("other_cores"), (imdb.get("contention") or {}).get("other_cores")]
        rows.append([r["seed"], f"{r['wall_s']:.0f}", None if r["train_s"] is None else f"{r['train_s']:.0f}",
                     None if r["job_cpu_s"] is None else f"{r['job_cpu_s']:.0f}", _pct(r["eval_accuracy"]),
                     _pct(r["tfidf_accuracy"]), None if r.get("gap_points") is None else f"{r['gap_points']:+.1f}",
                     _pct(imdb.get("accuracy")), imdb.get("wall_s"),
                     r["contention"].get("other_cores")])
    m = s["mean"]
    rows.append(["mean", f"{m['wall_s']:.0f}", None if m["train_s"] is None else f"{m['train_s']:.0f}",
                 None if m["job_cpu_s"] is None else f"{m['job_cpu_s']:.0f}", _pct(m["eval_accuracy"]),
                 _pct(m["tfidf_accuracy"]), None if m["gap_points"] is None else f"{m['gap_points']:+.1f}",
                 _pct(m["imdb_accuracy"]), None, None])
    p = s["preset"]
    first = s["rows"][0]
    frozen = " and ".join(x for x in (["embeddings"] if p.get("freeze_embeddings") else [])
                          + ([f"first {p['frozen_layers']} layers"] if p.get("frozen_layers") else []))
    recipe = (f"`{p['model']}`, max_length {p['max_length']}"
              + (f" (head+tail: first {p['head_tokens']} tokens and the end)" if p.get("head_tokens") else "")
              + f", {p['num_train_epochs']:g} epoch(s), batch {p['per_device_train_batch_size']}, learning rate "
              f"{p['learning_rate']:g}, warm-up {p['warmup_steps']:g}, {p['padding']} padding"
              + (f", frozen: {frozen}" if frozen else "") + f", evaluation `{p.get('eval_strategy')}`")
    imdb = s["imdb_sample"]
    real = (f"Real reviews: a seeded {imdb['reviews']:,} (seed {imdb['seed']}) of the IMDb test reviews "
            f"(`{imdb['file']}`, text as it is), predicted by `python -m lib.predict --model RUN/model --csv ...` "
            "with its defaults (int8; onnxruntime on the run's ONNX export; text prepared as in training); the "
            "same reviews for every seed. IMDb is never trained on." if imdb
            else "Real reviews: skipped (IMDb files not found).")
    t = s.get("tfidf") or {}
    parts = ("Eval split in parts (mean over seeds): reviews as written — model "
             f"{_pct(m.get('eval_as_written'))}, TF-IDF {_pct(t.get('as_written'))}; their minimal revisions "
             f"with the opposite verdict — model {_pct(m.get('eval_revised'))}, TF-IDF {_pct(t.get('revised'))} (this "
             "TF-IDF is trained on all the built-in training reviews). The same TF-IDF gets "
             f"{_pct(t.get('imdb'))} of the IMDb sample right.")
    o = s.get("imdb_overlap")
    overlap = ("" if not o else f"Shared with IMDb (all 50,000 reviews): {o['shared_ngrams']} {o['n']}-word "
               f"sequences (common phrases), the longest shared sequence is {o['longest_shared_words']} words.")
    return "\n".join([
        "## The demo preset: training time, eval split vs TF-IDF, and real IMDb reviews",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(s['environment'])}  ",
        f"Preset `demo`: {recipe}; {first.get('train_reviews')} built-in training reviews, "
        f"{first.get('eval_reviews')} eval reviews (other films and styles). Each seed is the real job "
        "(`python -m lib.train --preset demo --set seed=N`); TF-IDF is the baseline the job itself scores on the "
        "same eval split. Job CPU time is what the job process used on all cores (on 2 idle cores the wall time "
        "is about half of it).  ",
        real,
        "",
        parts + (" " + overlap if overlap else ""),
        "",
        common.md_table(["seed", "job wall (s)", "training (s)", "job CPU (s)", "eval accuracy", "TF-IDF",
                         "gap (points)", "real IMDb accuracy", "predict wall (s)", "other cores busy"], rows),
        "",
        common.shared_note(others, s["environment"].get("cpu_count")),
    ])


if __name__ == "__main__":
    sys.exit(main())

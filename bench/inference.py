"""Inference: single-review latency with a cached model, and CSV batch throughput.

    python -m bench.inference                                  # bundled MiniLM, IMDb test reviews
    python -m bench.inference --model runs/<id>/model          # a trained run's export
    python -m bench.inference --latency-samples 50 --batch-samples 128

The model is loaded once (``lib.inference.Predictor``, as the Runs page caches it) and warmed up;
then:

- latency: ``Predictor.predict_one`` on ``--latency-samples`` seeded IMDb test reviews (their real
  lengths: median ~230 tokens), one at a time, and on the Runs page's short example reviews; p50/p95;
- CSV mode: ``lib.inference.predict_frame`` over ``--batch-samples`` reviews in a DataFrame, with the
  Predictor's length-sorted batches (what the app does) and, in the same run, with batches in file
  order (the same code with the sort switched off), at ``--batch-size``.

The bundled MiniLM before fine-tuning costs exactly what a fine-tuned MiniLM costs (same network;
only the head's weights differ), so it is the default model. Falls back to plain transformers when
``lib.inference`` is missing.
"""
from __future__ import annotations

import argparse
import sys
import time
import types

from bench import common


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled-minilm", help="bundled-minilm (default) or a model folder")
    p.add_argument("--latency-samples", type=int, default=200)
    p.add_argument("--example-repeats", type=int, default=25, help="times each short example review is predicted")
    p.add_argument("--batch-samples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16, help="CSV mode batch size (default 16, the app's)")
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    p.add_argument("--seed", type=int, default=42)
    common.add_output_args(p)
    return p


class _PlainPredictor:
    """Fallback when lib.inference is missing: tokenizer + model, length-sorted batches."""

    def __init__(self, source: str):
        import torch
        from lib.models import load_model, load_tokenizer
        torch.manual_seed(0)
        self.model = load_model(source, ["NEGATIVE", "POSITIVE"] if source == "bundled-minilm" else None).eval()
        self.tokenizer = load_tokenizer(source)
        self.max_length = 512
        self.label_names = ["NEGATIVE", "POSITIVE"]

    def _encode(self, texts, max_tokens):
        enc = self.tokenizer(texts, truncation=True, max_length=max_tokens)
        return [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))], [False] * len(texts)

    def _forward(self, items):
        import torch
        batch = self.tokenizer.pad(items, return_tensors="pt")
        with torch.inference_mode():
            return torch.softmax(self.model(**batch).logits.float(), -1).tolist()

    def predict(self, texts, batch_size=16):
        texts = list(texts)
        items, _ = self._encode(texts, self.max_length)
        order = sorted(range(len(texts)), key=lambda k: len(items[k]["input_ids"]))
        out = [None] * len(texts)
        for s in range(0, len(order), batch_size):
            chunk = order[s:s + batch_size]
            for k, p in zip(chunk, self._forward([items[k] for k in chunk])):
                out[k] = {"label": self.label_names[int(p[1] > p[0])], "scores": dict(zip(self.label_names, p)),
                          "confidence": max(p), "truncated": False, "tokens": len(items[k]["input_ids"])}
        return out

    def predict_one(self, text):
        t0 = time.perf_counter()
        r = self.predict([text])[0]
        r["latency_ms"] = (time.perf_counter() - t0) * 1000
        return r


def predict_in_file_order(self, texts, batch_size: int = 16):
    """``Predictor.predict`` without the length sort: batches in the order the texts came."""
    texts = list(texts)
    items, truncated = self._encode(texts, self.max_length)
    results = []
    for start in range(0, len(items), max(1, int(batch_size))):
        chunk = items[start:start + batch_size]
        for k, p in enumerate(self._forward(chunk)):
            best = max(range(len(p)), key=p.__getitem__)
            results.append({"label": self.label_names[best], "label_id": best,
                            "scores": {self.label_names[j]: p[j] for j in range(len(p))}, "confidence": p[best],
                            "truncated": truncated[start + k], "tokens": len(chunk[k]["input_ids"])})
    return results


def latency_stats(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(common.percentile(ms, 50), 2), "p95_ms": round(common.percentile(ms, 95), 2),
            "mean_ms": round(sum(ms) / len(ms), 2) if ms else None, "max_ms": round(max(ms), 2) if ms else None}


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    import pandas as pd

    choice = common.choose_data(args.data)
    env = common.environment()
    try:
        from lib import inference as inf
        have_lib = hasattr(inf, "Predictor")
    except ImportError:
        inf, have_lib = None, False

    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
        env["torch_threads"] = torch.get_num_threads()
    t0 = time.perf_counter()
    predictor = inf.Predictor(args.model) if have_lib else _PlainPredictor(args.model)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictor.predict_one("A first review to warm the model up.")
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(5):
        predictor.predict_one("Another warm-up review: the acting was fine, the plot less so.")

    n_lat = max(args.latency_samples, 0)
    n_batch = max(args.batch_samples, 0)
    texts, _, _ = common.load_split(choice, "test", max(n_lat, n_batch, 1), seed=args.seed)
    import random
    rng = random.Random(args.seed)
    lat_texts = rng.sample(texts, min(n_lat, len(texts)))
    batch_texts = rng.sample(texts, min(n_batch, len(texts)))
    common.log(f"[inference] data: {choice.description}; model {args.model} ({'lib.inference.Predictor' if have_lib else 'plain transformers'}), "
               f"loaded in {load_s:.2f} s, first prediction {first_ms:.0f} ms")

    # 1. single-review latency
    with common.Contention() as c_lat:
        ms, tokens = [], []
        for text in lat_texts:
            res = predictor.predict_one(text)
            ms.append(res["latency_ms"])
            tokens.append(res.get("tokens", 0))
    examples = list(getattr(inf, "EXAMPLES", {}).values()) if have_lib else [
        "A warm, funny and beautifully acted film. I would happily watch it again."]
    with common.Contention() as c_ex:
        ex_ms = []
        for _ in range(args.example_repeats):
            for text in examples:
                ex_ms.append(predictor.predict_one(text)["latency_ms"])
    latency = latency_stats(ms)
    latency["median_tokens"] = int(common.percentile(tokens, 50)) if tokens else None
    latency["contention"] = c_lat.as_dict()
    example_latency = latency_stats(ex_ms)
    example_latency["contention"] = c_ex.as_dict()
    common.log(f"[inference] latency over {latency['n']} {choice.kind} reviews (median {latency['median_tokens']} tokens): "
               f"p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms; short examples p50 "
               f"{example_latency['p50_ms']} ms")

    # 2. CSV batch mode: sorted (the app) vs file order, same reviews, same batch size
    df = pd.DataFrame({"review": batch_texts})
    batch: dict[str, dict] = {}
    frame_fn = getattr(inf, "predict_frame", None) if have_lib else None
    sorted_predict = predictor.predict
    for mode in ("sorted", "file_order"):
        predictor.predict = sorted_predict if mode == "sorted" else types.MethodType(predict_in_file_order, predictor)
        try:
            with common.Contention() as c:
                t0 = time.perf_counter()
                if frame_fn is not None:
                    out = frame_fn(predictor, df, "review", batch_size=args.batch_size)
                    labels = out["predicted_label"].tolist()
                else:
                    labels = [r["label"] for r in predictor.predict(batch_texts, batch_size=args.batch_size)]
                secs = time.perf_counter() - t0
        finally:
            predictor.predict = sorted_predict
        batch[mode] = {"reviews": len(batch_texts), "seconds": round(secs, 3),
                       "reviews_per_s": round(len(batch_texts) / secs, 2) if secs else None,
                       "labels": labels, "contention": c.as_dict()}
        common.log(f"[inference] CSV mode, {mode:10s}: {batch[mode]['reviews_per_s']} reviews/s "
                   f"({len(batch_texts)} reviews in {secs:.1f} s, batch {args.batch_size})")
    same = batch["sorted"].pop("labels") == batch["file_order"].pop("labels")
    if choice.kind == "imdb" and frame_fn is not None:  # short reviews too: the built-in demo reviews
        short, _, _ = common.load_split(common.choose_data("demo"), "train", None)
        with common.Contention() as c:
            t0 = time.perf_counter()
            frame_fn(predictor, pd.DataFrame({"review": short}), "review", batch_size=args.batch_size)
            secs = time.perf_counter() - t0
        batch["sorted_short_reviews"] = {"reviews": len(short), "seconds": round(secs, 3),
                                         "reviews_per_s": round(len(short) / secs, 2), "contention": c.as_dict(),
                                         "note": "built-in demo reviews (about 50 tokens each)"}
        common.log(f"[inference] CSV mode, sorted, short demo reviews: {batch['sorted_short_reviews']['reviews_per_s']} "
                   "reviews/s")
    if hasattr(predictor, "__dict__") and "predict" in predictor.__dict__:
        del predictor.__dict__["predict"]

    sorted_rps = batch["sorted"]["reviews_per_s"]
    summary = {
        "benchmark": "inference", "command": common.command_line("bench.inference", cli), "data": choice.kind,
        "data_description": choice.description, "model": args.model,
        "predictor": "lib.inference.Predictor" if have_lib else "plain transformers (lib.inference missing)",
        "environment": env, "load_s": round(load_s, 3), "first_prediction_ms": round(first_ms, 1),
        "latency": latency, "example_latency": example_latency, "batch_size": args.batch_size, "csv": batch,
        "same_predictions_sorted_and_file_order": same,
        "p50_ms": latency["p50_ms"], "p95_ms": latency["p95_ms"], "csv_reviews_per_s": sorted_rps,
        "csv_reviews_per_s_file_order": batch["file_order"]["reviews_per_s"],
        "sort_speedup": round(sorted_rps / batch["file_order"]["reviews_per_s"], 3)
        if batch["file_order"]["reviews_per_s"] else None,
    }
    summary["targets"] = {"p50<=35ms": latency["p50_ms"] <= 35.0, "csv>=40/s": (sorted_rps or 0) >= 40.0}
    common.save_json(args.out_dir, args.md_section or "inference", summary)
    common.update_markdown(args.md, args.md_section or "inference", markdown(summary),
                           variant=args.md_section)
    common.emit({k: summary[k] for k in ("data", "model", "p50_ms", "p95_ms", "csv_reviews_per_s",
                                         "csv_reviews_per_s_file_order", "sort_speedup", "targets")}
                | {"example_p50_ms": example_latency["p50_ms"], "median_tokens": latency["median_tokens"]})
    return 0


def markdown(s: dict) -> str:
    env = s["environment"]
    lat, ex = s["latency"], s["example_latency"]
    rows = [
        [f"{lat['n']} {'IMDb test' if s['data'] == 'imdb' else 'demo'} reviews, one at a time (median "
         f"{lat['median_tokens']} tokens)", lat["p50_ms"], lat["p95_ms"], lat["mean_ms"], lat["contention"]["other_cores"]],
        [f"the Runs page's short example reviews ({ex['n']} predictions)", ex["p50_ms"], ex["p95_ms"], ex["mean_ms"],
         ex["contention"]["other_cores"]],
    ]
    kind = "IMDb test" if s["data"] == "imdb" else "demo"
    names = {"sorted": f"{kind} reviews, length-sorted batches (the app)",
             "file_order": f"{kind} reviews, batches in file order",
             "sorted_short_reviews": "short reviews (built-in demo set, ~50 tokens), length-sorted"}
    csv_rows = [[names.get(mode, mode), v["reviews"], v["seconds"], v["reviews_per_s"], v["contention"]["other_cores"]]
                for mode, v in s["csv"].items()]
    lines = [
        "## 4. Inference: single-review latency and CSV batch throughput",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(env)}  ",
        f"Model: `{s['model']}` through {s['predictor']}, loaded once ({s['load_s']:.2f} s; first prediction "
        f"{s['first_prediction_ms']:.0f} ms) and warmed up. Data: {s['data_description']}.",
        "",
        common.md_table(["single-review latency", "p50 (ms)", "p95 (ms)", "mean (ms)", "other procs' cores"], rows),
        "",
        common.md_table([f"CSV mode (predict_frame, batch {s['batch_size']})", "reviews", "seconds", "reviews/s",
                         "other procs' cores"], csv_rows),
        "",
        f"**p50 {s['p50_ms']} ms** (median review {lat['median_tokens']} tokens) on {'real IMDb' if s['data'] == 'imdb' else 'demo'} reviews (target ≤ 35 ms: "
        f"{'met' if s['targets']['p50<=35ms'] else 'not met'}); **CSV {s['csv_reviews_per_s']} reviews/s** with "
        f"length-sorted batches (target ≥ 40: {'met' if s['targets']['csv>=40/s'] else 'not met'}), "
        f"{s['sort_speedup']}× the file-order batches; predictions identical either way: "
        f"{'yes' if s['same_predictions_sorted_and_file_order'] else 'no'}.",
    ]
    note = common.shared_note([lat["contention"]["other_cores"], ex["contention"]["other_cores"],
                               *[v["contention"]["other_cores"] for v in s["csv"].values()]], env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

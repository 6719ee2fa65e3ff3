"""ONNX Runtime vs PyTorch vs plain ``transformers.pipeline()``: single-review latency, CSV throughput,
agreement with full precision, and whole-process time for a 500-review CSV.

    python -m bench.onnx_runtime                              # MiniLM briefly fine-tuned here (cached)
    python -m bench.onnx_runtime --model runs/<id>/model      # a trained run's export
    python -m bench.onnx_runtime --head fresh                 # untrained head (speed only)

The model: ``--model DIR``, or the bundled MiniLM with a 2-label head. Speed does not depend on the head,
but agreement does: an untrained head puts nearly every review on the decision boundary, where any
rounding flips the label. So by default the bundled MiniLM is fine-tuned here for one short epoch
(``--finetune-samples`` IMDb training reviews at 128 tokens, plain PyTorch loop) into
``bench/out/onnx_runtime/model-*`` and reused on the next run. ``--head fresh`` skips that.

The model is exported with ``lib.job.onnx_export.export_onnx`` (fp32 and int8) and, side by side in one
process, on the same real IMDb test reviews (cleaned as the training job cleans them: ``<br />`` → line
break), at ``--max-length`` tokens:

- ``pipeline``: ``transformers.pipeline("text-classification", model=DIR)`` with truncation, all scores;
  CSV mode as a plain user would call it on a list (batch_size 1, its default) and with batch_size 16;
- ``torch fp32`` / ``torch int8``: the app's Predictor (``predict_one``; CSV through ``predict_frame``,
  length-sorted batches of ``--batch-size``);
- ``onnx fp32`` / ``onnx int8``: the same Predictor code with its forward pass replaced by
  ``OnnxClassifier.logits`` (tokenization, batching and softmax unchanged): how the app would use it.

Measured: single-review p50/p95 (each review through every variant in turn, rotating the order),
CSV reviews/s (``--csv-rounds`` alternating passes over ``--csv-samples`` reviews, median), agreement of
each fast variant's labels with full precision (torch fp32) on ``--agreement-samples`` reviews, and the
ratio to the fp32 floor: a forward's FLOPs ÷ this machine's measured fp32 GEMM rate (torch matmul of the
encoder's own shapes). Whole process: a 500-review CSV through a short ``pipeline()`` script vs a short
onnxruntime script (``tokenizers`` + ``OnnxClassifier``, no torch import), each a ``python -c``
subprocess, alternating, median of ``--process-rounds``.

Other processes' CPU use is sampled with psutil throughout (machine busy time minus this process tree)
and reported per part. Output: ``bench/out/onnx_runtime-<max_length>-t<threads>.json`` and ``.md``
(git-ignored); the last stdout line is the JSON result. The review texts written for the whole-process
part are deleted afterwards.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from lib.util.contention import machine_busy_seconds, process_tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WORK = OUT / "onnx_runtime"
IMDB = ROOT.parent / "shared" / "data" / "imdb"
BR_RE = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)     # the training job's strip_html cleaning
LABELS = ["NEGATIVE", "POSITIVE"]
VARIANTS = ("pipeline", "torch_fp32", "torch_int8", "onnx_fp32", "onnx_int8")
SETTLE_S = 0.3          # pause between variants: thread pools stop spinning before the next one is timed
TARGETS = {"single_p50_x": 2.5, "csv_in_process_x": 4.0, "whole_process_x": 3.0, "agreement": 0.985}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.onnx_runtime", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a save_pretrained folder (default: MiniLM fine-tuned here)")
    p.add_argument("--head", choices=["finetune", "fresh"], default="finetune",
                   help="without --model: fine-tune briefly (default) or keep the untrained head")
    p.add_argument("--finetune-samples", type=int, default=2000)
    p.add_argument("--max-length", type=int, default=512, help="tokens per review for every variant (default 512)")
    p.add_argument("--latency-samples", type=int, default=200)
    p.add_argument("--latency-block", type=int, default=20, help="reviews per variant before the next one takes over")
    p.add_argument("--csv-samples", type=int, default=200)
    p.add_argument("--csv-rounds", type=int, default=3)
    p.add_argument("--agreement-samples", type=int, default=1000)
    p.add_argument("--process-samples", type=int, default=500)
    p.add_argument("--process-rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every variant, subprocesses included (default: one per core). On a machine "
                        "whose cores other processes keep busy, 1 compares the runtimes without oversubscription")
    p.add_argument("--threads-policy", choices=["fixed", "app"], default="fixed",
                   help="fixed: every variant uses all cores (comparable ratios on a shared machine); app: the "
                        "Predictor's own rule (one thread while other processes keep every core busy)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: latency,csv,agreement,process")
    return p


def log(msg: str) -> None:
    print(msg, flush=True)


def quiet() -> None:
    import warnings
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------------
# Machine and other processes' load
# ---------------------------------------------------------------------------------------------------
def cpu_info() -> dict:
    info = {"model": platform.processor() or None, "logical_cpus": os.cpu_count(), "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and not info.get("model_name"):
                info["model_name"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not info["flags"]:
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                                "amx_int8", "amx_bf16", "amx_tile"})
    except OSError:
        pass
    try:
        import psutil
        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        pass
    return info


class LoadSampler:
    """Samples, every ``interval`` s, how many cores other processes keep busy (machine busy time minus this
    process and its children); ``mark(name)`` starts a new part, ``summary()`` gives mean/max per part."""

    def __init__(self, interval: float = 0.5):
        import psutil
        self.psutil = psutil
        self.interval = interval
        self.part = "setup"
        self.samples: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _busy(self) -> float:
        return machine_busy_seconds()

    def _own(self) -> float:
        return process_tree_cpu_seconds()

    def _run(self) -> None:
        last = (time.monotonic(), self._busy(), self._own())
        while not self._stop.wait(self.interval):
            now = (time.monotonic(), self._busy(), self._own())
            dt = now[0] - last[0]
            if dt > 0:
                other = max(0.0, (now[1] - last[1]) - max(0.0, now[2] - last[2])) / dt
                self.samples.setdefault(self.part, []).append(other)
            last = now

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def mark(self, part: str) -> None:
        self.part = part

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def summary(self) -> dict:
        return {k: {"mean_other_cores": round(statistics.fmean(v), 3), "max_other_cores": round(max(v), 3),
                    "samples": len(v)} for k, v in self.samples.items() if v}


# ---------------------------------------------------------------------------------------------------
# Data and model
# ---------------------------------------------------------------------------------------------------
def read_split(split: str) -> tuple[list[str], list[int]]:
    import pandas as pd
    path = IMDB / f"{split}.parquet"
    if not path.is_file():
        raise SystemExit(f"error: the IMDb {split} split is not at {os.path.relpath(path, ROOT)}")
    df = pd.read_parquet(path)
    return [BR_RE.sub("\n", str(t)) for t in df["text"]], [int(x) for x in df["label"]]


def finetune(out: Path, n: int, seed: int, max_length: int = 128) -> dict:
    """One epoch of plain fine-tuning of the bundled MiniLM on ``n`` IMDb training reviews (bench only)."""
    import torch

    from lib.sources.models import load_model, load_tokenizer
    texts, labels = read_split("train")
    rng = random.Random(seed)
    idx = rng.sample(range(len(texts)), n)
    torch.manual_seed(seed)
    model = load_model("bundled-minilm", LABELS)
    tok = load_tokenizer("bundled-minilm")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    batch = 16
    steps = math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    t0 = time.perf_counter()
    for s in range(steps):
        chunk = idx[s * batch:(s + 1) * batch]
        enc = tok([texts[i] for i in chunk], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([labels[i] for i in chunk])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if s % 25 == 0:
            log(f"[finetune] step {s + 1}/{steps} loss {loss.item():.3f}")
    model.eval()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    info = {"base": "bundled-minilm", "train_reviews": n, "epochs": 1, "max_length": max_length, "lr": 5e-5,
            "batch": batch, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
    (tmp / "bench_finetune.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return info


def fresh_head(out: Path, seed: int) -> dict:
    import torch

    from lib.sources.models import load_model, load_tokenizer
    torch.manual_seed(seed)
    model = load_model("bundled-minilm", LABELS)
    model.save_pretrained(out)
    load_tokenizer("bundled-minilm").save_pretrained(out)
    return {"base": "bundled-minilm", "head": "untrained (fresh)", "seed": seed}


def prepare_model(args) -> tuple[Path, dict]:
    if args.model:
        return Path(args.model).resolve(), {"source": "given folder"}
    tag = hashlib.sha256(f"{args.head}-{args.finetune_samples}-{args.seed}".encode()).hexdigest()[:8]
    folder = WORK / f"model-{args.head}-{tag}"
    if (folder / "model.safetensors").is_file():
        info = json.loads((folder / "bench_finetune.json").read_text()) if (folder / "bench_finetune.json").is_file() \
            else {"head": args.head}
        return folder, {**info, "reused": True}
    folder.parent.mkdir(parents=True, exist_ok=True)
    info = finetune(folder, args.finetune_samples, args.seed) if args.head == "finetune" else fresh_head(folder, args.seed)
    return folder, {**info, "reused": False}


# ---------------------------------------------------------------------------------------------------
# The variants
# ---------------------------------------------------------------------------------------------------
def onnx_predictor(predictor_cls, model_dir: Path, onnx_dir: Path, precision: str, max_length: int, threads: int):
    """The app's Predictor with its forward pass on onnxruntime: tokenization, batching, softmax as before."""
    import numpy as np

    import lib.serving.predictor as predictor_module
    from lib.serving.onnx import OnnxClassifier

    class OnnxPredictor(predictor_cls):
        def __init__(self):
            super().__init__(str(model_dir), max_length=max_length, precision="fp32")
            self.onnx = OnnxClassifier(onnx_dir, precision=precision, threads=threads)
            self.model = None                     # the torch weights are not used any more
            self.description = f"{onnx_dir} (onnx {precision})"

        def _forward(self, items):
            batch = self.tokenizer.pad(items, return_tensors="np")
            logits = self.onnx.logits(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"),
                                      threads=predictor_module.inference_threads())
            z = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(z)
            return (e / e.sum(axis=1, keepdims=True)).tolist()

    return OnnxPredictor()


class Pipeline:
    """transformers.pipeline() as a plain user calls it, with the other variants' token limit."""

    def __init__(self, model_dir: Path, max_length: int, threads: int):
        from transformers import pipeline
        self.clf = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), device=-1)
        self.kw = {"truncation": True, "max_length": max_length, "top_k": None}
        self.threads = threads

    def _threads(self):
        import torch
        torch.set_num_threads(self.threads)       # the Predictor may have lowered torch's threads

    def predict_one(self, text: str):
        self._threads()
        return self.clf(text, **self.kw)

    def labels(self, texts: list[str], batch_size: int) -> list[str]:
        self._threads()
        out = self.clf(texts, batch_size=batch_size, **self.kw)
        return [max(r, key=lambda d: d["score"])["label"] for r in out]


def pct(values, q):
    import numpy as np
    return float(np.percentile(np.asarray(values, dtype=float), q))


# ---------------------------------------------------------------------------------------------------
# fp32 floor
# ---------------------------------------------------------------------------------------------------
def forward_flops(config, tokens: int) -> float:
    """Multiply-adds × 2 of one review's encoder forward (dense layers and attention matmuls)."""
    h = config.hidden_size
    inter = config.intermediate_size
    layers = config.num_hidden_layers
    per_layer = 2 * tokens * (4 * h * h + 2 * h * inter) + 2 * 2 * tokens * tokens * h
    return layers * per_layer + 2 * (h * h + h * config.num_labels)       # + pooler and classifier


def gemm_rate(config, threads: int, tokens: int = 256, repeats: int = 30) -> dict:
    """Measured fp32 matmul rate on the encoder's own shapes (tokens × hidden @ hidden × intermediate and
    tokens × hidden @ hidden × hidden), best of ``repeats``, and on a 1024³ square matmul."""
    import torch
    torch.set_num_threads(threads)
    h, inter = config.hidden_size, config.intermediate_size
    out = {}
    for name, (m, k, n) in {"ffn": (tokens, h, inter), "proj": (tokens, h, h), "square_1024": (1024, 1024, 1024)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        out[name] = round(2 * m * k * n / best / 1e9, 1)
    flops = {"ffn": 2 * h * inter, "proj": 4 * h * h}   # weights per token: 2 FFN, 4 projection matrices
    w = flops["ffn"] + flops["proj"]
    out["encoder_mix"] = round(w / (flops["ffn"] / out["ffn"] + flops["proj"] / out["proj"]), 1)
    out["threads"] = threads
    return out


# ---------------------------------------------------------------------------------------------------
# Whole process
# ---------------------------------------------------------------------------------------------------
PIPELINE_SCRIPT = """
import sys, pandas as pd
from transformers import pipeline
model, src, dst, max_length, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import torch
torch.set_num_threads(threads)
df = pd.read_csv(src)
clf = pipeline("text-classification", model=model, device=-1)
out = clf(df["text"].astype(str).tolist(), batch_size=16, truncation=True, max_length=max_length, top_k=None)
df["predicted_label"] = [max(r, key=lambda d: d["score"])["label"] for r in out]
df["confidence"] = [max(d["score"] for d in r) for r in out]
df.to_csv(dst, index=False)
"""

ONNX_SCRIPT = """
import sys, numpy as np, pandas as pd
from lib.serving.onnx import FastTokenizer, OnnxClassifier
folder, src, dst, max_length, precision, threads = sys.argv[1:4] + [int(sys.argv[4]), sys.argv[5], int(sys.argv[6])]
df = pd.read_csv(src)
clf = OnnxClassifier(folder, precision=precision, threads=threads)
tok = FastTokenizer(folder, max_length)
enc = tok.encode(df["text"].astype(str).tolist())
order = sorted(range(len(enc)), key=lambda i: len(enc[i][0]))
probs = np.zeros((len(enc), len(clf.label_names)), dtype=np.float32)
for s in range(0, len(order), 16):
    idx = order[s:s + 16]
    z = clf.logits(**tok.batch([enc[i] for i in idx]))
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs[idx] = z / z.sum(axis=1, keepdims=True)
df["predicted_label"] = [clf.label_names[i] for i in probs.argmax(axis=1)]
df["confidence"] = probs.max(axis=1)
df.to_csv(dst, index=False)
"""


def whole_process(model_dir: Path, onnx_dir: Path, texts: list[str], max_length: int, rounds: int,
                  sampler: LoadSampler, threads: int) -> dict:
    import pandas as pd
    src = WORK / "process_in.csv"
    pd.DataFrame({"text": texts}).to_csv(src, index=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONPATH": str(ROOT)}
    runs = {"pipeline": [], "onnx_int8": [], "onnx_fp32": []}
    labels = {}
    try:
        for r in range(rounds):
            plan = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for name in plan:
                dst = WORK / f"process_out_{name}.csv"
                if name == "pipeline":
                    argv = [sys.executable, "-c", PIPELINE_SCRIPT, str(model_dir), str(src), str(dst), str(max_length),
                            str(threads)]
                else:
                    argv = [sys.executable, "-c", ONNX_SCRIPT, str(onnx_dir), str(src), str(dst), str(max_length),
                            name.split("_")[1], str(threads)]
                sampler.mark(f"process:{name}")
                t0 = time.perf_counter()
                proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    raise SystemExit(f"error: the {name} script failed:\n{proc.stderr[-2000:]}")
                runs[name].append(round(wall, 2))
                labels[name] = pd.read_csv(dst)["predicted_label"].tolist()
                dst.unlink(missing_ok=True)
                log(f"[process] {name}: {wall:.1f} s for {len(texts)} reviews")
    finally:
        src.unlink(missing_ok=True)
    sampler.mark("between")
    med = {k: statistics.median(v) for k, v in runs.items()}
    per_round = {k: round(statistics.median(p / o for p, o in zip(runs["pipeline"], runs[k])), 2)
                 for k in runs if k != "pipeline"}
    agree = {k: sum(a == b for a, b in zip(labels[k], labels["pipeline"])) / len(texts) for k in labels}
    return {"reviews": len(texts), "rounds": rounds, "seconds": runs, "median_s": med,
            "speedup_vs_pipeline": {k: round(med["pipeline"] / v, 2) for k, v in med.items() if k != "pipeline"},
            "speedup_vs_pipeline_median_of_rounds": per_round,
            "labels_agree_with_pipeline": {k: round(v, 4) for k, v in agree.items() if k != "pipeline"}}


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    quiet()
    import numpy as np
    import pandas as pd
    import torch

    from lib.job.onnx_export import export_onnx, read_meta
    from lib.serving.batch import predict_frame
    from lib.serving.onnx import FastTokenizer
    from lib.serving.predictor import Predictor

    WORK.mkdir(parents=True, exist_ok=True)
    sampler = LoadSampler().start()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    env = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_info(),
           "torch_threads": threads, "python": platform.python_version(),
           "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "tokenizers", "onnxruntime",
                                                              "onnx", "numpy")}}
    log(f"[machine] {env['cpu'].get('model_name')}, {env['cpu']['logical_cpus']} logical CPUs, flags "
        f"{', '.join(env['cpu']['flags'])}")

    sampler.mark("model")
    model_dir, model_info = prepare_model(args)
    log(f"[model] {model_dir} {model_info}")
    sampler.mark("export")
    onnx_dir = WORK / "onnx"
    t0 = time.perf_counter()
    export_onnx(model_dir, onnx_dir, quantize=True)
    export_s = time.perf_counter() - t0
    meta = read_meta(onnx_dir)
    log(f"[export] {export_s:.1f} s; fused {meta['optimizer'].get('fused')}; check {meta['check']}")

    texts, labels = read_split("test")
    rng = random.Random(args.seed)
    n_pool = max(args.agreement_samples, args.latency_samples, args.csv_samples, args.process_samples)
    pool = rng.sample(range(len(texts)), min(n_pool, len(texts)))
    agree_idx = pool[:args.agreement_samples]
    lat_idx = pool[:args.latency_samples]
    csv_idx = pool[:args.csv_samples]
    proc_idx = pool[:args.process_samples]

    if args.threads_policy == "fixed":
        import lib.serving.predictor as predictor_module
        predictor_module.inference_threads = lambda: threads
    sampler.mark("load")
    ml = args.max_length
    load_s = {}
    variants = {}
    for name in VARIANTS:
        t0 = time.perf_counter()
        if name == "pipeline":
            variants[name] = Pipeline(model_dir, ml, threads)
        elif name.startswith("torch"):
            variants[name] = Predictor(str(model_dir), max_length=ml, precision=name.split("_")[1])
        else:
            variants[name] = onnx_predictor(Predictor, model_dir, onnx_dir, name.split("_")[1], ml, threads)
        load_s[name] = round(time.perf_counter() - t0, 2)
        for _ in range(5):
            variants[name].predict_one("A warm-up review: the acting was fine, the plot less so.")
    config = variants["torch_fp32"].model.config
    tok = variants["torch_fp32"].tokenizer
    torch.set_num_threads(threads)

    def ntokens(i):
        return len(tok(texts[i], truncation=True, max_length=ml)["input_ids"])

    result: dict = {"benchmark": "onnx_runtime", "command": " ".join(["python -m bench.onnx_runtime", *(argv or sys.argv[1:])]),
                    "machine": env, "model": {"folder": os.path.relpath(model_dir, ROOT), **model_info,
                                              "layers": config.num_hidden_layers, "hidden": config.hidden_size},
                    "max_length": ml, "batch_size": args.batch_size, "export": {"seconds": round(export_s, 1),
                    "fused": meta["optimizer"].get("fused"), "quantization": meta.get("quantization"),
                    "check": meta.get("check"), "sizes_mib": {k: round((onnx_dir / v).stat().st_size / 2**20, 1)
                                                              for k, v in meta["files"].items()}},
                    "load_seconds": load_s, "data": "real IMDb test split (read in place from ../shared/data/imdb), "
                    "seeded sample, <br /> cleaned as the training job does"}

    # fp32 floor -------------------------------------------------------------------------------------
    sampler.mark("gemm")
    rate = gemm_rate(config, threads)
    log(f"[gemm] fp32 GFLOP/s: {rate}")

    # 1. single-review latency: blocks of reviews per variant, rotating, the ratio taken round by round ------
    if "latency" not in skip:
        ms = {v: [] for v in VARIANTS}
        round_ratio = {v: [] for v in VARIANTS}
        block = max(1, args.latency_block)
        rounds = [lat_idx[s:s + block] for s in range(0, len(lat_idx), block)]
        for r, chunk in enumerate(rounds):
            order = list(VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)])
            p50 = {}
            for name in order:
                time.sleep(SETTLE_S)                  # the previous variant's threads stop spinning
                sampler.mark(f"latency:{name}")
                times = []
                for i in chunk:
                    t0 = time.perf_counter()
                    variants[name].predict_one(texts[i])
                    times.append((time.perf_counter() - t0) * 1000)
                ms[name] += times
                p50[name] = statistics.median(times)
            for v in VARIANTS:
                round_ratio[v].append(p50["pipeline"] / p50[v])
        sampler.mark("between")
        toks = [ntokens(i) for i in lat_idx]
        med_tokens = int(statistics.median(toks))
        lat = {v: {"p50_ms": round(pct(ms[v], 50), 2), "p95_ms": round(pct(ms[v], 95), 2),
                   "mean_ms": round(statistics.fmean(ms[v]), 2)} for v in VARIANTS}
        for v in VARIANTS:
            lat[v]["x_vs_pipeline"] = round(lat["pipeline"]["p50_ms"] / lat[v]["p50_ms"], 2)
            lat[v]["x_vs_pipeline_median_of_rounds"] = round(statistics.median(round_ratio[v]), 2)
        result["latency"] = {"reviews": len(lat_idx), "rounds": len(rounds), "block": block,
                             "median_tokens": med_tokens,
                             "forward_gflop_at_median": round(forward_flops(config, med_tokens) / 1e9, 3),
                             "variants": lat}
        for v in VARIANTS:
            log(f"[latency] {v:11s} p50 {lat[v]['p50_ms']:7.2f} ms  p95 {lat[v]['p95_ms']:7.2f}  "
                f"{lat[v]['x_vs_pipeline']:.2f}x pipeline (median of rounds "
                f"{lat[v]['x_vs_pipeline_median_of_rounds']:.2f}x)")

    # 2. CSV mode in process --------------------------------------------------------------------------
    if "csv" not in skip:
        df = pd.DataFrame({"review": [texts[i] for i in csv_idx]})
        csv_variants = ["pipeline_b1", "pipeline_b16", *VARIANTS[1:]]
        secs = {v: [] for v in csv_variants}
        for r in range(max(1, args.csv_rounds)):
            for name in (csv_variants if r % 2 == 0 else csv_variants[::-1]):
                time.sleep(SETTLE_S)
                sampler.mark(f"csv:{name}")
                t0 = time.perf_counter()
                if name.startswith("pipeline"):
                    variants["pipeline"].labels(df["review"].tolist(), batch_size=1 if name.endswith("b1") else 16)
                else:
                    predict_frame(variants[name], df, "review", batch_size=args.batch_size)
                secs[name].append(time.perf_counter() - t0)
                log(f"[csv] round {r + 1} {name:12s} {len(df) / secs[name][-1]:6.2f} reviews/s")
        sampler.mark("between")
        total_tokens = [ntokens(i) for i in csv_idx]
        rps = {v: len(df) / statistics.median(secs[v]) for v in csv_variants}
        best_pipe = max(rps["pipeline_b1"], rps["pipeline_b16"])
        per_round_best = [min(secs["pipeline_b1"][r], secs["pipeline_b16"][r]) for r in range(len(secs["pipeline_b1"]))]
        result["csv"] = {"reviews": len(df), "rounds": args.csv_rounds, "mean_tokens": round(statistics.fmean(total_tokens), 1),
                         "forward_gflop_total": round(sum(forward_flops(config, t) for t in total_tokens) / 1e9, 2),
                         "variants": {v: {"reviews_per_s": round(rps[v], 2),
                                          "x_vs_best_pipeline": round(rps[v] / best_pipe, 2),
                                          "x_vs_best_pipeline_median_of_rounds": round(statistics.median(
                                              b / s for b, s in zip(per_round_best, secs[v])), 2),
                                          "passes_s": [round(s, 2) for s in secs[v]]} for v in csv_variants}}

    # 3. agreement with full precision -----------------------------------------------------------------
    if "agreement" not in skip:
        sampler.mark("agreement")
        a_texts = [texts[i] for i in agree_idx]
        a_labels = [labels[i] for i in agree_idx]
        preds, probs, secs = {}, {}, {}
        for name in VARIANTS[1:]:
            t0 = time.perf_counter()
            res = variants[name].predict(a_texts, batch_size=args.batch_size)
            secs[name] = time.perf_counter() - t0
            preds[name] = [r["label_id"] for r in res]
            probs[name] = [r["scores"][LABELS[1]] if LABELS[1] in r["scores"] else r["confidence"] for r in res]
            log(f"[agreement] {name}: {len(a_texts) / secs[name]:.2f} reviews/s over {len(a_texts)} reviews")
        ref = preds["torch_fp32"]
        ag = {}
        for name in VARIANTS[1:]:
            same = sum(a == b for a, b in zip(preds[name], ref))
            ag[name] = {"agreement_with_fp32": round(same / len(ref), 4), "differ": len(ref) - same,
                        "accuracy": round(sum(p == y for p, y in zip(preds[name], a_labels)) / len(ref), 4),
                        "max_abs_prob_diff": round(float(np.max(np.abs(np.array(probs[name]) -
                                                                       np.array(probs["torch_fp32"])))), 4),
                        "reviews_per_s": round(len(ref) / secs[name], 2)}
        fast = FastTokenizer(onnx_dir, ml)
        hf_ids = tok(a_texts, truncation=True, max_length=ml)["input_ids"]
        same_ids = sum(list(a[0]) == list(b) for a, b in zip(fast.encode(a_texts), hf_ids))
        result["agreement"] = {"reviews": len(ref), "variants": ag,
                               "fast_tokenizer_same_ids_as_transformers": f"{same_ids}/{len(ref)}"}
        for name in VARIANTS[1:]:
            log(f"[agreement] {name:11s} {ag[name]}")

    # 4. whole process --------------------------------------------------------------------------------
    if "process" not in skip:
        sampler.mark("process")
        del variants                      # free memory before the subprocesses
        result["process"] = whole_process(model_dir, onnx_dir, [texts[i] for i in proc_idx], ml, args.process_rounds,
                                          sampler, threads)

    sampler.mark("gemm")
    again = gemm_rate(config, threads)         # measured again at the end: the better of the two (less contended)
    log(f"[gemm] fp32 GFLOP/s again: {again}")
    best = max(rate["encoder_mix"], again["encoder_mix"])
    result["gemm_gflops"] = {"start": rate, "end": again, "encoder_mix_best": best}
    add_floor(result, best)
    sampler.stop()
    result["other_processes"] = sampler.summary()
    result["targets"] = check_targets(result)
    result["threads_policy"] = args.threads_policy
    md = markdown(result)
    name = f"onnx_runtime-{ml}-t{threads}"
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (OUT / f"{name}.md").write_text(md + "\n")
    log(md)
    print(json.dumps(result, default=str), flush=True)
    return 0


def add_floor(res: dict, gflops: float) -> None:
    """The fp32 floor (a forward's FLOPs at the measured fp32 GEMM rate) and each variant's ratio to it."""
    if "latency" in res:
        lat = res["latency"]
        lat["fp32_floor_ms_at_median"] = round(lat["forward_gflop_at_median"] / gflops * 1000, 2)
        for v in lat["variants"].values():
            v["x_fp32_floor"] = round(v["p50_ms"] / lat["fp32_floor_ms_at_median"], 2)
    if "csv" in res:
        c = res["csv"]
        c["fp32_floor_reviews_per_s"] = round(c["reviews"] / (c["forward_gflop_total"] / gflops), 2)
        for v in c["variants"].values():
            v["x_of_fp32_floor_rate"] = round(v["reviews_per_s"] / c["fp32_floor_reviews_per_s"], 2)


def check_targets(res: dict) -> dict:
    out = {}
    if "latency" in res:
        x = res["latency"]["variants"]["onnx_int8"]["x_vs_pipeline"]
        out["single_p50"] = {"value_x": x, "target_x": TARGETS["single_p50_x"], "met": x >= TARGETS["single_p50_x"]}
    if "csv" in res:
        x = res["csv"]["variants"]["onnx_int8"]["x_vs_best_pipeline"]
        out["csv_in_process"] = {"value_x": x, "target_x": TARGETS["csv_in_process_x"],
                                 "met": x >= TARGETS["csv_in_process_x"]}
    if "process" in res:
        x = res["process"]["speedup_vs_pipeline"]["onnx_int8"]
        out["whole_process"] = {"value_x": x, "target_x": TARGETS["whole_process_x"],
                                "met": x >= TARGETS["whole_process_x"]}
    if "agreement" in res:
        a = res["agreement"]["variants"]["onnx_int8"]["agreement_with_fp32"]
        out["agreement"] = {"value": a, "target": TARGETS["agreement"], "met": a >= TARGETS["agreement"]}
    return out


def markdown(res: dict) -> str:
    cpu = res["machine"]["cpu"]
    lines = ["## ONNX Runtime vs PyTorch vs pipeline()", "",
             f"Command: `{res['command']}`  ",
             f"Machine: {res['machine']['date']}; {cpu.get('model_name')}, {cpu['logical_cpus']} logical CPUs "
             f"({cpu.get('physical_cores')} cores), flags {', '.join(cpu['flags'])}; {res['machine']['torch_threads']} "
             f"torch threads; " + ", ".join(f"{k} {v}" for k, v in res["machine"]["versions"].items()) + ".  ",
             f"Model: {res['model'].get('folder')} ({res['model'].get('layers')} layers, hidden "
             f"{res['model'].get('hidden')}); max_length {res['max_length']}; batch {res['batch_size']}; threads "
             f"{res.get('threads_policy')}. "
             f"fp32 GEMM rate (encoder shapes, best of start and end): {res['gemm_gflops']['encoder_mix_best']} GFLOP/s.", ""]
    if "latency" in res:
        lat = res["latency"]
        lines += [f"Single review ({lat['reviews']} reviews, median {lat['median_tokens']} tokens; fp32 floor "
                  f"{lat['fp32_floor_ms_at_median']} ms):", "",
                  "| variant | p50 ms | p95 ms | × faster than pipeline | × fp32 floor |", "| --- | --- | --- | --- | --- |"]
        for v, s in lat["variants"].items():
            lines.append(f"| {v} | {s['p50_ms']} | {s['p95_ms']} | {s['x_vs_pipeline']} | {s['x_fp32_floor']} |")
        lines.append("")
    if "csv" in res:
        c = res["csv"]
        lines += [f"CSV mode in process ({c['reviews']} reviews, median of {c['rounds']} passes; fp32 floor "
                  f"{c['fp32_floor_reviews_per_s']} reviews/s):", "",
                  "| variant | reviews/s | × best pipeline | share of fp32 floor rate |", "| --- | --- | --- | --- |"]
        for v, s in c["variants"].items():
            lines.append(f"| {v} | {s['reviews_per_s']} | {s['x_vs_best_pipeline']} | {s['x_of_fp32_floor_rate']} |")
        lines.append("")
    if "agreement" in res:
        a = res["agreement"]
        lines += [f"Agreement with full precision (torch fp32) on {a['reviews']} reviews:", "",
                  "| variant | same label | differ | accuracy | max |Δp| | reviews/s |", "| --- | --- | --- | --- | --- | --- |"]
        for v, s in a["variants"].items():
            lines.append(f"| {v} | {s['agreement_with_fp32']} | {s['differ']} | {s['accuracy']} | "
                         f"{s['max_abs_prob_diff']} | {s['reviews_per_s']} |")
        lines += ["", f"FastTokenizer (tokenizers only) gives the transformers tokenizer's ids on "
                      f"{a['fast_tokenizer_same_ids_as_transformers']} reviews.", ""]
    if "process" in res:
        p = res["process"]
        lines += [f"Whole process, {p['reviews']} reviews CSV → CSV (median of {p['rounds']}):", "",
                  "| script | seconds | × faster than pipeline | same labels as pipeline |", "| --- | --- | --- | --- |",
                  f"| pipeline() | {p['median_s']['pipeline']} | 1 | — |"]
        for v in ("onnx_fp32", "onnx_int8"):
            lines.append(f"| {v} | {p['median_s'][v]} | {p['speedup_vs_pipeline'][v]} | "
                         f"{p['labels_agree_with_pipeline'][v]} |")
        lines.append("")
    lines += ["Targets: " + "; ".join(f"{k} {v.get('value_x', v.get('value'))} (target {v.get('target_x', v.get('target'))}"
                                       f": {'met' if v['met'] else 'NOT met'})" for k, v in res["targets"].items()), ""]
    lines += ["Other processes' load (cores): " + "; ".join(f"{k} mean {v['mean_other_cores']}, max {v['max_other_cores']}"
                                                        for k, v in res["other_processes"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

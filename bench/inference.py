"""Prediction speed: what the app and the CLI do vs plain ``transformers.pipeline()``, side by side in one run.

    python -m bench.inference                                 # MiniLM briefly fine-tuned here (cached), IMDb
    python -m bench.inference --max-length 128 --threads 1    # shorter reviews, one thread for every variant
    python -m bench.inference --model runs/<id>/model         # a trained run's export
    python -m bench.inference --data demo --head fresh        # the built-in reviews, untrained head (speed only)

The model: ``--model DIR``, or the bundled MiniLM with a 2-label head. Speed does not depend on the head,
but agreement does: an untrained head puts nearly every review on the decision boundary, where any
rounding flips the label. So by default the bundled MiniLM is fine-tuned here for one short epoch
(``--finetune-samples`` training reviews of the chosen data at 128 tokens, plain PyTorch loop) into
``bench/out/inference/model-*`` and reused on the next run; ``--head fresh`` skips that.

Data (``--data``): the real IMDb at ``../shared/data/imdb`` (read in place), or the built-in demo reviews
(``auto``: IMDb when it is there). Reviews are loaded through ``bench.common.load_split``, i.e. cleaned as
the training job cleans them (``lib.sources.preprocessing.clean_text``: ``<br />`` becomes a line break).

The model is exported where the predictor looks for it (``lib.job.onnx_export.export_dir_for``: ``<run>/onnx``
for a run's ``model/``, else ``<folder>/onnx``), fp32 and int8. Then, loaded once, warmed up, on the same
seeded test reviews at ``--max-length`` tokens:

- ``pipeline``: ``transformers.pipeline("text-classification", model=DIR)`` with truncation, all scores;
- ``torch_fp32`` / ``torch_int8`` / ``torch_bf16``: ``lib.serving.predictor.Predictor(runtime="torch")``;
- ``onnx_fp32`` / ``onnx_int8``: ``Predictor(runtime="onnx")`` (onnxruntime on the export; ``onnx_int8``
  without the full-precision re-read of unsure reviews, ``recheck=False``: int8 alone);
- ``lab``: ``Predictor(DIR)`` with the app's defaults for one review (``default_precision()``,
  ``default_runtime()``): what the tryout and ``python -m lib.predict`` serve; ``lab_table``: the same
  for a table (``default_precision(batch=True)``: bf16 on a CPU with AMX matrix units, else the same
  predictor as ``lab``), what the Runs page's batch mode serves. The targets are judged on these two.

Measured:

- single review: ``predict_one`` (pipeline: one call), blocks of ``--latency-block`` reviews per variant,
  rotating the order; p50/p95 and the ratio to pipeline (pooled p50s, and the median of per-block ratios);
- CSV in process: ``lib.serving.batch.predict_frame`` over ``--csv-samples`` reviews at ``--batch-size``, and
  for ``lab_table`` at each of ``--lab-batch-sizes``; pipeline on the list as a user calls it (its default batch
  size) and with batch_size 16; ``--csv-rounds`` passes, alternating the order, median reviews/s;
- agreement: each Predictor variant's labels vs full precision (torch fp32) on ``--agreement-samples``
  reviews, accuracy against the reviews' labels, largest probability difference;
- the fp32 floor: a forward pass's FLOPs ÷ this machine's measured fp32 GEMM rate (torch matmul on the
  encoder's own shapes, measured at the start and the end, the better one kept), as a latency and a CSV
  rate, and each variant's ratio to it;
- whole process: a ``--process-samples`` review CSV → CSV through the real CLI (``python -m lib.predict
  --model DIR --csv IN --out OUT``, plus ``--max-length`` when the bench's differs from the model's own;
  ``lab_fp32`` adds ``--precision fp32 --runtime torch``) vs a short ``pipeline()`` script doing the same
  work (``pipeline_b16``: the same script with batch_size 16), each a fresh Python process, alternating,
  median of ``--process-rounds``; the labels are compared with pipeline's.

Threads (``--threads-policy``): ``fixed`` gives every variant ``--threads`` threads (default: torch's, one
per core): torch and onnxruntime in process, and both subprocesses are pinned to that many cores (the CLI
keeps its own rule: one thread while other processes keep every core busy). ``app`` leaves the predictor's
own rule in place everywhere.

Other processes' CPU use is sampled throughout (``lib.util.contention``: machine busy time minus this
process tree) and reported per part. Output: ``bench/out/inference.json`` and the ``inference`` section of
``BENCHMARKS.md`` (``bench.common`` output options); the last stdout line is a JSON summary. Paths in the
results are relative to the repository; the review files written for the whole-process part are deleted.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

from bench import common
from lib.util.contention import machine_busy_seconds, process_tree_cpu_seconds
from lib.util.sysinfo import cpu_flags

ROOT = common.ROOT
WORK = common.OUT_DIR / "inference"
LABELS = ["NEGATIVE", "POSITIVE"]
VARIANTS = ("pipeline", "torch_fp32", "torch_int8", "torch_bf16", "onnx_fp32", "onnx_int8", "lab")
PREDICTORS = (*VARIANTS[1:], "lab_table")   # lab_table: the app's batch mode (default_precision(batch=True))
PROCESS_VARIANTS = ("lab", "lab_fp32", "pipeline_b16")
SETTLE_S = 0.3          # pause between variants: thread pools stop spinning before the next one is timed
TARGETS = {"single_p50_x": 2.5, "csv_in_process_x": 4.0, "whole_process_x": 3.0, "agreement": 0.985}
WARMUP = "A warm-up review: the acting was fine, the plot less so."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a save_pretrained folder (default: MiniLM fine-tuned here)")
    p.add_argument("--head", choices=["finetune", "fresh"], default="finetune",
                   help="without --model: fine-tune briefly on the chosen data (default) or keep the untrained head")
    p.add_argument("--finetune-samples", type=int, default=2000)
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto",
                   help="imdb (../shared/data/imdb), demo (the built-in reviews) or auto (IMDb when it is there)")
    p.add_argument("--max-length", type=int, default=512, help="tokens per review for every variant (default 512)")
    p.add_argument("--latency-samples", type=int, default=200)
    p.add_argument("--latency-block", type=int, default=20, help="reviews per variant before the next one takes over")
    p.add_argument("--csv-samples", type=int, default=200)
    p.add_argument("--csv-rounds", type=int, default=3)
    p.add_argument("--lab-batch-sizes", default="1,4,16",
                   help="batch sizes for the lab variant's CSV pass (default 1,4,16; --batch-size is always added)")
    p.add_argument("--agreement-samples", type=int, default=1000)
    p.add_argument("--process-samples", type=int, default=500)
    p.add_argument("--process-rounds", type=int, default=3)
    p.add_argument("--process-variants", default="lab,lab_fp32",
                   help="whole-process scripts beside pipeline(): lab (the CLI as it is), lab_fp32 (the CLI with "
                        "--precision fp32 --runtime torch), pipeline_b16 (default lab,lab_fp32)")
    p.add_argument("--batch-size", type=int, default=16, help="CSV batch size of the Predictor variants (the app's: 16)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every variant, subprocesses included (default: one per core). On a machine "
                        "whose cores other processes keep busy, 1 compares the runtimes without oversubscription")
    p.add_argument("--threads-policy", choices=["fixed", "app"], default="fixed",
                   help="fixed: every variant uses --threads (comparable ratios on a shared machine); app: the "
                        "Predictor's own rule (one thread while other processes keep every core busy)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: latency,csv,agreement,process")
    common.add_output_args(p)
    return p


def log(msg: str) -> None:
    common.log(msg)


def positive_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: {what} must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise SystemExit(f"error: {what} must be comma-separated positive integers, got {text!r}")
    return values


def rel(path: str | os.PathLike) -> str:
    """A path as the results record it: relative to the repository."""
    return os.path.relpath(Path(path).resolve(), ROOT)


def command(cli: list[str]) -> str:
    """The command line, with absolute paths written relative to the repository."""
    return common.command_line("bench.inference", [rel(a) if os.path.isabs(a) else a for a in cli])


# ---------------------------------------------------------------------------------------------------
# Machine and other processes' load
# ---------------------------------------------------------------------------------------------------
def cpu_info() -> dict:
    info = {"model": platform.processor() or None, "logical_cpus": os.cpu_count(), "flags": []}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["model_name"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["flags"] = sorted(cpu_flags() & {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                          "amx_int8", "amx_bf16", "amx_tile"})
    try:
        import psutil
        info["physical_cores"] = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover
        pass
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        pass
    return info


class LoadSampler:
    """Samples, every ``interval`` s, how many cores other processes keep busy (machine busy time minus this
    process and its children); ``mark(name)`` starts a new part, ``summary()`` gives mean/max per part."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.part = "setup"
        self.samples: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = (time.monotonic(), machine_busy_seconds(), process_tree_cpu_seconds())
        while not self._stop.wait(self.interval):
            now = (time.monotonic(), machine_busy_seconds(), process_tree_cpu_seconds())
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
def load_texts(choice: common.DataChoice, split: str, n: int | None, seed: int) -> tuple[list[str], list[int]]:
    """Reviews of one split, cleaned as the training job cleans them (``<br />`` → line break)."""
    texts, labels, _ = common.load_split(choice, split, n, seed=seed, strip_html=True)
    return texts, labels


def finetune(out: Path, choice: common.DataChoice, n: int, seed: int, max_length: int = 128) -> dict:
    """One epoch of plain fine-tuning of the bundled MiniLM on ``n`` training reviews (bench only)."""
    import torch

    from lib.sources.models import load_model, load_tokenizer
    texts, labels = load_texts(choice, "train", n, seed)
    torch.manual_seed(seed)
    model = load_model("bundled-minilm", LABELS)
    tok = load_tokenizer("bundled-minilm")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    batch = 16
    steps = math.ceil(len(texts) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    t0 = time.perf_counter()
    for s in range(steps):
        chunk = slice(s * batch, (s + 1) * batch)
        enc = tok(texts[chunk], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor(labels[chunk])).loss
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
    info = {"base": "bundled-minilm", "head": "fine-tuned here", "data": choice.kind, "train_reviews": len(texts),
            "epochs": 1, "max_length": max_length, "lr": 5e-5, "batch": batch, "seed": seed,
            "seconds": round(time.perf_counter() - t0, 1)}
    (tmp / "bench_finetune.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return info


def fresh_head(out: Path, seed: int) -> dict:
    import torch

    from lib.sources.models import load_model, load_tokenizer
    torch.manual_seed(seed)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    load_model("bundled-minilm", LABELS).save_pretrained(tmp)
    load_tokenizer("bundled-minilm").save_pretrained(tmp)
    info = {"base": "bundled-minilm", "head": "untrained (fresh)", "seed": seed}
    (tmp / "bench_finetune.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return info


def prepare_model(args, choice: common.DataChoice) -> tuple[Path, dict]:
    if args.model:
        folder = Path(args.model).resolve()
        info = {"source": "given folder"}
        if (folder / "bench_finetune.json").is_file():
            info.update(json.loads((folder / "bench_finetune.json").read_text()))
        return folder, info
    key = f"finetune-{args.finetune_samples}-{args.seed}-{choice.kind}" if args.head == "finetune" \
        else f"fresh-{args.seed}"
    folder = WORK / f"model-{args.head}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    if (folder / "model.safetensors").is_file() and (folder / "bench_finetune.json").is_file():
        return folder, {**json.loads((folder / "bench_finetune.json").read_text()), "reused": True}
    folder.parent.mkdir(parents=True, exist_ok=True)
    info = finetune(folder, choice, args.finetune_samples, args.seed) if args.head == "finetune" \
        else fresh_head(folder, args.seed)
    return folder, {**info, "reused": False}


# ---------------------------------------------------------------------------------------------------
# The pipeline() reference
# ---------------------------------------------------------------------------------------------------
class Pipeline:
    """transformers.pipeline() as a plain user calls it, with the other variants' token limit."""

    def __init__(self, model_dir: Path, max_length: int, threads: int):
        from transformers import pipeline
        self.clf = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), device=-1)
        self.kw = {"truncation": True, "max_length": max_length, "top_k": None}
        self.threads = threads
        self.default_batch_size = getattr(self.clf, "_batch_size", None) or 1

    def _threads(self):
        import torch
        torch.set_num_threads(self.threads)       # the Predictor may have changed torch's threads

    def predict_one(self, text: str):
        self._threads()
        return self.clf(text, **self.kw)

    def labels(self, texts: list[str], batch_size: int | None = None) -> list[str]:
        """Labels for a list: ``batch_size`` None calls it as a user would (the pipeline's default)."""
        self._threads()
        out = self.clf(texts, **self.kw) if batch_size is None else self.clf(texts, batch_size=batch_size, **self.kw)
        return [max(r, key=lambda d: d["score"])["label"] for r in out]


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
model, src, dst, max_length, threads, batch_size = sys.argv[1:4] + [int(v) for v in sys.argv[4:7]]
if threads:
    import torch
    torch.set_num_threads(threads)
df = pd.read_csv(src)
clf = pipeline("text-classification", model=model, device=-1)
kw = {"batch_size": batch_size} if batch_size else {}
out = clf(df["text"].astype(str).tolist(), truncation=True, max_length=max_length, top_k=None, **kw)
df["predicted_label"] = [max(r, key=lambda d: d["score"])["label"] for r in out]
df["confidence"] = [max(d["score"] for d in r) for r in out]
for name in sorted({d["label"] for r in out for d in r}):
    df["p_" + name] = [next(d["score"] for d in r if d["label"] == name) for r in out]
df.to_csv(dst, index=False)
"""


def pinned(threads: int | None):
    """A ``preexec_fn`` that keeps a subprocess on ``threads`` of this process's cores (None: no pinning)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        return None
    if not threads or threads >= len(cores):
        return None
    keep = set(cores[:threads])
    return lambda: os.sched_setaffinity(0, keep)


def process_argv(name: str, model_dir: Path, src: Path, dst: Path, ml: int, own_ml: int, threads: int,
                 policy: str) -> list[str]:
    if name.startswith("pipeline"):
        return [sys.executable, "-c", PIPELINE_SCRIPT, str(model_dir), str(src), str(dst), str(ml),
                str(threads if policy == "fixed" else 0), "16" if name == "pipeline_b16" else "0"]
    argv = [sys.executable, "-m", "lib.predict", "--model", str(model_dir), "--csv", str(src), "--out", str(dst)]
    if ml != own_ml:
        argv += ["--max-length", str(ml)]
    if name == "lab_fp32":
        argv += ["--precision", "fp32", "--runtime", "torch"]
    return argv


def whole_process(model_dir: Path, texts: list[str], ml: int, own_ml: int, rounds: int, sampler: LoadSampler,
                  threads: int, policy: str, extra: list[str]) -> dict:
    import numpy as np
    import pandas as pd
    names = ["pipeline", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONPATH": str(ROOT)}
    runs: dict[str, list[float]] = {k: [] for k in names}
    frames: dict[str, pd.DataFrame] = {}
    commands, notes = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        src = Path(tmp) / "reviews.csv"
        pd.DataFrame({"text": texts}).to_csv(src, index=False)
        for r in range(max(1, rounds)):
            for name in (names if r % 2 == 0 else names[::-1]):
                dst = Path(tmp) / f"out_{name}.csv"
                argv = process_argv(name, model_dir, src, dst, ml, own_ml, threads, policy)
                shown = {PIPELINE_SCRIPT: "<pipeline script>", str(model_dir): rel(model_dir), str(src): "IN.csv",
                         str(dst): "OUT.csv"}
                commands[name] = " ".join(["python", *[shown.get(a, a) for a in argv[1:]]])
                time.sleep(SETTLE_S)
                sampler.mark(f"process:{name}")
                t0 = time.perf_counter()
                proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
                                      preexec_fn=pinned(threads) if policy == "fixed" else None)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    raise SystemExit(f"error: the {name} script failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
                runs[name].append(round(wall, 2))
                notes[name] = [x for x in proc.stderr.splitlines() if x.startswith("note:")] or notes.get(name, [])
                frames[name] = pd.read_csv(dst, keep_default_na=False)
                dst.unlink(missing_ok=True)
                log(f"[process] round {r + 1} {name:12s} {wall:6.1f} s for {len(texts)} reviews")
    sampler.mark("between")
    med = {k: round(statistics.median(v), 2) for k, v in runs.items()}
    ref = frames["pipeline"]
    prob_cols = [c for c in ref.columns if c.startswith("p_")]
    out: dict = {"reviews": len(texts), "rounds": max(1, rounds), "seconds": runs, "median_s": med,
                 "commands": commands, "x_vs_pipeline": {}, "x_vs_pipeline_median_of_rounds": {},
                 "labels_agree_with_pipeline": {}, "max_abs_prob_diff_vs_pipeline": {}, "rows_with_label": {},
                 "notes": {k: v for k, v in notes.items() if v}}
    for k in names:
        f = frames[k]
        out["rows_with_label"][k] = int(sum(1 for v in f["predicted_label"] if str(v).strip()))
        if k == "pipeline":
            continue
        out["x_vs_pipeline"][k] = round(med["pipeline"] / med[k], 2)
        out["x_vs_pipeline_median_of_rounds"][k] = round(statistics.median(
            p / o for p, o in zip(runs["pipeline"], runs[k])), 2)
        out["labels_agree_with_pipeline"][k] = round(float(np.mean(
            [str(a) == str(b) for a, b in zip(f["predicted_label"], ref["predicted_label"])])), 4)
        common_cols = [c for c in prob_cols if c in f.columns]
        if common_cols and len(f) == len(ref):
            diff = np.abs(f[common_cols].to_numpy(dtype=float) - ref[common_cols].to_numpy(dtype=float))
            out["max_abs_prob_diff_vs_pipeline"][k] = round(float(diff.max()), 6)
    return out


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"latency", "csv", "agreement", "process"}
    if unknown:
        raise SystemExit(f"error: --skip knows latency, csv, agreement and process, not {', '.join(sorted(unknown))}")
    lab_sizes = sorted(set(positive_ints(args.lab_batch_sizes, "--lab-batch-sizes")) | {max(1, args.batch_size)})
    extra = [v.strip() for v in args.process_variants.split(",") if v.strip()]
    if set(extra) - set(PROCESS_VARIANTS):
        raise SystemExit(f"error: --process-variants takes {', '.join(PROCESS_VARIANTS)}, got {args.process_variants!r}")
    common.quiet()
    import numpy as np
    import pandas as pd
    import torch

    import lib.serving.predictor as predictor_module
    from lib.job.onnx_export import export_dir_for, export_onnx, read_meta
    from lib.serving.batch import predict_frame
    from lib.serving.onnx import FastTokenizer
    from lib.serving.predictor import Predictor, default_precision, default_runtime

    choice = common.choose_data(args.data)
    data_description = choice.description if choice.kind == "imdb" else (
        "built-in demo reviews (data/demo_reviews)" + (f"; IMDb not found at {rel(common.imdb_dir())}"
                                                       if args.data == "auto" else ""))
    WORK.mkdir(parents=True, exist_ok=True)
    sampler = LoadSampler().start()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    env = common.environment()
    env["cpu"] = cpu_info()
    for name in ("onnx", "onnxruntime"):
        try:
            env["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env["versions"][name] = "not installed"
    log(f"[machine] {env['cpu'].get('model_name')}, {env['cpu']['logical_cpus']} logical CPUs, flags "
        f"{', '.join(env['cpu']['flags'])}; {threads} threads ({args.threads_policy}); data: {data_description}")

    sampler.mark("model")
    model_dir, model_info = prepare_model(args, choice)
    log(f"[model] {rel(model_dir)} {model_info}")
    sampler.mark("export")
    onnx_dir = export_dir_for(model_dir)
    t0 = time.perf_counter()
    export_onnx(model_dir, onnx_dir, quantize=True)
    export_s = time.perf_counter() - t0
    meta = read_meta(onnx_dir)
    log(f"[export] {rel(onnx_dir)} in {export_s:.1f} s; fused {meta['optimizer'].get('fused')}")

    sampler.mark("data")
    n_pool = max(args.agreement_samples, args.latency_samples, args.csv_samples, args.process_samples, 1)
    texts, labels = load_texts(choice, "test", n_pool, args.seed)
    rng = random.Random(args.seed)
    pool = rng.sample(range(len(texts)), len(texts))
    agree_idx, lat_idx = pool[:args.agreement_samples], pool[:args.latency_samples]
    csv_idx, proc_idx = pool[:args.csv_samples], pool[:args.process_samples]

    if args.threads_policy == "fixed":
        predictor_module.inference_threads = lambda: threads
        predictor_module.onnx_threads = lambda: threads
    sampler.mark("load")
    ml = args.max_length
    lab_precision, lab_runtime_asked = default_precision(), default_runtime()
    load_s, variants = {}, {}
    for name in VARIANTS:
        t0 = time.perf_counter()
        if name == "pipeline":
            variants[name] = Pipeline(model_dir, ml, threads)
        elif name == "lab":
            lab = Predictor(str(model_dir), precision=lab_precision, runtime=lab_runtime_asked)
            own_ml = lab.max_length                    # the model's own limit: what the CLI uses without --max-length
            if own_ml != ml:
                lab = Predictor(str(model_dir), max_length=ml, precision=lab_precision, runtime=lab_runtime_asked)
            variants[name] = lab
        else:
            runtime, precision = name.split("_")
            variants[name] = Predictor(str(model_dir), max_length=ml, precision=precision, runtime=runtime,
                                       recheck=False)
        load_s[name] = round(time.perf_counter() - t0, 2)
        for _ in range(5):
            variants[name].predict_one(WARMUP)
    for name in PREDICTORS:
        want = "torch" if name.startswith("torch") else "onnx" if name.startswith("onnx") else None
        if want and variants[name].runtime != want:
            raise SystemExit(f"error: {name} runs on {variants[name].runtime}: {variants[name].runtime_note}")
    lab = variants["lab"]
    table_precision = default_precision(batch=True)
    t0 = time.perf_counter()
    if table_precision == lab.precision:
        variants["lab_table"] = lab
    else:
        variants["lab_table"] = Predictor(str(model_dir), max_length=ml, precision=table_precision,
                                          runtime=lab_runtime_asked)
        for _ in range(5):
            variants["lab_table"].predict_one(WARMUP)
    load_s["lab_table"] = round(time.perf_counter() - t0, 2)
    lab_table = variants["lab_table"]
    config = variants["torch_fp32"].model.config
    tok = variants["torch_fp32"].tokenizer
    torch.set_num_threads(threads)
    log(f"[load] {load_s}; lab: {lab.precision} on {lab.runtime}; lab_table: {lab_table.precision} on "
        f"{lab_table.runtime}; max_length {ml} (model's own {own_ml})")

    def ntokens(i):
        return len(tok(texts[i], truncation=True, max_length=ml)["input_ids"])

    result: dict = {
        "benchmark": "inference", "command": command(cli), "environment": env,
        "data": choice.kind, "data_description": data_description + "; seeded sample of the test split, <br /> "
        "cleaned as the training job does (lib.sources.preprocessing.clean_text)", "test_reviews_loaded": len(texts),
        "model": {"folder": rel(model_dir), **model_info, "layers": config.num_hidden_layers,
                  "hidden": config.hidden_size, "own_max_length": own_ml},
        "max_length": ml, "batch_size": args.batch_size, "threads": threads, "threads_policy": args.threads_policy,
        "lab_precision": lab.precision, "lab_runtime": lab.runtime, "lab_runtime_asked": lab_runtime_asked,
        "lab_runtime_note": lab.runtime_note or None, "lab_calibrated": lab.calibrated,
        "lab_table_precision": lab_table.precision, "lab_table_runtime": lab_table.runtime,
        "pipeline_default_batch_size": variants["pipeline"].default_batch_size,
        "export": {"folder": rel(onnx_dir), "seconds": round(export_s, 1), "fused": meta["optimizer"].get("fused"),
                   "quantization": meta.get("quantization"), "check": meta.get("check"),
                   "sizes_mib": {k: round((onnx_dir / v).stat().st_size / 2**20, 1) for k, v in meta["files"].items()}},
        "load_seconds": load_s}

    # fp32 floor -------------------------------------------------------------------------------------
    sampler.mark("gemm")
    rate = gemm_rate(config, threads)
    log(f"[gemm] fp32 GFLOP/s: {rate}")

    # 1. single-review latency: blocks of reviews per variant, rotating, the ratio taken block by block ------
    if "latency" not in skip and lat_idx:
        ms = {v: [] for v in VARIANTS}
        block_ratio = {v: [] for v in VARIANTS}
        block = max(1, args.latency_block)
        blocks = [lat_idx[s:s + block] for s in range(0, len(lat_idx), block)]
        for r, chunk in enumerate(blocks):
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
                block_ratio[v].append(p50["pipeline"] / p50[v])
        sampler.mark("between")
        med_tokens = int(statistics.median(ntokens(i) for i in lat_idx))
        lat = {v: {"p50_ms": round(common.percentile(ms[v], 50), 2), "p95_ms": round(common.percentile(ms[v], 95), 2),
                   "mean_ms": round(statistics.fmean(ms[v]), 2)} for v in VARIANTS}
        for v in VARIANTS:
            lat[v]["x_vs_pipeline"] = round(lat["pipeline"]["p50_ms"] / lat[v]["p50_ms"], 2)
            lat[v]["x_vs_pipeline_median_of_blocks"] = round(statistics.median(block_ratio[v]), 2)
        result["latency"] = {"reviews": len(lat_idx), "blocks": len(blocks), "block": block, "median_tokens": med_tokens,
                             "forward_gflop_at_median": round(forward_flops(config, med_tokens) / 1e9, 4),
                             "variants": lat}
        for v in VARIANTS:
            log(f"[latency] {v:11s} p50 {lat[v]['p50_ms']:7.2f} ms  p95 {lat[v]['p95_ms']:7.2f}  "
                f"{lat[v]['x_vs_pipeline']:.2f}x pipeline (median of blocks {lat[v]['x_vs_pipeline_median_of_blocks']:.2f}x)")

    # 2. CSV mode in process --------------------------------------------------------------------------
    if "csv" not in skip and csv_idx:
        df = pd.DataFrame({"text": [texts[i] for i in csv_idx]})
        csv_variants = ["pipeline", "pipeline_b16", *VARIANTS[1:-1], *[f"lab_b{b}" for b in lab_sizes]]
        secs: dict[str, list[float]] = {v: [] for v in csv_variants}
        lab_labels: dict[str, list] = {}
        for r in range(max(1, args.csv_rounds)):
            for name in (csv_variants if r % 2 == 0 else csv_variants[::-1]):
                time.sleep(SETTLE_S)
                sampler.mark(f"csv:{name}")
                t0 = time.perf_counter()
                if name.startswith("pipeline"):
                    variants["pipeline"].labels(df["text"].tolist(), batch_size=16 if name == "pipeline_b16" else None)
                elif name.startswith("lab_b"):
                    out = predict_frame(lab_table, df, "text", batch_size=int(name[5:]))
                    lab_labels[name] = out["predicted_label"].tolist()
                else:
                    predict_frame(variants[name], df, "text", batch_size=args.batch_size)
                secs[name].append(time.perf_counter() - t0)
                log(f"[csv] round {r + 1} {name:12s} {len(df) / secs[name][-1]:7.2f} reviews/s")
        sampler.mark("between")
        tokens = [ntokens(i) for i in csv_idx]
        rps = {v: len(df) / statistics.median(secs[v]) for v in csv_variants}

        def per_round(base: str, v: str) -> float:
            return round(statistics.median(b / s for b, s in zip(secs[base], secs[v])), 2)

        lab_key = f"lab_b{max(1, args.batch_size)}"
        ref_lab = lab_labels[lab_key]
        result["csv"] = {
            "reviews": len(df), "rounds": max(1, args.csv_rounds), "mean_tokens": round(statistics.fmean(tokens), 1),
            "forward_gflop_total": round(sum(forward_flops(config, t) for t in tokens) / 1e9, 3),
            "lab": lab_key, "lab_batch_sizes": lab_sizes,
            "lab_reviews_per_s_by_batch": {b: round(rps[f"lab_b{b}"], 2) for b in lab_sizes},
            "lab_best_batch_size": max(lab_sizes, key=lambda b: rps[f"lab_b{b}"]),
            "lab_labels_same_as_app_batch_size": {
                b: round(sum(a == c for a, c in zip(lab_labels[f"lab_b{b}"], ref_lab)) / len(ref_lab), 4)
                for b in lab_sizes},
            "variants": {v: {"reviews_per_s": round(rps[v], 2), "x_vs_pipeline": round(rps[v] / rps["pipeline"], 2),
                             "x_vs_pipeline_b16": round(rps[v] / rps["pipeline_b16"], 2),
                             "x_vs_pipeline_median_of_rounds": per_round("pipeline", v),
                             "passes_s": [round(s, 3) for s in secs[v]]} for v in csv_variants}}
        log(f"[csv] lab reviews/s by batch size: {result['csv']['lab_reviews_per_s_by_batch']}")

    # 3. agreement with full precision -----------------------------------------------------------------
    if "agreement" not in skip and agree_idx:
        sampler.mark("agreement")
        a_texts = [texts[i] for i in agree_idx]
        a_labels = [labels[i] for i in agree_idx]
        preds, probs, secs_a = {}, {}, {}
        rechecked = {}
        for name in PREDICTORS:
            before = variants[name].rechecked
            t0 = time.perf_counter()
            res = variants[name].predict(a_texts, batch_size=args.batch_size)
            secs_a[name] = time.perf_counter() - t0
            rechecked[name] = variants[name].rechecked - before
            names = variants[name].label_names
            preds[name] = [r["label_id"] for r in res]
            probs[name] = np.array([[r["scores"][n] for n in names] for r in res], dtype=float)
            log(f"[agreement] {name}: {len(a_texts) / secs_a[name]:.2f} reviews/s over {len(a_texts)} reviews")
        ref = preds["torch_fp32"]
        ag = {}
        for name in PREDICTORS:
            same = sum(a == b for a, b in zip(preds[name], ref))
            ag[name] = {"agreement_with_fp32": round(same / len(ref), 4), "differ": len(ref) - same,
                        "accuracy": round(sum(p == y for p, y in zip(preds[name], a_labels)) / len(ref), 4),
                        "max_abs_prob_diff": round(float(np.max(np.abs(probs[name] - probs["torch_fp32"]))), 4),
                        "reviews_per_s": round(len(ref) / secs_a[name], 2),
                        "reread_in_fp32": round(rechecked[name] / len(ref), 4)}
        fast = FastTokenizer(onnx_dir, ml)
        hf_ids = tok(a_texts, truncation=True, max_length=ml)["input_ids"]
        same_ids = sum(list(a[0]) == list(b) for a, b in zip(fast.encode(a_texts), hf_ids))
        result["agreement"] = {"reviews": len(ref), "variants": ag,
                               "fast_tokenizer_same_ids_as_transformers": f"{same_ids}/{len(ref)}"}
        for name in PREDICTORS:
            log(f"[agreement] {name:11s} {ag[name]}")

    # 4. whole process --------------------------------------------------------------------------------
    if "process" not in skip and proc_idx:
        sampler.mark("process")
        del variants, lab, lab_table          # free memory before the subprocesses
        result["process"] = whole_process(model_dir, [texts[i] for i in proc_idx], ml, own_ml, args.process_rounds,
                                          sampler, threads, args.threads_policy, extra)

    sampler.mark("gemm")
    again = gemm_rate(config, threads)         # measured again at the end: the better of the two (less contended)
    log(f"[gemm] fp32 GFLOP/s again: {again}")
    best = max(rate["encoder_mix"], again["encoder_mix"])
    result["gemm_gflops"] = {"start": rate, "end": again, "encoder_mix_best": best}
    add_floor(result, best)
    sampler.stop()
    result["other_processes"] = sampler.summary()
    result["ratios"] = ratios(result)
    result["targets"] = check_targets(result)
    common.save_json(args.out_dir, args.md_section or "inference", result)
    md = markdown(result)
    common.update_markdown(args.md, args.md_section or "inference", md, variant=args.md_section)
    log(md)
    common.emit(summary(result))
    return 0


def add_floor(res: dict, gflops: float) -> None:
    """The fp32 floor (a forward's FLOPs at the measured fp32 GEMM rate) and each variant's ratio to it."""
    if "latency" in res:
        lat = res["latency"]
        lat["fp32_floor_ms_at_median"] = round(lat["forward_gflop_at_median"] / gflops * 1000, 3)
        for v in lat["variants"].values():
            v["x_fp32_floor"] = round(v["p50_ms"] / lat["fp32_floor_ms_at_median"], 2)
    if "csv" in res:
        c = res["csv"]
        c["fp32_floor_reviews_per_s"] = round(c["reviews"] / (c["forward_gflop_total"] / gflops), 2)
        for v in c["variants"].values():
            v["x_of_fp32_floor_rate"] = round(v["reviews_per_s"] / c["fp32_floor_reviews_per_s"], 2)


def ratios(res: dict) -> dict:
    """The lab's headline ratios (what the targets judge, and the fp32 floor ones)."""
    out = {}
    if "latency" in res:
        lab = res["latency"]["variants"]["lab"]
        out["single_p50_x_vs_pipeline"] = lab["x_vs_pipeline"]
        out["single_p50_x_vs_pipeline_median_of_blocks"] = lab["x_vs_pipeline_median_of_blocks"]
        out["single_p50_x_fp32_floor"] = lab["x_fp32_floor"]
    if "csv" in res:
        lab = res["csv"]["variants"][res["csv"]["lab"]]
        out["csv_x_vs_pipeline"] = lab["x_vs_pipeline"]
        out["csv_x_vs_pipeline_b16"] = lab["x_vs_pipeline_b16"]
        out["csv_x_vs_pipeline_median_of_rounds"] = lab["x_vs_pipeline_median_of_rounds"]
        out["csv_share_of_fp32_floor_rate"] = lab["x_of_fp32_floor_rate"]
    if "process" in res and "lab" in res["process"]["x_vs_pipeline"]:
        out["whole_process_x_vs_pipeline"] = res["process"]["x_vs_pipeline"]["lab"]
        out["whole_process_x_vs_pipeline_median_of_rounds"] = res["process"]["x_vs_pipeline_median_of_rounds"]["lab"]
        if "pipeline_b16" in res["process"]["median_s"]:
            out["whole_process_x_vs_pipeline_b16"] = round(res["process"]["median_s"]["pipeline_b16"]
                                                           / res["process"]["median_s"]["lab"], 2)
    if "agreement" in res:  # the lower of the two: each must agree
        out["agreement_with_fp32"] = min(res["agreement"]["variants"][v]["agreement_with_fp32"]
                                         for v in ("lab", "lab_table"))
    return out


def check_targets(res: dict) -> dict:
    """Each target on the lab variant: value, target, met (True/False), only for the parts that ran."""
    r = res["ratios"]
    out = {}
    for name, key, target in (("single_p50", "single_p50_x_vs_pipeline", "single_p50_x"),
                              ("csv_in_process", "csv_x_vs_pipeline", "csv_in_process_x"),
                              ("whole_process", "whole_process_x_vs_pipeline", "whole_process_x"),
                              ("agreement", "agreement_with_fp32", "agreement")):
        if key in r:
            out[name] = {"value": r[key], "target": TARGETS[target], "met": bool(r[key] >= TARGETS[target])}
    return out


def summary(res: dict) -> dict:
    """The last stdout line."""
    out = {k: res[k] for k in ("benchmark", "data", "max_length", "threads", "threads_policy", "lab_precision",
                               "lab_runtime", "lab_table_precision", "lab_table_runtime")}
    out["model"] = res["model"]["folder"]
    if "latency" in res:
        out["p50_ms"] = {v: s["p50_ms"] for v, s in res["latency"]["variants"].items()}
    if "csv" in res:
        out["csv_reviews_per_s"] = {v: s["reviews_per_s"] for v, s in res["csv"]["variants"].items()}
        out["lab_csv_reviews_per_s_by_batch"] = res["csv"]["lab_reviews_per_s_by_batch"]
    if "agreement" in res:
        out["agreement_with_fp32"] = {v: s["agreement_with_fp32"] for v, s in res["agreement"]["variants"].items()}
    if "process" in res:
        p = res["process"]
        out["process_median_s"] = p["median_s"]
        out["process_labels_agree_with_pipeline"] = p["labels_agree_with_pipeline"]
    out["ratios"] = res["ratios"]
    out["targets"] = {k: v["met"] for k, v in res["targets"].items()}
    return out


def markdown(res: dict) -> str:
    env, cpu = res["environment"], res["environment"]["cpu"]
    v = env["versions"]
    lab = (f"`lab` ({res['lab_precision']} on {res['lab_runtime']}) and `lab_table` ({res['lab_table_precision']} "
           f"on {res['lab_table_runtime']})")
    lines = ["## 4. Inference: the app and the CLI vs transformers.pipeline()", "",
             f"Command: `{res['command']}`  ",
             f"Machine: {env['date']}; {cpu.get('model_name')}, {cpu['logical_cpus']} logical CPUs "
             f"({cpu.get('physical_cores')} cores), flags {', '.join(cpu['flags']) or 'none found'}; "
             f"{env['memory_gib']} GiB RAM; Python {v['python']}, " +
             ", ".join(f"{k} {v.get(k)}" for k in ("torch", "transformers", "tokenizers", "onnxruntime", "onnx",
                                                   "numpy")) + ".  ",
             f"Model: {res['model']['folder']} ({res['model'].get('head', res['model'].get('source'))}; "
             f"{res['model']['layers']} layers, hidden {res['model']['hidden']}); max_length {res['max_length']}; "
             f"batch {res['batch_size']}; {res['threads']} threads, policy {res['threads_policy']}. Data: "
             f"{res['data_description']}.  ",
             f"{lab} are `Predictor(model)` with the app's defaults for one review (the tryout, `python -m "
             f"lib.predict`) and for a table (the Runs page's batch mode; its `lab_bN` rows below); the targets are "
             f"judged on them. fp32 GEMM rate (encoder shapes, best of start and end): "
             f"{res['gemm_gflops']['encoder_mix_best']} GFLOP/s.", ""]
    if "latency" in res:
        lat = res["latency"]
        rows = [[k, s["p50_ms"], s["p95_ms"], s["x_vs_pipeline"], s["x_vs_pipeline_median_of_blocks"], s["x_fp32_floor"]]
                for k, s in lat["variants"].items()]
        lines += [f"Single review ({lat['reviews']} reviews, median {lat['median_tokens']} tokens; fp32 floor "
                  f"{lat['fp32_floor_ms_at_median']} ms):", "",
                  common.md_table(["variant", "p50 ms", "p95 ms", "× faster than pipeline", "median of blocks",
                                   "× fp32 floor"], rows), ""]
    if "csv" in res:
        c = res["csv"]
        rows = [[k, s["reviews_per_s"], s["x_vs_pipeline"], s["x_vs_pipeline_b16"], s["x_of_fp32_floor_rate"]]
                for k, s in c["variants"].items()]
        lines += [f"CSV mode in process ({c['reviews']} reviews, mean {c['mean_tokens']} tokens, median of "
                  f"{c['rounds']} passes; `pipeline` as a user calls it on a list, batch size "
                  f"{res['pipeline_default_batch_size']}; Predictor variants at batch {res['batch_size']}, `lab_bN` at "
                  f"batch N; fp32 floor {c['fp32_floor_reviews_per_s']} reviews/s):", "",
                  common.md_table(["variant", "reviews/s", "× pipeline", "× pipeline batch 16",
                                   "share of fp32 floor rate"], rows), "",
                  f"The lab at batch sizes {c['lab_batch_sizes']}: "
                  + ", ".join(f"{b}: {r} reviews/s" for b, r in c["lab_reviews_per_s_by_batch"].items())
                  + f" (fastest: {c['lab_best_batch_size']}).", ""]
    if "agreement" in res:
        a = res["agreement"]
        rows = [[k, s["agreement_with_fp32"], s["differ"], s["accuracy"], s["max_abs_prob_diff"], s["reviews_per_s"]]
                for k, s in a["variants"].items()]
        lines += [f"Agreement with full precision (torch fp32) on {a['reviews']} reviews:", "",
                  common.md_table(["variant", "same label", "differ", "accuracy", "largest Δp", "reviews/s"], rows), "",
                  f"The export's tokenizer.json (tokenizers only) gives the transformers tokenizer's ids on "
                  f"{a['fast_tokenizer_same_ids_as_transformers']} reviews.", ""]
    if "process" in res:
        p = res["process"]
        rows = [["pipeline", f"`{p['commands']['pipeline']}`", p["median_s"]["pipeline"], 1, "—"]]
        rows += [[k, f"`{p['commands'][k]}`", p["median_s"][k], p["x_vs_pipeline"][k], p["labels_agree_with_pipeline"][k]]
                 for k in p["x_vs_pipeline"]]
        lines += [f"Whole process, {p['reviews']} reviews CSV → CSV, each a fresh Python process (median of "
                  f"{p['rounds']}, alternating):", "",
                  common.md_table(["script", "command", "seconds", "× faster than pipeline", "same labels as pipeline"],
                                  rows), ""]
    judged = "; ".join(f"{k} {t['value']} (target {t['target']}: {'met' if t['met'] else 'NOT met'})"
                       for k, t in res["targets"].items())
    lines.append("Targets (single review and process on `lab`, CSV on `lab_table`, agreement the lower of the two): "
                 + (judged or "none measured") + ".")
    r = res["ratios"]
    if "single_p50_x_fp32_floor" in r or "csv_share_of_fp32_floor_rate" in r:
        lines.append(f"Against the fp32 floor: single-review p50 {r.get('single_p50_x_fp32_floor', '—')}× the floor "
                     f"latency; CSV {r.get('csv_share_of_fp32_floor_rate', '—')}× the floor rate.")
    lines += ["", "Other processes' load (cores): " + "; ".join(
        f"{k} mean {s['mean_other_cores']}, max {s['max_other_cores']}" for k, s in res["other_processes"].items())]
    note = common.shared_note([s["mean_other_cores"] for s in res["other_processes"].values()], cpu.get("logical_cpus"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

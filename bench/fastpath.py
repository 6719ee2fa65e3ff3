"""The fast path, piece by piece: what pays on this machine and what does not.

    python -m bench.fastpath                                 # all parts
    python -m bench.fastpath --parts cache,eval_order        # some parts

Parts (each measured side by side in one run):

- ``cache``: tokenizing once and caching per (dataset fingerprint, tokenizer, max_length, padding),
  as the job does (``lib.tokcache``, ``<runs_dir>/_cache/tokenized``): ``lib.train.tokenize_dataset``
  without the cache, with the cache on a miss (one ``map`` pass writing the Arrow file) and on a hit
  (memory-mapping it), on the training and evaluation splits.
- ``attention``: SDPA (transformers' default for BERT) vs eager attention, one training step
  (forward + backward + AdamW) on unpadded batches of 8 at several lengths, alternating, best of N.
- ``eval_order``: the job's final ``trainer.predict`` over the eval split in dataset order (each batch
  padded to its longest review) vs the job's default, a length-sorted view
  (``lib.train.eval_order``) with the predictions put back in dataset order
  (``lib.train.restore_order``); both timed with the job's own Trainer class and collator.

The training-side pieces (dynamic padding, length-grouped batches, collator cost) are measured by
``bench.train_throughput``; prediction speed by ``bench.inference``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from lib.util.contention import Contention

PARTS = ("cache", "attention", "eval_order", "threads", "omp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fastpath", description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--model", default="bundled-minilm")
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--cache-train-samples", type=int, default=None, help="default: the whole training split")
    p.add_argument("--cache-eval-samples", type=int, default=None, help="default: the whole evaluation split")
    p.add_argument("--attention-lengths", default="128,256,512")
    p.add_argument("--attention-repeats", type=int, default=3)
    p.add_argument("--eval-samples", type=int, default=400)
    p.add_argument("--eval-batch-size", type=int, default=8, help="default 8, the job's per_device_eval_batch_size")
    p.add_argument("--thread-lengths", default="64,256", help="review lengths (tokens) for the threads part")
    p.add_argument("--thread-repeats", type=int, default=20)
    p.add_argument("--omp-policies", default="default,PASSIVE,GOMP_SPINCOUNT=10000",
                   help="settings for the omp part: 'default', an OMP_WAIT_POLICY value, or VAR=VALUE")
    p.add_argument("--seed", type=int, default=42)
    common.add_output_args(p)
    return p


# ---------------------------------------------------------------------------------------------------
# 1. tokenization cache
# ---------------------------------------------------------------------------------------------------

def part_cache(args, choice, tokenizer) -> dict:
    import datasets

    from lib.job import tokcache
    from lib.job.training import tokenize_dataset
    from lib.sources.data import load_data
    cfg = common.base_config(choice, max_length=args.max_length, max_train_samples=args.cache_train_samples,
                             max_eval_samples=args.cache_eval_samples, model=args.model)
    t0 = time.perf_counter()
    loaded = load_data(cfg)
    load_s = time.perf_counter() - t0
    dd = datasets.DatasetDict({"train": loaded.dataset["train"], "test": loaded.dataset["test"]})
    n = {k: len(v) for k, v in dd.items()}
    tmp = Path(tempfile.mkdtemp(prefix="bench-tokcache-"))
    try:
        with Contention() as cont:
            t0 = time.perf_counter()
            current = tokenize_dataset(dd, tokenizer, cfg)
            current_s = time.perf_counter() - t0
            key_s0 = time.perf_counter()
            tok_id = tokcache.tokenizer_identity(tokenizer)
            for ds in dd.values():
                tokcache.cache_key(ds, tok_id, cfg.max_length, cfg.padding)
            key_s = time.perf_counter() - key_s0
            t0 = time.perf_counter()
            miss = tokenize_dataset(dd, tokenizer, cfg, cache_dir=tmp)
            miss_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            hit = tokenize_dataset(dd, tokenizer, cfg, cache_dir=tmp)
            hit_s = time.perf_counter() - t0
        assert not miss.lab_cache_hits and sorted(hit.lab_cache_hits) == sorted(dd), "cache did not behave"
        same = all(current[s].with_format(None)["input_ids"][:50] == hit[s].with_format(None)["input_ids"][:50]
                   and current[s].with_format(None)["length"] == hit[s].with_format(None)["length"] for s in dd)
        cache_mib = sum(f.stat().st_size for f in tmp.glob("*.arrow")) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"reviews": n, "load_data_s": round(load_s, 2), "current_tokenize_dataset_s": round(current_s, 2),
           "cached_miss_s": round(miss_s, 2), "cached_hit_s": round(hit_s, 3), "key_s": round(key_s, 3),
           "cache_mib": round(cache_mib, 1), "same_tokens": same, "contention": cont.as_dict()}
    common.log(f"[fastpath] cache: tokenize_dataset {current_s:.1f} s for {sum(n.values()):,} reviews; cache "
               f"miss {miss_s:.1f} s, hit {hit_s:.2f} s (key {key_s:.2f} s, {cache_mib:.0f} MiB on disk)")
    return res


# ---------------------------------------------------------------------------------------------------
# 2. attention implementation
# ---------------------------------------------------------------------------------------------------
def part_attention(args) -> dict:
    import torch

    from lib.sources.models import load_model
    lengths = [int(x) for x in args.attention_lengths.split(",") if x.strip()]
    models = {}
    for impl in ("sdpa", "eager"):
        torch.manual_seed(0)
        m = load_model(args.model, ["NEGATIVE", "POSITIVE"], seed=0)
        m.set_attn_implementation(impl)
        models[impl] = (m, torch.optim.AdamW(m.parameters(), lr=1e-5))
    times: dict[str, dict[int, list[float]]] = {impl: {L: [] for L in lengths} for impl in models}
    infer: dict[str, dict[int, list[float]]] = {impl: {L: [] for L in lengths} for impl in models}
    with Contention() as cont:
        for L in lengths:
            x = torch.randint(1000, 20000, (8, L))
            mask = torch.ones_like(x)
            y = torch.randint(0, 2, (8,))
            for _ in range(max(1, args.attention_repeats)):
                for impl, (m, opt) in models.items():  # alternate: a burst of load hits both alike
                    m.train()
                    t0 = time.perf_counter()
                    out = m(input_ids=x, attention_mask=mask, labels=y)
                    out.loss.backward()
                    opt.step()
                    opt.zero_grad()
                    times[impl][L].append(time.perf_counter() - t0)
                    m.eval()
                    with torch.inference_mode():
                        t0 = time.perf_counter()
                        m(input_ids=x[:1], attention_mask=mask[:1])
                        infer[impl][L].append(time.perf_counter() - t0)
    rows = {}
    for L in lengths:
        s, e = min(times["sdpa"][L]), min(times["eager"][L])
        si, ei = min(infer["sdpa"][L]), min(infer["eager"][L])
        rows[str(L)] = {"train_step_s": {"sdpa": round(s, 3), "eager": round(e, 3)}, "sdpa_speedup": round(e / s, 3),
                        "single_forward_ms": {"sdpa": round(si * 1000, 1), "eager": round(ei * 1000, 1)},
                        "sdpa_forward_speedup": round(ei / si, 3)}
        common.log(f"[fastpath] attention L={L}: train step sdpa {s:.2f} s vs eager {e:.2f} s ({e / s:.2f}×); "
                   f"single forward {si * 1000:.0f} vs {ei * 1000:.0f} ms")
    return {"batch_size": 8, "by_length": rows, "default": getattr(models["sdpa"][0].config, "_attn_implementation", None),
            "contention": cont.as_dict()}


# ---------------------------------------------------------------------------------------------------
# 3. eval order
# ---------------------------------------------------------------------------------------------------
def part_eval_order(args, choice, tokenizer) -> dict:
    import datasets
    import numpy as np
    from transformers import DataCollatorWithPadding, TrainingArguments

    from bench.train_throughput import CountingCollator
    from lib.job.training import (
        eval_order,
        make_trainer_class,
        restore_order,
        tokenize_dataset,
        training_arguments_kwargs,
    )
    from lib.sources.data import load_data
    from lib.sources.models import load_model
    cfg = common.base_config(choice, model=args.model, max_length=args.max_length, max_train_samples=8,
                             max_eval_samples=args.eval_samples, per_device_eval_batch_size=args.eval_batch_size,
                             eval_strategy="no", save_strategy="no", seed=args.seed)
    loaded = load_data(cfg)
    tokenized = tokenize_dataset(datasets.DatasetDict({"test": loaded.dataset["test"]}), tokenizer, cfg)
    test = tokenized["test"]
    order = eval_order(test, cfg)  # the job's default: longest first (the memory peak shows up at once)
    assert order is not None
    model = load_model(cfg.model, cfg.label_names, seed=cfg.seed)
    results = {}
    preds = {}
    with tempfile.TemporaryDirectory() as tmp, Contention() as cont:
        for mode in ("dataset_order", "length_sorted"):
            collator = CountingCollator(DataCollatorWithPadding(tokenizer))
            trainer = make_trainer_class()(model=model, args=TrainingArguments(
                **training_arguments_kwargs(cfg, tmp, device="cpu")), processing_class=tokenizer,
                data_collator=collator)
            ds = test if mode == "dataset_order" else test.select(order.tolist())
            t0 = time.perf_counter()
            out = trainer.predict(ds)
            secs = time.perf_counter() - t0
            logits = np.asarray(out.predictions)
            if mode == "length_sorted":
                logits = restore_order(logits, order)  # predictions back in dataset order
            preds[mode] = logits
            results[mode] = {"seconds": round(secs, 2), "reviews_per_s": round(len(test) / secs, 2),
                             "padding_efficiency": round(collator.efficiency, 4)}
            common.log(f"[fastpath] eval {mode:14s}: {len(test) / secs:.2f} reviews/s, padding efficiency "
                       f"{collator.efficiency:.3f}")
    same = bool(np.array_equal(preds["dataset_order"].argmax(1), preds["length_sorted"].argmax(1)))
    max_diff = float(np.abs(preds["dataset_order"] - preds["length_sorted"]).max())
    return {"reviews": len(test), "batch_size": args.eval_batch_size, **results,
            "speedup": round(results["dataset_order"]["seconds"] / results["length_sorted"]["seconds"], 3),
            "same_predictions": same, "max_logit_difference": max_diff, "contention": cont.as_dict()}


# ---------------------------------------------------------------------------------------------------
# 4. torch threads on a shared machine
# ---------------------------------------------------------------------------------------------------
def part_threads(args) -> dict:
    """Single-review forward latency with 1 torch thread vs all cores, alternating call by call.

    On a machine where other processes keep the cores busy, OpenMP threads that wait for each other at
    every operator can make 2 threads slower than 1; on an idle machine 2 threads should win.
    """
    import torch

    from lib.sources.models import load_model
    lengths = [int(x) for x in args.thread_lengths.split(",") if x.strip()]
    model = load_model(args.model, ["NEGATIVE", "POSITIVE"], seed=0).eval()
    default = torch.get_num_threads()
    settings = sorted({1, default})
    ms: dict[int, dict[int, list[float]]] = {t: {L: [] for L in lengths} for t in settings}
    try:
        with Contention() as cont, torch.inference_mode():
            for L in lengths:
                x = torch.randint(1000, 20000, (1, L))
                for t in settings:  # warm-up
                    torch.set_num_threads(t)
                    model(input_ids=x)
                for _ in range(max(1, args.thread_repeats)):
                    for t in settings:
                        torch.set_num_threads(t)
                        t0 = time.perf_counter()
                        model(input_ids=x)
                        ms[t][L].append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(default)
    rows = {str(L): {f"{t}_threads_p50_ms": round(common.percentile(ms[t][L], 50), 1) for t in settings}
            for L in lengths}
    for L in lengths:
        common.log(f"[fastpath] threads L={L}: " + ", ".join(f"{t} thread(s) p50 {rows[str(L)][f'{t}_threads_p50_ms']} ms"
                                                            for t in settings))
    return {"default_threads": default, "by_length": rows, "contention": cont.as_dict()}


# ---------------------------------------------------------------------------------------------------
# 5. OpenMP wait policy with a training job on the same machine
# ---------------------------------------------------------------------------------------------------
BUSY_JOB = """
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(768, 3072), torch.nn.GELU(), torch.nn.Linear(3072, 768))
opt = torch.optim.AdamW(model.parameters())
while True:
    loss = model(torch.randn(256, 768)).pow(2).mean()
    loss.backward(); opt.step(); opt.zero_grad()
"""


def part_omp(args) -> dict:
    """Single-review latency (the threads part, in a fresh process) with OpenMP's default wait policy
    and with OMP_WAIT_POLICY=PASSIVE, alone and next to a training-like process using all cores (what
    the app server meets while a run trains on the same machine)."""
    import os
    import subprocess
    results: dict[str, dict] = {}
    for background in ("none", "training"):
        busy = None
        if background == "training":
            env_busy = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            busy = subprocess.Popen([sys.executable, "-c", BUSY_JOB], env=env_busy, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(3)
        try:
            for policy in [x.strip() for x in args.omp_policies.split(",") if x.strip()]:
                env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
                if "=" in policy:
                    var, _, value = policy.partition("=")
                    env[var] = value
                elif policy != "default":
                    env["OMP_WAIT_POLICY"] = policy
                with tempfile.TemporaryDirectory() as tmp:
                    proc = subprocess.run([sys.executable, "-m", "bench.fastpath", "--parts", "threads", "--model",
                                           args.model, "--thread-lengths", args.thread_lengths, "--thread-repeats",
                                           str(args.thread_repeats), "--out-dir", tmp, "--md", "none"],
                                          cwd=common.ROOT, env=env, capture_output=True, text=True, timeout=1800)
                if proc.returncode != 0:
                    raise SystemExit(f"error: the threads measurement failed:\n{proc.stderr[-2000:]}")
                threads = json.loads(proc.stdout.strip().splitlines()[-1])["threads"]
                results[f"{background}/{policy}"] = threads
                common.log(f"[fastpath] omp background={background:8s} policy={policy:8s}: {threads}")
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    return {"by_setting": results}


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise SystemExit(f"error: unknown part(s) {', '.join(bad) or '(none)'}; choose from {', '.join(PARTS)}")
    common.quiet()
    from lib.sources.models import load_tokenizer
    choice = common.choose_data(args.data)
    env = common.environment()
    tokenizer = load_tokenizer(args.model)
    common.log(f"[fastpath] data: {choice.description}; model {args.model}, max_length {args.max_length}")
    summary: dict = {"benchmark": "fastpath", "command": common.command_line("bench.fastpath", cli),
                     "data": choice.kind, "data_description": choice.description, "model": args.model,
                     "max_length": args.max_length, "environment": env}
    if "cache" in parts:
        summary["cache"] = part_cache(args, choice, tokenizer)
    if "attention" in parts:
        summary["attention"] = part_attention(args)
    if "eval_order" in parts:
        summary["eval_order"] = part_eval_order(args, choice, tokenizer)
    if "threads" in parts:
        summary["threads"] = part_threads(args)
    if "omp" in parts:
        summary["omp"] = part_omp(args)
    common.save_json(args.out_dir, args.md_section or "fastpath", summary)
    common.update_markdown(args.md, args.md_section or "fastpath", markdown(summary),
                           variant=args.md_section)
    compact = {"data": choice.kind}
    if "cache" in summary:
        c = summary["cache"]
        compact["cache"] = {k: c[k] for k in ("current_tokenize_dataset_s", "cached_miss_s", "cached_hit_s")}
    if "attention" in summary:
        compact["attention_sdpa_speedup"] = {L: v["sdpa_speedup"] for L, v in summary["attention"]["by_length"].items()}
    if "eval_order" in summary:
        e = summary["eval_order"]
        compact["eval_order"] = {"speedup": e["speedup"], "same_predictions": e["same_predictions"]}
    if "threads" in summary:
        compact["threads"] = summary["threads"]["by_length"]
    if "omp" in summary:
        compact["omp"] = summary["omp"]["by_setting"]
    common.emit(compact)
    return 0


def markdown(s: dict) -> str:
    env = s["environment"]
    lines = [
        "## 8. The fast path, piece by piece",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(env)}  ",
        f"Data: {s['data_description']}; model `{s['model']}`, max_length {s['max_length']}. Dynamic padding and "
        "length-grouped batches: section 1; length-sorted inference batches: section 4.",
    ]
    others = []
    if "cache" in s:
        c = s["cache"]
        n = sum(c["reviews"].values())
        lines += ["", "**Tokenize once, cache per (dataset fingerprint, tokenizer, max_length, padding)**", "",
                  common.md_table(["tokenization of train + eval", "seconds"], [
                      [f"`lib.train.tokenize_dataset` without the cache, {n:,} reviews",
                       c["current_tokenize_dataset_s"]],
                      ["with the cache, miss (the same map pass writing the Arrow cache file)", c["cached_miss_s"]],
                      ["with the cache, hit (memory-mapped Arrow file)", c["cached_hit_s"]],
                      ["computing the cache key (dataset fingerprint + tokenizer hash)", c["key_s"]]]),
                  "", f"Cache size on disk: {c['cache_mib']} MiB; identical tokens and lengths: "
                      f"{'yes' if c['same_tokens'] else 'no'}."]
        others.append(c["contention"]["other_cores"])
    if "attention" in s:
        a = s["attention"]
        rows = [[L, v["train_step_s"]["sdpa"], v["train_step_s"]["eager"], v["sdpa_speedup"],
                 v["single_forward_ms"]["sdpa"], v["single_forward_ms"]["eager"], v["sdpa_forward_speedup"]]
                for L, v in a["by_length"].items()]
        lines += ["", f"**Attention: SDPA (the default here: `{a['default']}`) vs eager**, batch {a['batch_size']} "
                      "unpadded, best of the alternating repeats", "",
                  common.md_table(["tokens", "train step SDPA (s)", "train step eager (s)", "SDPA speed-up",
                                   "1 review forward SDPA (ms)", "eager (ms)", "SDPA speed-up"], rows)]
        others.append(a["contention"]["other_cores"])
    if "eval_order" in s:
        e = s["eval_order"]
        lines += ["", f"**Final evaluation: dataset order vs length-sorted batches** ({e['reviews']:,} reviews, "
                      f"batch {e['batch_size']}, the job's Trainer and collator)", "",
                  common.md_table(["order", "reviews/s", "seconds", "padding efficiency"], [
                      ["dataset order (the tutorial; before this change)", e["dataset_order"]["reviews_per_s"], e["dataset_order"]["seconds"],
                       e["dataset_order"]["padding_efficiency"]],
                      ["length-sorted, predictions put back in dataset order (the job's default)", e["length_sorted"]["reviews_per_s"],
                       e["length_sorted"]["seconds"], e["length_sorted"]["padding_efficiency"]]]),
                  "", f"Speed-up {e['speedup']}×; same predicted labels: {'yes' if e['same_predictions'] else 'no'} "
                      f"(largest logit difference {e['max_logit_difference']:.2e})."]
        others.append(e["contention"]["other_cores"])
    if "threads" in s:
        t = s["threads"]
        keys = sorted({k for v in t["by_length"].values() for k in v})
        rows = [[L] + [v.get(k) for k in keys] for L, v in t["by_length"].items()]
        lines += ["", f"**torch threads for single-review inference** (default here: {t['default_threads']}; "
                      f"alternating call by call; other processes kept {t['contention']['other_cores']} cores busy)", "",
                  common.md_table(["tokens"] + [k.replace("_", " ") for k in keys], rows)]
        others.append(t["contention"]["other_cores"])
    if "omp" in s:
        rows = []
        for setting, by_len in s["omp"]["by_setting"].items():
            background, policy = setting.split("/")
            for L, v in by_len.items():
                shown = ("default (spin, then sleep)" if policy == "default" else
                         policy if "=" in policy else f"OMP_WAIT_POLICY={policy}")
                rows.append([("a training-like process using all cores" if background == "training" else "nothing of ours"),
                             shown, L,
                             v.get("1_threads_p50_ms"), v.get("2_threads_p50_ms")])
        lines += ["", "**OpenMP wait policy: single-review latency next to a training job** (fresh process per "
                      "setting; p50 of alternating calls)", "",
                  common.md_table(["running beside it", "wait policy", "tokens", "1 thread p50 (ms)",
                                   "2 threads p50 (ms)"], rows)]
    note = common.shared_note(others, env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

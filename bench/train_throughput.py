"""Training throughput: the tutorial's pipeline vs the project's default, one pass over N reviews each.

    python -m bench.train_throughput                          # 512 IMDb reviews, max_length 512
    python -m bench.train_throughput --samples 256 --max-length 256
    python -m bench.train_throughput --variants tutorial,project   # skip the dynamic-only ablation

Every variant trains the same model (bundled MiniLM, freshly loaded with the same seed) on the same N
training reviews with the same batch size, for one epoch, through the job's own code:
``lib.train.tokenize_dataset`` → ``TrainingArguments(**lib.train.training_arguments_kwargs(...))`` →
``lib.train.make_trainer_class()``. Only the padding and batching settings differ:

- ``tutorial``: ``padding=True`` inside ``map`` (map batches of 1,000), random batches;
- ``dynamic``:  no padding in ``map``, the collator pads each random batch to its longest review;
- ``project``:  dynamic padding + length-grouped batches (the project's default).

Extra variants for the fast-path study: ``project_eager`` (the default with eager attention instead
of SDPA) and ``max_length`` (everything padded to max_length).

Padding efficiency = real tokens ÷ tokens processed, counted from the batches the Trainer actually
drew (the data collator is wrapped and counts the attention masks). Samples/s = N ÷ the wall time of
``trainer.train()``; tokenization is timed separately. The last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from lib.util.contention import Contention

VARIANTS = {
    "tutorial": {"fields": {"padding": "longest_in_map_batch", "group_by_length": False},
                 "label": "tutorial: padding=True in map, random batches"},
    "dynamic": {"fields": {"padding": "dynamic", "group_by_length": False},
                "label": "dynamic padding only, random batches"},
    "project": {"fields": {"padding": "dynamic", "group_by_length": True},
                "label": "project default: dynamic padding + length-grouped batches"},
    "project_eager": {"fields": {"padding": "dynamic", "group_by_length": True}, "attn": "eager",
                      "label": "project default with eager attention (instead of SDPA)"},
    "max_length": {"fields": {"padding": "max_length", "group_by_length": False},
                   "label": "everything padded to max_length, random batches"},
}
DEFAULT_VARIANTS = "tutorial,dynamic,project"


class CountingCollator:
    """Wraps a data collator; counts real tokens (attention mask 1) and tokens processed per batch."""

    def __init__(self, inner):
        self.inner = inner
        self.real_tokens = 0
        self.tokens_processed = 0
        self.batches = 0
        self.widths: list[int] = []
        self.seconds = 0.0

    def __call__(self, features):
        t0 = time.perf_counter()
        batch = self.inner(features)
        self.seconds += time.perf_counter() - t0
        mask = batch["attention_mask"]
        self.real_tokens += int(mask.sum())
        self.tokens_processed += int(mask.numel())
        self.batches += 1
        self.widths.append(int(mask.shape[1]))
        return batch

    @property
    def efficiency(self) -> float | None:
        return self.real_tokens / self.tokens_processed if self.tokens_processed else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.train_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=512, help="training reviews per variant (default 512)")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8, help="per-device train batch size (default 8, the tutorial's)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"comma-separated, run in this order (default {DEFAULT_VARIANTS}; also: "
                        f"{', '.join(v for v in VARIANTS if v not in DEFAULT_VARIANTS.split(','))})")
    p.add_argument("--model", default="bundled-minilm")
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=int, default=1,
                   help="passes over the variants; from 2 on, every other pass runs them in reverse order "
                        "(A B C C B A) so a drift in background load hits all alike; samples/s = total "
                        "samples / total training time")
    common.add_output_args(p)
    return p


def run_variant(name: str, dataset, tokenizer, cfg, workdir: Path) -> dict:
    """Tokenize and train one epoch with the job's own building blocks; count what the batches held."""
    import datasets
    import torch
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

    from lib.job.training import make_trainer_class, tokenize_dataset, training_arguments_kwargs
    from lib.sources.models import load_model

    spec = VARIANTS[name]
    set_seed(cfg.seed)
    model = load_model(cfg.model, cfg.label_names, seed=cfg.seed)
    if spec.get("attn"):
        model.set_attn_implementation(spec["attn"])
    attn = getattr(model.config, "_attn_implementation", None)

    t0 = time.perf_counter()
    tokenized = tokenize_dataset(datasets.DatasetDict({"train": dataset}), tokenizer, cfg)
    tokenize_s = time.perf_counter() - t0

    args = TrainingArguments(**training_arguments_kwargs(cfg, workdir / name, device="cpu"))
    collator = CountingCollator(DataCollatorWithPadding(tokenizer))
    trainer = make_trainer_class()(model=model, args=args, train_dataset=tokenized["train"],
                                   processing_class=tokenizer, data_collator=collator)
    trainer.lab_train_lengths = (list(tokenized["train"].with_format(None)["length"]) if cfg.group_by_length
                                 else None)
    trainer.lab_shuffle_groups = cfg.shuffle_length_groups  # the same batches either way
    with Contention() as cont:
        t1 = time.perf_counter()
        out = trainer.train()
        train_s = time.perf_counter() - t1
    n = len(dataset)
    del trainer, model
    torch.set_grad_enabled(True)
    widths = collator.widths
    return {
        "variant": name, "label": spec["label"], "settings": spec["fields"], "attention": attn,
        "samples": n, "steps": int(out.global_step), "train_s": round(train_s, 3),
        "samples_per_s": round(n / train_s, 4), "tokenize_s": round(tokenize_s, 3),
        "padding_efficiency": round(collator.efficiency, 4) if collator.efficiency is not None else None,
        "real_tokens": collator.real_tokens, "tokens_processed": collator.tokens_processed,
        "batches": collator.batches, "mean_batch_width": round(sum(widths) / len(widths), 1) if widths else None,
        "max_batch_width": max(widths) if widths else None,
        "collate_s": round(collator.seconds, 4), "collate_share": round(collator.seconds / train_s, 5),
        "real_tokens_per_s": round(collator.real_tokens / train_s, 1),
        "samples_per_cpu_s": round(n / (train_s * cont.own_cores), 4) if cont.own_cores else None,
        "train_loss": round(float(out.training_loss), 4), "contention": cont.as_dict(),
    }


def combine(runs: list[dict]) -> dict:
    """One variant's passes as one result: totals over all passes (a single pass is returned as is)."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    train_s = sum(r["train_s"] for r in runs)
    samples = sum(r["samples"] for r in runs)
    cpu = sum(r["train_s"] * (r["contention"]["own_cores"] or 0) for r in runs)
    others = [r["contention"]["other_cores"] for r in runs if r["contention"]["other_cores"] is not None]
    out.update(train_s=round(train_s, 3), samples_per_s=round(samples / train_s, 4),
               samples_per_cpu_s=round(samples / cpu, 4) if cpu else None,
               passes=[{k: r[k] for k in ("samples_per_s", "train_s", "samples_per_cpu_s", "contention")} for r in runs],
               contention={"other_cores": round(sum(others) / len(others), 3) if others else None,
                           "own_cores": round(cpu / train_s, 3) if train_s else None, "seconds": round(train_s, 3)})
    return out


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise SystemExit(f"error: unknown variant(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(VARIANTS)}")
    if args.samples < 1:
        raise SystemExit("error: --samples must be at least 1")
    common.quiet()
    from lib.sources.data import load_data
    from lib.sources.models import load_tokenizer

    choice = common.choose_data(args.data)
    env = common.environment()
    base = dict(model=args.model, max_length=args.max_length, per_device_train_batch_size=args.batch_size,
                num_train_epochs=1.0, eval_strategy="no", save_strategy="no", logging_steps=10**6,
                max_train_samples=args.samples, max_eval_samples=50, seed=args.seed, device="cpu",
                dataloader_num_workers=0)
    cfg0 = common.base_config(choice, **base, **VARIANTS["project"]["fields"])
    loaded = load_data(cfg0)
    dataset = loaded.dataset["train"]
    tokenizer = load_tokenizer(args.model)
    common.log(f"[train_throughput] data: {choice.description}; {len(dataset)} training reviews, "
               f"max_length {args.max_length}, batch {args.batch_size}, model {args.model}")

    passes: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        for rep in range(max(1, args.repeats)):
            for name in (names if rep % 2 == 0 else list(reversed(names))):
                cfg = common.base_config(choice, **base, **VARIANTS[name]["fields"])
                res = run_variant(name, dataset, tokenizer, cfg, Path(tmp))
                passes[name].append(res)
                common.log(f"[train_throughput] {name:13s} {res['samples_per_s']:8.3f} samples/s  padding efficiency "
                           f"{res['padding_efficiency']:.3f}  (train {res['train_s']:.1f} s, mean batch width "
                           f"{res['mean_batch_width']}, others kept {res['contention']['other_cores']} cores busy)")
    results = {name: combine(runs) for name, runs in passes.items()}

    summary = {"benchmark": "train_throughput", "command": common.command_line("bench.train_throughput", cli),
               "data": choice.kind, "data_description": choice.description, "samples": len(dataset),
               "max_length": args.max_length, "batch_size": args.batch_size, "model": args.model,
               "repeats": max(1, args.repeats),
               "environment": env, "variants": results}
    tut, proj = results.get("tutorial"), results.get("project")
    summary["tutorial_samples_per_s"] = tut["samples_per_s"] if tut else None
    summary["project_samples_per_s"] = proj["samples_per_s"] if proj else None
    summary["ratio"] = round(proj["samples_per_s"] / tut["samples_per_s"], 3) if tut and proj else None
    summary["tutorial_padding_efficiency"] = tut["padding_efficiency"] if tut else None
    summary["project_padding_efficiency"] = proj["padding_efficiency"] if proj else None
    if tut:
        summary["speedup_vs_tutorial"] = {k: round(v["samples_per_s"] / tut["samples_per_s"], 3)
                                          for k, v in results.items()}
        if all(v.get("samples_per_cpu_s") for v in results.values()):
            summary["cpu_time_speedup_vs_tutorial"] = {
                k: round(v["samples_per_cpu_s"] / tut["samples_per_cpu_s"], 3) for k, v in results.items()}
    summary["targets"] = {"ratio>=2.0": summary["ratio"] is not None and summary["ratio"] >= 2.0,
                          "project_padding_efficiency>=0.95": summary["project_padding_efficiency"] is not None
                          and summary["project_padding_efficiency"] >= 0.95}
    common.save_json(args.out_dir, args.md_section or "train_throughput", summary)
    common.update_markdown(args.md, args.md_section or "train_throughput", markdown(summary),
                           variant=args.md_section)
    common.emit({k: summary[k] for k in ("tutorial_samples_per_s", "project_samples_per_s", "ratio",
                                         "tutorial_padding_efficiency", "project_padding_efficiency")}
                | {"data": summary["data"], "samples": summary["samples"], "max_length": summary["max_length"],
                   "speedup_vs_tutorial": summary.get("speedup_vs_tutorial"),
                   "cpu_time_speedup_vs_tutorial": summary.get("cpu_time_speedup_vs_tutorial"), "variants": {
                       k: {kk: v[kk] for kk in ("samples_per_s", "padding_efficiency", "train_s", "tokenize_s",
                                                "mean_batch_width", "collate_share", "contention")}
                       for k, v in results.items()}})
    return 0


def markdown(s: dict) -> str:
    env = s["environment"]
    rows = []
    for name, v in s["variants"].items():
        rows.append([f"`{name}`: {v['label']}", v["samples_per_s"], s.get("speedup_vs_tutorial", {}).get(name),
                     (s.get("cpu_time_speedup_vs_tutorial") or {}).get(name), v["padding_efficiency"],
                     v["mean_batch_width"], v["train_s"], v["tokenize_s"], v["contention"]["other_cores"]])
    lines = [
        "## 1. Training throughput: tutorial pipeline vs project default",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(env)}  ",
        f"Data: {s['data_description']}; {s['samples']:,} seeded training reviews, one epoch each, max_length "
        f"{s['max_length']}, batch {s['batch_size']}, model `{s['model']}` (fresh copy, same seed, per variant), "
        "built with the job's own `tokenize_dataset` / `training_arguments_kwargs` / `make_trainer_class`.",
        "",
        common.md_table(["variant", "samples/s", "× tutorial", "× tutorial (per CPU-second)", "padding efficiency",
                         "mean batch width", "train (s)", "tokenize (s)", "other procs' cores"], rows),
        "",
        f"{s['repeats']} pass(es) per variant" + (" in mirrored order (A B C C B A ...); samples/s = all samples ÷ all "
                                                  "training time." if s["repeats"] > 1 else ".") +
        " \"Per CPU-second\" divides by the CPU time this process actually got, a cross-check that is less "
        "sensitive to other processes' load.",
        "",
    ]
    if s["ratio"] is not None:
        lines.append(f"**Ratio project/tutorial: {s['ratio']:.2f}×** (target ≥ 2.0: "
                     f"{'met' if s['targets']['ratio>=2.0'] else 'not met'}); project padding efficiency "
                     f"{s['project_padding_efficiency']:.3f} (target ≥ 0.95: "
                     f"{'met' if s['targets']['project_padding_efficiency>=0.95'] else 'not met'}), tutorial "
                     f"{s['tutorial_padding_efficiency']:.3f}.")
    if "dynamic" in s["variants"] and "tutorial" in s["variants"] and "project" in s["variants"]:
        d = s["speedup_vs_tutorial"]
        lines.append(f"What contributes: dynamic padding alone {d['dynamic']:.2f}× the tutorial (random batches still "
                     f"pad to their longest review: mean width {s['variants']['dynamic']['mean_batch_width']:.0f} "
                     f"tokens vs {s['variants']['tutorial']['mean_batch_width']:.0f}); adding length-grouped batches "
                     f"{d['project']:.2f}× (mean width {s['variants']['project']['mean_batch_width']:.0f}).")
    project = s["variants"].get("project") or {}
    if project.get("collate_share") is not None:
        lines.append(f"DataLoader: the collator (dynamic padding included) took {project['collate_s']:.3f} s of "
                     f"{project['train_s']:.0f} s of training ({project['collate_share']:.3%}), so background "
                     "DataLoader workers have nothing to hide on a CPU; `dataloader_num_workers` stays 0 by default "
                     "(a config field for GPU machines).")
    note = common.shared_note([v["contention"]["other_cores"] for v in s["variants"].values()], env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

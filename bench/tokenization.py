"""Tokenization speed for the Learn page's data set statistics.

    python -m bench.tokenization                       # all 25,000 IMDb training reviews, 3 repeats
    python -m bench.tokenization --samples 5000 --repeats 1

Times ``lib.tokenization.length_stats`` (token length of every review with the fast tokenizer, then
truncation and padding figures) over the training split, next to two reference points measured in
the same run: the plain batched tokenizer call a page would write without thinking
(``tokenizer(texts, truncation=False)`` in chunks of 2,000) and the Rust backend's batch encode alone.
Reviews/s = reviews ÷ best wall time of ``--repeats`` runs (the median is reported too).
Falls back to the plain tokenizer call when ``lib.tokenization`` is missing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench import common
from lib.util.contention import Contention


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.tokenization", description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=None, help="reviews to use (default: the whole training split)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--model", default="bundled-minilm", help="whose tokenizer (default bundled-minilm)")
    p.add_argument("--data", choices=common.DATA_CHOICES, default="auto")
    common.add_output_args(p)
    return p


def _time(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    from lib.sources.models import load_tokenizer

    choice = common.choose_data(args.data)
    env = common.environment()
    texts, _, info = common.load_split(choice, "train", args.samples)
    tokenizer = load_tokenizer(args.model)
    n = len(texts)
    common.log(f"[tokenization] data: {choice.description}; {n:,} training reviews, tokenizer of {args.model} "
               f"(fast: {getattr(tokenizer, 'is_fast', False)})")

    methods: dict[str, dict] = {}
    try:
        from lib.job import tokenization as tk
        have_lib = hasattr(tk, "length_stats")
    except ImportError:
        tk, have_lib = None, False

    def plain_call():
        lens = []
        for s in range(0, n, 2000):
            enc = tokenizer(texts[s:s + 2000], truncation=False, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)
            lens += [len(x) for x in enc["input_ids"]]
        return lens

    def backend_only():
        import copy
        backend = copy.deepcopy(tokenizer.backend_tokenizer)
        backend.no_truncation()
        backend.no_padding()
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(e) for s in range(0, n, 2000) for e in encode(texts[s:s + 2000])]

    runs = []
    if have_lib:
        runs.append(("length_stats", "lib.tokenization.length_stats (what the Learn page calls)",
                     lambda: tk.length_stats(tokenizer, texts, max_length=args.max_length)))
    runs.append(("tokenizer_call", "tokenizer(texts, truncation=False) in chunks of 2,000", plain_call))
    if getattr(tokenizer, "is_fast", False):
        runs.append(("backend_encode_batch", "Rust backend encode_batch_fast alone (the call inside length_stats)", backend_only))

    reference_lengths = None
    with Contention() as cont:
        for key, label, fn in runs:
            with Contention() as c:
                times, out = _time(fn, args.repeats)
            lengths = list(out.lengths) if key == "length_stats" else list(out)
            if reference_lengths is None:
                reference_lengths = lengths
            methods[key] = {"label": label, "best_s": round(min(times), 3),
                            "median_s": round(statistics.median(times), 3),
                            "reviews_per_s": round(n / min(times), 1),
                            "reviews_per_s_median": round(n / statistics.median(times), 1),
                            "same_lengths_as_first": lengths == reference_lengths, "contention": c.as_dict()}
            common.log(f"[tokenization] {key:22s} {methods[key]['reviews_per_s']:10,.0f} reviews/s "
                       f"(best {min(times):.2f} s of {len(times)})")

    main_key = "length_stats" if have_lib else "tokenizer_call"
    summary = {"benchmark": "tokenization", "command": common.command_line("bench.tokenization", cli),
               "data": choice.kind, "data_description": choice.description, "reviews": n,
               "tokenizer": args.model, "max_length": args.max_length, "repeats": args.repeats, "environment": env,
               "measured": main_key, "reviews_per_s": methods[main_key]["reviews_per_s"],
               "seconds": methods[main_key]["best_s"], "methods": methods, "contention": cont.as_dict()}
    if have_lib:
        stats = tk.length_stats(tokenizer, texts, max_length=args.max_length)
        summary["length_summary"] = {k: common.r(v) for k, v in stats.summary().items() if k != "padding_share"}
        summary["padding_share"] = {k: round(v, 4) for k, v in stats.summary()["padding_share"].items()}
    common.save_json(args.out_dir, args.md_section or "tokenization", summary)
    common.update_markdown(args.md, args.md_section or "tokenization", markdown(summary),
                           variant=args.md_section)
    common.emit({k: summary[k] for k in ("data", "reviews", "measured", "reviews_per_s", "seconds")}
                | {"methods": {k: {kk: v[kk] for kk in ("reviews_per_s", "best_s", "median_s")}
                               for k, v in methods.items()}})
    return 0


def markdown(s: dict) -> str:
    env = s["environment"]
    rows = [[f"`{k}`: {v['label']}", v["reviews_per_s"], v["best_s"], v["median_s"]] for k, v in s["methods"].items()]
    lines = [
        "## 3. Tokenization: the Learn page's data set statistics",
        "",
        f"Command: `{s['command']}`  ",
        f"Machine: {common.machine_line(env)}  ",
        f"Data: {s['data_description']}; {s['reviews']:,} training reviews (cleaned as the job cleans them), "
        f"tokenizer of `{s['tokenizer']}`; each method timed {s['repeats']} time(s) in the same run.",
        "",
        common.md_table(["method", "reviews/s (best)", "best (s)", "median (s)"], rows),
        "",
        f"**{s['measured']}: {s['reviews_per_s']:,.0f} reviews/s** ({s['reviews']:,} reviews in {s['seconds']:.2f} s).",
    ]
    if s.get("length_summary"):
        ls = s["length_summary"]
        lines.append(f"Lengths found: median {ls['median']:.0f} tokens, mean {ls['mean']:.0f}, p95 {ls['p95']:.0f}; "
                     f"{ls['share_truncated']:.1%} of reviews are longer than {s['max_length']} tokens. Padding "
                     "share (batch 8): " + ", ".join(f"{k} {v:.1%}" for k, v in s["padding_share"].items()) + ".")
    note = common.shared_note([v["contention"]["other_cores"] for v in s["methods"].values()], env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

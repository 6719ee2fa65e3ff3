"""The summary table at the top of BENCHMARKS.md, built from the JSON results in bench/out.

    python -m bench.summary
    python -m bench.summary --rerender     # also redraw every section from its saved JSON

Reads ``bench/out/<name>.json`` written by the other scripts (whatever is there) and rewrites the
``summary`` section: one row per target of issues 8 and 10 with the measured value and whether it
was met. Run it after the benchmarks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import common


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("--rerender", action="store_true",
                   help="also rewrite every benchmark's section from its saved JSON (no measuring)")
    common.add_output_args(p)
    return p


def rerender(out_dir: Path, md) -> list[str]:
    """Redraw each section from bench/out/<section>.json with its script's own markdown()."""
    import importlib
    done = []
    for path in sorted(out_dir.glob("*.json")):
        data = _load(out_dir, path.stem)
        name = (data or {}).get("benchmark")
        if not name or name == "summary":
            continue
        module = importlib.import_module(f"bench.{name}")
        if name == "accuracy" and not data.get("seeds"):
            continue
        body = module.markdown(data)
        common.update_markdown(md, path.stem, body, variant=path.stem if path.stem != name else None)
        done.append(path.stem)
    return done


def _load(out_dir: Path, name: str) -> dict | None:
    path = out_dir / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _yes(flag) -> str:
    return "—" if flag is None else ("met" if flag else "**not met**")


def rows_from(out_dir: Path) -> list[list]:
    rows: list[list] = []
    for name, label in (("train_throughput", "1 pass per variant"),
                        ("train_throughput_passive", "2 mirrored passes, OMP_WAIT_POLICY=PASSIVE")):
        t = _load(out_dir, name)
        if not t or t.get("ratio") is None:
            continue
        rows.append([f"1. training speed, project ÷ tutorial (IMDb, max_length 512; {label})", "≥ 2.0×",
                     f"{t['ratio']:.2f}× ({t['project_samples_per_s']:.2f} vs {t['tutorial_samples_per_s']:.2f} samples/s, "
                     f"{t['samples']} reviews, {t['data']}; per CPU-second "
                     f"{t['cpu_time_speedup_vs_tutorial']['project']:.2f}×)", _yes(t["targets"]["ratio>=2.0"])])
        rows.append([f"1. project padding efficiency ({label})", "≥ 0.95",
                     f"{t['project_padding_efficiency']:.3f} (tutorial {t['tutorial_padding_efficiency']:.3f})",
                     _yes(t["targets"]["project_padding_efficiency>=0.95"])])
    a = _load(out_dir, "accuracy")
    if a:
        if "accuracy_delta_points" in a:
            rows.append([f"2. accuracy, project − tutorial (mean of {a['paired_seeds']} seed(s))", "within 1.0 point",
                         f"{a['accuracy_delta_points']:+.2f} points ({a['project']['accuracy']:.4f} vs "
                         f"{a['tutorial']['accuracy']:.4f}; per seed "
                         f"{', '.join(f'{d:+.2f}' for d in a['accuracy_delta_points_per_seed'])})",
                         _yes(a["within_1_point"])])
        if "upstream_groups_delta_points" in a:
            rows.append([f"2. previous default (upstream group order) − tutorial "
                         f"({a['project_upstream_groups']['runs']} seed(s))", "within 1.0 point",
                         f"{a['upstream_groups_delta_points']:+.2f} points ({a['project_upstream_groups']['accuracy']:.4f}; per seed "
                         f"{', '.join(f'{d:+.2f}' for d in a['upstream_groups_delta_points_per_seed'])})",
                         _yes(a["upstream_groups_within_1_point"])])
        if "all_beat_baseline" in a:
            rows.append(["2. transformer pipelines beat TF-IDF", "yes",
                         f"project {a['project']['accuracy']:.4f}, tutorial {a['tutorial']['accuracy']:.4f}; TF-IDF "
                         f"{a['baseline']['accuracy']:.4f}", _yes(a["all_beat_baseline"])])
    k = _load(out_dir, "tokenization")
    if k:
        rows.append(["3. Learn page statistics, all training reviews", "(reported)",
                     f"{k['reviews_per_s']:,.0f} reviews/s ({k['reviews']:,} in {k['seconds']:.1f} s)", "—"])
    i = _load(out_dir, "inference")
    if i and "targets" in i and "ratios" in i:
        t = i["targets"]
        one = f"{i.get('lab_precision')} on {i.get('lab_runtime')}"
        table = f"{i.get('lab_table_precision', i.get('lab_precision'))} on {i.get('lab_table_runtime', i.get('lab_runtime'))}"
        both = one if one == table else f"{one} and {table}, the lower"
        names = {"single_p50": ("single-review p50 vs pipeline()", one),
                 "csv_in_process": ("CSV mode in process vs pipeline()", table),
                 "whole_process": ("500-review CSV, whole lib.predict process vs a pipeline() script", one),
                 "agreement": ("same label as full precision", both)}
        for key, (label, app) in names.items():
            if key in t:
                value = f"{t[key]['value']:.1%}" if key == "agreement" else f"{t[key]['value']:.2f}×"
                goal = f"≥ {t[key]['target']:.1%}" if key == "agreement" else f"≥ {t[key]['target']}×"
                rows.append([f"4. {label} (the app's {app})", goal, value, _yes(t[key]["met"])])
    d = _load(out_dir, "dashboard")
    if d:
        rows.append(["5. Runs page load, 50 runs × 10,000 lines", "≤ 1 s",
                     f"cold {d['cold_s']:.2f} s, warm {d['warm_s']:.3f} s, live {d['live_s']:.3f} s",
                     _yes(d["targets"]["cold<=1s"] and d["targets"]["warm<=1s"])])
    m = _load(out_dir, "memory")
    if m:
        if "job" in m:
            rows.append(["6. job peak RSS (demo preset)", "(reported)", f"{m['job']['peak_rss_mib']} MiB", "—"])
        app = m.get("app") or {}
        if app.get("cycles"):
            rss = " → ".join(str(c["rss_mib"]) for c in app["cycles"])
            rows.append(["6. app server RSS per cycle (20 predictions + 5 page switches)", "does not keep growing",
                         f"{rss} MiB", "—"])
    s = _load(out_dir, "distill")
    if s:
        rows.append(["10.3 student accuracy ÷ teacher accuracy (3 of 6 layers)", "≥ 97 %",
                     f"{s['accuracy_kept']:.1%} ({s['student']['accuracy']:.4f} vs {s['teacher']['accuracy']:.4f})",
                     _yes(s["targets"]["accuracy_kept>=0.97"])])
        rows.append(["10.3 student CPU throughput ÷ teacher", "≥ 1.8×", f"{s['throughput_ratio']:.2f}×",
                     _yes(s["targets"]["throughput_ratio>=1.8"])])
    return rows


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    rerendered = rerender(Path(args.out_dir), args.md) if args.rerender else []
    rows = rows_from(Path(args.out_dir))
    body = "\n".join([
        "## Summary: targets of issues 8, 10 and 18",
        "",
        f"Built by `{common.command_line('bench.summary', cli)}` from the results below (details, dates and "
        "shared-machine notes in each section). GPU run (issue 8 item 7): not measured, no GPU in this task.",
        "",
        common.md_table(["what", "target", "measured", "status"], rows) if rows else "(no results yet)",
    ])
    common.update_markdown(args.md, args.md_section or "summary", body, variant=args.md_section)
    common.emit({"rows": len(rows), **({"rerendered": rerendered} if args.rerender else {})})
    return 0


if __name__ == "__main__":
    sys.exit(main())

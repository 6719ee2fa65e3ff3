"""What every benchmark shares: which data, which machine, how busy it was, where results go.

- Data: the real IMDb at ``../shared/data/imdb/{train,test}.parquet`` (read in place, nothing copied)
  when it is there, else the built-in demo reviews; ``--data imdb|demo|auto`` picks, and every result
  says which one was used. Reviews are loaded through ``lib.data.load_data`` so they are cleaned
  exactly as the training job cleans them (``<br />`` → line break, empty reviews dropped).
- Machine: date, CPU count, torch threads, library versions, load average.
- Shared machine: :class:`Contention` measures how many CPU cores *other* processes kept busy while a
  benchmark ran (system busy time minus this process and its children), so a number taken while
  someone else was running tests says so.
- Results: ``bench/out/<name>.json`` (git-ignored) and one section of ``BENCHMARKS.md`` per benchmark,
  replaced in place between ``<!-- bench:NAME -->`` markers. The last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.util import sysinfo
from lib.util.contention import Contention

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
DEFAULT_IMDB_DIR = ROOT.parent / "shared" / "data" / "imdb"
DATA_CHOICES = ("auto", "imdb", "demo")


# ---------------------------------------------------------------------------------------------------
# Quiet libraries
# ---------------------------------------------------------------------------------------------------
def quiet() -> None:
    """No progress bars, load reports or deprecation chatter: the benchmark's own lines only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets
        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------
def imdb_dir() -> Path:
    return Path(os.environ.get("BENCH_IMDB_DIR") or DEFAULT_IMDB_DIR)


def imdb_available() -> bool:
    d = imdb_dir()
    return (d / "train.parquet").is_file() and (d / "test.parquet").is_file()


@dataclass(frozen=True)
class DataChoice:
    kind: str               # "imdb" | "demo"
    dataset: str            # TrainConfig.dataset
    test_file: str          # TrainConfig.test_file
    description: str

    def config_fields(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "test_file": self.test_file}


def choose_data(wanted: str = "auto") -> DataChoice:
    """The real IMDb when it is there (or when asked for), else the built-in demo reviews."""
    if wanted not in DATA_CHOICES:
        raise SystemExit(f"error: --data must be one of {', '.join(DATA_CHOICES)}, got {wanted!r}")
    if wanted == "imdb" and not imdb_available():
        raise SystemExit(f"error: --data imdb but {imdb_dir()}/train.parquet and test.parquet are not there")
    if wanted in ("auto", "imdb") and imdb_available():
        d = imdb_dir()
        return DataChoice("imdb", str(d / "train.parquet"), str(d / "test.parquet"),
                          f"real IMDb (Maas et al. 2011), read in place from {os.path.relpath(d, ROOT)}")
    return DataChoice("demo", "demo", "", "built-in demo reviews (lib.data.demo_reviews); IMDb not found at "
                      f"{imdb_dir()}" if wanted == "auto" else "built-in demo reviews (lib.data.demo_reviews)")


def base_config(choice: DataChoice, **fields: Any):
    """A TrainConfig on the chosen data with the given fields (everything else: the project's defaults)."""
    from lib.config import TrainConfig
    data = {**choice.config_fields(), "report_tensorboard": False, **fields}
    return TrainConfig.from_dict(data)


def load_split(choice: DataChoice, split: str = "train", n: int | None = None, seed: int = 42,
               **fields: Any) -> tuple[list[str], list[int], dict]:
    """Texts and labels of one split, cleaned as the job cleans them; ``n`` = a seeded subset.

    For ``train`` the subset is a seeded shuffle (as ``max_train_samples``), for ``test`` a seeded
    sample kept in dataset order (as ``max_eval_samples``).
    """
    from lib.sources.data import load_data
    key = "max_train_samples" if split == "train" else "max_eval_samples"
    cfg = base_config(choice, seed=seed, **{key: n}, **fields)
    loaded = load_data(cfg)
    ds = loaded.dataset[split]
    return list(ds["text"]), [int(x) for x in ds["label"]], loaded.info


# ---------------------------------------------------------------------------------------------------
# Machine and contention
# ---------------------------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    import psutil
    try:
        import torch
        threads = torch.get_num_threads()
        gpu = bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        threads, gpu = None, False
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "gpu": gpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(x, 2) for x in load] if load[0] is not None else None,
        "thread_env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                  "TOKENIZERS_PARALLELISM") if k in os.environ},
        "versions": sysinfo.versions(),
    }


def shared_note(other_cores: Iterable[float | None], cpu_count: int | None = None) -> str:
    """A sentence for BENCHMARKS.md about how busy the machine was."""
    vals = [v for v in other_cores if v is not None]
    if not vals:
        return ""
    worst = max(vals)
    cpus = cpu_count or os.cpu_count() or 1
    if worst < 0.1:
        return f"The machine was otherwise idle (other processes used at most {worst:.2f} of {cpus} cores)."
    return (f"Shared machine: other processes (other people's tests) kept on average up to {worst:.2f} of the "
            f"{cpus} cores busy during these measurements, so absolute timings are pessimistic; side-by-side "
            "ratios were taken under the same conditions.")


# ---------------------------------------------------------------------------------------------------
# Statistics and formatting
# ---------------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def r(x: Any, digits: int = 3) -> Any:
    """Round floats for JSON/markdown; leave everything else alone."""
    if isinstance(x, float):
        return round(x, digits)
    return x


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module, *args])


def machine_line(env: dict[str, Any]) -> str:
    v = env["versions"]
    gpu = "a GPU" if env.get("gpu") else "no GPU"
    extra = ""
    te = {k: v for k, v in (env.get("thread_env") or {}).items() if k != "TOKENIZERS_PARALLELISM"}
    if te:
        extra = " Environment: " + ", ".join(f"{k}={v}" for k, v in te.items()) + "."
    return (f"{env['date']}; {env['cpu_count']} CPU cores ({env['torch_threads']} torch threads), {gpu}, "
            f"{env['memory_gib']} GiB RAM; Python {v['python']}, torch {v['torch']}, transformers "
            f"{v['transformers']}, tokenizers {v['tokenizers']}, datasets {v['datasets']}.{extra}")


# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------
def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", default=str(OUT_DIR), help="where the JSON results go (default bench/out)")
    p.add_argument("--md", default=str(BENCHMARKS_MD),
                   help="markdown file whose section is updated (default BENCHMARKS.md; 'none' to skip)")
    p.add_argument("--md-section", default=None, metavar="NAME",
                   help="write to the section <!-- bench:NAME --> instead of the benchmark's own (e.g. to keep a "
                        "second configuration beside the first); the JSON goes to NAME.json too")


def save_json(out_dir: str | os.PathLike, name: str, result: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


MD_HEADER = """# Benchmarks

Every number here was produced by a script in `bench/` (rerun it with the command shown in its
section); each section is rewritten in place by its script. Comparisons are measured side by side in
one run on the same machine. "Shared machine" notes say how many cores other processes kept busy
while a benchmark ran (measured, not guessed).

"""


def update_markdown(md_path: str | os.PathLike | None, name: str, body: str, variant: str | None = None) -> Path | None:
    """Replace (or append) the section between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``.

    ``variant`` (from ``--md-section``): a second configuration; its heading says which.
    """
    if md_path is None or str(md_path).lower() == "none":
        return None
    if variant:
        first, _, rest = body.strip().partition("\n")
        if first.startswith("## "):
            body = f"### {first[3:]} — configuration `{variant}`\n{rest}"
    path = Path(md_path)
    text = path.read_text(encoding="utf-8") if path.exists() else MD_HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def emit(result: dict) -> None:
    """The last line of stdout: one JSON object."""
    print(json.dumps(result, default=str), flush=True)


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------------
# The real training job as a subprocess
# ---------------------------------------------------------------------------------------------------
def set_args(fields: dict[str, Any]) -> list[str]:
    """``--set key=value`` arguments for ``python -m lib.train`` (booleans as true/false)."""
    out: list[str] = []
    for k, v in fields.items():
        text = str(v).lower() if isinstance(v, bool) else ("" if v is None else str(v))
        out += ["--set", f"{k}={text}"]
    return out


def run_training_job(preset: str, fields: dict[str, Any], runs_dir: str | os.PathLike, log_path: str | os.PathLike,
                     timeout: float | None = None) -> dict[str, Any]:
    """Run ``python -m lib.train --preset P --runs-dir D --set ...`` and read back what it wrote.

    Returns {run_dir, wall_s, final (status.json final_metrics), end (the metrics 'end' row), baseline,
    data_info, contention}. Raises SystemExit with the log tail when the job fails.
    """
    import subprocess

    from lib.store import rundir
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "lib.train", "--preset", preset, "--runs-dir", str(runs_dir), *set_args(fields)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    log(f"[job] {' '.join(argv[1:])}")
    with Contention() as cont, open(log_path, "w", encoding="utf-8") as fh:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout)
        wall = time.perf_counter() - t0
    lines = [x for x in Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    if proc.returncode != 0:
        tail = "\n".join(lines[-20:])
        raise SystemExit(f"error: the training job failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    run_dir = Path(lines[-1].strip())
    status = rundir.read_status(run_dir)
    rows = rundir.read_jsonl(run_dir / rundir.METRICS)
    return {"run_dir": str(run_dir), "wall_s": round(wall, 1), "final": status.get("final_metrics") or {},
            "end": next((r for r in reversed(rows) if r.get("event") == "end"), {}),
            "baseline": rundir.read_json(run_dir / rundir.BASELINE) or {},
            "data_info": rundir.read_json(run_dir / rundir.DATA_INFO) or {}, "contention": cont.as_dict()}

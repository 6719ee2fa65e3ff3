"""A measured estimate before launching: a short dry run of a config on this machine.

:func:`estimate` loads the data, the model and the tokenizer, tokenizes a sample, and takes a few real
optimizer steps at the configured batch size, gradient accumulation, max_length and padding, then
times a little evaluation. From that it reports seconds per optimizer step, the training, evaluation
and total time the run would take (the step count comes from :mod:`lib.job.steps`), the dry run's
peak memory (RSS; GPU memory on a GPU) and whether that fits in the memory free now.

The dry run happens in a separate short-lived process (so the app's own memory is not counted and
nothing stays loaded), in a temporary folder outside the runs folder that is removed afterwards. It
is bounded (about 30 s; the process is killed past a hard limit), and it respects the device queue
(:mod:`lib.store.slots`): while every training slot of the device is taken, or runs are waiting for
one, it waits briefly and then refuses with a message instead of taking a slot from them. While it
runs it holds a free slot, so a run queued meanwhile starts a few seconds later rather than sharing
the device with it.

    python -m lib.runs estimate --preset demo --set per_device_train_batch_size=16 --json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib.config import TrainConfig
from lib.errors import ConfigError, LabError, RunError
from lib.store import rundir, slots

DEFAULT_BUDGET_S = 30.0
DEFAULT_WAIT_S = 10.0
MAX_MEASURED_STEPS = 12
HARD_LIMIT_EXTRA_S = 20.0  # the dry run's process is killed this long after its budget
REPO_ROOT = Path(__file__).resolve().parents[2]


class DeviceBusy(RunError):
    """Every training slot of the device is in use (or runs wait for one): the estimate does not take one."""


# ---------------------------------------------------------------------------------------------------
# The device queue
# ---------------------------------------------------------------------------------------------------
def _busy_message(device: str, limit: int, waiting: int) -> str:
    what = (f"{waiting} run(s) are waiting for the {device}" if waiting
            else f"all {limit} training slot(s) of the {device} are in use")
    return (f"The estimate did not run: {what}. A dry run now would slow those runs down and measure the "
            "wrong thing; it waits for its turn only briefly. Try again when the queue is empty "
            "(python -m lib.runs list shows it).")


def claim_slot(runs_dir: str | os.PathLike | None, device: str, *, wait_s: float = DEFAULT_WAIT_S,
               poll_s: float = 0.5):
    """A free slot of ``device`` held for the dry run (an open, locked descriptor; close it to free it), or
    :class:`DeviceBusy` after ``wait_s`` seconds when all slots stay taken or queued runs wait for one."""
    if runs_dir is None:
        return None
    runs_dir = Path(runs_dir)
    qdir = slots.slot_dir(runs_dir)
    limit = slots.device_limit(device)
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        waiting = len(slots.waiting_runs(runs_dir, device)) if runs_dir.is_dir() else 0
        if not waiting:
            qdir.mkdir(parents=True, exist_ok=True)
            for k in range(limit):
                fd = slots._try_lock(qdir / f"{device}-{k}.slot")
                if fd is not None:
                    return fd
        if time.monotonic() >= deadline:
            raise DeviceBusy(_busy_message(device, limit, waiting))
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------------
# The estimate (parent side)
# ---------------------------------------------------------------------------------------------------
def estimate(config: TrainConfig, runs_dir: str | os.PathLike | None = None, *, budget_s: float = DEFAULT_BUDGET_S,
             wait_s: float = DEFAULT_WAIT_S) -> dict:
    """Measure ``config`` with a short dry run; see the module docstring. Returns a JSON-ready dict with
    ``seconds_per_step``, ``train_s``, ``eval_s``, ``eta_s``, ``peak_rss_mb``, ``fits_in_free_memory`` and more.

    ``runs_dir``: the runs folder whose device queue to respect (None: no queue, e.g. a bench). Raises
    :class:`DeviceBusy` when the device stays busy for ``wait_s`` seconds, ConfigError/RunError when the
    dry run fails (with its message).
    """
    import psutil

    from lib.job.training import resolve_device
    if config.task != "finetune":
        raise ConfigError({"task": "the estimate measures fine-tuning runs; for a distillation, estimate the "
                                   "student as a fine-tuning run of the same size"})
    budget_s = min(max(5.0, float(budget_s)), 120.0)
    device = resolve_device(config)
    t_start = time.monotonic()
    fd = claim_slot(runs_dir, device, wait_s=wait_s)
    waited = time.monotonic() - t_start
    tmp = Path(tempfile.mkdtemp(prefix="lab-estimate-"))
    try:
        (tmp / "config.json").write_text(config.to_json(), encoding="utf-8")
        # the budget counts from now: the dry run's own start-up (Python, torch, transformers) is part of it
        argv = [sys.executable, "-m", "lib.registry.estimate", "--worker", str(tmp), "--budget", f"{budget_s:.1f}",
                "--until", f"{time.time() + budget_s:.3f}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.run(argv, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=budget_s + HARD_LIMIT_EXTRA_S, env=env)
        except subprocess.TimeoutExpired:
            raise RunError(f"the dry run took longer than {budget_s + HARD_LIMIT_EXTRA_S:.0f} s and was stopped; "
                           "loading the model or the data may be slow here (try a smaller max_train_samples)") from None
        result = rundir.read_json(tmp / "result.json")
        if not isinstance(result, dict):
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise RunError("the dry run failed" + (f": {' '.join(tail)[-600:]}" if tail else
                                                   f" (exit code {proc.returncode})"))
        if result.get("error"):
            err = result["error"]
            if err.get("type") == "ConfigError" and isinstance(err.get("errors"), dict):
                raise ConfigError(err["errors"])
            raise RunError(f"the dry run failed: {err.get('message', '')}")
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
    available = psutil.virtual_memory().available / 2**20
    result["available_mb"] = round(available, 1)
    fits = result["peak_rss_mb"] * 1.1 <= available  # a little margin: the full data set is bigger than the sample
    if result.get("gpu_free_mb") is not None and result.get("peak_gpu_mb") is not None:
        fits = fits and result["peak_gpu_mb"] * 1.1 <= result["gpu_free_mb"]
    result["fits_in_free_memory"] = bool(fits)
    result["waited_s"] = round(waited, 2)
    result["elapsed_s"] = round(time.monotonic() - t_start, 2)
    return result


def summary_lines(result: dict) -> list[str]:
    """The estimate in a few plain lines (CLI and page)."""
    from lib.util.fmt import format_duration
    lines = [f"{result['seconds_per_step']:.3f} s per optimizer step on {result['device']} "
             f"(measured over {result['steps_measured']} step(s))",
             f"training {format_duration(result['train_s'])} for {result['total_steps']:,} steps, evaluation "
             f"{format_duration(result['eval_s'])} ({result['eval_passes']} pass(es)), setup "
             f"{format_duration(result['setup_s'])}: about {format_duration(result['eta_s'])} in all",
             f"peak memory {result['peak_rss_mb']:,.0f} MB RSS" + (
                 f", {result['peak_gpu_mb']:,.0f} MB on the GPU" if result.get("peak_gpu_mb") is not None else "")
             + f"; {result['available_mb']:,.0f} MB free now: "
             + ("fits" if result["fits_in_free_memory"] else "may NOT fit")]
    lines += result.get("notes") or []
    return lines


def actual_seconds_per_step(run_dir: str | os.PathLike) -> float | None:
    """A finished run's own seconds per optimizer step: the median time between consecutive log rows (one
    optimizer step apart or more), leaving out the gaps that hold an evaluation or a checkpoint save."""
    from lib.readers.metrics import metric_series
    series = metric_series(run_dir)
    busy = {int(r["step"]) for r in series.eval + series.save if isinstance(r.get("step"), int)}
    gaps = []
    for a, b in zip(series.log, series.log[1:]):
        sa, sb, ta, tb = a.get("step"), b.get("step"), a.get("elapsed_s"), b.get("elapsed_s")
        if not all(isinstance(v, (int, float)) for v in (sa, sb, ta, tb)) or sb <= sa:
            continue
        if any(sa <= s < sb for s in busy):
            continue
        gaps.append((tb - ta) / (sb - sa))
    return statistics.median(gaps) if gaps else None


# ---------------------------------------------------------------------------------------------------
# The dry run (child side)
# ---------------------------------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def dry_run(config: TrainConfig, work: Path, budget_s: float, until: float | None = None) -> dict:
    """Load, tokenize a sample, take a few real optimizer steps and a small evaluation; return the numbers.
    ``until``: the wall-clock time (``time.time()``) by which to be done, else ``budget_s`` from now."""
    t0 = time.monotonic()
    deadline = t0 + (budget_s if until is None else max(1.0, until - time.time()))
    import datasets
    import numpy as np
    from transformers import DataCollatorWithPadding, TrainerCallback, TrainingArguments, set_seed

    from lib.job.steps import plan_for_config, schedule_for_config
    from lib.job.training import (
        compute_metrics_fn,
        make_trainer_class,
        resolve_device,
        tokenize_dataset,
        training_arguments_kwargs,
    )
    from lib.sources.data import load_data
    from lib.sources.models import load_model, load_tokenizer
    datasets.disable_progress_bars()
    set_seed(config.seed)
    device = resolve_device(config)
    notes: list[str] = []
    gpu_free = None
    if device == "cuda":
        import torch
        free, _total = torch.cuda.mem_get_info(0)
        gpu_free = free / 2**20

    loaded = load_data(config)
    train_ds, eval_ds = loaded.dataset["train"], loaded.dataset["test"]
    n_train, n_eval = len(train_ds), len(eval_ds)
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, config.label_names, seed=config.seed)
    setup_s = time.monotonic() - t0

    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    rng = np.random.default_rng(config.seed)
    n_sample = min(n_train, per_step * (MAX_MEASURED_STEPS + 1))
    eval_rows = min(n_eval, 2 * config.per_device_eval_batch_size)
    sample = datasets.DatasetDict({
        "train": train_ds.select(sorted(rng.choice(n_train, n_sample, replace=False).tolist())),
        "test": eval_ds.select(sorted(rng.choice(n_eval, eval_rows, replace=False).tolist()))})
    t_tok = time.monotonic()
    tokenized = tokenize_dataset(sample, tokenizer, config.replace(tokenization_cache=False))
    tokenize_per_row = (time.monotonic() - t_tok) / max(1, n_sample + eval_rows)

    kw = training_arguments_kwargs(config.replace(load_best_model_at_end=False, early_stopping_patience=None),
                                   work / "checkpoints", device=device)
    steps_wanted = max(2, min(MAX_MEASURED_STEPS, math.ceil(n_sample / per_step)))
    kw.update(max_steps=steps_wanted, eval_strategy="no", save_strategy="no", logging_steps=10_000,
              report_to="none", load_best_model_at_end=False, metric_for_best_model=None, greater_is_better=None)
    kw.pop("eval_steps", None)
    kw.pop("save_steps", None)
    args = TrainingArguments(**kw)
    times: list[float] = []
    eval_reserve = 0.15 * budget_s

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.monotonic())
            if len(times) >= 2 and time.monotonic() > deadline - eval_reserve:
                control.should_training_stop = True

    LabTrainer = make_trainer_class()
    collator = DataCollatorWithPadding(tokenizer) if config.padding == "dynamic" else None
    trainer = LabTrainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["test"],
                         processing_class=tokenizer, data_collator=collator,
                         compute_metrics=compute_metrics_fn(config.label_names),
                         callbacks=[Clock()])
    trainer.lab_train_lengths = (list(tokenized["train"].with_format(None)["length"]) if config.group_by_length
                                 else None)
    trainer.lab_shuffle_groups = config.shuffle_length_groups
    from lib.util.contention import machine_busy_seconds
    busy0, own0, t_train = machine_busy_seconds(), time.process_time(), time.monotonic()
    trainer.train()
    other_cores = max(0.0, ((machine_busy_seconds() - busy0) - (time.process_time() - own0))
                      / max(1e-6, time.monotonic() - t_train))
    if other_cores >= 0.5:
        notes.append(f"other programs kept about {other_cores:.1f} CPU core(s) busy during the dry run: the run's "
                     "real speed depends on how busy the machine is then")
    steps = [b - a for a, b in zip([t_train, *times], times)]
    measured = steps[1:] if len(steps) > 1 else steps  # the first step also starts the data loader
    if len(steps) <= 1:
        notes.append("only one optimizer step fitted in the time budget: the estimate is rough")
    seconds_per_step = statistics.median(measured) if measured else float("nan")

    t_eval = time.monotonic()
    trainer.predict(tokenized["test"], metric_key_prefix="eval")
    eval_per_row = (time.monotonic() - t_eval) / max(1, eval_rows)

    plan = plan_for_config(config, n_train)
    evals = 0
    if config.eval_strategy != "no":
        try:
            evals = schedule_for_config(config, n_train).count("eval")
        except ConfigError:
            evals = 0
    passes = evals + 1  # the job also predicts the eval split once at the end
    train_s = seconds_per_step * plan.total_steps
    eval_s = eval_per_row * n_eval * passes
    tokenize_s = tokenize_per_row * (min(n_train, plan.num_samples) + n_eval)
    if config.world_size > 1:
        notes.append(f"measured with one process; the run uses {config.world_size}, so its steps take longer "
                     "each but there are fewer of them (not modelled here)")
    if config.early_stopping_patience is not None:
        notes.append("with early stopping the run may end sooner than this")
    out = {
        "device": device, "model": config.model, "dataset": config.dataset,
        "train_rows": n_train, "eval_rows": n_eval, "samples_per_step": plan.samples_per_step,
        "total_steps": plan.total_steps, "steps_measured": len(measured),
        "seconds_per_step": round(seconds_per_step, 5), "step_seconds": [round(s, 5) for s in steps],
        "setup_s": round(setup_s, 3), "tokenize_s": round(tokenize_s, 3),
        "train_s": round(train_s, 3), "eval_passes": passes, "eval_s": round(eval_s, 3),
        "eta_s": round(setup_s + tokenize_s + train_s + eval_s, 3), "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_gpu_mb": None, "gpu_free_mb": round(gpu_free, 1) if gpu_free is not None else None,
        "dry_run_s": round(time.monotonic() - t0, 3), "other_load_cores": round(other_cores, 2), "notes": notes,
    }
    if device == "cuda":
        import torch
        out["peak_gpu_mb"] = round(max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
                                   / 2**20, 1)
    return out


def _worker(work: Path, budget_s: float, until: float | None = None) -> int:
    try:
        config = TrainConfig.load(work / "config.json")
        result = dry_run(config, work, budget_s, until)
    except ConfigError as exc:
        result = {"error": {"type": "ConfigError", "message": str(exc), "errors": exc.errors}}
    except LabError as exc:
        result = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a message
        result = {"error": {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"[:2000]}}
    rundir.atomic_write_text(work / "result.json", json.dumps(result))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m lib.registry.estimate", description="the estimate's dry run "
                                "(started by lib.runs estimate; not meant to be run by hand)")
    p.add_argument("--worker", required=True)
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S)
    p.add_argument("--until", type=float, default=None)
    a = p.parse_args()
    sys.exit(_worker(Path(a.worker), a.budget, a.until))

"""The training job: the tutorial's fine-tuning recipe as a process of its own.

    python -m lib.train --preset demo --runs-dir runs            # new run directory, train, export
    python -m lib.train --config my.json --set num_train_epochs=1
    python -m lib.train --run-dir runs/<id>                      # a run the launcher created
    python -m lib.train --run-dir runs/<id> --resume             # continue from the newest good checkpoint

The flow is the tutorial's: load the data, ``dataset.map(tokenize, batched=True)`` (``label`` kept
beside the new ``input_ids``/``attention_mask``), ``set_format("torch")``, ``TrainingArguments``,
``Trainer`` with a shuffled (seeded) train set and the eval set in its own order, then
``save_pretrained`` of model and tokenizer. Around it the job keeps the run directory current
(status.json, metrics.jsonl, stdout.log), waits its turn in the queue, scores a TF-IDF baseline,
writes the eval predictions in dataset order and a model card.

The last line of stdout is the run directory's path. Exit codes: 0 finished, 2 bad config or data
(a short message on stderr; the traceback only in the run's log), 1 other failures, 143 cancelled.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from lib.config import PRESETS, TrainConfig, build_config
from lib.errors import LabError
from lib.job.training import (
    JobCancelled,
    Tee,
    describe_failure,
    is_disk_full,
    job_argv,
    process_rank,
    run_job,
    same_file,
    write_run_json,
)
from lib.store import rundir
from lib.store.checkpoint_folders import remove_torn_checkpoints

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 143


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib.train", description="Fine-tune a BERT sentiment classifier "
                                "and write everything into a run directory.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted([*PRESETS, "distill"]), help="start from a preset (default: demo)")
    src.add_argument("--config", metavar="FILE.json", help="a saved TrainConfig")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    p.add_argument("--runs-dir", default=None, help="where new run directories go (default $LAB_RUNS_DIR or ./runs)")
    p.add_argument("--run-dir", default=None, help="train in this existing run directory (holds config.json)")
    p.add_argument("--resume", action="store_true", help="with --run-dir: continue from the newest complete checkpoint")
    return p


def _prepare(args) -> tuple[TrainConfig, Path]:
    if args.run_dir:
        run_dir = Path(args.run_dir).resolve()
        if not (run_dir / rundir.CONFIG).is_file():
            raise LabError(f"{run_dir} is not a run directory (no {rundir.CONFIG})")
        if args.preset or args.config or args.overrides:
            raise LabError("--run-dir takes the run's own config.json; do not combine it with --preset/--config/--set")
        return TrainConfig.load(run_dir / rundir.CONFIG), run_dir
    if args.resume:
        raise LabError("--resume needs --run-dir (the run to continue)")
    config = build_config(args.preset, args.config, args.overrides)
    runs_dir = Path(args.runs_dir).expanduser().resolve() if args.runs_dir else rundir.default_runs_dir()
    run_dir = rundir.create_run_dir(runs_dir)
    rundir.atomic_write_text(run_dir / rundir.CONFIG, config.to_json())
    rundir.atomic_write_json(run_dir / rundir.STATUS, {"state": "queued", "step": 0, "total_steps": None,
                                                       "created_at": time.time(), "owner": config.owner})
    return config, run_dir


def _run_distributed(config: TrainConfig, run_dir: Path, *, resume: bool) -> int:
    """Several processes asked for (num_processes x num_nodes > 1): start them through torchrun, exactly as
    the run registry does (same command, same run directory), and wait for them."""
    argv = job_argv(config, run_dir, resume=resume)
    print(f"[lab] {config.world_size} processes: {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        code = subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    status = rundir.read_status(run_dir)
    if status.get("state") == "finished":
        print(str(run_dir), flush=True)
        return EXIT_OK
    error = status.get("error") if isinstance(status.get("error"), dict) else {}
    print(f"error: {error.get('message') or f'torchrun exited with code {code}'}", file=sys.stderr)
    print(f"run directory: {run_dir}", file=sys.stderr)
    return code or EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        config, run_dir = _prepare(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if config.world_size > 1 and "LOCAL_RANK" not in os.environ:
        return _run_distributed(config, run_dir, resume=args.resume)

    main_process = process_rank() == 0
    log_path = run_dir / rundir.LOG
    log = open(log_path, "a", encoding="utf-8", buffering=1)
    real_stdout, real_stderr = sys.stdout, sys.stderr
    launched = same_file(sys.stdout, log_path)
    if not launched and main_process:  # direct CLI use: keep a copy of everything in the run's log
        sys.stdout, sys.stderr = Tee(real_stdout, log), Tee(real_stderr, log)
    if main_process:
        write_run_json(run_dir, [sys.executable, "-m", "lib.train", *argv], launched_by=(
            rundir.read_json(run_dir / rundir.RUN) or {}).get("launched_by", "cli"))

    def on_sigterm(signum, frame):
        raise JobCancelled()
    signal.signal(signal.SIGTERM, on_sigterm)

    code = EXIT_OK
    try:
        run_job(config, run_dir, resume=args.resume)
        if main_process:
            rundir.update_status(run_dir, state="finished", finished_at=time.time(), exit_code=0,
                                 heartbeat=time.time())
    except JobCancelled:
        code = EXIT_CANCELLED
        if main_process:
            rundir.update_status(run_dir, state="cancelled", finished_at=time.time(), exit_code=code,
                                 error={"type": "Cancelled", "message": "cancelled by request", "hint":
                                        "resume it to continue from the newest checkpoint"})
            print("[lab] cancelled", file=log, flush=True)
    except BaseException as exc:  # noqa: BLE001 - every failure must end in status.json
        code = EXIT_BAD_INPUT if isinstance(exc, (LabError, KeyboardInterrupt)) else EXIT_FAILED
        info = describe_failure(exc, config, run_dir)
        if main_process and is_disk_full(exc, run_dir):
            removed = remove_torn_checkpoints(run_dir)  # frees the space the half-written one took
            if removed:
                info["message"] += f" (removed the half-written {', '.join(removed)}; earlier checkpoints kept)"
        try:
            log.write(traceback.format_exc())
            log.flush()
        except OSError:
            pass
        try:
            if main_process:
                rundir.update_status(run_dir, state="failed", finished_at=time.time(), exit_code=code, error=info)
        except OSError:
            pass  # disk full: status.json stays as it was, the registry reconciles from the exit
        sys.stdout, sys.stderr = real_stdout, real_stderr
        print(f"error: {info['message']}", file=sys.stderr)
        if info["hint"]:
            print(f"hint: {info['hint']}", file=sys.stderr)
        print(f"run directory: {run_dir}", file=sys.stderr)
        return code
    finally:
        sys.stdout, sys.stderr = real_stdout, real_stderr
    print(str(run_dir), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

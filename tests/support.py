"""Shared by the test files that need a finished run: one tiny training run per pytest session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_tiny_run(runs_dir: Path) -> Path:
    cmd = [sys.executable, "-m", "lib.train", "--preset", "demo", "--runs-dir", str(runs_dir),
           "--set", "model=tiny-bert", "--set", "max_train_samples=32", "--set", "max_eval_samples=16",
           "--set", "num_train_epochs=2", "--set", "logging_steps=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "LAB_RUNS_DIR": str(runs_dir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def shared_tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run per pytest session, shared read-only by the test files that need one
    (tests that change a run work on a copy)."""
    base = tmp_path_factory.getbasetemp() / "shared-tiny-run"
    marker = base / "RUN_DIR"
    if marker.is_file() and Path(marker.read_text()).is_dir():
        return Path(marker.read_text())
    base.mkdir(exist_ok=True)
    run = train_tiny_run(base / "runs")
    marker.write_text(str(run))
    return run

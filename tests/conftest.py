"""Fixtures shared by the whole suite.

``tiny_run_dir``: one finished training run of the tiny random BERT on 32 built-in reviews, trained once
per test session by the real job (``python -m lib.train``) and shared read-only; tests that change a run
work on a copy. ``ROOT`` is the project folder (pytest puts it on ``sys.path`` through ``pythonpath``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_RUN_ARGS = ["--preset", "demo", "--set", "model=tiny-bert", "--set", "max_train_samples=32",
                 "--set", "max_eval_samples=16", "--set", "num_train_epochs=2", "--set", "logging_steps=1"]


def train_tiny_run(runs_dir: Path, *extra: str) -> Path:
    """Train the tiny BERT through the real job into ``runs_dir``; return the finished run's folder."""
    cmd = [sys.executable, "-m", "lib.train", *TINY_RUN_ARGS, "--runs-dir", str(runs_dir), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "LAB_RUNS_DIR": str(runs_dir), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    """One finished tiny run for the whole session (read-only: copy it before changing anything)."""
    return train_tiny_run(tmp_path_factory.mktemp("shared-tiny-run") / "runs")

"""Fixtures shared by the whole suite.

``slurm_cluster``: the one-node Slurm cluster of this machine, started with ``scripts/slurm-up.sh`` when the
tests run as root and it is not up yet. Outside CI the Slurm tests skip (and say why) when no cluster can be
had; in CI (``CI`` set) that is a failure.

``tiny_run_dir``: one finished training run of the tiny random BERT on 32 built-in reviews, trained once
per test session by the real job (``python -m lib.train``) and shared read-only; tests that change a run
work on a copy. ``ROOT`` is the project folder (pytest puts it on ``sys.path`` through ``pythonpath``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The demo preset on the tiny random BERT; its two layers all train (the preset keeps MiniLM's first two
# of six as pre-trained, which for a two-layer random model would leave only the head to learn).
TINY_RUN_ARGS = ["--preset", "demo", "--set", "model=tiny-bert", "--set", "max_train_samples=32",
                 "--set", "max_eval_samples=16", "--set", "num_train_epochs=2", "--set", "logging_steps=1",
                 "--set", "frozen_layers=0", "--set", "freeze_embeddings=false", "--set", "eval_strategy=epoch"]


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


def _start_slurm() -> str:
    """Start the one-node cluster when we may; return why not otherwise ('' when it is up)."""
    from lib.registry import slurm
    if slurm.slurm_available():
        return ""
    if os.geteuid() != 0:
        return ("Slurm is not running here and the tests are not root, so they cannot start it "
                "(sudo scripts/slurm-up.sh)")
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()) and not os.environ.get("CI"):
        return "Slurm is not installed here (apt-get install slurm-wlm munge, or run scripts/slurm-up.sh as root)"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0 or not slurm.slurm_available():
        return f"scripts/slurm-up.sh could not start Slurm: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return ""


@pytest.fixture(scope="session")
def slurm_cluster():
    why = _start_slurm()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}. In CI the Slurm tests must run against a real cluster.")
        pytest.skip(f"{why}. Skipped outside CI only; in CI (CI set) this is a failure.")

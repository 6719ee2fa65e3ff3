"""Past one device: the same launcher starts the job on torchrun; 2 CPU processes (gloo) on the tiny BERT."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lib.config import preset
from lib.registry import control, launching, reconcile
from lib.store import rundir

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(model="tiny-bert", max_train_samples=48, max_eval_samples=24, num_train_epochs=1.0, logging_steps=1,
            per_device_train_batch_size=4)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LAB_MAX_JOBS_CPU", "2")


def wait_terminal(run_dir: Path, timeout: float = 240.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = reconcile.get_status(run_dir)
        if status.get("state") in ("finished", "failed", "cancelled"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"run did not end: {reconcile.get_status(run_dir)}")


def tree(run_dir: Path) -> set[str]:
    names = set()
    for p in run_dir.rglob("*"):
        rel = p.relative_to(run_dir)
        if rel.parts[0] in ("tensorboard",):
            continue
        names.add(str(rel).split("checkpoint-")[0])
    return names


def test_two_processes_take_half_the_optimizer_steps_with_the_same_run_directory(tmp_path):
    one = launching.launch(preset("demo", **TINY), tmp_path)
    two = launching.launch(preset("demo", **TINY, num_processes=2), tmp_path)
    assert rundir.read_json(two / rundir.RUN)["argv"][1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=2"]
    s1, s2 = wait_terminal(one), wait_terminal(two)
    assert s1["state"] == "finished", rundir.tail_text(one / rundir.LOG)
    assert s2["state"] == "finished", rundir.tail_text(two / rundir.LOG)
    # 48 reviews, batch 4 per device: 12 optimizer steps alone, 6 with 2 processes.
    assert s1["total_steps"] == 12 and s2["total_steps"] == 6
    assert s2["world_size"] == 2
    steps2 = [r["step"] for r in rundir.read_jsonl(two / rundir.METRICS) if r["event"] == "log"]
    assert steps2 == list(range(1, 7))  # rank 0 alone writes metrics: no duplicated lines
    assert tree(one) == tree(two)
    # the loss is a mean over reviews on every process: two processes must not report it doubled
    loss1, loss2 = (next(r["eval_loss"] for r in rundir.read_jsonl(d / rundir.METRICS) if r["event"] == "eval")
                    for d in (one, two))
    assert loss2 == pytest.approx(loss1, rel=0.1)
    preds = rundir.read_jsonl(two / rundir.PREDICTIONS)
    assert [p["index"] for p in preds] == list(range(24))  # gathered back in dataset order
    log = (two / rundir.LOG).read_text()
    assert log.count("[lab] run ") == 1  # rank 0 announces; every rank's output lands in this log


def test_cancel_ends_every_rank(tmp_path):
    config = preset("demo", **{**TINY, "max_train_samples": 400, "num_train_epochs": 50.0}, num_processes=2)
    run_dir = launching.launch(config, tmp_path)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        status = reconcile.get_status(run_dir)
        if status.get("state") == "running" and (status.get("step") or 0) >= 2:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"run never started: {reconcile.get_status(run_dir)}")
    pids = control.process_group_alive(run_dir)
    assert len(pids) >= 3  # torchrun agent + 2 ranks
    control.cancel(run_dir, grace_s=15)
    assert reconcile.get_status(run_dir)["state"] == "cancelled"
    assert control.process_group_alive(run_dir) == []
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_cli_starts_torchrun_itself_for_several_processes(tmp_path):
    """`python -m lib.train --set num_processes=2` trains with two processes (not one that ignores the
    setting): the same optimizer steps as through the registry, in one run directory."""
    args = [f"{k}={v}" for k, v in {**TINY, "num_processes": 2}.items()]
    cmd = [sys.executable, "-m", "lib.train", "--preset", "demo", "--runs-dir", str(tmp_path)]
    for a in args:
        cmd += ["--set", a]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "LAB_MAX_JOBS_CPU": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    status = rundir.read_status(run_dir)
    assert status["state"] == "finished" and status["world_size"] == 2 and status["total_steps"] == 6

"""The device queue: limits per device, first come first served, slots held by dead processes free themselves."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from lib.store import rundir, slots

ROOT = Path(__file__).resolve().parents[1]


def me(**extra) -> dict:
    p = psutil.Process()
    return {"pid": p.pid, "pgid": os.getpgid(0), "create_time": p.create_time(), "host": slots.hostname(), **extra}


def waiting_run(runs_dir: Path, enqueued_at: float, *, device: str | None = "cpu", run: dict | None = None,
                state: str = "queued") -> Path:
    run_dir = rundir.create_run_dir(runs_dir)
    status = {"state": state, "enqueued_at": enqueued_at, "queued_at": time.time()}
    if device:
        status["device"] = device
    rundir.atomic_write_json(run_dir / rundir.STATUS, status)
    rundir.atomic_write_json(run_dir / rundir.RUN, run if run is not None else me())
    return run_dir


def wait_for(predicate, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Waiter(threading.Thread):
    """acquire_slot in a thread, the way a job process waits for its turn."""

    def __init__(self, runs_dir: Path, run_dir: Path, device: str = "cpu"):
        super().__init__(daemon=True)
        self.runs_dir, self.run_dir, self.device, self.fd = runs_dir, run_dir, device, None

    def run(self):
        self.fd = slots.acquire_slot(self.runs_dir, self.run_dir, device=self.device, poll_s=0.02)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_MAX_JOBS_CPU", "1")
    path = tmp_path / "runs"
    path.mkdir()
    return path


def test_device_limits_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("LAB_MAX_JOBS_CPU", raising=False)
    assert slots.device_limit("cpu") == 1
    monkeypatch.setenv("LAB_MAX_JOBS_CPU", "3")
    assert slots.device_limit("cpu") == 3
    for bad in ("0", "-2"):
        monkeypatch.setenv("LAB_MAX_JOBS_CPU", bad)
        assert slots.device_limit("cpu") == 1
    monkeypatch.setenv("LAB_MAX_JOBS_CPU", "many")
    assert slots.device_limit("cpu") == 1  # a typo never crashes a job
    monkeypatch.setenv("LAB_MAX_JOBS_PER_GPU", "2")
    assert slots.device_limit("cuda") % 2 == 0


def test_waiting_runs_are_in_launch_order_and_only_live_ones_on_this_host(runs_dir):
    now = time.time()
    late = waiting_run(runs_dir, now + 5)
    early = waiting_run(runs_dir, now)
    undecided = waiting_run(runs_dir, now + 2, device=None)  # job not started yet: waits for any device
    gpu = waiting_run(runs_dir, now + 1, device="cuda")
    waiting_run(runs_dir, now - 10, state="running")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_ct = psutil.Process(gone.pid).create_time()
    gone.wait()
    waiting_run(runs_dir, now - 9, run={"pid": gone.pid, "create_time": gone_ct, "host": slots.hostname()})
    waiting_run(runs_dir, now - 8, run=me(host="another-host"))
    waiting_run(runs_dir, now - 7, run=me(create_time=me()["create_time"] - 100))  # recycled pid
    assert slots.waiting_runs(runs_dir, "cpu") == [early, undecided, late]
    assert slots.waiting_runs(runs_dir, "cuda") == [gpu, undecided]
    assert [slots.queue_position(runs_dir, d) for d in (early, undecided, late, gpu)] == [1, 2, 3, 1]


def test_second_job_waits_its_turn_and_a_slot_held_by_a_killed_process_frees_itself(runs_dir):
    qdir = slots.slot_dir(runs_dir)
    qdir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)"), str(qdir / "cpu-0.slot")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    now = time.time()
    first, second = waiting_run(runs_dir, now), waiting_run(runs_dir, now + 1)
    a, b = Waiter(runs_dir, first), Waiter(runs_dir, second)
    b.start()
    a.start()
    wait_for(lambda: rundir.read_status(first).get("queue_position") == 1
             and rundir.read_status(second).get("queue_position") == 2, what="queue positions")
    assert a.fd is None and b.fd is None  # the device is busy

    holder.send_signal(signal.SIGKILL)  # the slot's owner dies without cleaning up
    holder.wait()
    a.join(timeout=20)
    assert a.fd is not None, "the first in line takes the slot the dead process held"
    rundir.update_status(first, state="running", queue_position=None)
    wait_for(lambda: rundir.read_status(second).get("queue_position") == 1, what="the second to move up")
    time.sleep(0.2)
    assert b.fd is None  # limit 1: the second still waits
    os.close(a.fd)  # the first job ends
    b.join(timeout=20)
    assert b.fd is not None
    os.close(b.fd)


def test_two_slots_let_two_jobs_train_at_once(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_MAX_JOBS_CPU", "2")
    now = time.time()
    first, second = waiting_run(runs_dir, now), waiting_run(runs_dir, now + 1)
    a = Waiter(runs_dir, first)
    a.start()
    a.join(timeout=20)
    rundir.update_status(first, state="running")
    b = Waiter(runs_dir, second)
    b.start()
    b.join(timeout=20)
    assert a.fd is not None and b.fd is not None
    os.close(a.fd)
    os.close(b.fd)


def test_each_host_has_its_own_slots(runs_dir):
    assert slots.slot_dir(runs_dir, "box-a") != slots.slot_dir(runs_dir, "box-b")
    assert slots.slot_dir(runs_dir, "../../evil").parent == runs_dir / slots.QUEUE_DIR

"""The Train page with ``LAB_BACKEND=slurm`` under AppTest: where runs go, the Slurm job column, a queued
run's place in Slurm's queue and Slurm's reason, and the multi-node fields Slurm makes possible.

The cluster is this machine's one-node cluster (scripts/slurm-up.sh); the cluster test skips outside
CI when there is no Slurm and fails in CI (CI set), as in tests/test_slurm_registry.py.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.config import preset
from lib.errors import RunError
from lib.registry import control, launching, reconcile, slurm
from lib.store import rundir
from pages.ui import session

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LAB_BACKEND", "slurm")
    monkeypatch.setenv("LAB_SLURM_PARTITION", "main")
    for name in ("LAB_READ_ONLY", "LAB_MAX_ACTIVE_RUNS_PER_USER", "LAB_ALLOWED_ROOTS", "LAB_SLURM_ACCOUNT",
                 "LAB_SLURM_EXTRA_ARGS", "LAB_SLURM_CPUS_PER_PROCESS", "LAB_SLURM_PYTHON", "LAB_SLURM_TIME_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    yield path
    for run_dir in rundir.iter_run_dirs(path):  # never leave a job behind
        job_id = rundir.read_run_info(run_dir).get("slurm_job_id")
        if job_id:
            try:
                slurm.cancel(job_id)
            except RunError:
                pass


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[session.OWNER_KEY] = "tester"
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def shown(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def captions(at: AppTest) -> str:
    return "\n".join(shown(c.value) for c in at.caption)


def run_table(at: AppTest):
    (table,) = [d.value for d in at.dataframe if "run" in d.value.columns]
    return table


def has(at: AppTest, kind: str, key: str) -> bool:
    return any(w.key == key for w in getattr(at, kind))


def test_multi_node_is_offered_without_any_endpoint(runs_dir):
    at = page()
    assert "Runs go to Slurm (partition main)" in captions(at)
    assert has(at, "number_input", "tr_num_nodes")
    assert not has(at, "number_input", "tr_node_rank") and not has(at, "selectbox", "tr_rdzv_endpoint")
    assert "num nodes asks Slurm for that many machines" in captions(at)
    at.number_input(key="tr_num_nodes").set_value(2).run()
    assert not at.exception and not [e.value for e in at.error]
    (command,) = [c.value for c in at.code if c.value.startswith("sbatch ")]
    assert "--nodes=2" in command and "--partition=main" in command and "'--job-name=<new-run-id>'" in command
    assert "scripts/slurm-job.sh" in command and "rdzv" not in command


def test_local_backend_has_no_slurm_column(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_BACKEND", "local")
    run_dir = launching.create_run(runs_dir, preset("demo", owner="tester"))
    rundir.update_status(run_dir, state="finished")
    at = page()
    assert "Slurm job" not in run_table(at).columns and "Runs go to Slurm" not in captions(at)


def test_a_bad_backend_setting_is_shown(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_BACKEND", "clowd")
    at = page()
    assert any("LAB_BACKEND='clowd'" in shown(e.value) for e in at.error)


@pytest.fixture
def cluster(slurm_cluster):
    yield


@pytest.fixture
def full_node(cluster, tmp_path):
    """A job holding every CPU of the node, so that the next run waits in Slurm's queue."""
    total = int(subprocess.run(["sinfo", "-h", "-N", "-o", "%C"], capture_output=True, text=True,
                               timeout=20).stdout.split()[0].split("/")[3])
    proc = subprocess.run(["sbatch", "--parsable", "--job-name=lab-test-blocker", f"--cpus-per-task={total}",
                           f"--output={tmp_path / 'blocker.log'}", "--wrap", "sleep 300"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    assert slurm.wait_for(job_id, "running", timeout=30)["state"] == "running"
    yield job_id
    slurm.cancel(job_id)


def test_a_run_waits_in_slurms_queue_with_its_job_id_and_reason(runs_dir, full_node):
    at = page()
    at.text_input(key="tr_model").set_value("tiny-bert")
    at.text_input(key="tr_max_train_samples").set_value("32")
    at.text_input(key="tr_max_eval_samples").set_value("16")
    at.text_input(key="tr_num_train_epochs").set_value("1").run()
    at.button(key="tr_launch").click().run()
    assert not at.exception, at.exception
    (made,) = rundir.iter_run_dirs(runs_dir)
    job_id = rundir.read_run_info(made)["slurm_job_id"]
    assert job_id and job_id != full_node
    assert slurm.wait_for(job_id, "queued", timeout=10)["slurm_state"] == "PENDING"
    deadline = time.monotonic() + 60
    while slurm.job_state(job_id)["slurm_reason"] is None and time.monotonic() < deadline:
        time.sleep(0.5)                       # until Slurm's scheduler has looked at the job
    assert slurm.job_state(job_id)["slurm_reason"] == "Resources"
    at.run()
    table = run_table(at)
    assert list(table.columns[:2]) == ["run", "Slurm job"]
    assert list(table["Slurm job"]) == [job_id] and list(table["state"]) == ["queued (#1)"]
    note = next(c for c in captions(at).splitlines() if c.startswith(f"Slurm job {job_id}"))
    assert "pending" in note and "#1 in the queue" in note and "waiting for free CPUs, GPUs or memory" in note
    assert reconcile.view(made).owner == "tester"
    assert control.cancel(made)["state"] == "cancelled"

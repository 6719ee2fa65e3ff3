"""The registry with ``LAB_BACKEND=slurm``: launch, queue, cancel, reconcile and delete runs on a real cluster.

The cluster is this machine's one-node cluster from scripts/slurm-up.sh (the fixture starts it when it
may, as in tests/test_slurm_backend.py). Outside CI the cluster tests skip when there is no Slurm; in CI
(the CI variable set) a missing cluster is a failure. The first tests need no cluster at all.

Real runs train the tiny random BERT on a few built-in reviews through ``launching.launch``. One run
uses a stand-in interpreter (``LAB_SLURM_PYTHON``, an admin setting) that behaves like the training job
on SIGTERM (it records ``cancelled``) but sleeps instead of training: Slurm's time limit is at least a
minute, and it is started first so that its wait overlaps the other tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lib.config import TrainConfig, preset
from lib.errors import ConfigError, RunError
from lib.registry import access, backend, control, launching, quotas, reconcile, slurm
from lib.store import rundir

REPO = Path(__file__).resolve().parents[1]
UP_SCRIPT = REPO / "scripts" / "slurm-up.sh"
TINY = dict(model="tiny-bert", max_train_samples=32, max_eval_samples=16, num_train_epochs=1.0)

# Stands in for the interpreter: called as `FAKE -m lib.train --run-dir DIR`, it marks the run running
# and sleeps; on SIGTERM it records "cancelled" exactly as lib.train does, and exits 143.
FAKE_JOB = """#!{python}
import os, signal, sys, time
sys.path.insert(0, os.getcwd())
from lib.store import rundir
run_dir = sys.argv[sys.argv.index("--run-dir") + 1]
rundir.update_status(run_dir, state="running", started_at=time.time(), heartbeat=time.time())
def on_term(signum, frame):
    rundir.update_status(run_dir, state="cancelled", finished_at=time.time(), exit_code=143,
                         error={{"type": "Cancelled", "message": "cancelled by request"}})
    print("[lab] cancelled", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(1)
"""


def tiny(**changes) -> TrainConfig:
    return preset("demo", **{**TINY, **changes})


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LAB_BACKEND", "slurm")
    for name in ("LAB_SLURM_PARTITION", "LAB_SLURM_ACCOUNT", "LAB_SLURM_EXTRA_ARGS", "LAB_SLURM_TIME_LIMIT",
                 "LAB_SLURM_CPUS_PER_PROCESS", "LAB_SLURM_MEM_MB", "LAB_SLURM_PYTHON", "LAB_SCHEDULER",
                 "LAB_MAX_ACTIVE_RUNS_PER_USER"):
        monkeypatch.delenv(name, raising=False)


def _wait(predicate, timeout: float, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll)


def _processes_of(run_dir: Path) -> list[int]:
    """Pids of every process on this machine whose command line names the run directory."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(run_dir) in part for part in (proc.info["cmdline"] or [])) and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _in_squeue(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True, timeout=20)
    return job_id in out.stdout.split()


# ---------------------------------------------------------------------------------------------------
# Settings and checks (no cluster needed)

def test_backend_setting(monkeypatch):
    assert backend.backend({}) == "local"
    assert backend.backend({"LAB_BACKEND": " Slurm "}) == "slurm"
    with pytest.raises(RunError, match="LAB_BACKEND='kubernetes'.*local.*slurm"):
        backend.backend({"LAB_BACKEND": "kubernetes"})
    env = {"LAB_BACKEND": "slurm", "LAB_SLURM_PARTITION": "gpu", "LAB_SLURM_ACCOUNT": "nlp"}
    assert backend.describe(env) == "Runs go to Slurm (partition gpu, account nlp)"
    assert backend.describe({}) == "Runs go to this machine's own queue"


def test_a_bad_backend_refuses_the_launch(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_BACKEND", "cloud")
    with pytest.raises(RunError, match="LAB_BACKEND"):
        launching.launch(tiny(), tmp_path)


def test_multi_node_needs_no_endpoint_and_refuses_a_typed_one(monkeypatch):
    config = tiny(num_nodes=2)                      # no rendezvous endpoint: Slurm's node list gives it
    argv = slurm.run_sbatch_argv(Path("/shared/runs/20260101-120000-a1b2c3"), num_nodes=config.num_nodes,
                                 num_processes=config.num_processes, device="cuda")
    assert "--nodes=2" in argv and "--gres=gpu:1" in argv and not any("rdzv" in a for a in argv)
    with pytest.raises(ConfigError, match="leave rdzv_endpoint empty"):
        tiny(num_nodes=2, rdzv_endpoint="evil.example:29500")
    actor, policy = access.Actor("alice", "open"), access.Policy(rendezvous_endpoints=("node0:29500",))
    quotas.check_launch_limits(config, "/nonexistent", actor, policy)   # allowed from the browser
    monkeypatch.setenv("LAB_BACKEND", "local")
    with pytest.raises(ConfigError, match="needs rdzv_endpoint"):
        tiny(num_nodes=2)


def test_slurm_not_answering_changes_nothing(tmp_path, monkeypatch):
    """When Slurm's commands cannot be reached the run shows what its files say, with a note, and
    nothing is written."""
    run_dir = launching.create_run(tmp_path, tiny(owner="alice"))
    rundir.atomic_write_json(run_dir / rundir.RUN, {"backend": "slurm", "slurm_job_id": "4242",
                                                    "launch_started_at": time.time() - 3600})
    rundir.update_status(run_dir, state="running", slurm_job_id="4242", heartbeat=time.time())
    before = (run_dir / rundir.STATUS).read_text()
    empty = tmp_path / "no-slurm-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    rows = reconcile.list_runs(tmp_path)
    assert [(r.state, r.backend, r.slurm_job_id) for r in rows] == [("running", "slurm", "4242")]
    assert "Slurm did not answer" in rows[0].status["slurm_note"] and "squeue" in rows[0].status["slurm_note"]
    assert (run_dir / rundir.STATUS).read_text() == before
    assert control.process_group_alive(run_dir) == []
    rundir.update_status(run_dir, state="failed")
    with pytest.raises(RunError, match="cannot delete"):   # Slurm cannot say whether the job still runs
        control.delete(run_dir)
    assert run_dir.is_dir()


def test_a_long_wait_in_slurms_queue_is_not_a_stall(tmp_path):
    """Slurm's answer (as squeue gives it, parsed by the client) for a job queued for an hour."""
    run_dir = launching.create_run(tmp_path, tiny(owner="alice"))
    hour_ago = time.time() - 3600
    rundir.atomic_write_json(run_dir / rundir.RUN, {"backend": "slurm", "slurm_job_id": "77",
                                                    "launch_started_at": hour_ago})
    rundir.update_status(run_dir, slurm_job_id="77", created_at=hour_ago, queued_at=hour_ago, enqueued_at=hour_ago)
    info = slurm._describe("77", "PENDING", "Resources", None, None, "", "main", "squeue")
    info["queue_position"] = 3
    status = reconcile._reconcile(run_dir, rundir.read_status(run_dir), slurm_answer=({"77": info}, None))
    row = reconcile.view(run_dir, status)
    assert (row.state, row.display_state, row.stalled, row.queue_position) == ("queued", "queued", False, 3)
    assert row.slurm_state == "PENDING" and row.slurm_reason == "waiting for free CPUs, GPUs or memory"


def test_a_node_local_runs_folder_is_warned_about(tmp_path, monkeypatch):
    """The check at start-up: a runs folder on this machine's own disk, with other nodes in the cluster."""
    monkeypatch.setattr(slurm, "_cluster_nodes", lambda: ["gpu-node-1", "gpu-node-2"])
    monkeypatch.setattr(slurm, "_mount_of", lambda path: ("/", "ext4"))
    warning = backend.startup_warning(tmp_path / "a")
    assert "looks local to this machine" in warning and "LAB_RUNS_DIR" in warning and str(tmp_path) in warning
    monkeypatch.setattr(slurm, "_mount_of", lambda path: ("/shared", "nfs4"))
    assert slurm.shared_dir_warning(tmp_path / "b") is None
    assert backend.startup_warning(tmp_path / "c") is None
    monkeypatch.setenv("LAB_BACKEND", "local")
    assert backend.startup_warning(tmp_path / "d") is None


# ---------------------------------------------------------------------------------------------------
# The cluster

@pytest.fixture(scope="module")
def cluster(slurm_cluster):
    yield


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The module's runs directory; every job still in Slurm is cancelled at the end."""
    path = tmp_path_factory.mktemp("slurm-runs")
    yield path
    for run_dir in rundir.iter_run_dirs(path):
        job_id = rundir.read_run_info(run_dir).get("slurm_job_id")
        if job_id:
            try:
                slurm.cancel(job_id)
            except RunError:
                pass


@pytest.fixture(scope="module")
def timed_run(runs, tmp_path_factory):
    """A run with a one-minute Slurm time limit, started first (Slurm ends it 60 to 90 s later)."""
    fake = tmp_path_factory.mktemp("fake") / "python"
    fake.write_text(FAKE_JOB.format(python=sys.executable))
    fake.chmod(0o755)
    env = {"LAB_BACKEND": "slurm", "LAB_SLURM_TIME_LIMIT": "1", "LAB_SLURM_PYTHON": str(fake)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        run_dir = launching.launch(tiny(run_name="timed", owner="carol"), runs)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return run_dir


def _view(run_dir: Path) -> reconcile.RunView:
    return reconcile.view(run_dir)


def _until_state(run_dir: Path, states, timeout: float) -> reconcile.RunView:
    want = {states} if isinstance(states, str) else set(states)
    return _wait(lambda: (v := _view(run_dir)).state in want and v, timeout, 0.5) or _view(run_dir)


def _node_cpus() -> tuple[int, int]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%C"], capture_output=True, text=True, timeout=20).stdout
    alloc, idle, other, total = (int(x) for x in out.split()[0].split("/"))
    return idle, total


def _pending_ahead_of(job_id: str) -> int:
    """Pending jobs Slurm ranks before ``job_id`` (squeue's own sort: priority, then submission)."""
    partition = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%P"], capture_output=True, text=True,
                               timeout=20).stdout.strip()
    out = subprocess.run(["squeue", "-h", "-t", "PENDING", "-p", partition, "-S", "-p,V,i", "-o", "%i"],
                         capture_output=True, text=True, timeout=20).stdout.split()
    return out.index(job_id) if job_id in out else -1


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_runs_queue_in_slurm_and_finish_like_local_runs(runs, timed_run, monkeypatch):
    """Two runs that each ask for every free CPU of the node: the second waits in Slurm's queue behind
    the first, and both end with the same run directory as a run of the local backend."""
    assert _until_state(timed_run, "running", 60).state == "running"
    idle, _ = _wait(lambda: (c := _node_cpus())[0] >= 1 and c, 30)
    monkeypatch.setenv("LAB_SLURM_CPUS_PER_PROCESS", str(idle))
    first = launching.launch(tiny(run_name="first"), runs, owner="alice")
    second = launching.launch(tiny(run_name="second"), runs, owner="alice")
    job1, job2 = (rundir.read_run_info(d)["slurm_job_id"] for d in (first, second))
    assert job1 != job2
    # first's state is read before second's: a view of second taken while first still waited would
    # rightly count first ahead of it
    waiting = _wait(lambda: _view(first).slurm_state == "RUNNING" and (v := _view(second)).state == "queued"
                    and v.slurm_state == "PENDING" and v, 60)
    assert waiting, (_view(first), _view(second))
    queue = subprocess.run(["squeue", "-h", "-o", "%i %T %r %P %Q %V"], capture_output=True, text=True,
                           timeout=20).stdout
    ahead = _pending_ahead_of(job2)   # other people's jobs may wait in the partition too
    assert waiting.queue_position == ahead + 1, queue
    assert waiting.slurm_reason.startswith("waiting"), (waiting.slurm_reason, queue)
    assert waiting.backend == "slurm" and waiting.slurm_job_id == job2
    shown = {r.run_id: r for r in reconcile.list_runs(runs)}
    assert shown[second.name].queue_position == _pending_ahead_of(job2) + 1, queue
    assert shown[first.name].queue_position is None

    # the same config on the local backend, while the Slurm runs train
    monkeypatch.setenv("LAB_BACKEND", "local")
    local_runs = runs.parent / f"{runs.name}-local"
    local = launching.launch(tiny(run_name="first"), local_runs, owner="alice")
    monkeypatch.setenv("LAB_BACKEND", "slurm")
    for run_dir in (first, second, local):
        row = _until_state(run_dir, rundir.TERMINAL_STATES, 240)
        assert row.state == "finished", (run_dir / rundir.LOG).read_text()[-2000:]
    assert _view(local).backend == "local" and _view(local).slurm_job_id is None
    for run_dir in (first, second):
        assert _names(run_dir) == _names(local)
        for sub in ("checkpoints", "model"):
            assert _names(run_dir / sub) == _names(local / sub)
        a, b = (rundir.read_status(d) for d in (run_dir, local))
        assert a["step"] == a["total_steps"] == b["step"] == b["total_steps"]
        events = [sorted({row["event"] for row in rundir.read_jsonl(d / rundir.METRICS)}) for d in (run_dir, local)]
        assert events[0] == events[1]
        assert set(a["final_metrics"]) == set(b["final_metrics"])
    info = rundir.read_run_info(second)
    assert info["backend"] == "slurm" and info["sbatch_argv"][0] == "sbatch"
    assert f"--job-name={second.name}" in info["sbatch_argv"] and info["slurm_nodes"]
    log = (second / rundir.LOG).read_text()
    assert f"submitted to Slurm as job {job2}" in log and f"[lab] Slurm job {job2} on " in log


def test_delete_waits_until_slurm_no_longer_runs_the_job(runs, timed_run):
    """A run whose files say it has ended while Slurm still runs its job (its last processes exiting)."""
    assert _until_state(timed_run, "running", 60).state == "running"
    job_id = rundir.read_run_info(timed_run)["slurm_job_id"]
    rundir.update_status(timed_run, state="finished")       # the stand-in job writes nothing until SIGTERM
    try:
        with pytest.raises(RunError, match=f"Slurm still runs job {job_id}"):
            control.delete(timed_run)
        assert timed_run.is_dir()
        rundir.update_status(timed_run, state="failed")
        with pytest.raises(RunError, match=f"Slurm still runs job {job_id}"):
            launching.resume(timed_run)              # no second job while the first still runs
        assert rundir.read_run_info(timed_run)["slurm_job_id"] == job_id
    finally:
        rundir.update_status(timed_run, state="running")


def test_cancel_ends_every_process_and_leaves_nothing_in_squeue(runs):
    """A run of two processes (torchrun started by the batch script): scancel ends the agent and both ranks."""
    run_dir = launching.launch(tiny(run_name="to cancel", num_train_epochs=200.0, num_processes=2), runs,
                               owner="alice")
    job_id = rundir.read_run_info(run_dir)["slurm_job_id"]
    assert "--cpus-per-task=2" in rundir.read_run_info(run_dir)["sbatch_argv"]
    # torchrun's agent and its two ranks, training
    assert _wait(lambda: _view(run_dir).step >= 1 and len(_processes_of(run_dir)) >= 3, 150), \
        (_view(run_dir), _processes_of(run_dir), (run_dir / rundir.LOG).read_text()[-1500:])
    status = control.cancel(run_dir, by="test")
    assert status["state"] == "cancelled" and status["cancel_requested_at"]
    assert not _in_squeue(job_id)
    assert _wait(lambda: not _processes_of(run_dir), 20), _processes_of(run_dir)
    assert control.process_group_alive(run_dir) == []
    row = _view(run_dir)
    assert row.state == "cancelled" and row.error["type"] == "Cancelled"
    # stays cancelled when read again (the lab asked for it: Slurm's CANCELLED is not a failure here)
    assert [r.state for r in reconcile.list_runs(runs) if r.run_id == run_dir.name] == ["cancelled"]

    launching.resume(run_dir)        # a new job for the same run directory
    info = rundir.read_run_info(run_dir)
    assert info["slurm_job_id"] != job_id and info["history"][-1]["slurm_job_id"] == job_id
    assert "--resume" in info["sbatch_argv"]
    assert _wait(lambda: _view(run_dir).state == "running" and _processes_of(run_dir), 90)
    assert control.cancel(run_dir)["state"] == "cancelled" and not _in_squeue(info["slurm_job_id"])
    assert _wait(lambda: not _processes_of(run_dir), 20), _processes_of(run_dir)
    control.delete(run_dir)          # Slurm no longer runs the job: the run may go
    assert not run_dir.exists()


def test_a_job_killed_in_slurm_reconciles_to_failed_with_the_reason(runs):
    run_dir = launching.launch(tiny(run_name="to kill", num_train_epochs=200.0), runs, owner="alice")
    job_id = rundir.read_run_info(run_dir)["slurm_job_id"]
    assert _wait(lambda: _view(run_dir).state == "running", 90)
    slurm.cancel(job_id, signal="KILL")   # outside the lab: an admin, or Slurm itself
    assert _wait(lambda: not slurm.is_active(job_id), 60)
    row = _wait(lambda: (r := next(v for v in reconcile.list_runs(runs) if v.run_id == run_dir.name)).state
                == "failed" and r, 20)
    assert row, _view(run_dir)
    assert row.error["message"] == "Slurm cancelled the job (scancel)" and row.slurm_state == "CANCELLED"
    assert row.error["slurm_job_id"] == job_id
    assert _wait(lambda: not _processes_of(run_dir), 20)


def test_a_job_slurm_refuses_ends_the_run_failed_with_slurms_message(runs, monkeypatch):
    """A partition the cluster does not have: sbatch refuses, and the run says why."""
    monkeypatch.setenv("LAB_SLURM_PARTITION", "nosuchpartition")
    with pytest.raises(RunError, match="Slurm refused the job") as refused:
        launching.launch(tiny(run_name="refused"), runs, owner="alice")
    (run_dir,) = [d for d in rundir.iter_run_dirs(runs) if rundir.read_config(d).get("run_name") == "refused"]
    row = _view(run_dir)
    assert row.state == "failed" and row.error["type"] == "SlurmRefused"
    assert row.error["message"] == str(refused.value) and "partition" in row.error["message"].lower()
    assert "--partition=nosuchpartition" in rundir.read_run_info(run_dir)["sbatch_argv"]
    assert row.slurm_job_id is None
    control.delete(run_dir)


def test_runs_of_two_users_keep_their_owners(runs, capsys):
    policy = access.Policy()
    made = {who: launching.launch(tiny(run_name=f"{who}'s run"), runs, owner=who, launched_by="app",
                                  actor=access.Actor(who, "open"), policy=policy) for who in ("alice", "bob")}
    rows = {r.run_id: r for r in reconcile.list_runs(runs)}
    for who, run_dir in made.items():
        assert rows[run_dir.name].owner == who and rows[run_dir.name].backend == "slurm"
        assert rundir.read_config(run_dir)["owner"] == who
        assert rows[run_dir.name].slurm_job_id == rundir.read_run_info(run_dir)["slurm_job_id"]
    jobs = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, timeout=20).stdout.split()
    assert {d.name for d in made.values()} <= set(jobs)           # the run id is the job name
    from lib import runs as cli
    assert cli.main(["--runs-dir", str(runs), "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "JOB", "STATE"]
    for who, run_dir in made.items():
        line = next(line for line in table if line.startswith(run_dir.name))
        assert line.split()[1] == rundir.read_run_info(run_dir)["slurm_job_id"] and who in line.split()
    assert cli.main(["--runs-dir", str(runs), "show", made["bob"].name]) == 0
    shown = capsys.readouterr().out
    assert "backend: slurm" in shown and f"job: {rundir.read_run_info(made['bob'])['slurm_job_id']}" in shown
    with pytest.raises(access.PermissionDenied):
        control.cancel(made["alice"], actor=access.Actor("bob", "open"),
                       policy=access.Policy(sign_in=True))
    for run_dir in made.values():
        assert control.cancel(run_dir, by="test")["state"] == "cancelled"


def test_a_time_limit_ends_the_run_failed_even_though_it_recorded_cancelled(runs, timed_run):
    """Slurm's time limit sends SIGTERM, the job records "cancelled" as on any SIGTERM; the lab never asked
    for a cancel, so the run is failed with Slurm's reason."""
    job_id = rundir.read_run_info(timed_run)["slurm_job_id"]
    assert _wait(lambda: not slurm.is_active(job_id), 150, 1.0)
    row = _until_state(timed_run, "failed", 20)
    assert row.state == "failed", (row, rundir.read_status(timed_run))
    assert row.error["message"].startswith("Slurm stopped the job: time limit reached")
    assert row.slurm_state == "TIMEOUT" and row.owner == "carol"
    assert "cancelled" in (timed_run / rundir.LOG).read_text()

"""The Slurm module (lib.registry.slurm) against a real Slurm cluster.

The cluster is this machine's one-node cluster from scripts/slurm-up.sh: when Slurm does not answer
and the tests run as root with Slurm installed, the fixture starts it. Outside CI the tests skip when
there is no Slurm; in CI (the CI variable set) a missing cluster is a failure.

The jobs run the project's batch script (scripts/slurm-job.sh) with a stand-in interpreter written
into tmp_path, so every job goes through the same script and sbatch options as a real run, but takes
seconds and no CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.errors import RunError
from lib.registry import slurm

REPO = Path(__file__).resolve().parents[1]
UP_SCRIPT = REPO / "scripts" / "slurm-up.sh"
RUN_ID = "20260101-120000-a1b2c3"

# A stand-in for the Python interpreter: called as `FAKE -m lib.train --run-dir DIR [--resume]`, it
# records its arguments and pids in DIR, sleeps as long as DIR/sleep says and exits with DIR/exit_code.
FAKE_PYTHON = r"""#!/bin/sh
dir="$4"
printf '%s\n' "$@" > "$dir/args"
echo "fake job: $*"
echo "scheduler: ${LAB_SCHEDULER:-none}"
echo $$ > "$dir/shell.pid"
trap 'echo "got TERM"; kill "$child" 2>/dev/null; exit 143' TERM
sleep "$(cat "$dir/sleep" 2>/dev/null || echo 0)" &
child=$!
echo "$child" > "$dir/sleep.pid"
wait "$child"
echo done > "$dir/done"
exit "$(cat "$dir/exit_code" 2>/dev/null || echo 0)"
"""


# ---------------------------------------------------------------------------------------------------
# The cluster

@pytest.fixture(scope="module")
def cluster(slurm_cluster):
    yield


@pytest.fixture
def jobs(cluster):
    """Job ids submitted by a test; whatever is left is cancelled afterwards."""
    ids: list[str] = []
    yield ids
    for job_id in ids:
        try:
            slurm.cancel(job_id)
        except RunError:
            pass


def _node_cpus() -> tuple[int, int]:
    """(idle CPUs, all CPUs) of the cluster's node."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%C"], capture_output=True, text=True, timeout=20).stdout
    alloc, idle, other, total = (int(x) for x in out.split()[0].split("/"))
    return idle, total


def _fake_run(tmp_path: Path, name: str, *, sleep: float = 0, exit_code: int = 0) -> tuple[Path, Path]:
    """A stand-in interpreter and a run directory for it."""
    python = tmp_path / "fake-python"
    if not python.exists():
        python.write_text(FAKE_PYTHON)
        python.chmod(0o755)
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "sleep").write_text(str(sleep))
    (run_dir / "exit_code").write_text(str(exit_code))
    return python, run_dir


def _submit(tmp_path, jobs, name, *, sleep=0, exit_code=0, cpus=1, time_limit=None) -> tuple[str, Path]:
    python, run_dir = _fake_run(tmp_path, name, sleep=sleep, exit_code=exit_code)
    argv = slurm.sbatch_argv(RUN_ID, run_dir, slurm.job_script_argv(run_dir, python=str(python)),
                             cpus_per_task=cpus, time_limit=time_limit)
    job_id = slurm.submit(argv)
    jobs.append(job_id)
    return job_id, run_dir


def _wait(predicate, timeout: float, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll)


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return False
    return True


def _in_squeue(job_id: str) -> bool:
    proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True, timeout=20)
    return job_id in proc.stdout.split()


@pytest.fixture(scope="module")
def time_limit_job(cluster, tmp_path_factory):
    """A job with a one-minute limit, started early so that Slurm's (coarse) time-limit check runs
    while the other tests do; it holds one CPU. On a one-CPU node it is started by its own test."""
    holder: list[str] = []
    if _node_cpus()[1] < 2:
        yield None
        return
    job_id, run_dir = _submit(tmp_path_factory.mktemp("slurm-time"), holder, "timed", sleep=600, time_limit=1)
    _wait(lambda: (slurm.job_state(job_id) or {}).get("state") != "queued", 30)
    yield job_id, run_dir
    for j in holder:
        slurm.cancel(j)


# ---------------------------------------------------------------------------------------------------
# The sbatch command (no cluster needed)

def test_sbatch_argv_holds_only_server_values(tmp_path):
    run_dir = tmp_path / RUN_ID
    job = slurm.job_script_argv(run_dir, num_processes=2, resume=True, python="/usr/bin/python3")
    argv = slurm.sbatch_argv(RUN_ID, run_dir, job, num_nodes=3, num_processes=2, device="cuda", cpus_per_task=8,
                             mem_mb=16000, time_limit=90, partition="gpu", account="nlp-team",
                             extra=["--qos=normal", "--constraint=a100"])
    assert argv[0] == "sbatch"
    assert argv[-len(job):] == job == [str(slurm.JOB_SCRIPT), "--python", "/usr/bin/python3", "--nproc-per-node", "2",
                                       "--run-dir", str(run_dir), "--resume"]
    options = argv[1:-len(job)]
    assert options == ["--parsable", f"--job-name={RUN_ID}", f"--output={run_dir}/stdout.log", "--open-mode=append",
                       f"--chdir={slurm.REPO_ROOT}", "--nodes=3", "--ntasks-per-node=1", "--cpus-per-task=8",
                       "--gres=gpu:2", "--mem=16000M", "--time=90", "--partition=gpu", "--account=nlp-team",
                       "--qos=normal", "--constraint=a100"]
    assert "--wrap" not in " ".join(argv)
    # one process on the CPU: no GPUs asked for, no memory or time limit unless given
    one = slurm.job_script_argv(run_dir)
    assert one[1:3] == ["--python", sys.executable] and one[3:] == ["--nproc-per-node", "1", "--run-dir", str(run_dir)]
    plain = slurm.sbatch_argv(RUN_ID, run_dir, one, device="auto")
    assert plain[-len(one):] == one
    assert not any(a.startswith(("--gres", "--mem", "--time", "--partition", "--account")) for a in plain)


def test_run_sbatch_argv_combines_the_run_and_the_admin_settings(tmp_path):
    run_dir = tmp_path / RUN_ID
    env = {"LAB_SLURM_PARTITION": "gpu", "LAB_SLURM_CPUS_PER_PROCESS": "6", "LAB_SLURM_MEM_MB": "64000",
           "LAB_SLURM_TIME_LIMIT": "8:00:00", "LAB_SLURM_EXTRA_ARGS": "--qos=long"}
    argv = slurm.run_sbatch_argv(run_dir, num_nodes=2, num_processes=4, device="cuda", resume=True, environ=env)
    assert argv == slurm.sbatch_argv(
        RUN_ID, run_dir, slurm.job_script_argv(run_dir, num_processes=4, resume=True), num_nodes=2,
        num_processes=4, device="cuda", cpus_per_task=24, mem_mb=64000, time_limit="8:00:00", partition="gpu",
        account=None, extra=["--qos=long"])
    assert {"--nodes=2", "--cpus-per-task=24", "--gres=gpu:4", "--mem=64000M", "--time=8:00:00",
            "--partition=gpu", "--qos=long", "--resume"} <= set(argv)


@pytest.mark.parametrize("run_id", ["my run; rm -rf /", "../escape", "$(touch x)", "", "a" * 200])
def test_only_lab_run_ids_become_job_names(tmp_path, run_id):
    with pytest.raises(RunError, match="not a run id"):
        slurm.sbatch_argv(run_id, tmp_path, slurm.job_script_argv(tmp_path))


def test_paths_slurm_would_expand_are_refused(tmp_path):
    with pytest.raises(RunError, match="pattern"):
        slurm.job_script_argv(tmp_path / "runs%j")
    with pytest.raises(RunError, match="absolute"):
        slurm.sbatch_argv(RUN_ID, "runs/x", [str(slurm.JOB_SCRIPT)])


def test_admin_settings_are_split_and_checked():
    got = slurm.settings({"LAB_SLURM_PARTITION": "gpu", "LAB_SLURM_ACCOUNT": "team-a",
                          "LAB_SLURM_EXTRA_ARGS": "--qos=high '--comment=two words'"})
    assert got == {"partition": "gpu", "account": "team-a", "extra": ["--qos=high", "--comment=two words"],
                   "cpus_per_process": 1, "mem_mb": None, "time_limit": None}
    assert slurm.settings({"LAB_SLURM_CPUS_PER_PROCESS": "4", "LAB_SLURM_MEM_MB": "32000",
                           "LAB_SLURM_TIME_LIMIT": "1-12:00:00"}) == {
        "partition": None, "account": None, "extra": [], "cpus_per_process": 4, "mem_mb": 32000,
        "time_limit": "1-12:00:00"}
    with pytest.raises(RunError, match="LAB_SLURM_CPUS_PER_PROCESS"):
        slurm.settings({"LAB_SLURM_CPUS_PER_PROCESS": "many"})
    with pytest.raises(RunError, match="LAB_SLURM_TIME_LIMIT"):
        slurm.settings({"LAB_SLURM_TIME_LIMIT": "4h; reboot"})
    with pytest.raises(RunError, match="--name=value"):
        slurm.settings({"LAB_SLURM_EXTRA_ARGS": "--qos high"})
    with pytest.raises(RunError, match="set by the lab"):
        slurm.settings({"LAB_SLURM_EXTRA_ARGS": "--output=/tmp/elsewhere"})
    with pytest.raises(RunError, match="quotes"):
        slurm.settings({"LAB_SLURM_EXTRA_ARGS": "--comment='unclosed"})
    with pytest.raises(RunError, match="LAB_SLURM_PARTITION"):
        slurm.settings({"LAB_SLURM_PARTITION": "gpu;reboot"})


# ---------------------------------------------------------------------------------------------------
# Against the cluster

@pytest.mark.usefixtures("time_limit_job")
def test_job_goes_from_queue_to_finished(tmp_path, jobs):
    job_id, run_dir = _submit(tmp_path, jobs, "run $(touch pwned); `id` x", sleep=1.5)
    seen = []
    info = slurm.job_state(job_id)
    while info is not None and info["state"] in ("queued", "running"):
        if not seen or seen[-1] != info["state"]:
            seen.append(info["state"])
        time.sleep(0.1)
        info = slurm.job_state(job_id)
    assert info is not None, "Slurm forgot the job at once"
    assert (info["state"], info["slurm_state"], info["exit_code"]) == ("finished", "COMPLETED", 0)
    assert info["source"] in ("scontrol", "sacct")
    assert "running" in seen and seen in (["running"], ["queued", "running"])
    # the run directory's path reached the program as one argument, never evaluated by a shell
    assert (run_dir / "args").read_text().splitlines() == ["-m", "lib.train", "--run-dir", str(run_dir)]
    assert not list(tmp_path.rglob("pwned")) and not (slurm.REPO_ROOT / "pwned").exists()
    log = (run_dir / "stdout.log").read_text()
    assert f"[lab] Slurm job {job_id} on " in log and "fake job: -m lib.train --run-dir" in log
    assert "scheduler: slurm" in log      # the job knows Slurm allocated it (no local device queue)
    assert (run_dir / "done").exists()


def test_failed_exit_code_is_reported(tmp_path, jobs):
    job_id, _ = _submit(tmp_path, jobs, "fails", exit_code=3)
    info = _wait(lambda: (s := slurm.job_state(job_id)) and s["state"] not in ("queued", "running") and s, 30)
    assert (info["state"], info["slurm_state"], info["exit_code"]) == ("failed", "FAILED", 3)
    assert info["reason"] == "the job exited with code 3"
    assert slurm.job_states([job_id]) == {job_id: info}     # the batch call reads ended jobs the same way


def test_unknown_job_is_none(cluster):
    assert slurm.job_state("67000000") is None
    assert slurm.known("67000000") is False
    assert slurm.cancel("67000000") is False
    with pytest.raises(RunError, match="not a Slurm job id"):
        slurm.job_state("12; scancel -u root")


def test_queue_position_behind_a_job_that_fills_the_node(tmp_path, jobs):
    idle, _ = _node_cpus()
    assert idle >= 1, "another job holds every CPU of the test cluster"
    first, _ = _submit(tmp_path, jobs, "first", sleep=60, cpus=idle)
    assert _wait(lambda: (slurm.job_state(first) or {}).get("state") == "running", 30)
    second, second_dir = _submit(tmp_path, jobs, "second", sleep=0)
    third, _ = _submit(tmp_path, jobs, "third", sleep=0)
    info = _wait(lambda: (s := slurm.job_state(second)) and s["slurm_reason"] and s, 10)
    assert info["state"] == "queued" and info["slurm_state"] == "PENDING"
    assert info["slurm_reason"] in ("Resources", "Priority") and info["reason"].startswith("waiting")
    assert info["queue_position"] == slurm.queue_position(second) == 1
    assert slurm.queue_position(third) == 2
    assert slurm.queue_position(first) is None        # running, not waiting
    batch = slurm.job_states([first, second, third, "67000000"])
    assert [batch[j]["state"] for j in (first, second, third)] == ["running", "queued", "queued"]
    assert [batch[j]["queue_position"] for j in (first, second, third)] == [None, 1, 2]
    assert batch["67000000"] is None
    assert slurm.known(second) and slurm.is_active(second)
    # once the first job goes, the queue moves on
    assert slurm.cancel(first) is True
    done = _wait(lambda: (s := slurm.job_state(second)) and s["state"] == "finished" and s, 40)
    assert done and (second_dir / "done").exists()


def test_cancel_ends_every_process_and_leaves_nothing_in_squeue(tmp_path, jobs):
    job_id, run_dir = _submit(tmp_path, jobs, "cancelled", sleep=120)
    assert _wait(lambda: (run_dir / "sleep.pid").exists() and _alive(run_dir / "sleep.pid"), 30)
    assert slurm.cancel(job_id) is True
    assert _wait(lambda: not _in_squeue(job_id), 30), "the cancelled job is still in squeue"
    assert _wait(lambda: not _alive(run_dir / "shell.pid") and not _alive(run_dir / "sleep.pid"), 15)
    info = slurm.job_state(job_id)
    assert (info["state"], info["slurm_state"]) == ("failed", "CANCELLED")
    assert info["reason"] == "Slurm cancelled the job (scancel)"
    assert "got TERM" in (run_dir / "stdout.log").read_text()      # it was asked to stop first
    assert not slurm.is_active(job_id)
    assert slurm.cancel(job_id) is False                            # nothing left to cancel


def test_job_killed_in_slurm_maps_to_failed_with_reason(tmp_path, jobs):
    """An administrator's `scancel --signal=KILL` (Slurm 22.05 ends the whole job, as a plain cancel)."""
    job_id, run_dir = _submit(tmp_path, jobs, "killed", sleep=120)
    assert _wait(lambda: (run_dir / "sleep.pid").exists() and _alive(run_dir / "sleep.pid"), 30)
    subprocess.run(["scancel", "--signal=KILL", job_id], check=True, timeout=20)
    info = _wait(lambda: (s := slurm.job_state(job_id)) and s["state"] not in ("queued", "running") and s, 30)
    assert (info["state"], info["slurm_state"]) == ("failed", "CANCELLED")
    assert info["reason"] == "Slurm cancelled the job (scancel)"
    assert _wait(lambda: not _in_squeue(job_id), 30)
    assert _wait(lambda: not _alive(run_dir / "shell.pid") and not _alive(run_dir / "sleep.pid"), 15)
    assert not (run_dir / "done").exists()


def test_cancel_with_a_signal(tmp_path, jobs):
    job_id, run_dir = _submit(tmp_path, jobs, "signalled", sleep=120)
    assert _wait(lambda: (run_dir / "sleep.pid").exists() and _alive(run_dir / "sleep.pid"), 30)
    assert slurm.cancel(job_id, signal="TERM") is True
    info = _wait(lambda: (s := slurm.job_state(job_id)) and s["state"] not in ("queued", "running") and s, 30)
    assert info["state"] == "failed" and "got TERM" in (run_dir / "stdout.log").read_text()
    assert _wait(lambda: not _alive(run_dir / "sleep.pid"), 15)
    with pytest.raises(RunError, match="not a signal"):
        slurm.cancel(job_id, signal="TERM; reboot")


@pytest.mark.slow
def test_tiny_bert_run_through_slurm_matches_a_local_run(tmp_path, jobs, tiny_run_dir):
    """The real job, submitted through the batch script, leaves the same run directory as a local run."""
    from lib.config import TrainConfig
    from lib.registry.launching import create_run
    run_dir = create_run(tmp_path / "runs", TrainConfig.load(tiny_run_dir / "config.json"), owner="alice")
    job_id = slurm.submit(slurm.sbatch_argv(run_dir.name, run_dir, slurm.job_script_argv(run_dir)))
    jobs.append(job_id)
    info = _wait(lambda: (s := slurm.job_state(job_id)) and s["state"] not in ("queued", "running") and s, 300, 0.5)
    assert info and (info["state"], info["exit_code"]) == ("finished", 0), (run_dir / "stdout.log").read_text()[-2000:]

    def names(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir())
    local, slurm_status = (json.loads((d / "status.json").read_text()) for d in (tiny_run_dir, run_dir))
    assert slurm_status["state"] == "finished" and slurm_status["step"] == local["step"] == local["total_steps"]
    assert names(run_dir) == names(tiny_run_dir)
    assert names(run_dir / "checkpoints") == names(tiny_run_dir / "checkpoints")
    assert names(run_dir / "model") == names(tiny_run_dir / "model")
    assert f"[lab] Slurm job {job_id} on " in (run_dir / "stdout.log").read_text()
    assert json.loads((run_dir / "config.json").read_text())["owner"] == "alice"


def test_time_limit_maps_to_failed_with_reason(time_limit_job, tmp_path, jobs):
    """Slurm checks time limits every 30 s, so a one-minute job ends 60 to 90 s after it started (the
    shortest limit Slurm takes); the job was started at the beginning of this file to overlap the wait."""
    if time_limit_job is None:
        job_id, run_dir = _submit(tmp_path, jobs, "timed", sleep=600, time_limit=1)
    else:
        job_id, run_dir = time_limit_job
    info = _wait(lambda: (s := slurm.job_state(job_id)) and s["state"] not in ("queued", "running") and s,
                 150, poll=1.0)
    assert info, "Slurm forgot the job"
    assert (info["state"], info["slurm_state"]) == ("failed", "TIMEOUT")
    assert info["reason"].startswith("Slurm stopped the job: time limit reached")
    assert "DUE TO TIME LIMIT" in (run_dir / "stdout.log").read_text()
    assert _wait(lambda: not _alive(run_dir / "sleep.pid"), 15)

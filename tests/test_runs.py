"""The run registry: launch detached jobs, queue them, reconcile their status, cancel, resume, delete.

Unit tests build run directories by hand; the real-process tests train the tiny random BERT on a
few built-in reviews (a few seconds each) and look at the processes with psutil.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from lib.config import TrainConfig, preset
from lib.errors import ConfigError, RunError
from lib.registry import access, control, launching, preflight, reconcile
from lib.store import rundir, slots

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(model="tiny-bert", max_train_samples=32, max_eval_samples=16, num_train_epochs=1.0)
TINY_SET = [f"{k}={v}" for k, v in TINY.items()]


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LAB_MAX_JOBS_CPU", raising=False)
    monkeypatch.delenv("LAB_STALL_AFTER_S", raising=False)


@pytest.fixture
def runs_dir(tmp_path):
    path = tmp_path / "runs"
    path.mkdir()
    yield path
    # never leave a job behind, whatever the test did
    for run_dir in rundir.iter_run_dirs(path):
        run = rundir.read_run_info(run_dir)
        pgid = run.get("pgid")
        if (isinstance(pgid, int) and pgid == run.get("launch_pid") and pgid != os.getpgid(0)
                and control.process_group_alive(run_dir)):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass


def tiny_config(**changes) -> TrainConfig:
    return preset("demo", **{**TINY, **changes})


def fake_run(runs_dir: Path, *, state="running", config: TrainConfig | None = None, status=None, run=None,
             log: str = "") -> Path:
    """A run directory as a job would leave it, without any job."""
    run_dir = launching.create_run(runs_dir, config or tiny_config(owner="alice"))
    base = rundir.read_status(run_dir)
    status = dict(status or {})
    if "heartbeat" in status:  # a run that beats was queued before its last beat
        first = min(t for t in (status["heartbeat"], status.get("started_at")) if t is not None) - 1
        base.update(created_at=first, queued_at=first, enqueued_at=first)
    rundir.atomic_write_json(run_dir / rundir.STATUS, {**base, "state": state, **status})
    if run is not None:
        rundir.atomic_write_json(run_dir / rundir.RUN, run)
    if log:
        (run_dir / rundir.LOG).write_text(log)
    return run_dir


def dead_pid() -> tuple[int, float]:
    """A pid (and its create time) of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ct = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, ct


def me() -> dict:
    p = psutil.Process()
    return {"pid": p.pid, "pgid": os.getpgid(0), "create_time": p.create_time(), "host": slots.hostname()}


def wait_for(predicate, timeout=120.0, interval=0.1, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "lib.runs", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def group_processes(pgid: int) -> list[psutil.Process]:
    """Every process (zombies included) in process group ``pgid``."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                found.append(p)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


# ---------------------------------------------------------------------------------------------------
# run directories, names and paths
# ---------------------------------------------------------------------------------------------------
def test_create_run_writes_config_and_queued_status(runs_dir):
    run_dir = launching.create_run(runs_dir, tiny_config(run_name="my run"), owner="alice")
    assert rundir.is_run_id(run_dir.name) and run_dir.parent == runs_dir.resolve()
    config = TrainConfig.load(run_dir / rundir.CONFIG)
    assert config.owner == "alice" and config.run_name == "my run" and config.model == "tiny-bert"
    status = rundir.read_status(run_dir)
    assert status["state"] == "queued" and status["owner"] == "alice" and status["queued_at"] > 0


def test_many_launches_in_the_same_second_get_distinct_run_dirs(runs_dir):
    made: list[Path] = []
    lock = threading.Lock()

    def make():
        d = launching.create_run(runs_dir, tiny_config())
        with lock:
            made.append(d)

    threads = [threading.Thread(target=make) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({d.name for d in made}) == 24
    assert len({d.name[:15] for d in made}) < 24  # several really shared a second
    assert sorted(p.name for p in rundir.iter_run_dirs(runs_dir)) == sorted(d.name for d in made)


NASTY = ["../../escape", "/etc/passwd", "; rm -rf ~", "$(id)", "`id`", "--output_dir=/", "．．／ｅｔｃ", "a\nb"]


@pytest.mark.parametrize("name", NASTY)
def test_run_names_and_owners_never_reach_a_path_or_the_command_line(runs_dir, name):
    config = tiny_config(run_name=name, owner=name)
    run_dir = launching.create_run(runs_dir, config)
    assert rundir.is_run_id(run_dir.name)
    assert [p.name for p in runs_dir.iterdir()] == [run_dir.name]  # nothing else created
    assert not (runs_dir.parent / "escape").exists()
    saved = TrainConfig.load(run_dir / rundir.CONFIG)
    assert saved.run_name == name and saved.owner == name  # kept as plain text
    argv = launching.job_command(saved, run_dir)
    assert argv == [sys.executable, "-m", "lib.train", "--run-dir", str(run_dir)]
    assert reconcile.list_runs(runs_dir)[0].label == name.strip()


def test_a_nul_byte_in_free_text_is_refused_before_anything_is_created(runs_dir):
    for field in ("run_name", "owner"):
        with pytest.raises(ConfigError) as err:
            launching.create_run(runs_dir, TrainConfig.from_dict({**TINY, field: "bad\x00name"}))
        assert "NUL" in err.value.errors[field]
    assert list(runs_dir.iterdir()) == []


def test_symlinked_run_dir_pointing_outside_is_refused(runs_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    rundir.atomic_write_json(outside / rundir.STATUS, {"state": "finished"})
    link = runs_dir / "20260101-120000-abcdef"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunError, match="symbolic link"):
        rundir.resolve_run_dir(runs_dir, link.name)
    for action in (control.delete, control.cancel, launching.resume):
        with pytest.raises(RunError):
            action(link)
    assert reconcile.list_runs(runs_dir) == []
    proc = cli("--runs-dir", str(runs_dir), "delete", link.name)
    assert proc.returncode != 0 and "symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    assert (outside / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", ["../x", "20260101-120000-abcdef/../../x", "x\x00", "", "20260101-120000-ABCDEF"])
def test_run_ids_from_outside_must_be_server_made(runs_dir, bad):
    with pytest.raises(RunError):
        rundir.resolve_run_dir(runs_dir, bad)


# ---------------------------------------------------------------------------------------------------
# status reconciliation
# ---------------------------------------------------------------------------------------------------
def test_running_run_whose_process_is_gone_becomes_failed_with_the_log_tail(runs_dir):
    pid, ct = dead_pid()
    run_dir = fake_run(runs_dir, status={"step": 7, "total_steps": 20, "pid": pid},
                       run={"pid": pid, "pgid": pid, "create_time": ct, "host": slots.hostname()},
                       log="loading...\n" + "x" * 5000 + "\nthe last words of the job\n")
    status = reconcile.get_status(run_dir)
    assert status["state"] == "failed" and status["step"] == 7
    assert "process ended unexpectedly" in status["error"]["message"]
    assert "killed or crashed" in status["error"]["message"]  # not our child: the exit status is unknown
    assert status["error"]["log_tail"].endswith("the last words of the job\n")
    assert len(status["error"]["log_tail"]) <= reconcile.LOG_TAIL_BYTES
    on_disk = rundir.read_status(run_dir)
    assert on_disk["state"] == "failed" and on_disk["finished_at"] > 0 and on_disk["error"]["hint"]


def test_a_recycled_pid_is_noticed_by_its_create_time(runs_dir):
    info = me()
    run_dir = fake_run(runs_dir, state="queued", run={**info, "create_time": info["create_time"] - 500})
    assert reconcile.get_status(run_dir)["state"] == "failed"


def test_live_job_with_an_old_heartbeat_shows_stalled_without_writing_it(runs_dir):
    now = time.time()
    run_dir = fake_run(runs_dir, status={"heartbeat": now - 1000, "started_at": now - 1100}, run=me())
    before = (run_dir / rundir.STATUS).read_bytes()
    status = reconcile.get_status(run_dir)
    assert status["state"] == "running" and status["stalled"] and status["display_state"] == "stalled"
    assert status["heartbeat_age_s"] >= 1000
    assert (run_dir / rundir.STATUS).read_bytes() == before
    fresh = fake_run(runs_dir, status={"heartbeat": now}, run=me())
    assert reconcile.get_status(fresh)["display_state"] == "running"
    assert reconcile.get_status(run_dir, stall_after=5000)["display_state"] == "running"


def test_a_final_state_written_by_the_job_is_never_overwritten(runs_dir):
    pid, ct = dead_pid()
    for state in ("finished", "cancelled", "failed"):
        run_dir = fake_run(runs_dir, state=state, status={"exit_code": 0}, run={"pid": pid, "create_time": ct})
        before = (run_dir / rundir.STATUS).read_bytes()
        assert reconcile.get_status(run_dir)["state"] == state
        assert (run_dir / rundir.STATUS).read_bytes() == before


def test_runs_of_another_host_are_judged_by_heartbeat_only(runs_dir):
    pid, ct = dead_pid()
    now = time.time()
    run_dir = fake_run(runs_dir, status={"heartbeat": now}, run={"pid": pid, "create_time": ct, "host": "other-box"})
    assert reconcile.get_status(run_dir)["state"] == "running"
    old = fake_run(runs_dir, status={"heartbeat": now - 1000}, run={"pid": pid, "create_time": ct,
                                                                    "host": "other-box"})
    status = reconcile.get_status(old)
    assert status["state"] == "running" and status["display_state"] == "stalled"
    with pytest.raises(RunError, match="other-box"):
        control.cancel(old)


def test_a_queued_run_that_never_got_a_process(runs_dir):
    young = fake_run(runs_dir, state="queued")
    assert reconcile.get_status(young)["state"] == "queued"  # the launch may be in progress
    old = fake_run(runs_dir, state="queued", status={"created_at": time.time() - 600,
                                                     "enqueued_at": time.time() - 600})
    status = reconcile.get_status(old)
    assert status["state"] == "failed" and "never started" in status["error"]["message"]


def test_a_resume_in_progress_is_not_mistaken_for_a_dead_job(runs_dir):
    """Between 'queued again' and the new pid, the old dead pid must not make the run fail."""
    pid, ct = dead_pid()
    now = time.time()
    run_dir = fake_run(runs_dir, state="queued", status={"pid": pid, "enqueued_at": now},
                       run={"pid": None, "launch_pid": None, "create_time": ct, "launch_started_at": now,
                            "host": slots.hostname()})
    status = reconcile.get_status(run_dir)
    assert status["state"] == "queued" and not status["stalled"]
    assert rundir.read_status(run_dir)["state"] == "queued"


def test_reconcilers_racing_each_other_agree_and_leave_valid_json(runs_dir):
    """Several app servers reading at once (here: processes) write one consistent 'failed'."""
    pid, ct = dead_pid()
    run_dir = fake_run(runs_dir, status={"step": 3}, run={"pid": pid, "create_time": ct, "host": slots.hostname()})
    code = ("import sys, json; from lib.registry import reconcile; "
            "print(json.dumps(reconcile.get_status(sys.argv[1])['state']))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True) for _ in range(6)]
    states = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert states == ["failed"] * 6
    status = json.loads((run_dir / rundir.STATUS).read_text())
    assert status["state"] == "failed" and status["step"] == 3


def test_a_reconciler_that_cannot_take_the_lock_leaves_the_run_to_whoever_holds_it(runs_dir):
    pid, ct = dead_pid()
    run_dir = fake_run(runs_dir, run={"pid": pid, "create_time": ct})
    fd = os.open(run_dir / rundir.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # someone is cancelling or resuming this run right now
        status = reconcile.get_status(run_dir)  # waits a moment for the lock, then leaves the run to its holder
        assert status["state"] == "running" and not status["stalled"]
        assert rundir.read_status(run_dir)["state"] == "running"
    finally:
        os.close(fd)
    reconcile.get_status(run_dir)
    assert rundir.read_status(run_dir)["state"] == "failed"


# ---------------------------------------------------------------------------------------------------
# cancel, with stand-in jobs (fast)
# ---------------------------------------------------------------------------------------------------
FAKE_JOB = """
import json, os, signal, subprocess, sys, time
from pathlib import Path
import psutil
from lib.store import rundir
run_dir = Path(sys.argv[1])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    def stop(*_):
        child.terminate(); child.wait()
        rundir.update_status(run_dir, state="cancelled", exit_code=143, error={"type": "Cancelled", "message": "x"})
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
me = psutil.Process()
run = rundir.read_json(run_dir / "run.json", default={}) or {}
run.update(pid=me.pid, pgid=os.getpgid(0), create_time=me.create_time(), host=__import__("socket").gethostname())
rundir.atomic_write_json(run_dir / "run.json", run)
rundir.update_status(run_dir, state="running", pid=me.pid, heartbeat=time.time())
print(child.pid, flush=True)
time.sleep(600)
"""


def start_fake_job(run_dir: Path, mode: str, *, own_group: bool) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_JOB, str(run_dir), mode], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, start_new_session=own_group)
    child = int(proc.stdout.readline())
    if own_group:  # as the registry records a job it launched
        run = rundir.read_run_info(run_dir)
        run.update(launch_pid=proc.pid, launch_create_time=run["create_time"])
        rundir.atomic_write_json(run_dir / rundir.RUN, run)
    return proc, child


def test_cancel_of_a_job_started_by_hand_stops_its_tree_but_never_its_parents_group(runs_dir):
    run_dir = fake_run(runs_dir, state="queued")
    proc, child = start_fake_job(run_dir, "obey", own_group=False)
    assert os.getpgid(proc.pid) == os.getpgid(0)  # shares our group: signalling the group would kill pytest
    status = control.cancel(run_dir, grace_s=5)
    assert status["state"] == "cancelled" and status["exit_code"] == 143
    assert proc.wait(timeout=10) == 143
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(runs_dir):
    run_dir = fake_run(runs_dir, state="queued")
    proc, child = start_fake_job(run_dir, "ignore", own_group=True)
    status = control.cancel(run_dir, grace_s=1)
    assert status["state"] == "cancelled" and "SIGKILL" in status["error"]["message"]
    assert status["exit_code"] == -signal.SIGKILL
    assert proc.wait(timeout=10) == -signal.SIGKILL
    wait_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE,
             timeout=10, what="the job's child to die with its group")


# ---------------------------------------------------------------------------------------------------
# list, delete, access control
# ---------------------------------------------------------------------------------------------------
def test_list_shows_label_owner_progress_and_best_eval_accuracy(runs_dir):
    now = time.time()
    pid, ct = dead_pid()
    run_dir = fake_run(runs_dir, state="finished", config=tiny_config(run_name="first", owner="bob"),
                       status={"step": 20, "total_steps": 20, "started_at": now - 100, "finished_at": now - 40},
                       run={"pid": pid, "create_time": ct})
    for acc in (0.6, 0.8, 0.7):
        rundir.append_jsonl(run_dir / rundir.METRICS, {"event": "eval", "step": 1, "eval_accuracy": acc})
    rundir.append_jsonl(run_dir / rundir.METRICS, {"event": "log", "step": 2, "loss": 0.1})
    with open(run_dir / rundir.METRICS, "a") as fh:
        fh.write('{"event": "eval", "eval_accuracy": 0.99')  # torn last line: ignored
    second = fake_run(runs_dir, state="running", config=tiny_config(owner="carol", run_name=""),
                      status={"step": 5, "total_steps": 20, "started_at": now - 10, "heartbeat": now}, run=me())
    rows = reconcile.list_runs(runs_dir, now=now)
    assert [r.run_id for r in rows] == sorted([run_dir.name, second.name], reverse=True)
    by_id = {r.run_id: r for r in rows}
    first = by_id[run_dir.name]
    assert (first.label, first.owner, first.state, first.model, first.dataset) == (
        "first", "bob", "finished", "tiny-bert", "demo")
    assert first.best_eval_accuracy == pytest.approx(0.8) and first.progress == 1.0
    assert first.duration_s == pytest.approx(60, abs=0.01)
    live = by_id[second.name]
    assert live.label == "tiny-bert on demo" and live.progress == pytest.approx(0.25)
    assert live.duration_s == pytest.approx(10, abs=0.01) and live.best_eval_accuracy is None


def test_delete_refuses_an_active_run_and_removes_a_finished_one(runs_dir):
    active = fake_run(runs_dir, status={"heartbeat": time.time()}, run=me())
    with pytest.raises(RunError, match="cancel it"):
        control.delete(active)
    assert active.is_dir()
    done = fake_run(runs_dir, state="finished")
    (done / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (done / "checkpoints" / "checkpoint-1" / "x.bin").write_bytes(b"0" * 100)
    control.delete(done)
    assert not done.exists() and [p.name for p in runs_dir.iterdir()] == [active.name]
    with pytest.raises(RunError, match="no run"):
        control.delete(done)


def test_delete_does_not_follow_symlinks_inside_a_run(runs_dir, tmp_path):
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "data.csv").write_text("text,label\n")
    run_dir = fake_run(runs_dir, state="failed")
    (run_dir / "link").symlink_to(outside, target_is_directory=True)
    control.delete(run_dir)
    assert not run_dir.exists() and (outside / "data.csv").is_file()


def test_only_the_owner_or_an_admin_may_manage_a_run(runs_dir):
    run_dir = fake_run(runs_dir, state="finished", config=tiny_config(owner="Alice@Example.org"))
    policy = access.Policy(sign_in=True, admins=access.normalise_names(["ROOT@example.org"]))

    def user(name):
        return access.Actor(name, "sign-in")
    assert access.can_manage(run_dir, user("alice@example.org"), policy)
    assert not access.can_manage(run_dir, user("mallory@example.org"), policy)
    assert access.can_manage(run_dir, user("root@example.org"), policy)
    assert not access.can_manage(run_dir, user(""), policy)
    nobody = fake_run(runs_dir, state="finished", config=tiny_config(owner=""))
    assert not access.can_manage(nobody, user("alice@example.org"), policy)
    assert access.can_launch(user("a@x"), policy) and not access.can_launch(user(""), policy)
    listed = access.Policy(sign_in=True, launchers=access.normalise_names(["A@x"]))
    assert access.can_launch(user("a@x"), listed) and not access.can_launch(user("b@x"), listed)
    bosses = access.Policy(sign_in=True, admins=access.normalise_names(["boss@x"]), launchers=frozenset())
    assert access.can_launch(user("boss@x"), bosses) and not access.can_launch(user("a@x"), bosses)


# ---------------------------------------------------------------------------------------------------
# checks before launch
# ---------------------------------------------------------------------------------------------------
def test_preflight_flags_unreachable_hub_ids_and_missing_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-ds-cache"))
    assert preflight.preflight(tiny_config()) == {}
    assert preflight.preflight(preset("demo")) == {}
    errors = preflight.preflight(tiny_config(model="someone/never-cached-model", dataset="someone/never-cached-data"))
    assert set(errors) == {"model", "dataset"}
    assert "bundled-minilm" in errors["model"] and "demo" in errors["dataset"]
    errors = preflight.preflight(tiny_config(model="./no/such/folder", dataset=str(tmp_path / "missing.csv")))
    assert "does not exist" in errors["model"] and "does not exist" in errors["dataset"]


def test_estimate_train_samples_for_the_preview(tmp_path):
    from lib.sources.data import demo_reviews
    demo = preset("demo")
    assert preflight.estimate_train_samples(demo) == min(demo.max_train_samples or 10**9,
                                                         demo_reviews()["train"].num_rows)
    assert preflight.estimate_train_samples(preset("demo", max_train_samples=None)) == demo_reviews()["train"].num_rows
    assert preflight.estimate_train_samples(tiny_config()) == 32
    assert preflight.estimate_train_samples(preset("seed")) == 2000
    csv = tmp_path / "r.csv"
    csv.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(50)))
    assert preflight.estimate_train_samples(preset("demo", dataset=str(csv), eval_fraction=0.2)) == 40


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def test_cli_bad_input_gives_a_short_message_and_no_traceback(runs_dir):
    for args in (["show", "20260101-120000-abcdef"], ["show", "../etc"], ["launch", "--set", "nope=1"],
                 ["launch", "--set", "per_device_train_batch_size=zero"], ["launch", "--config", "/no/such.json"],
                 ["cancel", "not-an-id"], ["launch", "--preset", "nope"], ["frobnicate"]):
        proc = cli("--runs-dir", str(runs_dir), *args)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr and proc.stderr.strip(), args
        assert len(proc.stderr) < 2000
    assert list(runs_dir.iterdir()) == []


def test_cli_show_json_and_list(runs_dir):
    run_dir = fake_run(runs_dir, state="cancelled", status={"step": 4, "total_steps": 8,
                                                             "error": {"type": "Cancelled", "message": "by bob"}})
    proc = cli("--runs-dir", str(runs_dir), "show", run_dir.name, "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert {"state", "step", "total_steps", "queue_position", "error"} <= set(status)
    assert (status["state"], status["step"], status["total_steps"], status["queue_position"]) == ("cancelled", 4, 8,
                                                                                                  None)
    proc = cli("--runs-dir", str(runs_dir), "list", "--json")
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [run_dir.name]
    proc = cli("list", env={"LAB_RUNS_DIR": str(runs_dir)})
    assert run_dir.name in proc.stdout and "cancelled" in proc.stdout and "4/8" in proc.stdout
    proc = cli("--runs-dir", str(runs_dir), "resume", run_dir.name, "--runs-dir", str(runs_dir / "nowhere"))
    assert proc.returncode != 0 and "no run" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# real processes
#
# The jobs of the slow tests are independent, so the module fixture below starts them together and
# watcher threads record what happens (queue positions seen, the kill -9 at the right moment); the tests
# then check those records and carry on. On 2 cores this roughly halves the wall time.
# ---------------------------------------------------------------------------------------------------
class Jobs:
    pass


def _launch_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LAB_MAX_JOBS_CPU"}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def _watch_queue(jobs: Jobs) -> None:
    """Test A's witness: launchers exit, jobs live on, the second waits at position 1, both finish."""
    jobs.a_outs = [p.communicate(timeout=90) for p in jobs.a_launchers]
    jobs.a_codes = [p.returncode for p in jobs.a_launchers]
    try:
        ids = [out.strip().splitlines()[-1] for out, _ in jobs.a_outs]
        dirs = [rundir.resolve_run_dir(jobs.a_root, i) for i in ids]
    except (IndexError, RunError):
        return
    jobs.a_dirs = dirs
    jobs.a_alive_after_launchers = []
    for d in dirs:
        run = rundir.read_run_info(d)
        alive = slots.process_alive(run.get("launch_pid"), run.get("launch_create_time"))
        own_session = alive and os.getsid(run["launch_pid"]) == run["launch_pid"] != os.getsid(0)
        jobs.a_alive_after_launchers.append((alive, own_session, run.get("pgid") == run.get("launch_pid")))
    end = time.monotonic() + 240
    while time.monotonic() < end:
        statuses = [reconcile.get_status(d) for d in dirs]
        jobs.a_samples.append([(s["state"], s["queue_position"]) for s in statuses])
        if all(s["state"] not in ("queued", "running") for s in statuses):
            break
        time.sleep(0.2)


def _kill_at_step_11(jobs: Jobs) -> None:
    """Test B's hand: kill -9 the job once checkpoint-10 is complete and it trains on."""
    from lib.store.checkpoint_folders import checkpoint_is_complete
    ckpt = jobs.b_dir / rundir.CHECKPOINTS / "checkpoint-10"
    end = time.monotonic() + 240
    while time.monotonic() < end:
        if ckpt.is_dir() and checkpoint_is_complete(ckpt) and rundir.read_status(jobs.b_dir).get("step", 0) >= 11:
            os.kill(rundir.read_run_info(jobs.b_dir)["pid"], signal.SIGKILL)
            jobs.b_killed = True
            return
        if rundir.read_status(jobs.b_dir).get("state") in ("finished", "failed", "cancelled"):
            return
        time.sleep(0.03)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    base = tmp_path_factory.mktemp("jobs")
    jobs = Jobs()
    # A: two `python -m lib.runs launch` at once, limit 1 job on the CPU
    jobs.a_root = base / "a"
    jobs.a_root.mkdir()
    args = ["--runs-dir", str(jobs.a_root), "launch", "--preset", "demo", "--owner", "tester"]
    args += [a for kv in TINY_SET for a in ("--set", kv)]
    jobs.a_launchers = [subprocess.Popen([sys.executable, "-m", "lib.runs", *args, "--set", f"run_name=job {i}"],
                                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env=_launch_env({"LAB_MAX_JOBS_CPU": "1"})) for i in range(2)]
    jobs.a_samples, jobs.a_dirs = [], []
    # B: a run to kill -9 (32 steps, a checkpoint every 5), launched from this process
    jobs.b_root = base / "b"
    jobs.b_killed = False
    config = tiny_config(max_train_samples=64, per_device_train_batch_size=4, num_train_epochs=2.0,
                         logging_steps=1, eval_strategy="no", save_strategy="steps", save_steps=5,
                         save_total_limit=10, run_name="to be killed")
    jobs.b_dir = launching.launch(config, jobs.b_root, owner="tester")
    threads = [threading.Thread(target=_watch_queue, args=(jobs,), daemon=True),
               threading.Thread(target=_kill_at_step_11, args=(jobs,), daemon=True)]
    for t in threads:
        t.start()
    jobs.a_thread, jobs.b_thread = threads
    yield jobs
    for t in threads:
        t.join(timeout=60)
    for root in (jobs.a_root, jobs.b_root):
        for run_dir in rundir.iter_run_dirs(root):
            run = rundir.read_run_info(run_dir)
            if run.get("pgid") and run.get("pgid") == run.get("launch_pid") and control.process_group_alive(run_dir):
                os.killpg(run["pgid"], signal.SIGKILL)


@pytest.mark.slow
def test_cancel_stops_the_whole_process_group_and_a_queued_run(runs_dir, monkeypatch, jobs):
    monkeypatch.setenv("LAB_MAX_JOBS_CPU", "1")
    slow = tiny_config(max_train_samples=400, num_train_epochs=50.0, logging_steps=1, dataloader_num_workers=2,
                       eval_strategy="no", save_strategy="no", run_name="slow")
    running = launching.launch(slow, runs_dir, owner="tester")
    waiting = launching.launch(tiny_config(run_name="waiting"), runs_dir, owner="tester")
    pgid = rundir.read_run_info(running)["pgid"]

    wait_for(lambda: rundir.read_status(running).get("step", 0) >= 1 and len(control.process_group_alive(running)) >= 3,
             timeout=150, what="the job and its two DataLoader workers")
    workers = control.process_group_alive(running)
    assert wait_for(lambda: reconcile.get_status(waiting)["queue_position"] == 1, timeout=30)

    status = control.cancel(waiting, grace_s=10)
    assert status["state"] == "cancelled"
    status = control.cancel(running, grace_s=10, by="tester")
    assert status["state"] == "cancelled" and status["error"]["type"] == "Cancelled"
    assert status["exit_code"] == 143  # the job recorded it itself after SIGTERM
    assert rundir.read_status(running)["cancelled_by"] == "tester"
    # nothing of the group is left, not even a zombie (the launcher reaps its child)
    wait_for(lambda: not group_processes(pgid), timeout=10, what="the process group to vanish")
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in workers)
    with pytest.raises(RunError, match="already cancelled"):
        control.cancel(running)
    control.delete(waiting)  # a cancelled run can be deleted
    assert not waiting.exists()


@pytest.mark.slow
def test_kill_9_is_reconciled_as_failed_and_resume_skips_a_torn_checkpoint(jobs):
    from lib.store.checkpoint_folders import newest_complete_checkpoint
    run_dir = jobs.b_dir
    jobs.b_thread.join(timeout=240)
    assert jobs.b_killed, f"the job ended before it could be killed: {rundir.read_status(run_dir)}"
    status = wait_for(lambda: (s := reconcile.get_status(run_dir))["state"] != "running" and s, timeout=30)
    assert status["state"] == "failed"
    assert "process ended unexpectedly" in status["error"]["message"] and "SIGKILL" in status["error"]["message"]
    assert status["exit_code"] == -signal.SIGKILL and status["error"]["log_tail"]
    killed_at = status["step"]
    assert 11 <= killed_at < 32

    # tear the newest complete checkpoint as a crash during saving would
    newest = newest_complete_checkpoint(run_dir)
    (newest / "optimizer.pt").unlink()
    previous = newest_complete_checkpoint(run_dir)
    assert previous is not None and previous != newest
    resumed_from = int(previous.name.split("-")[1])

    with pytest.raises(RunError, match="only a failed or cancelled"):
        launching.resume(fake_run(jobs.b_root, state="finished"))
    t_resume = time.time()
    launching.resume(run_dir)
    assert reconcile.get_status(run_dir)["state"] in ("queued", "running")
    with pytest.raises(RunError):
        launching.resume(run_dir)  # not twice
    final = wait_for(lambda: (s := reconcile.get_status(run_dir))["state"] not in ("queued", "running") and s,
                     timeout=200, interval=0.3, what="the resumed run to end")
    assert final["state"] == "finished", final
    assert final["step"] == final["total_steps"] == 32 and final["attempt"] == 2
    log = (run_dir / rundir.LOG).read_text()
    assert f"resuming from {previous.name}" in log
    rows = [r for r in rundir.read_jsonl(run_dir / rundir.METRICS) if r["event"] == "log"]
    after = [r["step"] for r in rows if r["time"] >= t_resume]
    before = [r["step"] for r in rows if r["time"] < t_resume]
    assert after == list(range(resumed_from + 1, 33))  # continuous: picks up right after the checkpoint
    assert before == list(range(1, len(before) + 1)) and before[-1] >= killed_at - 1
    run = rundir.read_run_info(run_dir)
    assert run["resume"] is True and run["argv"][-1] == "--resume" and len(run["history"]) == 1


@pytest.mark.slow
def test_two_launches_queue_fifo_and_survive_the_launcher_exiting(jobs):
    """Two `python -m lib.runs launch` at once with a limit of 1: the second waits (queue position 1), both
    finish, and the jobs outlive the short-lived processes that launched them."""
    jobs.a_thread.join(timeout=300)
    assert jobs.a_codes == [0, 0], jobs.a_outs
    ids = [d.name for d in jobs.a_dirs]
    assert len(set(ids)) == 2 and all(rundir.is_run_id(i) for i in ids)
    # the launchers had exited; their jobs lived on in their own session and process group
    assert jobs.a_alive_after_launchers == [(True, True, True)] * 2
    order = sorted(range(2), key=lambda i: (rundir.read_status(jobs.a_dirs[i])["enqueued_at"], ids[i]))
    first, second = order
    seen = [(s[first], s[second]) for s in jobs.a_samples]
    assert (("running", None), ("queued", 1)) in seen, seen  # the second waited, first in line
    assert not any(a[0] == b[0] == "running" for a, b in seen)  # never both at once
    a, b = (rundir.read_status(jobs.a_dirs[i]) for i in order)
    assert a["state"] == b["state"] == "finished"
    assert b["started_at"] >= a["finished_at"]  # first come, first served
    batch = preset("demo").per_device_train_batch_size
    assert a["step"] == a["total_steps"] == b["step"] == b["total_steps"] == -(-32 // batch)  # 32 reviews, 1 epoch
    rows = reconcile.list_runs(jobs.a_root)
    assert {r.label for r in rows} == {"job 0", "job 1"} and {r.owner for r in rows} == {"tester"}
    assert all(r.best_eval_accuracy is not None for r in rows)

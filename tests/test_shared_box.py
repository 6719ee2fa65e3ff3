"""A shared box that is safe to share: identity, permission at the moment of acting, quotas, bounded work,
paths and symlinks. These drive the registry and the job the way the pages and the CLI do; the pages'
own checks are in test_train_page.py and test_runs_page.py."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.config import TrainConfig, preset
from lib.errors import ConfigError, DataError, LabError, RunError
from lib.registry import access, control, launching, quotas
from lib.registry.access import Actor, PermissionDenied, Policy
from lib.sources.data import load_data
from lib.sources.paths import check_local_path
from lib.store import rundir, uploads

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(model="tiny-bert", max_train_samples=16, max_eval_samples=8, num_train_epochs=1.0, logging_steps=1)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LAB_READ_ONLY", raising=False)
    monkeypatch.delenv("LAB_MAX_ACTIVE_RUNS_PER_USER", raising=False)
    monkeypatch.delenv("LAB_ALLOWED_ROOTS", raising=False)


@pytest.fixture
def runs_dir(tmp_path):
    path = tmp_path / "runs"
    path.mkdir()
    yield path
    for run_dir in rundir.iter_run_dirs(path):  # never leave a job behind
        launched = rundir.read_run_info(run_dir).get("launch_pid")  # a job the registry started (not a stand-in)
        if rundir.read_status(run_dir).get("state") in rundir.ACTIVE_STATES and launched:
            try:
                control.cancel(run_dir, grace_s=2)
            except LabError:
                pass


def finished_run(runs_dir: Path, owner: str, state: str = "finished") -> Path:
    run_dir = launching.create_run(runs_dir, preset("demo", **TINY, owner=owner))
    rundir.update_status(run_dir, state=state)
    return run_dir


SIGN_IN = Policy(sign_in=True, admins=access.normalise_names(["admin@example.org"]),
                 launchers=access.normalise_names(["alice@example.org", "admin@example.org"]))


# ------------------------------------------------------------------------------------------ identity
def test_the_identity_is_the_verified_email_or_the_stable_subject_never_a_display_name():
    assert access.identity_from_user_info({"email": "a@x.org", "email_verified": True, "sub": "1"}) == "a@x.org"
    # an unverified address (which a user can often type into their profile) is not an identity
    assert access.identity_from_user_info({"email": "admin@example.org", "email_verified": False,
                                           "sub": "google-123", "name": "admin@example.org"}) == "google-123"
    assert access.identity_from_user_info({"name": "admin@example.org"}) is None
    assert access.identity_from_user_info(None) is None


def test_with_sign_in_a_typed_name_is_never_an_identity(runs_dir):
    """Nobody signed in, an admin's address typed as the owner: the registry refuses every managing action
    and another person's run stays on disk."""
    victim = finished_run(runs_dir, "alice@example.org")
    stranger = Actor("", "sign-in")  # what the app builds when nobody is signed in
    with pytest.raises(PermissionDenied, match="Sign in"):
        launching.launch(preset("demo", **TINY), runs_dir, owner="admin@example.org", actor=stranger, policy=SIGN_IN)
    with pytest.raises(PermissionDenied):
        control.delete(victim, actor=stranger, policy=SIGN_IN)
    with pytest.raises(PermissionDenied):
        control.delete(victim, actor=Actor("mallory@example.org", "sign-in"), policy=SIGN_IN)
    assert victim.is_dir() and (victim / rundir.CONFIG).is_file()
    assert [p.name for p in rundir.iter_run_dirs(runs_dir)] == [victim.name]  # the refused launch made no run


def test_a_signed_in_launch_belongs_to_the_identity_not_to_the_typed_owner(runs_dir):
    run_dir = launching.launch(preset("demo", **TINY), runs_dir, owner="admin@example.org",
                               actor=Actor("alice@example.org", "sign-in"), policy=SIGN_IN)
    assert rundir.read_config(run_dir)["owner"] == "alice@example.org"
    control.cancel(run_dir, actor=Actor("alice@example.org", "sign-in"), policy=SIGN_IN, grace_s=2)


def test_resume_needs_the_run_and_the_right_to_launch(runs_dir):
    policy = Policy(sign_in=True, launchers=access.normalise_names(["alice@example.org"]))
    run_dir = finished_run(runs_dir, "bob@example.org", state="cancelled")
    with pytest.raises(PermissionDenied, match="launchers"):  # bob owns it but may no longer launch
        launching.resume(run_dir, actor=Actor("bob@example.org", "sign-in"), policy=policy)
    with pytest.raises(PermissionDenied, match="owner"):  # alice may launch but it is not hers
        launching.resume(run_dir, actor=Actor("alice@example.org", "sign-in"), policy=policy)
    assert rundir.read_status(run_dir)["state"] == "cancelled"


def test_read_only_mode_lets_nobody_manage_from_the_browser_but_a_signed_in_admin(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_READ_ONLY", "1")
    open_ro = Policy.from_settings({}, sign_in=False)
    assert open_ro.read_only
    run_dir = finished_run(runs_dir, "anyone")
    with pytest.raises(PermissionDenied, match="read-only"):
        launching.launch(preset("demo", **TINY), runs_dir, actor=Actor("anyone", "open"), policy=open_ro)
    with pytest.raises(PermissionDenied, match="read-only"):
        control.delete(run_dir, actor=Actor("anyone", "open"), policy=open_ro)
    signed = Policy.from_settings({"admins": ["admin@example.org"]}, sign_in=True)
    assert not access.can_manage(run_dir, Actor("alice@example.org", "sign-in"), signed)
    assert access.can_manage(run_dir, Actor("admin@example.org", "sign-in"), signed)
    control.delete(run_dir, actor=Actor("admin@example.org", "sign-in"), policy=signed)
    assert not run_dir.exists()


# ------------------------------------------------------------------------------------------ rendezvous
def test_a_typed_rendezvous_endpoint_is_never_contacted(runs_dir):
    """A real TCP listener stands where a visitor points the job; the launch is refused and nothing ever
    connects to it (torch would unpickle what such a store sends back)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(3.0)
    endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        config = preset("demo", **TINY, num_nodes=2, rdzv_endpoint=endpoint)
        with pytest.raises(PermissionDenied, match="rendezvous"):
            launching.launch(config, runs_dir, actor=Actor("", "open"), policy=Policy())
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert list(rundir.iter_run_dirs(runs_dir)) == []


def test_rendezvous_endpoints_are_validated_everywhere():
    for bad in ("evil.example:99999", "host;rm -rf /", "no-port", "http://x:1", ":29500"):
        with pytest.raises(ConfigError) as err:
            preset("demo", num_nodes=2, rdzv_endpoint=bad)
        assert "host:port" in err.value.errors["rdzv_endpoint"], bad
    assert preset("demo", num_nodes=2, rdzv_endpoint="node0.example:29500").validate() == {}
    assert preset("demo", num_nodes=2, rdzv_endpoint="[::1]:29500").validate() == {}


def test_a_run_waiting_for_its_other_machines_keeps_no_place_in_the_queue(runs_dir):
    from lib.store import slots
    waiting = launching.create_run(runs_dir, preset("demo", **TINY, num_nodes=2, rdzv_endpoint="n0.example:1"))
    import psutil
    me = psutil.Process()
    rundir.atomic_write_json(waiting / rundir.RUN, {"pid": me.pid, "create_time": me.create_time(),
                                                     "host": slots.hostname()})
    later = launching.create_run(runs_dir, preset("demo", **TINY))
    rundir.atomic_write_json(later / rundir.RUN, {"pid": me.pid, "create_time": me.create_time(),
                                                   "host": slots.hostname()})
    assert [p.name for p in slots.waiting_runs(runs_dir, "cpu")] == [later.name]
    for run_dir in (waiting, later):  # stand-ins that name this test's own process: never signal them
        rundir.update_status(run_dir, state="failed")


# ------------------------------------------------------------------------------------------ quotas
def test_active_runs_per_user_are_capped_and_the_refusal_names_the_limit(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_MAX_ACTIVE_RUNS_PER_USER", "2")
    for _ in range(2):
        run_dir = launching.create_run(runs_dir, preset("demo", **TINY, owner="carol"))  # queued, as launched
        assert rundir.read_status(run_dir)["state"] == "queued"
    with pytest.raises(quotas.QuotaExceeded, match=r"carol already has 2 .*LAB_MAX_ACTIVE_RUNS_PER_USER"):
        launching.launch(preset("demo", **TINY), runs_dir, owner="carol", actor=Actor("carol", "open"),
                         policy=Policy())
    assert len(list(rundir.iter_run_dirs(runs_dir))) == 2
    # someone else is not held back by carol's runs
    assert quotas.active_runs_of(runs_dir, "dave") == []


def test_step_wise_saving_needs_a_checkpoint_budget():
    with pytest.raises(ConfigError) as err:
        preset("demo", save_strategy="steps", save_steps=1, save_total_limit=None)
    assert "checkpoint budget" in err.value.errors["save_total_limit"]
    assert preset("demo", save_strategy="steps", save_steps=1, save_total_limit=2).validate() == {}


def test_config_values_are_bounded_by_the_machine():
    cores = len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError) as err:
        preset("demo", num_processes=64, dataloader_num_workers=64, device="cpu")
    errors = err.value.errors
    assert f"{cores} CPU core" in errors["num_processes"] and f"{cores} CPU cores" in errors["dataloader_num_workers"]
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({**preset("demo").to_dict(), "max_steps": 1_000_000_000, "logging_steps": 10**9,
                               "max_train_samples": 10**12})
    assert {"max_steps", "logging_steps", "max_train_samples"} <= set(err.value.errors)
    assert preset("demo").validate() == {}


def test_uploads_no_run_uses_are_removed_after_the_retention_period(runs_dir):
    old_unused = uploads.save_upload(runs_dir, b"text,label\nok,1\n", "a.csv")
    old_used = uploads.save_upload(runs_dir, b"text,label\nok,1\n", "b.csv")
    recent = uploads.save_upload(runs_dir, b"text,label\nok,1\n", "c.csv")
    launching.create_run(runs_dir, preset("demo", **TINY, dataset=str(old_used)))
    long_ago = time.time() - 30 * 86400
    for path in (old_unused, old_used):
        os.utime(path, (long_ago, long_ago))
    removed = uploads.prune_uploads(runs_dir, days=7)
    assert removed == [old_unused.name]
    assert old_used.is_file() and recent.is_file() and not old_unused.exists()


# ------------------------------------------------------------------------------------------ paths
def test_no_file_inside_a_run_is_read_through_a_symlink(runs_dir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is swordfish\n")
    run_dir = finished_run(runs_dir, "alice")
    (run_dir / rundir.LOG).unlink(missing_ok=True)
    (run_dir / rundir.LOG).symlink_to(secret)
    (run_dir / rundir.BASELINE).symlink_to(secret)
    assert "swordfish" not in rundir.tail_text(run_dir / rundir.LOG)
    assert rundir.read_json(run_dir / rundir.BASELINE) is None


def _acl_tree(root: Path) -> Path:
    for split in ("train", "test"):
        for cls, text in (("pos", "a wonderful, moving film"), ("neg", "a dull, tedious mess")):
            folder = root / "aclImdb" / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                (folder / f"{i}_{7 if cls == 'pos' else 2}.txt").write_text(f"{text} number {i}")
    return root / "aclImdb"


def test_symlinks_inside_an_aclimdb_tree_are_refused(tmp_path):
    acl = _acl_tree(tmp_path / "data")
    assert load_data(preset("demo", **TINY, dataset=str(acl))).dataset["train"].num_rows > 0
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "0_9.txt").write_text("private text that must not be read")
    (acl / "train" / "pos").rename(tmp_path / "moved")
    (acl / "train" / "pos").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataError, match="symbolic link"):
        load_data(preset("demo", **TINY, dataset=str(acl)))


def test_allowed_roots_apply_to_every_file_of_an_aclimdb_tree(tmp_path, monkeypatch):
    acl = _acl_tree(tmp_path / "allowed")
    monkeypatch.setenv("LAB_ALLOWED_ROOTS", str(tmp_path / "allowed"))
    assert load_data(preset("demo", **TINY, dataset=str(acl))).dataset["test"].num_rows > 0
    with pytest.raises(LabError, match="outside the folders"):
        check_local_path(str(tmp_path), "data")


@pytest.mark.parametrize("case", ["long_name", "loop", "duplicate_columns", "deep_json", "deep_jsonl"])
def test_hostile_files_get_a_message_not_a_traceback(tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if case == "long_name":
        spec = "./" + "x" * 300 + ".csv"
    elif case == "loop":
        os.symlink("loop_b", "loop_a")
        os.symlink("loop_a", "loop_b")
        spec = "./loop_a/reviews.csv"
    elif case == "duplicate_columns":
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table([pa.array(["good", "bad"]), pa.array([1, 0]), pa.array([1, 0])],
                                names=["text", "label", "label"]), "dup.parquet")
        spec = "./dup.parquet"
    elif case == "deep_json":
        Path("deep.json").write_text("[" * 100_000 + "]" * 100_000)
        spec = "./deep.json"
    else:
        Path("deep.jsonl").write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + ', "label": 1}\n')
        spec = "./deep.jsonl"
    proc = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "demo", "--set", "model=tiny-bert",
                           "--set", f"dataset={spec}", "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    expected = {"long_name": "longer than 255", "loop": "symbolic link loop",
                "duplicate_columns": "more than one column", "deep_json": "nested too deeply",
                "deep_jsonl": "nested too deeply"}[case]
    assert expected in proc.stderr


# ------------------------------------------------------------------------------------------ a waiting job
def test_a_waiting_job_has_not_loaded_torch(runs_dir, monkeypatch):
    """While it waits for its slot a job is a small process: torch is loaded only once it may run."""
    from lib.store import slots
    monkeypatch.setenv("LAB_MAX_JOBS_CPU", "1")
    holder = slots.slot_dir(runs_dir)
    holder.mkdir(parents=True, exist_ok=True)
    import fcntl
    fd = os.open(holder / "cpu-0.slot", os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the one CPU slot is taken
    try:
        run_dir = launching.launch(preset("demo", **TINY), runs_dir)
        pid = None
        end = time.monotonic() + 60
        while time.monotonic() < end:
            status = rundir.read_status(run_dir)
            if status.get("queue_position") and status.get("pid"):
                pid = status["pid"]
                break
            time.sleep(0.2)
        assert pid, rundir.tail_text(run_dir / rundir.LOG)
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libtorch" not in maps and "torch/lib" not in maps
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    end = time.monotonic() + 180
    while rundir.read_status(run_dir).get("state") in rundir.ACTIVE_STATES and time.monotonic() < end:
        time.sleep(0.5)
    assert rundir.read_status(run_dir)["state"] == "finished", rundir.tail_text(run_dir / rundir.LOG)


def test_permission_errors_are_run_errors_with_plain_messages():
    assert issubclass(PermissionDenied, RunError) and issubclass(quotas.QuotaExceeded, PermissionDenied)

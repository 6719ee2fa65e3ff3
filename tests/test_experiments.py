"""The experiment loop: sweeps on the queue, early stopping, system metrics, notes and tags, the estimate.

One module fixture launches, through the real command line, a two-point sweep and an early-stopping
run of the tiny BERT (real job processes, one after another on the CPU queue) and waits for them;
the tests then read what those jobs wrote. ``OMP_NUM_THREADS=1`` keeps the jobs from fighting over a
shared machine's cores (it applies to the jobs and to the estimate's dry run alike).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lib.config import TrainConfig, preset
from lib.errors import ConfigError
from lib.readers.metrics import latest_system, metric_series, system_series
from lib.registry import estimate, launching, notes, sweeps
from lib.registry.access import Actor, PermissionDenied, Policy
from lib.registry.reconcile import list_runs, view
from lib.store import rundir, slots

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "demo", "--set", "model=tiny-bert", "--set", "max_train_samples=32", "--set",
        "max_eval_samples=16", "--set", "logging_steps=1", "--set", "max_length=64", "--set", "eval_strategy=epoch",
        "--set", "frozen_layers=0"]
pytestmark = pytest.mark.slow


def _env(runs_dir: Path) -> dict:
    return {**os.environ, "LAB_RUNS_DIR": str(runs_dir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def cli(runs_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lib.runs", "--runs-dir", str(runs_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=_env(runs_dir))
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def wait_all(runs_dir: Path, n: int, timeout: float = 400.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list_runs(runs_dir)
        if len(rows) >= n and all(r.terminal for r in rows):
            return rows
        time.sleep(1.0)
    raise AssertionError(f"runs did not finish: {[(r.run_id, r.state) for r in list_runs(runs_dir)]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("experiments") / "runs"
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the estimate's dry run inherits it, like the jobs
    sweep = cli(runs_dir, "sweep", *TINY, "--set", "num_train_epochs=1", "--set", "system_metrics_every_s=0.5",
                "--grid", "learning_rate=1e-4,3e-4")
    sweep_id = sweep.stdout.strip().splitlines()[-1]
    early = cli(runs_dir, "launch", *TINY, "--set", "num_train_epochs=4", "--set", "learning_rate=1e-12",
                "--set", "early_stopping_patience=1", "--set", "system_metrics_every_s=0")
    early_id = early.stdout.strip().splitlines()[-1]
    wait_all(runs_dir, 3)
    yield {"runs_dir": runs_dir, "sweep_id": sweep_id, "early": runs_dir / early_id}
    if old is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old


# ---------------------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------------------
def test_sweep_runs_finish_with_their_grid_values(lab):
    out = cli(lab["runs_dir"], "list", "--sweep", lab["sweep_id"], "--json")
    rows = json.loads(out.stdout)
    assert [r["state"] for r in rows] == ["finished", "finished"]
    assert [r["sweep_point"] for r in rows] == [{"learning_rate": 1e-4}, {"learning_rate": 3e-4}]
    peaks = []
    for r in rows:
        config = json.loads((Path(r["path"]) / rundir.CONFIG).read_text())
        assert config["sweep_id"] == lab["sweep_id"]
        assert config["learning_rate"] == r["sweep_point"]["learning_rate"]
        _, lrs = metric_series(r["path"]).column("log", "learning_rate")
        peaks.append(max(lrs))
    # the trainer really used each run's own learning rate: same schedule, three times the peak
    assert peaks[1] == pytest.approx(3 * peaks[0], rel=1e-6)
    table = sweeps.sweep_table(sweeps.sweep_runs(list_runs(lab["runs_dir"]), lab["sweep_id"]))
    assert table["fields"] == ["learning_rate"]
    assert table["best"] in {r["run_id"] for r in rows}


def test_grid_is_checked_and_capped():
    with pytest.raises(ConfigError) as exc:
        sweeps.parse_grid(["learning_rate=1e-5,2e-5,3e-5,4e-5,5e-5", "seed=1,2,3,4", "weight_decay=0,0.01,0.1,0.2"])
    assert "80 runs" in str(exc.value) and "at most 64" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown field"):
        sweeps.parse_grid(["no_such_field=1,2"])
    with pytest.raises(ConfigError, match="cannot be swept"):
        sweeps.parse_grid(["owner=a,b"])
    with pytest.raises(ConfigError, match="twice"):
        sweeps.parse_grid(["seed=1,1"])
    with pytest.raises(ConfigError) as exc:  # a value the field refuses: the grid point is named
        sweeps.plan_sweep(preset("demo"), sweeps.parse_grid(["per_device_train_batch_size=8,0"]))
    assert "per_device_train_batch_size=0" in str(exc.value)
    plan = sweeps.plan_sweep(preset("demo", max_train_samples=64, num_train_epochs=3.0), sweeps.parse_grid(
        ["per_device_train_batch_size=8,16", "seed=1,2"]), num_train_samples=1000)
    assert plan.n_runs == 4 and [p["seed"] for p in plan.points] == [1, 2, 1, 2]
    assert plan.steps == [24, 24, 12, 12] and plan.total_steps == 72  # 3 epochs of 64 reviews


def test_a_quota_refuses_part_of_a_sweep(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(launching, "_start_job", lambda run_dir, config, **kw: started.append(run_dir.name))
    monkeypatch.setenv("LAB_MAX_ACTIVE_RUNS_PER_USER", "2")
    runs_dir = tmp_path / "runs"
    plan = sweeps.plan_sweep(preset("demo", model="tiny-bert"), sweeps.parse_grid(["seed=1,2,3"]))
    result = sweeps.launch_sweep(plan, runs_dir, owner="alice")
    assert [p["seed"] for p, _ in result.launched] == [1, 2] and len(started) == 2
    assert [p["seed"] for p, _ in result.refused] == [3]
    assert "LAB_MAX_ACTIVE_RUNS_PER_USER" in result.refused[0][1]
    with pytest.raises(PermissionDenied):  # no launch permission: nothing is launched at all
        sweeps.launch_sweep(plan, runs_dir, actor=Actor("", "open"), policy=Policy(sign_in=True))
    assert len(started) == 2


# ---------------------------------------------------------------------------------------------------
# Early stopping
# ---------------------------------------------------------------------------------------------------
def test_a_run_that_does_not_improve_stops_after_its_second_evaluation(lab):
    run_dir = lab["early"]
    status = rundir.read_status(run_dir)
    series = metric_series(run_dir)
    assert status["state"] == "finished"
    assert status["stopped_early"] is True
    assert len(series.eval) == 2 and status["stopped_at_step"] == series.eval[-1]["step"] == 8
    assert status["planned_steps"] == 16
    assert status["best_checkpoint"] == "checkpoint-4"  # equal accuracy is no improvement: the first stays best
    state = json.loads((run_dir / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].endswith("checkpoint-4")
    assert (run_dir / rundir.MODEL / "config.json").is_file()
    shown = cli(lab["runs_dir"], "show", run_dir.name).stdout
    assert "early, at step 8" in shown and "checkpoint-4" in shown


def test_early_stopping_settings_are_checked():
    with pytest.raises(ConfigError) as exc:
        preset("demo", early_stopping_patience=2, eval_strategy="no", save_strategy="no")
    assert "eval_strategy" in exc.value.errors["early_stopping_patience"]
    with pytest.raises(ConfigError) as exc:
        preset("demo", early_stopping_patience=2, eval_strategy="epoch", save_strategy="no")
    assert "save_strategy" in exc.value.errors["early_stopping_patience"]
    with pytest.raises(ConfigError) as exc:
        preset("demo", early_stopping_patience=2, eval_strategy="steps", save_strategy="steps", eval_steps=30,
               save_steps=50)
    assert "multiple of eval_steps" in exc.value.errors["early_stopping_patience"]
    from lib.job.training import training_arguments_kwargs
    kw = training_arguments_kwargs(preset("demo", early_stopping_patience=2, eval_strategy="epoch"), "/nonexistent")
    assert kw["load_best_model_at_end"] is True and kw["metric_for_best_model"] == "accuracy"


# ---------------------------------------------------------------------------------------------------
# System metrics
# ---------------------------------------------------------------------------------------------------
def test_system_rows_are_recorded_beside_the_training_rows(lab):
    run = sweeps.sweep_runs(list_runs(lab["runs_dir"]), lab["sweep_id"])[0]
    series = metric_series(run.path)
    assert len(series.system) >= 2
    assert all(r["rss_mb"] > 50 and r["cpu_percent"] >= 0 for r in series.system)
    assert [r["step"] for r in series.log] == [1, 2, 3, 4]  # system rows do not disturb the training series
    assert {"cpu_percent", "rss_mb"} <= set(system_series(run.path))
    assert latest_system(run.path)["step"] == 4  # the last reading is taken when training ends
    assert metric_series(lab["early"]).system == []  # system_metrics_every_s=0: off


# ---------------------------------------------------------------------------------------------------
# Notes and tags
# ---------------------------------------------------------------------------------------------------
def test_a_note_and_tags_round_trip(lab):
    runs_dir = lab["runs_dir"]
    run_id = lab["early"].name
    note = "Why: does a frozen model stop? <b>not markup</b>"
    out = cli(runs_dir, "annotate", run_id, "--note", note, "--tag", "Frozen", "--tag", "lr-test")
    assert json.loads(out.stdout)["tags"] == ["frozen", "lr-test"]
    shown = json.loads(cli(runs_dir, "show", run_id, "--json").stdout)
    assert shown["note"] == note and shown["tags"] == ["frozen", "lr-test"]
    assert view(lab["early"]).tags == ("frozen", "lr-test")
    listed = json.loads(cli(runs_dir, "list", "--tag", "lr-test", "--json").stdout)
    assert [r["run_id"] for r in listed] == [run_id]
    cli(runs_dir, "annotate", run_id, "--untag", "frozen")
    assert notes.read_notes(lab["early"])["tags"] == ["lr-test"]
    assert not [p for p in lab["early"].iterdir() if p.name.endswith(".tmp")]
    bad = cli(runs_dir, "annotate", run_id, "--tag", "two words", check=False)
    assert bad.returncode != 0 and "letters, digits" in bad.stderr and "Traceback" not in bad.stderr


def test_only_the_owner_or_an_admin_may_annotate_under_sign_in(lab):
    run_dir = lab["early"]
    owner = view(run_dir).owner
    policy = Policy(sign_in=True, admins=frozenset({"admin@example.org"}))
    with pytest.raises(PermissionDenied, match="owner"):
        notes.annotate(run_dir, note="mine now", actor=Actor("mallory@example.org", "sign-in"), policy=policy)
    assert notes.read_notes(run_dir)["note"] != "mine now"
    notes.annotate(run_dir, add_tags=["checked"], actor=Actor("admin@example.org", "sign-in"), policy=policy)
    notes.annotate(run_dir, add_tags=["own"], actor=Actor(owner, "sign-in"), policy=policy)
    assert {"checked", "own"} <= set(notes.read_notes(run_dir)["tags"])
    with pytest.raises(ConfigError, match="keep it to"):
        notes.annotate(run_dir, note="x" * (notes.MAX_NOTE_CHARS + 1))


# ---------------------------------------------------------------------------------------------------
# The estimate
# ---------------------------------------------------------------------------------------------------
def test_the_estimate_predicts_the_real_seconds_per_step(lab):
    runs_dir = lab["runs_dir"]
    run = sweeps.sweep_runs(list_runs(runs_dir), lab["sweep_id"])[0]
    before = sorted(p.name for p in runs_dir.iterdir())
    temp_before = {p.name for p in Path(tempfile.gettempdir()).glob("lab-estimate-*")}
    config = TrainConfig.load(run.path / rundir.CONFIG)
    result = estimate.estimate(config, runs_dir)
    actual = estimate.actual_seconds_per_step(run.path)
    assert actual is not None and actual > 0
    ratio = result["seconds_per_step"] / actual
    assert 1 / 5 <= ratio <= 5, (result, actual)
    assert result["total_steps"] == 4 and result["eta_s"] >= result["train_s"] > 0
    assert result["peak_rss_mb"] > 50 and result["fits_in_free_memory"] is True
    assert sorted(p.name for p in runs_dir.iterdir()) == before  # nothing new in the runs folder
    assert {p.name for p in Path(tempfile.gettempdir()).glob("lab-estimate-*")} <= temp_before


def test_the_estimate_does_not_take_a_busy_device(lab, tmp_path):
    runs_dir = lab["runs_dir"]
    qdir = slots.slot_dir(runs_dir)
    qdir.mkdir(parents=True, exist_ok=True)
    held = [slots._try_lock(qdir / f"cpu-{k}.slot") for k in range(slots.device_limit("cpu"))]
    try:
        assert all(fd is not None for fd in held)
        config = preset("demo", model="tiny-bert", max_train_samples=32)
        with pytest.raises(estimate.DeviceBusy, match="in use"):
            estimate.estimate(config, runs_dir, wait_s=0.5)
        cfg = tmp_path / "c.json"
        cfg.write_text(config.to_json())
        proc = cli(runs_dir, "estimate", "--config", str(cfg), "--wait", "0", "--json", check=False)
        assert proc.returncode != 0 and "did not run" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        for fd in held:
            if fd is not None:
                os.close(fd)


def test_the_estimate_benchmark_runs_and_records_ratios(tmp_path):
    md = tmp_path / "BENCH.md"
    proc = subprocess.run([sys.executable, "-m", "bench.estimate", "--data", "demo", "--model", "tiny-bert",
                           "--configs", "len128-b8", "--train-samples", "32", "--eval-samples", "8",
                           "--out-dir", str(tmp_path / "out"), "--md", str(md)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    row = last["rows"][0]
    assert row["ratio"] == pytest.approx(row["estimate_s_per_step"] / row["actual_s_per_step"])
    text = md.read_text()
    assert "python -m bench.estimate" in text and "| len128-b8 |" in text

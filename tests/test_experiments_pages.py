"""AppTest of the experiment loop's pages: the Train page's Sweep option (runs and steps shown before
launching, a quota refusing part of a sweep) and Estimate button (a real dry run of the tiny BERT), the
run table's memory column; on the Runs page the Sweep tab (grid values, best run marked, parallel
coordinates), the System chart, early stopping in the header, notes shown as text and edited by the
owner (and refused to someone else under sign-in), and the tag filter.

The runs are copies of the session's finished tiny run, each given a sweep id and grid point the way a
sweep launch writes them, so no test here waits for training except the one that launches a sweep.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.config import preset
from lib.registry import control, notes, preflight, reconcile, sweeps
from lib.store import rundir
from pages.ui import run_table, session

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
RUNS_PAGE = str(ROOT / "pages" / "runs.py")
RUN_A, RUN_B = "20210101-000000-a0a0a1", "20210101-000001-a0a0a2"
SWEEP = "sweep-20210101-000000-abcdef"
OWNER = "alice@example.org"
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "not-a-secret",
        "client_id": "lab", "client_secret": "not-a-secret",
        "server_metadata_url": "https://login.example.org/.well-known/openid-configuration"}
pytestmark = pytest.mark.slow


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


@pytest.fixture()
def runs(tmp_path, tiny_run_dir, monkeypatch) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    for run_id, lr, acc in ((RUN_A, 1e-4, 0.5), (RUN_B, 3e-4, 0.99)):
        run_dir = root / run_id
        shutil.copytree(tiny_run_dir, run_dir)
        config = json.loads((run_dir / rundir.CONFIG).read_text())
        config.update(sweep_id=SWEEP, sweep_point={"learning_rate": lr}, learning_rate=lr, owner=OWNER)
        (run_dir / rundir.CONFIG).write_text(json.dumps(config))
        _append(run_dir / rundir.METRICS, [{"event": "eval", "step": 900, "epoch": 9.0, "eval_accuracy": acc}])
    _append(root / RUN_A / rundir.METRICS, [
        {"event": "system", "step": 1, "elapsed_s": 1.0, "cpu_percent": 95.0, "rss_mb": 480.0},
        {"event": "system", "step": 2, "elapsed_s": 11.0, "cpu_percent": 180.0, "rss_mb": 512.5}])
    rundir.update_status(root / RUN_A, stopped_early=True, stopped_at_step=8, planned_steps=16,
                         best_checkpoint="checkpoint-4", metric_for_best_model="accuracy")
    monkeypatch.setenv("LAB_RUNS_DIR", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("LAB_MAX_JOBS_CPU", "LAB_READ_ONLY", "LAB_MAX_ACTIVE_RUNS_PER_USER"):
        monkeypatch.delenv(name, raising=False)
    yield root
    for run_dir in rundir.iter_run_dirs(root):  # never leave a job behind
        if reconcile.get_status(run_dir)["state"] in ("queued", "running"):
            control.cancel(run_dir, grace_s=5)


def runs_page(run_id: str, tab: str | None = None, *, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(RUNS_PAGE, default_timeout=120)
    at.query_params["run"] = run_id
    if tab:
        at.session_state["runs_tab"] = tab
    if user is not None:
        at.secrets["auth"] = AUTH
        at.user = user
    at.run()
    assert not at.exception, at.exception
    return at


def train_page(owner: str = "tester") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[session.OWNER_KEY] = owner
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def said(at: AppTest) -> str:
    parts = []
    for kind in ("error", "warning", "info", "success", "markdown", "caption", "text"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(parts).replace("\\", "")


def chart(at: AppTest, key: str) -> dict:
    found = [e for e in at.get("plotly_chart") if e.key == key]
    assert found, f"no chart {key!r}: {[e.key for e in at.get('plotly_chart')]}"
    return json.loads(found[0].proto.spec)


# ---------------------------------------------------------------------------------------------------
# Runs page
# ---------------------------------------------------------------------------------------------------
def test_sweep_tab_shows_the_grid_and_marks_the_best_run(runs):
    at = runs_page(RUN_A, "Sweep")
    table = next(d.value for d in at.dataframe if "learning_rate" in d.value.columns)
    assert list(table["run_id"]) == [RUN_A, RUN_B]
    assert list(table["learning_rate"]) == [1e-4, 3e-4]
    assert list(table["best"]) == ["", "★"]
    assert f"Best eval_accuracy: run {RUN_B}" in said(at)
    spec = chart(at, "sweep_parcoords")
    assert spec["data"][0]["type"] == "parcoords"
    assert [d["label"] for d in spec["data"][0]["dimensions"]] == ["learning_rate", "eval_accuracy"]


def test_system_chart_and_early_stop_are_shown(runs):
    at = runs_page(RUN_A, "Training")
    spec = chart(at, "train_system")
    names = [t["name"] for t in spec["data"]]
    assert "memory (RSS, MB)" in names and "CPU (%)" in names
    rss = next(t for t in spec["data"] if t["name"] == "memory (RSS, MB)")
    assert rss["y"][-2:] == [480.0, 512.5]  # the job's own readings come first
    assert "Stopped early at step 8 of 16" in said(at) and "checkpoint-4" in said(at)
    assert f"Sweep {SWEEP}: learning_rate=0.0001" in said(at)


def test_notes_are_text_and_only_the_owner_or_an_admin_edits_them(runs):
    note = "<script>alert(1)</script> **not bold**"
    notes.annotate(runs / RUN_A, note=note, tags=["lr-test"])
    at = runs_page(RUN_A, "Notes")
    assert note in [str(t.value) for t in at.text]  # st.text: shown exactly as typed, never as markup
    assert "Tags: lr-test" in said(at)
    at.text_area(key="notes_text").set_value("first try: too slow")
    at.text_input(key="notes_tags").set_value("lr-test, Slow")
    at.button(key=f"FormSubmitter:notes_form_{RUN_A}-Save note and tags").click().run()
    assert not at.exception, at.exception
    assert notes.read_notes(runs / RUN_A)["note"] == "first try: too slow"
    assert notes.read_notes(runs / RUN_A)["tags"] == ["lr-test", "slow"]
    # under sign-in somebody else sees the note but gets no form
    other = runs_page(RUN_A, "Notes", user={"is_logged_in": True, "email": "mallory@example.org",
                                             "email_verified": True, "sub": "sub-mallory"})
    assert "first try: too slow" in [str(t.value) for t in other.text]
    assert not [t for t in other.text_area if t.key == "notes_text"]
    assert f"Only the run's owner ({OWNER})" in said(other)
    mine = runs_page(RUN_A, "Notes", user={"is_logged_in": True, "email": OWNER, "email_verified": True,
                                            "sub": "sub-alice"})
    assert [t for t in mine.text_area if t.key == "notes_text"]


def test_runs_can_be_filtered_by_tag(runs):
    notes.annotate(runs / RUN_B, tags=["keep"])
    at = runs_page(RUN_B)
    at.multiselect(key="runs_tag_filter").set_value(["keep"]).run()
    assert at.selectbox(key="runs_pick").options == [f"{reconcile.view(runs / RUN_B).label} · {RUN_B}"]


# ---------------------------------------------------------------------------------------------------
# Train page
# ---------------------------------------------------------------------------------------------------
def _tiny_form(at: AppTest) -> None:
    at.text_input(key="tr_model").set_value("tiny-bert")
    at.text_input(key="tr_max_train_samples").set_value("32")
    at.text_input(key="tr_max_eval_samples").set_value("16")
    at.text_input(key="tr_num_train_epochs").set_value("1").run()


def test_sweep_option_counts_runs_and_steps_and_a_quota_refuses_part(runs, monkeypatch):
    at = train_page()
    _tiny_form(at)
    at.toggle(key="tr_sweep_on").set_value(True).run()
    at.selectbox(key="tr_sweep_field_0").set_value("learning_rate")
    at.text_input(key="tr_sweep_values_0").set_value("1e-4, 3e-4")
    at.selectbox(key="tr_sweep_field_1").set_value("seed")
    at.text_input(key="tr_sweep_values_1").set_value("1, 2").run()
    base = preset("demo", model="tiny-bert", max_train_samples=32, max_eval_samples=16, num_train_epochs=1)
    expected = sweeps.plan_from_entries(base, [("learning_rate", "1e-4,3e-4"), ("seed", "1,2")],
                                        num_train_samples=preflight.estimate_train_samples(base))
    assert f"This sweep makes 4 run(s), {expected.total_steps:,} optimizer steps in all." in said(at)
    at.text_input(key="tr_sweep_values_1").set_value("1, 1").run()
    assert "seed lists the value 1 twice" in said(at)
    at.text_input(key="tr_sweep_values_1").set_value("").run()
    assert "seed has an empty value" in said(at)
    at.selectbox(key="tr_sweep_field_1").set_value("").run()
    monkeypatch.setenv("LAB_MAX_ACTIVE_RUNS_PER_USER", "1")
    at.button(key="tr_sweep_launch").click().run()
    assert not at.exception, at.exception
    text = said(at)
    assert "launched 1 of 2 run(s)" in text and "Not launched: learning_rate=0.0003" in text
    made = [r for r in reconcile.list_runs(runs) if r.run_id not in (RUN_A, RUN_B)]
    assert len(made) == 1 and made[0].config["sweep_point"] == {"learning_rate": 1e-4}
    assert made[0].config["owner"] == "tester"


def test_estimate_button_measures_the_form(runs):
    at = train_page()
    _tiny_form(at)
    at.button(key="tr_estimate").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Seconds per step"]) > 0
    assert metrics["Fits in free memory"] == "yes"
    assert "MB" in metrics["Peak memory"]
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == [RUN_A, RUN_B]


def test_run_table_shows_a_running_jobs_memory(runs):
    rows = run_table.table_rows([reconcile.view(runs / RUN_A, status={"state": "running", "step": 2}),
                                 reconcile.view(runs / RUN_B, status={"state": "finished"})])
    assert rows[0]["memory (MB)"] == 512.5 and rows[1]["memory (MB)"] is None

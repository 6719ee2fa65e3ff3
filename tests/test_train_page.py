"""The Train page under AppTest: presets, live preview, validation next to fields, upload, launch, the run table,
and who may launch or manage runs."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.config import preset
from lib.registry import control, launching, reconcile
from lib.store import rundir
from pages import common

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "train.py")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LAB_MAX_JOBS_CPU", raising=False)
    yield path
    for run_dir in rundir.iter_run_dirs(path):  # never leave a job behind
        if reconcile.get_status(run_dir)["state"] in ("queued", "running"):
            control.cancel(run_dir, grace_s=5)


def page(owner: str | None = "tester") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if owner:
        at.session_state[common.OWNER_KEY] = owner
    return at.run()


def run_table(at: AppTest):
    """The run table's data (the dataframe with a 'run' column)."""
    found = [d.value for d in at.dataframe if "run" in d.value.columns]
    assert len(found) == 1, "expected one run table"
    return found[0]


def shown(value: str) -> str:
    """What a person reads: the page escapes user and run text for markdown."""
    return re.sub(r"\\(.)", r"\1", value)


def errors_text(at: AppTest) -> str:
    return "\n".join(shown(e.value) for e in at.error)


def test_demo_preset_launches_and_the_run_shows_up_in_the_table(runs_dir):
    at = page()
    assert not at.exception
    at.selectbox(key="tr_preset").set_value("demo")
    at.button(key="tr_load_preset").click().run()
    assert at.text_input(key="tr_model").value == "bundled-minilm"
    at.text_input(key="tr_model").set_value("tiny-bert")
    at.text_input(key="tr_max_train_samples").set_value("32")
    at.text_input(key="tr_max_eval_samples").set_value("16")
    at.text_input(key="tr_num_train_epochs").set_value("1").run()
    assert not at.exception and not at.error, errors_text(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training reviews"] == "32" and metrics["Steps per epoch"] == "4"  # 32 / batch 8
    assert metrics["Optimizer steps"] == "4" and metrics["Effective batch"] == "8"
    assert metrics["Evaluations"] == "1" and metrics["Checkpoints saved"] == "1"  # eval and save every epoch
    assert any("-m lib.train --run-dir" in c.value for c in at.code)
    assert at.button(key="tr_launch").disabled is False

    at.button(key="tr_launch").click().run()
    assert not at.exception, at.exception
    made = list(rundir.iter_run_dirs(runs_dir))
    assert len(made) == 1
    run_id = made[0].name
    assert any(run_id in shown(s.value) for s in at.success)
    table = run_table(at)
    assert list(table["run"]) == [run_id] and list(table["owner"]) == ["tester"]
    assert table["state"][0].startswith(("queued", "running"))
    assert table["label"][0] == "demo: MiniLM on built-in reviews"
    config = launching.load_config(made[0])
    assert (config.model, config.max_train_samples, config.owner) == ("tiny-bert", 32, "tester")

    # the job runs on its own; the table shows where it ended
    end = time.monotonic() + 120
    while reconcile.get_status(made[0])["state"] in ("queued", "running") and time.monotonic() < end:
        time.sleep(0.5)
    at.run()
    table = run_table(at)
    assert list(table["state"]) == ["finished"] and table["progress"][0] == 1.0
    assert table["best accuracy"][0] is not None
    # clone puts the run's settings back into the form
    at.button(key="tr_clone").click().run()
    assert at.text_input(key="tr_model").value == "tiny-bert"
    assert at.text_input(key="tr_max_train_samples").value == "32"


def test_bad_values_are_shown_next_to_their_field_and_block_launch(runs_dir):
    at = page()
    at.text_input(key="tr_learning_rate").set_value("fast")
    at.text_input(key="tr_max_eval_samples").set_value("-3").run()
    text = errors_text(at)
    assert "learning_rate must be a number" in text and "max_eval_samples must be a positive integer" in text
    assert at.button(key="tr_launch").disabled
    assert not list(rundir.iter_run_dirs(runs_dir))


def test_an_unreachable_hub_model_is_flagged_before_any_process_starts(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    at = page()
    at.text_input(key="tr_model").set_value("someone/not-cached-model").run()
    at.button(key="tr_launch").click().run()
    assert not at.exception
    assert "not reachable" in errors_text(at) and "bundled-minilm" in errors_text(at)
    assert not list(rundir.iter_run_dirs(runs_dir))


def test_no_launch_without_an_owner_name(runs_dir):
    at = page(owner=None)
    assert at.button(key="tr_launch").disabled
    at.text_input(key="tr_owner_input").set_value("Dana").run()
    assert at.session_state[common.OWNER_KEY] == "Dana"
    assert not at.button(key="tr_launch").disabled


def test_upload_is_stored_under_a_server_made_name_with_preview_and_label_mapping(runs_dir):
    at = page()
    rows = "".join(f"review number {i} was {'great' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n"
                   for i in range(20))
    at.file_uploader(key="tr_upload").set_value(("../../$(id) evil.csv", b"review,sentiment\n" + rows.encode(),
                                                  "text/csv")).run()
    assert not at.exception, at.exception
    stored = list((runs_dir / rundir.UPLOADS).iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".csv" and "evil" not in stored[0].name
    assert not (runs_dir.parent.parent / "$(id) evil.csv").exists()
    assert at.selectbox(key="tr_upload_text").value == "review"
    assert at.selectbox(key="tr_upload_label").value == "sentiment"
    mapping = at.table[0].value
    assert dict(zip(mapping["value in the file"], mapping["becomes"])) == {"neg": "0 = NEGATIVE",
                                                                          "pos": "1 = POSITIVE"}
    at.button(key="tr_use_upload").click().run()
    assert at.text_input(key="tr_dataset").value == str(stored[0])
    assert at.text_input(key="tr_text_column").value == "review"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training reviews"] == "16"  # 20 rows, 20 % held out for evaluation


def test_with_sign_in_only_listed_people_launch_and_only_owners_or_admins_manage(runs_dir, monkeypatch):
    finished = launching.create_run(runs_dir, preset("demo", owner="alice@example.org"))
    rundir.update_status(finished, state="finished")

    def as_user(email):
        monkeypatch.setattr(common, "auth_configured", lambda: True)
        monkeypatch.setattr(common, "logged_in_user", lambda: email)
        at = AppTest.from_file(PAGE, default_timeout=60)
        at.secrets["lab"] = {"admins": ["boss@example.org"], "launchers": ["alice@example.org"]}
        return at.run()

    at = as_user("mallory@example.org")
    assert not at.exception, at.exception
    assert at.button(key="tr_launch").disabled
    assert at.button(key="tr_delete").disabled and at.button(key="tr_resume").disabled
    assert any("not on this lab's list" in i.value for i in at.info)

    at = as_user("alice@example.org")
    assert not at.button(key="tr_launch").disabled and not at.button(key="tr_delete").disabled
    at = as_user("boss@example.org")
    assert not at.button(key="tr_delete").disabled
    at.button(key="tr_delete").click().run()
    at.button(key="tr_confirm_yes").click().run()
    assert not at.exception and not finished.exists()


def test_run_names_are_shown_as_text_never_as_markdown(runs_dir):
    name = "![pixel](http://evil.example/p.png) :red[$x$] <script>alert(1)</script>"
    run_dir = launching.create_run(runs_dir, preset("demo", run_name=name, owner="tester"))
    rundir.update_status(run_dir, state="failed", error={"type": "X", "message": f"bad {name}", "hint": ""})
    at = page()
    assert run_table(at)["label"][0] == name  # the table shows plain text
    at.button(key="tr_delete").click().run()
    warning = [w.value for w in at.warning if "Delete everything" in shown(w.value)][0]
    assert name in shown(warning) and "![pixel](" not in warning and ":red[" not in warning
    assert any(name in shown(e.value) and "<script>" not in e.value for e in at.error)
    at.button(key="tr_confirm_yes").click().run()
    assert not run_dir.exists()


def test_inside_the_app_each_run_links_to_the_runs_page_with_its_id(runs_dir):
    run_dir = launching.create_run(runs_dir, preset("demo", owner="tester"))
    rundir.update_status(run_dir, state="finished")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    links = [(link.proto.page, link.proto.query_string) for link in at.get("page_link")]
    assert ("runs", f"run={run_dir.name}") in links


def test_distil_from_a_finished_run_fills_the_form_with_the_teachers_data(runs_dir):
    teacher = launching.create_run(runs_dir, preset("demo", model="tiny-bert", max_train_samples=40, seed=7,
                                               run_name="teacher run"))
    rundir.update_status(teacher, state="finished")
    at = page()
    at.selectbox(key="tr_distill_pick").set_value(teacher.name)
    at.button(key="tr_distill_top").click().run()
    assert not at.exception
    assert at.text_input(key="tr_teacher").value == teacher.name
    assert at.text_input(key="tr_max_train_samples").value == "40"  # same data as the teacher
    assert at.selectbox(key="tr_task").value == "distill"
    assert any("distils run" in shown(i.value) for i in at.info)

"""The Train page under AppTest, opened through app.py as a visitor opens it: presets, live preview,
validation next to fields, upload, launch, the run table, and who may launch or manage runs.

Sign-in is simulated the way Streamlit itself provides it: an ``[auth]`` section in the secrets and
``AppTest.user`` (the claims the provider would send). A stale page is simulated by drawing it as one
person and clicking as another: the registry's check at the moment of acting is what counts.
"""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.config import MAX_STEPS, preset
from lib.registry import control, launching, reconcile
from lib.store import rundir
from pages.ui import session

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "not-a-secret",
        "client_id": "lab", "client_secret": "not-a-secret",
        "server_metadata_url": "https://login.example.org/.well-known/openid-configuration"}
LAB = {"admins": ["boss@example.org"], "launchers": ["alice@example.org"]}
LOGGED_OUT = {"is_logged_in": False}


def signed_in(email: str, *, verified: bool = True) -> dict:
    """The claims of a signed-in person (``sub`` is the provider's stable id)."""
    return {"is_logged_in": True, "email": email, "email_verified": verified, "sub": f"sub-{email.split('@')[0]}"}


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("LAB_MAX_JOBS_CPU", "LAB_READ_ONLY", "LAB_MAX_ACTIVE_RUNS_PER_USER", "LAB_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    yield path
    for run_dir in rundir.iter_run_dirs(path):  # never leave a job behind
        if reconcile.get_status(run_dir)["state"] in ("queued", "running"):
            control.cancel(run_dir, grace_s=5)


def page(owner: str | None = "tester", *, secrets: dict | None = None, user: dict | None = None) -> AppTest:
    """The app, switched to the Train page (the sidebar and the Runs page link work as in a browser)."""
    at = AppTest.from_file(APP, default_timeout=60)
    if owner:
        at.session_state[session.OWNER_KEY] = owner
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    if user is not None:
        at.user = user
    at.switch_page("pages/train.py").run()  # (the sidebar is checked in test_access_pages.py)
    assert not at.exception, at.exception
    assert at.title[0].value == "Train a model"
    return at


def as_visitor(user: dict | None, lab: dict | None = None, **kw) -> AppTest:
    """The Train page with sign-in configured, as ``user`` (None: nobody signed in)."""
    return page(secrets={"auth": AUTH, "lab": lab or LAB}, user=user or LOGGED_OUT, **kw)


def has(at: AppTest, kind: str, key: str) -> bool:
    return any(w.key == key for w in getattr(at, kind))


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


def all_text(at: AppTest) -> str:
    return "\n".join(shown(e.value) for kind in ("error", "warning", "info", "caption", "success")
                     for e in getattr(at, kind))


def finished_run(runs_dir: Path, **fields) -> Path:
    run_dir = launching.create_run(runs_dir, preset("demo", **fields))
    rundir.update_status(run_dir, state="finished")
    return run_dir


def test_demo_preset_launches_and_the_run_shows_up_in_the_table(runs_dir):
    at = page()
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
    # the demo preset saves every epoch and evaluates once, after training (not counted as "during")
    assert metrics["Evaluations"] == "0" and metrics["Checkpoints saved"] == "1"
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


def test_open_mode_needs_a_name_which_is_only_a_label(runs_dir):
    at = page(owner=None)
    assert at.button(key="tr_launch").disabled
    assert "only a label" in all_text(at)
    at.text_input(key="tr_owner_input").set_value("Dana").run()
    assert at.session_state[session.OWNER_KEY] == "Dana"
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
    mapping = next(d.value for d in at.dataframe if "value in the file" in d.value.columns)
    assert dict(zip(mapping["value in the file"], mapping["becomes"])) == {"neg": "0 = NEGATIVE",
                                                                          "pos": "1 = POSITIVE"}
    at.button(key="tr_use_upload").click().run()
    assert at.text_input(key="tr_dataset").value == str(stored[0])
    assert at.text_input(key="tr_text_column").value == "review"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training reviews"] == "16"  # 20 rows, 20 % held out for evaluation


def test_label_names_and_values_of_an_upload_are_shown_as_text(runs_dir):
    bad, good = "**bad** [x](http://evil.example)", "![p](http://evil.example/p.png)"
    rows = "".join(f"review {i},{bad if i % 2 else good}\n" for i in range(10))
    at = page()
    at.text_input(key="tr_label_names").set_value(f"{bad}, {good}").run()
    at.file_uploader(key="tr_upload").set_value(("r.csv", b"text,label\n" + rows.encode(), "text/csv")).run()
    assert not at.exception, at.exception
    mapping = next(d.value for d in at.dataframe if "value in the file" in d.value.columns)
    assert set(mapping["value in the file"]) == {bad, good}     # cells of a data grid: text as it is
    assert set(mapping["becomes"]) == {f"0 = {bad}", f"1 = {good}"}
    assert not at.table                                          # st.table would render Markdown
    for element in (*at.markdown, *at.caption):
        assert "](http" not in element.value and "**bad**" not in element.value


def test_with_sign_in_only_listed_people_launch_and_only_owners_or_admins_manage(runs_dir):
    finished = finished_run(runs_dir, owner="alice@example.org")

    at = as_visitor(signed_in("mallory@example.org"))
    assert at.button(key="tr_launch").disabled
    assert at.button(key="tr_delete").disabled and at.button(key="tr_resume").disabled
    assert any("not on this lab's list" in i.value for i in at.info)
    assert "Only the run's owner (alice@example.org) or an admin" in all_text(at)

    at = as_visitor(signed_in("alice@example.org"))
    assert not at.button(key="tr_launch").disabled and not at.button(key="tr_delete").disabled
    at = as_visitor(signed_in("boss@example.org"))
    assert not at.button(key="tr_delete").disabled
    at.button(key="tr_delete").click().run()
    at.button(key="tr_confirm_yes").click().run()
    assert not at.exception and not finished.exists()


def test_signed_out_visitor_typing_an_admins_name_gets_nothing(runs_dir):
    theirs = finished_run(runs_dir, owner="alice@example.org")
    at = as_visitor(None, owner="boss@example.org")              # as if typed into a name box
    assert not has(at, "text_input", "tr_owner_input") and has(at, "button", "tr_login")
    for key in ("tr_launch", "tr_delete", "tr_resume", "tr_cancel"):
        assert at.button(key=key).disabled, key
    text = all_text(at)
    assert "Sign in to launch runs" in text and "Sign in to manage runs" in text
    assert theirs.exists()

    # a page drawn while the admin was signed in, clicked after they signed out: the server says no
    at = as_visitor(signed_in("boss@example.org"), owner="boss@example.org")
    at.button(key="tr_delete").click().run()
    at.user = LOGGED_OUT
    at.button(key="tr_confirm_yes").click().run()
    assert not at.exception, at.exception
    assert "Sign in to manage runs" in errors_text(at)
    assert theirs.exists() and (theirs / rundir.CONFIG).is_file()


def test_an_unverified_email_is_not_an_identity(runs_dir):
    theirs = finished_run(runs_dir, owner="alice@example.org")
    at = as_visitor(signed_in("boss@example.org", verified=False))  # a display address anyone can set
    assert at.button(key="tr_delete").disabled and at.button(key="tr_launch").disabled
    assert "sub-boss may not launch runs here" in all_text(at)   # the provider's stable id, not the address
    assert theirs.exists()


def test_the_server_checks_again_when_a_stale_page_is_clicked(runs_dir):
    theirs = launching.create_run(runs_dir, preset("demo", owner="alice@example.org"))
    rundir.update_status(theirs, state="failed")
    at = as_visitor(signed_in("alice@example.org"))
    assert not at.button(key="tr_resume").disabled and not at.button(key="tr_launch").disabled
    at.user = signed_in("mallory@example.org")                  # someone else now acts in this page
    at.button(key="tr_resume").click().run()
    assert not at.exception, at.exception
    assert "Only the run's owner (alice@example.org) or an admin" in errors_text(at)
    assert reconcile.get_status(theirs)["state"] == "failed"
    at = as_visitor(signed_in("alice@example.org"))
    at.user = signed_in("mallory@example.org")
    at.button(key="tr_launch").click().run()
    assert "may not launch runs here" in errors_text(at)
    assert [p.name for p in rundir.iter_run_dirs(runs_dir)] == [theirs.name]


def test_a_refused_delete_of_someone_elses_run_leaves_it_on_disk(runs_dir):
    theirs = finished_run(runs_dir, owner="alice@example.org")
    at = as_visitor(signed_in("boss@example.org"))
    at.button(key="tr_delete").click().run()
    at.user = signed_in("mallory@example.org")
    at.button(key="tr_confirm_yes").click().run()
    assert "Only the run's owner (alice@example.org) or an admin" in errors_text(at)
    assert theirs.exists() and run_table(at)["run"].tolist() == [theirs.name]


def test_a_quota_refusal_is_shown_as_text(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_MAX_ACTIVE_RUNS_PER_USER", "1")
    waiting = launching.create_run(runs_dir, preset("demo", owner="tester"))  # queued, its launch just begun
    at = page()
    at.text_input(key="tr_model").set_value("tiny-bert").run()
    at.button(key="tr_launch").click().run()
    assert not at.exception, at.exception
    assert "LAB_MAX_ACTIVE_RUNS_PER_USER" in errors_text(at) and "limit 1" in errors_text(at)
    assert [p.name for p in rundir.iter_run_dirs(runs_dir)] == [waiting.name]


def test_multi_node_fields_are_not_offered_and_a_planted_endpoint_is_never_used(runs_dir):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
        at = page()
        for key in ("tr_num_nodes", "tr_node_rank", "tr_rdzv_endpoint"):
            assert not has(at, "number_input", key) and not has(at, "text_input", key) \
                and not has(at, "selectbox", key), key
        assert "several machines is not offered here" in all_text(at)
        # values planted in the session (not through a widget) are not taken either
        at.session_state["tr_num_nodes"] = 2
        at.session_state["tr_rdzv_endpoint"] = endpoint
        at.text_input(key="tr_model").set_value("tiny-bert")
        at.text_input(key="tr_max_train_samples").set_value("16").run()
        assert not any(endpoint in c.value or "torchrun" in c.value for c in at.code)
        at.button(key="tr_launch").click().run()
        assert not at.exception, at.exception
        (made,) = rundir.iter_run_dirs(runs_dir)
        config = launching.load_config(made)
        assert (config.num_nodes, config.rdzv_endpoint) == (1, "")
        assert endpoint not in (made / rundir.RUN).read_text()
        with pytest.raises(BlockingIOError):
            listener.accept()                                      # nobody knocked


def test_with_an_allowlist_the_endpoint_is_a_choice_among_allowed_ones(runs_dir):
    allowed = "10.0.0.5:29500"
    at = page(secrets={"lab": {"rendezvous_endpoints": [allowed]}})
    assert at.selectbox(key="tr_rdzv_endpoint").options == ["none (one machine)", allowed]
    assert has(at, "number_input", "tr_num_nodes") and has(at, "number_input", "tr_node_rank")
    at.number_input(key="tr_num_nodes").set_value(2)
    at.selectbox(key="tr_rdzv_endpoint").set_value(allowed).run()
    assert not at.exception and not at.error, errors_text(at)
    assert any(f"--rdzv_endpoint={allowed}" in c.value and "--nnodes=2" in c.value for c in at.code)


def test_read_only_mode_offers_no_launch_or_managing_controls(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_READ_ONLY", "1")
    run_dir = finished_run(runs_dir, owner="tester")
    at = page()
    assert any("read-only" in w.value for w in at.warning)
    for key in ("tr_launch", "tr_cancel", "tr_resume", "tr_delete", "tr_use_upload"):
        assert not has(at, "button", key), key
    assert at.get("file_uploader")[0].proto.disabled
    assert run_table(at)["run"].tolist() == [run_dir.name]       # every run can still be looked at
    assert {m.label for m in at.metric} >= {"Training reviews", "Optimizer steps"}

    # sign-in admins may still manage
    at = as_visitor(signed_in("boss@example.org"))
    assert has(at, "button", "tr_launch") and not at.button(key="tr_delete").disabled
    at.button(key="tr_delete").click().run()
    at.button(key="tr_confirm_yes").click().run()
    assert not run_dir.exists()


def test_a_huge_step_count_previews_at_once_and_the_bound_is_enforced(runs_dir):
    at = page()
    for key in ("tr_logging_steps", "tr_eval_steps", "tr_save_steps"):
        at.text_input(key=key).set_value("1")
    at.selectbox(key="tr_eval_strategy").set_value("steps")
    at.selectbox(key="tr_save_strategy").set_value("steps")
    at.number_input(key="tr_max_steps").set_value(MAX_STEPS).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Optimizer steps"] == f"{MAX_STEPS:,}" and metrics["Log events"] == f"{MAX_STEPS:,}"
    assert metrics["Checkpoints kept"] == "2"
    at.number_input(key="tr_max_steps").set_value(MAX_STEPS * 100).run()  # beyond the bound: not taken
    assert not at.exception and at.number_input(key="tr_max_steps").value != MAX_STEPS * 100
    assert int({m.label: m.value for m in at.metric}["Optimizer steps"].replace(",", "")) <= MAX_STEPS


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
    run_dir = finished_run(runs_dir, owner="tester")
    at = page()
    links = [(link.proto.page, link.proto.query_string) for link in at.get("page_link")]
    assert ("runs", f"run={run_dir.name}") in links


def test_distil_from_a_finished_run_fills_the_form_with_the_teachers_data(runs_dir):
    teacher = finished_run(runs_dir, model="tiny-bert", max_train_samples=40, seed=7, run_name="teacher run")
    at = page()
    at.selectbox(key="tr_distill_pick").set_value(teacher.name)
    at.button(key="tr_distill_top").click().run()
    assert not at.exception
    assert at.text_input(key="tr_teacher").value == teacher.name
    assert at.text_input(key="tr_max_train_samples").value == "40"  # same data as the teacher
    assert at.selectbox(key="tr_task").value == "distill"
    assert any("distils run" in shown(i.value) for i in at.info)

    # the distillation is launched like any run: by someone who may launch
    at = as_visitor(signed_in("mallory@example.org"))
    at.selectbox(key="tr_distill_pick").set_value(teacher.name)
    at.button(key="tr_distill_top").click().run()
    assert at.selectbox(key="tr_task").value == "distill" and at.button(key="tr_launch").disabled
    assert [p.name for p in rundir.iter_run_dirs(runs_dir)] == [teacher.name]

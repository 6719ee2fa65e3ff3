"""The shared sidebar and the Home page under AppTest (app.py's first run, as a visitor opens the app):
who the lab says you are in open mode, with sign-in, signed in or not, and in read-only mode."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.config import preset
from lib.registry import launching
from lib.store import rundir
from pages.ui import session

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "not-a-secret",
        "client_id": "lab", "client_secret": "not-a-secret",
        "server_metadata_url": "https://login.example.org/.well-known/openid-configuration"}


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LAB_READ_ONLY", raising=False)
    return path


def home(*, secrets: dict | None = None, user: dict | None = None, typed: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    if user is not None:
        at.user = user
    if typed:
        at.session_state[session.OWNER_KEY] = typed
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "BERT Sentiment Lab"
    return at


def sidebar_text(at: AppTest) -> str:
    return "\n".join(re.sub(r"\\(.)", r"\1", c.value) for c in at.sidebar.caption)


def keys(at: AppTest, kind: str) -> set[str]:
    return {w.key for w in getattr(at, kind)}


def test_open_mode_has_a_name_box_and_says_it_is_only_a_label(runs_dir):
    at = home()
    assert session.OWNER_KEY in keys(at.sidebar, "text_input")
    assert "Running open" in sidebar_text(at) and "only a label" in sidebar_text(at)
    assert "Runs directory" in sidebar_text(at)
    assert any("No runs yet" in i.value for i in at.info)


def test_with_sign_in_there_is_no_name_box_and_a_typed_name_is_nobody(runs_dir):
    at = home(secrets={"auth": AUTH, "lab": {"admins": ["boss@example.org"]}}, user={"is_logged_in": False},
              typed="boss@example.org")
    assert session.OWNER_KEY not in keys(at, "text_input")
    assert "lab_login" in keys(at.sidebar, "button") and "lab_logout" not in keys(at, "button")
    assert "boss@example.org" not in sidebar_text(at)


def test_signed_in_people_are_named_by_their_verified_email_or_provider_id(runs_dir):
    secrets = {"auth": AUTH}
    at = home(secrets=secrets, user={"is_logged_in": True, "email": "alice@example.org", "email_verified": True,
                                     "name": "Alice"})
    assert "Signed in as alice@example.org" in sidebar_text(at) and "lab_logout" in keys(at.sidebar, "button")
    at = home(secrets=secrets, user={"is_logged_in": True, "email": "boss@example.org", "email_verified": False,
                                     "name": "boss@example.org", "sub": "provider-1234"})
    assert "Signed in as provider-1234" in sidebar_text(at) and "boss@example.org" not in sidebar_text(at)


def test_read_only_mode_says_so_on_home_and_in_the_sidebar(runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_READ_ONLY", "1")
    at = home()
    assert "Read-only lab" in sidebar_text(at)
    assert any("read-only" in w.value and "Learn" in w.value for w in at.warning)


def test_home_lists_the_latest_runs_with_names_as_text(runs_dir):
    name = "![x](http://evil.example/x.png) **bold**"
    run_dir = launching.create_run(runs_dir, preset("demo", run_name=name, owner="tester"))
    rundir.update_status(run_dir, state="finished")
    at = home()
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert table["run"].tolist() == [run_dir.name] and table["label"].tolist() == [name]
    assert table["state"].tolist() == ["finished"] and table["progress"].tolist() == [1.0]

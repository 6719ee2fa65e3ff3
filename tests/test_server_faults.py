"""Server faults, for real: the Streamlit server killed and restarted mid-run, a browser tab closed,
and ten browser sessions predicting at once. Debian's chromium through Playwright (see e2e_support)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from e2e_support import (
    ROOT,
    StreamlitServer,
    assert_page_healthy,
    browser_page,
    cancel_active_runs,
    require_browser,
    wait_until_settled,
)

from lib.registry import control, reconcile
from lib.store import rundir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TIMEOUT_MS = 120_000


def _key(page, key: str):
    return page.locator(f".st-key-{key}")


def _set_text(page, key: str, value: str) -> None:
    box = _key(page, key).locator("input, textarea").first
    box.fill(value)
    box.press("Enter")
    wait_until_settled(page, 120)


def _badge(page):
    return page.locator('[data-testid="stMain"] .stMarkdownBadge').first


def test_server_restart_and_closed_tab_do_not_stop_a_run(tmp_path):
    """Launch from the Train page, close the tab, kill -9 the server: the job goes on; a new server shows it."""
    require_browser()
    from playwright.sync_api import expect
    runs_dir = tmp_path / "runs"
    first = StreamlitServer(runs_dir, tmp_path / "first.log")
    second = StreamlitServer(runs_dir, tmp_path / "second.log")
    try:
        first.start()
        with browser_page() as page:
            page.goto(first.url + "/train")
            expect(page.locator("h1").filter(has_text="Train a model")).to_be_visible(timeout=TIMEOUT_MS)
            wait_until_settled(page, 120)
            _set_text(page, "lab_owner", "restart tester")
            # Long enough to outlive the server: the tiny BERT over many small steps.
            for key, value in (("tr_model", "tiny-bert"), ("tr_max_train_samples", "200"),
                               ("tr_num_train_epochs", "40"), ("tr_per_device_train_batch_size", "4"),
                               ("tr_logging_steps", "5")):
                _set_text(page, key, value)
            _key(page, "tr_launch").get_by_role("button", name="Launch").click()
            expect(page.get_by_text("Launched run")).to_be_visible(timeout=TIMEOUT_MS)
        # The tab is closed now (the browser context ended).
        run_dir = next(rundir.iter_run_dirs(runs_dir))
        end = time.monotonic() + 120
        while rundir.read_status(run_dir).get("state") != "running" or not rundir.read_status(run_dir).get("step"):
            assert time.monotonic() < end, rundir.read_status(run_dir)
            time.sleep(0.5)
        job_pids = control.process_group_alive(run_dir)
        assert job_pids
        # kill -9 the whole server process group: the job lives in a session of its own.
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=30)
        step_then = rundir.read_status(run_dir)["step"]
        end = time.monotonic() + 60
        while rundir.read_status(run_dir).get("step", 0) <= step_then:
            assert time.monotonic() < end, "the job stopped making progress after the server died"
            time.sleep(0.5)
        assert all(psutil.pid_exists(p) for p in job_pids)
        assert reconcile.get_status(run_dir)["state"] == "running"
        # A restarted server shows the run running, from the files alone.
        second.start()
        with browser_page() as page:
            page.goto(f"{second.url}/runs?run={run_dir.name}")
            expect(_badge(page)).to_have_text(re.compile(r"running$"), timeout=TIMEOUT_MS)
            wait_until_settled(page, 120)
            assert_page_healthy(page, "Runs page on the restarted server")
        assert not second.app_errors(), second.app_errors()
    finally:
        first.stop()
        second.stop()
        cancel_active_runs(runs_dir)


def test_ten_sessions_predict_at_once(tmp_path):
    """Ten browser sessions classify at the same moment: no errors, and the model is loaded once."""
    require_browser()
    from playwright.sync_api import expect
    runs_dir = tmp_path / "runs"
    made = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "demo", "--runs-dir", str(runs_dir),
                           "--set", "model=tiny-bert", "--set", "max_train_samples=32", "--set",
                           "max_eval_samples=16", "--set", "num_train_epochs=1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert made.returncode == 0, made.stderr[-2000:]
    run_id = Path(made.stdout.strip().splitlines()[-1]).name
    server = StreamlitServer(runs_dir, tmp_path / "server.log")
    try:
        server.start()
        with browser_page() as first:
            context = first.context
            pages = [first] + [context.new_page() for _ in range(9)]
            for page in pages:  # each page is its own Streamlit session
                page.goto(f"{server.url}/runs?run={run_id}")
                tab = page.get_by_role("tab", name="Try it")
                expect(tab).to_be_visible(timeout=TIMEOUT_MS)
                wait_until_settled(page, 120)
                tab.click()
                expect(_key(page, "try_text").locator("textarea")).to_be_visible(timeout=TIMEOUT_MS)
                wait_until_settled(page, 120)
                _key(page, "try_text").locator("textarea").fill(f"A fine film, review number {id(page)}.")
                _key(page, "try_explain").locator("input").uncheck(force=True)
            for page in pages:  # click all ten before waiting for any answer
                page.get_by_role("button", name="Classify").click()
            for i, page in enumerate(pages):
                value = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").locator(
                    '[data-testid="stMetricValue"]')
                expect(value).to_have_text(re.compile(r"^(NEGATIVE|POSITIVE)$"), timeout=TIMEOUT_MS)
                wait_until_settled(page, 120)
                assert_page_healthy(page, f"session {i}")
        log = server.log_text()
        loads = [line for line in log.splitlines() if line.startswith("[lab] loaded model for predictions")]
        assert len(loads) == 1, loads
        assert not server.app_errors(), server.app_errors()
    finally:
        server.stop()

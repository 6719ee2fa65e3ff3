"""The whole app in a real browser: Debian's chromium, driven by Playwright, against ``streamlit run app.py``.

What it proves, in the order a person would do it:

1. every page (Home, Learn, Train, Runs) opens and shows no exception;
2. on Train, the demo preset with a small subset (32 training and 16 evaluation reviews, 1 epoch) is
   launched through the form;
3. the Runs page follows that run live: its progress changes and it reaches ``finished`` with no
   reload of the browser page (its ``run_every`` fragment does the updating);
4. in the Runs page's "Try it" tab a typed review gets a label and its probabilities.

It waits on the page's own state (Streamlit's script-run state, element visibility), never on fixed
sleeps, and saves a screenshot of each page under docs/screenshots/.

Skips on a machine without chromium/Playwright, with a hint how to enable it; with
LAB_REQUIRE_BROWSER=1 (CI) a missing browser is a failure instead.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_support import (
    ROOT,
    StreamlitServer,
    assert_page_healthy,
    browser_page,
    cancel_active_runs,
    full_page_screenshot,
    require_browser,
    wait_until_settled,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = ROOT / "docs" / "screenshots"
PAGES = [  # (url path, a heading the page shows, screenshot name or None)
    ("", "BERT Sentiment Lab", None),   # Home is the default page: its address is the root
    ("learn", "Learn", "learn.png"),
    ("train", "Train a model", None),
    ("runs", "Runs", None),
]   # Home, Train and Runs are shot at the end, with the finished run in them
REVIEW = "A wonderful, moving film with brilliant acting. I loved every minute of it."
LABELS = ("NEGATIVE", "POSITIVE")
RUN_TIMEOUT_S = 150          # the job itself needs ~20-60 s on 2 busy CPU cores
PAGE_TIMEOUT_S = 120         # the first run of a page loads tokenizers/torch


def _heading(page, text: str):
    return page.locator("h1").filter(has_text=text)


def _key(page, key: str):
    """The element container of the widget with this ``key=`` (Streamlit adds the class st-key-<key>)."""
    return page.locator(f".st-key-{key}")


def _set_text(page, key: str, value: str) -> None:
    box = _key(page, key).locator("input, textarea").first
    box.fill(value)
    box.press("Enter" if box.evaluate("e => e.tagName") == "INPUT" else "Tab")


def _changed(page, locator, text) -> None:
    """Wait until an edit shows its effect, then until the rerun that drew it has finished."""
    from playwright.sync_api import expect
    expect(locator).to_have_text(text, timeout=PAGE_TIMEOUT_S * 1000)
    wait_until_settled(page, PAGE_TIMEOUT_S)


def _metric_value(page, label: str):
    return page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    ).locator('[data-testid="stMetricValue"]')


@contextmanager
def _on_failure(page, tmp_path):
    """Keep a screenshot of the page as it was when something went wrong (path printed)."""
    try:
        yield
    except Exception:
        shot = tmp_path / "failure.png"
        (tmp_path / "failure.html").write_text(page.content())
        try:
            full_page_screenshot(page, shot)
            print(f"screenshot at failure: {shot}")
        except Exception as exc:  # noqa: BLE001
            print(f"no failure screenshot: {exc}")
        raise


def _log_tail(run_dir: Path, n: int = 4000) -> str:
    try:
        return (run_dir / "stdout.log").read_text(errors="replace")[-n:]
    except OSError:
        return "(no stdout.log)"


def _open_page(page, base_url: str, path: str, heading: str) -> None:
    page.goto(f"{base_url}/{path}")
    from playwright.sync_api import expect
    expect(_heading(page, heading)).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
    wait_until_settled(page, PAGE_TIMEOUT_S)
    assert_page_healthy(page, f"page /{path}")


@pytest.fixture()
def server(tmp_path):
    require_browser()
    # a short path: the sidebar shows it, and it ends up in the screenshots
    runs_dir = Path(tempfile.mkdtemp(prefix="lab-runs-"))
    srv = StreamlitServer(runs_dir, tmp_path / "streamlit.log")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        cancel_active_runs(runs_dir)
        shutil.rmtree(runs_dir, ignore_errors=True)


def test_whole_flow_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import expect

    base = server.url
    shots = tmp_path / "screenshots"
    try:
        with browser_page() as page, _on_failure(page, tmp_path):
            # Open the app at its root first (what a person does), then every page by its URL.
            page.goto(base + "/")
            expect(_heading(page, "BERT Sentiment Lab")).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
            wait_until_settled(page, PAGE_TIMEOUT_S)
            nav = page.locator('[data-testid="stSidebarNav"]')
            for title in ("Home", "Learn", "Train", "Runs"):
                expect(nav.get_by_role("link", name=re.compile(title))).to_be_visible()
            for path, heading, shot in PAGES:
                _open_page(page, base, path, heading)
                expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("Runs directory")
                if shot:
                    full_page_screenshot(page, shots / shot)
            expect(page.get_by_text("No runs yet")).to_be_visible()

            # --- Train: the demo preset on a small subset -------------------------------------------
            _open_page(page, base, "train", "Train a model")
            # One change at a time, each followed by what it changes on the page (as a person would).
            name_warning = page.get_by_text("Type your name before launching")
            expect(name_warning).to_be_visible()
            _set_text(page, "lab_owner", "e2e tester")            # the sidebar's "Your name"
            expect(name_warning).to_have_count(0)
            wait_until_settled(page, PAGE_TIMEOUT_S)
            _set_text(page, "tr_max_train_samples", "32")
            _changed(page, _metric_value(page, "Training reviews"), "32")
            _set_text(page, "tr_num_train_epochs", "1")
            _changed(page, _metric_value(page, "Optimizer steps"), "4")      # 32 reviews / 8 per batch × 1 epoch
            _set_text(page, "tr_per_device_train_batch_size", "16")
            _changed(page, _metric_value(page, "Optimizer steps"), "2")      # 32 reviews / 16 per batch × 1 epoch
            _set_text(page, "tr_per_device_train_batch_size", "8")
            _changed(page, _metric_value(page, "Optimizer steps"), "4")
            _set_text(page, "tr_logging_steps", "1")
            _changed(page, _metric_value(page, "Log events"), "4")
            _set_text(page, "tr_max_eval_samples", "16")                # nothing on the page shows it: config.json does
            wait_until_settled(page)
            launch = _key(page, "tr_launch").get_by_role("button", name="Launch")   # (a hidden twin exists)
            expect(launch).to_be_enabled()
            expect(page.locator(".st-key-lab_owner input")).to_have_value("e2e tester")
            wait_until_settled(page)
            assert_page_healthy(page, "Train page with the edited form")
            command = page.locator('[data-testid="stCode"]').filter(has_text="lib.train")
            expect(command).to_be_visible()
            launch.click()
            expect(page.get_by_text("Launched run")).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
            wait_until_settled(page)
            assert_page_healthy(page, "Train page after Launch")
            run_ids = [p.name for p in server.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and (p / "config.json").is_file()]
            assert len(run_ids) == 1, f"expected one run directory, found {run_ids}"
            run_id = run_ids[0]
            config = (server.runs_dir / run_id / "config.json").read_text()
            for fragment in ('"max_train_samples": 32', '"max_eval_samples": 16', '"num_train_epochs": 1',
                             '"model": "bundled-minilm"', '"dataset": "demo"', '"owner": "e2e tester"'):
                assert fragment in config, f"config.json lacks {fragment}:\n{config}"
            expect(page.locator(".st-key-tr_selected").get_by_role("combobox")).to_have_value(re.compile(run_id))

            # --- Runs: live progress without a reload ------------------------------------------------
            # From here on the browser page must not reload: a marker on window survives only if it doesn't
            # (Streamlit switches pages inside the same document). A small in-page recorder notes every
            # progress text the page shows.
            page.evaluate("""() => {
              window.__labNoReload = true;
              window.__labProgress = [];
              const note = () => {
                const bar = document.querySelector('[data-testid="stProgress"]');
                const text = bar ? bar.innerText.trim() : '';
                const seen = window.__labProgress;
                if (text && seen[seen.length - 1] !== text) seen.push(text);
              };
              new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
            }""")
            page.get_by_role("link", name=re.compile("Open in Runs")).click()
            expect(_heading(page, "Runs")).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
            expect(page.locator(".st-key-runs_pick").get_by_role("combobox")).to_have_value(re.compile(run_id))
            progress = page.locator('[data-testid="stProgress"]').first
            expect(progress).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
            wait_until_settled(page, PAGE_TIMEOUT_S)
            assert_page_healthy(page, "Runs page while the run is live")
            badge = page.locator('[data-testid="stMain"] .stMarkdownBadge').first   # the run's state
            expect(badge).to_have_text(re.compile(r"\b(queued|running|finished|failed|cancelled)$"))
            first_state = badge.inner_text().split()[-1]
            assert first_state in ("queued", "running"), (
                f"the run was already {first_state!r} when the Runs page opened: it cannot show live progress")
            expect(badge).to_have_text(re.compile(r"\b(finished|failed|cancelled)$"), timeout=RUN_TIMEOUT_S * 1000)
            wait_until_settled(page, PAGE_TIMEOUT_S)
            assert badge.inner_text().split()[-1] == "finished", (
                f"the run ended {badge.inner_text()!r}; its log:\n" + _log_tail(server.runs_dir / run_id))
            wait_until_settled(page, PAGE_TIMEOUT_S)
            assert page.evaluate("() => window.__labNoReload === true"), "the browser page reloaded"
            seen = page.evaluate("() => window.__labProgress")
            print("progress texts seen on the Runs page:", seen)
            assert len(seen) >= 2, f"the progress never changed on screen: {seen}"
            expect(progress).to_contain_text("step 4 / 4")
            expect(_metric_value(page, "Step")).to_have_text("4 / 4")
            expect(_metric_value(page, "Accuracy")).to_have_text(re.compile(r"^\d\.\d{4}"))
            expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
            assert_page_healthy(page, "Runs page after the run finished")
            status = (server.runs_dir / run_id / "status.json").read_text()
            assert '"state": "finished"' in status, status
            full_page_screenshot(page, shots / "runs.png")

            # --- Try it: a typed review gets a label with probabilities -----------------------------
            page.get_by_role("tab", name="Try it").click()
            review = _key(page, "try_text").locator("textarea")
            expect(review).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
            wait_until_settled(page, PAGE_TIMEOUT_S)
            review.fill(REVIEW)
            page.get_by_role("button", name="Classify").click()
            prediction = _metric_value(page, "Prediction")
            expect(prediction).to_have_text(re.compile(rf"^({'|'.join(LABELS)})$"), timeout=PAGE_TIMEOUT_S * 1000)
            expect(_metric_value(page, "Confidence")).to_have_text(re.compile(r"^\d{1,3}\.\d%$"))
            wait_until_settled(page, PAGE_TIMEOUT_S)
            assert_page_healthy(page, "Try it after Classify")
            _check_probabilities(page, prediction.inner_text().strip())
            assert page.evaluate("() => window.__labNoReload === true"), "the browser page reloaded"
            full_page_screenshot(page, shots / "tryout.png")

            # --- Home and Train again, now with the finished run in their tables --------------------
            _open_page(page, base, "", "BERT Sentiment Lab")
            latest_runs = page.locator('[data-testid="stDataFrame"] td', has_text=run_id)
            expect(latest_runs.first).to_be_attached()
            full_page_screenshot(page, shots / "home.png")
            _open_page(page, base, "train", "Train a model")
            expect(page.locator(".st-key-tr_selected").get_by_role("combobox")).to_have_value(re.compile(run_id))
            _set_text(page, "lab_owner", "e2e tester")
            expect(page.get_by_text("Type your name before launching")).to_have_count(0)
            expect(_key(page, "tr_launch").get_by_role("button", name="Launch")).to_be_enabled()
            wait_until_settled(page, PAGE_TIMEOUT_S)
            full_page_screenshot(page, shots / "train.png")
        errors = server.app_errors()
        assert not errors, "the app raised while the test ran (server log):\n" + "\n---\n".join(errors)
    except Exception:
        print("---- streamlit log (tail) ----\n" + server.log_tail())
        raise
    # The shots are always taken (and kept in the test's tmp dir); LAB_UPDATE_SCREENSHOTS=1 refreshes the
    # committed set in docs/screenshots/ that the README shows.
    assert {p.name for p in shots.glob("*.png")} == {"home.png", "learn.png", "train.png", "runs.png", "tryout.png"}
    if os.environ.get("LAB_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for shot in sorted(shots.glob("*.png")):
            shutil.copyfile(shot, SCREENSHOTS / shot.name)


def _grid_rows(page, grid) -> list[list[str]]:
    """The cells of an st.dataframe, read from the accessible table the data grid keeps for screen readers."""
    return grid.locator('tbody tr[role="row"]').evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(td => td.innerText.trim()))")


def _check_probabilities(page, predicted: str) -> None:
    """The tryout's probability table: one row per label, each in [0, 1], summing to 1, the predicted label highest."""
    from playwright.sync_api import expect
    grid = page.locator('[data-testid="stDataFrame"]').filter(
        has=page.locator('th[role="columnheader"]', has_text=re.compile(r"^\s*probability\s*$")))
    expect(grid).to_have_count(1)
    expect(grid.locator('tbody tr[role="row"]')).to_have_count(len(LABELS))
    rows = _grid_rows(page, grid)
    probs = {label: float(value) for label, value in rows}
    assert set(probs) == set(LABELS), rows
    assert all(0.0 <= p <= 1.0 for p in probs.values()), rows
    assert abs(sum(probs.values()) - 1.0) < 1e-3, rows
    assert max(probs, key=probs.get) == predicted, (predicted, rows)
    confidence = float(_metric_value(page, "Confidence").inner_text().strip().rstrip("%")) / 100
    assert abs(confidence - probs[predicted]) < 0.0015, (confidence, rows)


def test_deep_link_on_a_fresh_server_opens_the_app(server):
    """A bookmark (or a tab reconnecting after a server restart) that opens /runs first gets the whole app.

    Streamlit 1.67 treats a folder named pages/ next to app.py as a legacy multipage app until app.py has
    called st.navigation once, so without pages/ui/session.py's guard this first view would run pages/runs.py
    alone: no sidebar of app.py, and 'app' and 'ui' listed as pages."""
    from playwright.sync_api import expect
    with browser_page() as page:
        page.goto(server.url + "/runs")               # the server's first page view
        expect(_heading(page, "Runs")).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
        wait_until_settled(page, PAGE_TIMEOUT_S)
        assert_page_healthy(page, "/runs opened first")
        links = [t.split("\n")[-1].strip() for t in
                 page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
        assert links == ["Home", "Learn", "Train", "Runs"], links
        expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("Runs directory", timeout=1)

"""Helpers for the real-browser end-to-end test (tests/test_e2e.py).

They start the app with ``streamlit run`` on a free localhost port, drive Debian's chromium through
Playwright (never a downloaded browser), and wait on the page's own state instead of sleeping:

* ``[data-testid="stApp"]`` carries ``data-test-connection-state`` (``CONNECTED`` once the websocket
  is up) and ``data-test-script-state`` (``initial`` before the first run, then ``running`` /
  ``notRunning`` / ``rerunRequested`` / ...): Streamlit's frontend sets both for exactly this purpose.
* every element container carries ``data-stale="true"`` while a rerun has not redrawn it yet;
* a widget whose code the browser is still loading is drawn as ``[data-testid="stSkeleton"]``.

A page is "settled" when it is connected, no script run is in progress, nothing is stale and no
skeleton is left. Pages
with a ``run_every`` fragment rerun it every few seconds; ``wait_until_settled`` simply catches a
moment between two fragment runs.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lib.registry import control, reconcile

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ENABLE_HINT = ("To run it: `apt-get install chromium` (Debian's browser at /usr/bin/chromium, or set "
               "LAB_CHROMIUM to another chromium binary) and `pip install playwright`. Never run "
               "`playwright install`: the test drives the system browser.")

SETTLED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stElementContainer"][data-stale="true"]')) return false;
  // widgets whose code is still loading show a grey skeleton in their place
  return document.querySelector('[data-testid="stSkeleton"]') === null;
}"""


def require_browser() -> None:
    """Skip (or, with LAB_REQUIRE_BROWSER=1 as in CI, fail) when chromium or Playwright is missing."""
    problems = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        problems.append(f"no chromium at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package playwright is not installed")
    if not problems:
        return
    message = f"Browser end-to-end test not run: {'; '.join(problems)}. {ENABLE_HINT}"
    if os.environ.get("LAB_REQUIRE_BROWSER", "").strip() == "1":
        pytest.fail(message + " (LAB_REQUIRE_BROWSER=1: in CI this test may not skip.)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """``streamlit run app.py`` in its own process group, on a free localhost port."""

    def __init__(self, runs_dir: Path, log_path: Path, *, extra_env: dict | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LAB_RUNS_DIR": str(self.runs_dir), "HF_HUB_OFFLINE": "1",
                    "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        argv = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                "--server.port", str(self.port), "--server.address", "127.0.0.1",
                "--browser.gatherUsageStats", "false",
                # no "File change" banner or reruns when someone edits a source file during the test
                "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {self.proc.returncode} before it was healthy:\n"
                                   + self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit was not healthy after {timeout_s:.0f} s:\n" + self.log_tail())
            time.sleep(0.25)  # polling the health endpoint, not waiting on the page

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def app_errors(self) -> list[str]:
        """Uncaught exceptions the app's scripts raised (Streamlit logs each with its traceback), including
        ones in a fragment run that the browser showed only between two looks."""
        text = self.log_text()
        marks = ("Uncaught app execution", "Traceback (most recent call last)")
        starts = sorted({i for m in marks for i in _find_all(text, m)})
        return [text[i:i + 3000] for i in starts]

    def log_tail(self, n_bytes: int = 12000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no server log)"
        return data[-n_bytes:].decode("utf-8", "replace")

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if getattr(self, "_log", None):
            self._log.close()


def _find_all(text: str, needle: str) -> list[int]:
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + 1)
    return found


def cancel_active_runs(runs_dir: Path) -> list[str]:
    """Stop every queued or running job in ``runs_dir`` (jobs are detached: killing the server leaves them)."""
    stopped = []
    try:
        rows = reconcile.list_runs(runs_dir)
    except Exception:  # noqa: BLE001 - cleanup must not hide the test's own failure
        return stopped
    for row in rows:
        if row.active:
            try:
                control.cancel(row.path, grace_s=5.0, by="e2e-test cleanup")
                stopped.append(row.run_id)
            except Exception:  # noqa: BLE001
                pass
    return stopped


@contextmanager
def browser_page(viewport=(1400, 900)) -> Iterator:
    """A fresh chromium profile (temporary user-data dir) and one page."""
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=30_000)  # a busy 2-core machine can take seconds per rerun
    with tempfile.TemporaryDirectory(prefix="lab-e2e-profile-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1,
            locale="en-US", timezone_id="UTC", reduced_motion="reduce")
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


def wait_until_settled(page, timeout_s: float = 60.0) -> None:
    """Wait until the app is connected, no script run is in progress and no element is stale."""
    page.wait_for_function(SETTLED_JS, timeout=timeout_s * 1000, polling=100)


def exception_texts(page) -> list[str]:
    return [t.strip() for t in page.locator('[data-testid="stException"]').all_inner_texts()]


def assert_page_healthy(page, where: str) -> None:
    """No exception box on the page, and no dialog such as Streamlit's "Page not found"."""
    texts = exception_texts(page)
    assert not texts, f"{where}: the page shows {len(texts)} exception(s):\n" + "\n---\n".join(texts)
    dialogs = [t.strip() for t in page.get_by_role("dialog").all_inner_texts()]
    assert not dialogs, f"{where}: the page shows a dialog:\n" + "\n---\n".join(dialogs)


def full_page_screenshot(page, path: Path, max_height: int = 8000) -> None:
    """Screenshot the whole page. Streamlit scrolls inside its main container, not the document, so
    the viewport is stretched to the content's height for the shot and put back afterwards."""
    size = page.viewport_size or {"width": 1400, "height": 900}
    height = page.evaluate("""() => {
      const parts = ['[data-testid="stMain"]', '[data-testid="stMainBlockContainer"]',
                     '[data-testid="stSidebarContent"]', '[data-testid="stAppViewContainer"]'];
      let h = document.documentElement.scrollHeight;
      for (const sel of parts) { const el = document.querySelector(sel); if (el) h = Math.max(h, el.scrollHeight); }
      return h;
    }""")
    height = int(min(max(height, size["height"]), max_height))
    path.parent.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": size["width"], "height": height})
    try:
        # a resize re-lays out charts and data grids: let the frontend finish before the shot
        page.wait_for_function(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
        wait_until_settled(page)
        page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    finally:
        page.set_viewport_size(size)

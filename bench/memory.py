"""Memory: peak RSS of the training job, and the app server's RSS over repeated use.

    python -m bench.memory                        # demo preset job, then the app: 3 cycles
    python -m bench.memory --cycles 5 --predictions 20 --switches 5
    python -m bench.memory --skip-app             # the job only

1. The job: ``python -m lib.train --preset demo`` (``--job-set k=v`` to change it) in a temporary
   runs directory, its resident memory (the process and all its children) sampled every 0.1 s with
   psutil; the peak is reported.
2. The app: ``streamlit run app.py`` with ``LAB_RUNS_DIR`` = that runs directory (so the run just
   trained is there to try), driven by Playwright through Debian's chromium (never a downloaded
   browser; a fresh profile). One cycle = ``--predictions`` predictions on the Runs page's "Try it"
   tab (different reviews, the default "explain" on) and ``--switches`` page switches through the
   sidebar; the server's RSS is sampled after each cycle. Repeating the cycle shows whether memory
   keeps growing (a leak) or levels off (caches filled once).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench import common
from lib.util.contention import Contention

CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SETTLED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  return document.querySelector('[data-testid="stElementContainer"][data-stale="true"]') === null;
}"""
STARTED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.getAttribute('data-test-script-state') !== 'notRunning';
}"""
PAGES_CYCLE = ["Learn", "Train", "Home", "Learn", "Runs"]
REVIEWS = [
    "A wonderful, moving film with brilliant acting. I loved every minute of it.",
    "Dull, predictable and far too long. I nearly fell asleep twice.",
    "The photography is gorgeous but the script never finds its feet.",
    "One of the funniest comedies in years; the whole cast is on fire.",
    "I wanted to like it, yet the ending ruined everything that came before.",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--job-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the demo preset for the job (repeatable)")
    p.add_argument("--skip-job", action="store_true", help="measure the app only (on an empty runs directory "
                   "unless --runs-dir has runs)")
    p.add_argument("--runs-dir", default=None, help="use this runs directory instead of a temporary one")
    p.add_argument("--skip-app", action="store_true")
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--predictions", type=int, default=20)
    p.add_argument("--switches", type=int, default=5)
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed for the job")
    common.add_output_args(p)
    return p


# ---------------------------------------------------------------------------------------------------
# RSS sampling
# ---------------------------------------------------------------------------------------------------
def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of the process and all its children, RSS of the process alone) in bytes."""
    import psutil
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total, own = 0, 0
    for p in procs:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        if p.pid == pid:
            own = rss
    return total, own


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_total = self.peak_own = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total, own = tree_rss(self.pid)
            self.peak_total, self.peak_own = max(self.peak_total, total), max(self.peak_own, own)
            self.samples += 1
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def mib(b: int | float) -> float:
    return round(b / 2**20, 1)


# ---------------------------------------------------------------------------------------------------
# 1. the job
# ---------------------------------------------------------------------------------------------------
def measure_job(runs_dir: Path, overrides: list[str], timeout: float, log_path: Path) -> dict:
    argv = [sys.executable, "-m", "lib.train", "--preset", "demo", "--runs-dir", str(runs_dir)]
    for item in overrides:
        argv += ["--set", item]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    common.log(f"[memory] job: {' '.join(argv[1:])}")
    with open(log_path, "w", encoding="utf-8") as fh, Contention() as cont:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=common.ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
        sampler = Sampler(proc.pid)
        sampler.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        finally:
            sampler.stop()
        wall = time.perf_counter() - t0
    lines = [x for x in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    if code != 0:
        raise SystemExit(f"error: the demo job failed (exit {code}); log {log_path}:\n" + "\n".join(lines[-15:]))
    return {"command": " ".join(["python", *argv[1:]]), "exit_code": code, "wall_s": round(wall, 1),
            "peak_rss_mib": mib(sampler.peak_total), "peak_rss_main_process_mib": mib(sampler.peak_own),
            "samples": sampler.samples, "run_dir": lines[-1].strip(), "contention": cont.as_dict()}


# ---------------------------------------------------------------------------------------------------
# 2. the app
# ---------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(runs_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str, object]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LAB_RUNS_DIR": str(runs_dir), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
            str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_server
    proc = subprocess.Popen(argv, cwd=common.ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}: see {log_path}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url, log
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"streamlit was not healthy after 120 s: see {log_path}")
        time.sleep(0.25)


def stop_server(proc: subprocess.Popen, log) -> None:
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
    log.close()


def settle(page, timeout_s: float = 180) -> None:
    page.wait_for_function(SETTLED_JS, timeout=timeout_s * 1000, polling=100)


def switch_to(page, title: str) -> None:
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_role("link", name=re.compile(rf"\b{title}\b")).first.click()  # Home lives at "/", not "/home"
    page.locator("h1").first.wait_for(timeout=180_000)
    settle(page)


def open_try_it(page) -> None:
    box = page.locator(".st-key-try_text textarea")
    if not box.is_visible():
        page.get_by_role("tab", name="Try it").click()
        box.wait_for(timeout=180_000)
    settle(page)


def predict(page, text: str) -> str:
    box = page.locator(".st-key-try_text textarea")
    box.fill(text)
    page.get_by_role("button", name="Classify").click()
    try:  # the click's rerun starts (script state leaves notRunning), then we wait for it to finish
        page.wait_for_function(STARTED_JS, timeout=5_000, polling="raf")
    except Exception:  # noqa: BLE001 - a very fast rerun may finish between two polls
        pass
    settle(page)
    value = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text="Prediction")).locator(
        '[data-testid="stMetricValue"]')
    value.first.wait_for(timeout=180_000)
    return value.first.inner_text().strip()


def measure_app(runs_dir: Path, run_id: str | None, args, log_path: Path) -> dict:
    from playwright.sync_api import sync_playwright
    proc, url, log = start_server(runs_dir, log_path)
    out: dict = {"cycles": [], "predictions_per_cycle": args.predictions, "switches_per_cycle": args.switches}
    try:
        out["rss_after_start_mib"] = mib(tree_rss(proc.pid)[0])
        with tempfile.TemporaryDirectory(prefix="bench-mem-profile-") as profile, sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(user_data_dir=profile, executable_path=CHROMIUM,
                                                        headless=True, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1400, "height": 900})
            try:
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.set_default_timeout(180_000)
                page.goto(f"{url}/runs" + (f"?run={run_id}" if run_id else ""))
                page.locator("h1").first.wait_for()
                settle(page)
                out["rss_after_first_page_mib"] = mib(tree_rss(proc.pid)[0])
                can_predict = run_id is not None
                for cycle in range(1, max(1, args.cycles) + 1):
                    t0 = time.perf_counter()
                    labels = []
                    if can_predict:
                        open_try_it(page)
                        for i in range(args.predictions):
                            labels.append(predict(page, f"{REVIEWS[i % len(REVIEWS)]} (review {cycle}.{i})"))
                    for k in range(args.switches):
                        switch_to(page, PAGES_CYCLE[k % len(PAGES_CYCLE)] if k < args.switches - 1 else "Runs")
                    total, own = tree_rss(proc.pid)
                    out["cycles"].append({"cycle": cycle, "rss_mib": mib(total), "server_process_rss_mib": mib(own),
                                          "seconds": round(time.perf_counter() - t0, 1),
                                          "predictions": len(labels), "labels_seen": sorted(set(labels))})
                    common.log(f"[memory] app cycle {cycle}: server RSS {mib(total)} MiB "
                               f"({len(labels)} predictions, {args.switches} page switches, "
                               f"{time.perf_counter() - t0:.0f} s)")
            finally:
                ctx.close()
    finally:
        stop_server(proc, log)
    rss = [c["rss_mib"] for c in out["cycles"]]
    out["growth_first_to_last_mib"] = round(rss[-1] - rss[0], 1) if rss else None
    out["growth_per_cycle_after_first_mib"] = (round((rss[-1] - rss[0]) / (len(rss) - 1), 1)
                                               if len(rss) > 1 else None)
    return out


def main(argv: list[str] | None = None) -> int:
    cli = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(cli)
    common.quiet()
    env = common.environment()
    summary: dict = {"benchmark": "memory", "command": common.command_line("bench.memory", cli), "environment": env}
    tmp_root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    runs_dir = Path(args.runs_dir).resolve() if args.runs_dir else tmp_root / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_id = None
    try:
        if not args.skip_job:
            job = measure_job(runs_dir, args.job_set, args.timeout, tmp_root / "job.log")
            summary["job"] = job
            run_id = Path(job["run_dir"]).name
            common.log(f"[memory] job peak RSS {job['peak_rss_mib']} MiB (main process {job['peak_rss_main_process_mib']} "
                       f"MiB), {job['wall_s']:.0f} s")
        else:
            from lib.store import rundir
            done = [p for p in rundir.iter_run_dirs(runs_dir) if (p / rundir.MODEL).is_dir()]
            run_id = sorted(done)[-1].name if done else None
        if not args.skip_app:
            try:
                import playwright.sync_api  # noqa: F401
                ok = Path(CHROMIUM).is_file()
            except ImportError:
                ok = False
            if not ok:
                summary["app"] = {"skipped": f"needs Playwright and chromium at {CHROMIUM}"}
            else:
                summary["app"] = measure_app(runs_dir, run_id, args, tmp_root / "streamlit.log")
    finally:
        import shutil
        if not args.runs_dir:
            shutil.rmtree(tmp_root, ignore_errors=True)
    common.save_json(args.out_dir, args.md_section or "memory", summary)
    common.update_markdown(args.md, args.md_section or "memory", markdown(summary),
                           variant=args.md_section)
    compact = {}
    if "job" in summary:
        compact["job_peak_rss_mib"] = summary["job"]["peak_rss_mib"]
    app = summary.get("app", {})
    if app.get("cycles"):
        compact["app_rss_mib_per_cycle"] = [c["rss_mib"] for c in app["cycles"]]
        compact["app_growth_first_to_last_mib"] = app["growth_first_to_last_mib"]
    elif app:
        compact["app"] = app
    common.emit(compact)
    return 0


def markdown(s: dict) -> str:
    env = s["environment"]
    lines = ["## 6. Memory: the training job and the app server", "", f"Command: `{s['command']}`  ",
             f"Machine: {common.machine_line(env)}"]
    others = []
    if "job" in s:
        j = s["job"]
        lines += ["", f"**Job peak RSS: {j['peak_rss_mib']} MiB** (process and children, sampled every 0.1 s; the "
                      f"main process alone {j['peak_rss_main_process_mib']} MiB) for `{j['command']}` "
                      f"({j['wall_s']:.0f} s)."]
        others.append(j["contention"]["other_cores"])
    app = s.get("app")
    if app and app.get("cycles"):
        rows = [["after start", app["rss_after_start_mib"], "", ""],
                ["after the first page load (Runs)", app["rss_after_first_page_mib"], "", ""]]
        rows += [[f"after cycle {c['cycle']}", c["rss_mib"], c["predictions"], c["seconds"]] for c in app["cycles"]]
        lines += ["", f"App server (`streamlit run app.py`, LAB_RUNS_DIR = the job's runs directory), driven by "
                      f"Playwright + Debian chromium. One cycle = {app['predictions_per_cycle']} predictions on Runs → "
                      f"Try it (explanations on) + {app['switches_per_cycle']} page switches.", "",
                  common.md_table(["server RSS", "MiB", "predictions", "cycle (s)"], rows), "",
                  f"Growth from the first to the last cycle: {app['growth_first_to_last_mib']} MiB "
                  f"({app['growth_per_cycle_after_first_mib']} MiB per cycle)."]
    elif app:
        lines += ["", f"App server: not measured ({app.get('skipped')})."]
    note = common.shared_note(others, env.get("cpu_count"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""AppTest of pages/runs.py: a finished tiny run (every tab), a failed run (its error first), a running
run (ETA), the quick tryout (single text, explanation, bad input, batch CSV), a deleted checkpoint,
and planted pickles that must never run."""
from __future__ import annotations

import html
import json
import os
import pickle
import re
import shutil
import socket
import time
from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]

from lib.store import rundir  # noqa: E402

PAGE = str(ROOT / "pages" / "runs.py")
TABS = ["Training", "Compare", "Checkpoints", "Try it", "Error analysis"]
FAILED_ID = "20200101-000000-aaaaaa"
RUNNING_ID = "20200102-000000-bbbbbb"
FAIL_MESSAGE = "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
FAIL_HINT = "try per_device_train_batch_size=4 with gradient_accumulation_steps=2"


def write_lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_failed_run(runs: Path) -> Path:
    run = runs / FAILED_ID
    run.mkdir()
    rundir.atomic_write_json(run / rundir.CONFIG, {"run_name": "doomed <b>run</b>", "owner": "bob",
                                                   "model": "bundled-minilm", "dataset": "demo"})
    rundir.atomic_write_json(run / rundir.STATUS, {
        "state": "failed", "step": 3, "total_steps": 30, "epoch": 0.1, "exit_code": 1, "finished_at": 1.0,
        "error": {"type": "OutOfMemoryError", "message": FAIL_MESSAGE, "hint": FAIL_HINT}})
    write_lines(run / rundir.METRICS, [{"event": "log", "step": s, "epoch": s / 30, "elapsed_s": s, "loss": 0.7,
                                        "learning_rate": 1e-4, "grad_norm": 1.0} for s in (1, 2, 3)])
    (run / rundir.METRICS).write_text((run / rundir.METRICS).read_text() + '{"event": "log", "st')  # torn
    (run / rundir.LOG).write_text("[lab] run started\nTraceback (most recent call last):\nRuntimeError: CUDA oom\n")
    return run


def make_running_run(runs: Path) -> Path:
    run = runs / RUNNING_ID
    run.mkdir()
    now = time.time()
    me = psutil.Process()
    rundir.atomic_write_json(run / rundir.CONFIG, {"run_name": "still going", "owner": "carol",
                                                   "model": "bundled-minilm", "dataset": "demo",
                                                   "num_train_epochs": 3})
    rundir.atomic_write_json(run / rundir.RUN, {"pid": os.getpid(), "create_time": me.create_time(),
                                                "host": socket.gethostname()})
    rundir.atomic_write_json(run / rundir.STATUS, {"state": "running", "step": 20, "total_steps": 100,
                                                   "epoch": 0.6, "elapsed_s": 40.0, "heartbeat": now,
                                                   "started_at": now - 40, "pid": os.getpid()})
    write_lines(run / rundir.METRICS, [{"event": "log", "step": s, "epoch": s / 33, "elapsed_s": 2.0 * s,
                                        "total_steps": 100, "loss": 1.0 / s, "learning_rate": 1e-4,
                                        "grad_norm": 0.5, "samples_per_s": 8.0} for s in range(1, 21)])
    return run


class Boom:
    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def finished_run(tiny_run_dir) -> Path:
    return tiny_run_dir


@pytest.fixture()
def runs(tmp_path, finished_run, monkeypatch) -> Path:
    """A fresh runs dir per test: a copy of the finished tiny run, a failed run and a running run."""
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(finished_run, root / finished_run.name)
    make_failed_run(root)
    make_running_run(root)
    monkeypatch.setenv("LAB_RUNS_DIR", str(root))
    return root


def page(run_id: str | None = None, tab: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    if run_id:
        at.query_params["run"] = run_id
    if tab:
        at.session_state["runs_tab"] = tab
    return at.run()


def shown(markdown: str) -> str:
    """What a markdown element shows: run data is escaped with backslashes (pages.common.plain)."""
    return re.sub(r"\\(.)", r"\1", str(markdown))


def texts(at: AppTest) -> str:
    """Everything the page says, as one string (errors, infos, markdown, captions, metrics, code)."""
    parts = []
    for kind in ("error", "warning", "info", "success", "markdown", "caption", "subheader"):
        parts += [shown(e.value) for e in getattr(at, kind)]
    parts += [str(e.value) for e in at.code]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(parts)


def frame(at: AppTest, column: str, last: bool = False):
    """The (first or last) table on the page that has ``column``."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a {column!r} column"
    return found[-1] if last else found[0]


def element_types(node) -> list[str]:
    """The types of the elements under ``node``, in page order."""
    out = []
    for child in node.children.values():
        if hasattr(child, "children") and isinstance(child.children, dict):
            out += element_types(child)
        else:
            out.append(child.type)
    return out


def test_no_runs_yet(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "empty"))
    at = page()
    assert not at.exception
    assert "No runs yet" in at.info[0].value


def test_finished_run_every_tab(runs, finished_run):
    status = json.loads((finished_run / rundir.STATUS).read_text())
    baseline = json.loads((finished_run / rundir.BASELINE).read_text())
    at = page(finished_run.name)
    assert not at.exception
    assert at.selectbox(key="runs_pick").value == finished_run.name
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == f"{status['step']} / {status['total_steps']}"
    assert metrics["Accuracy"] == f"{status['final_metrics']['eval_accuracy']:.4f}"
    assert metrics["Eval loss"] == f"{status['final_metrics']['eval_loss']:.4f}"
    assert metrics["TF-IDF baseline accuracy"] == f"{baseline['accuracy']:.4f}"
    assert metrics["ETA"] == "–"
    assert not at.error
    assert json.loads((finished_run / rundir.CONFIG).read_text())["run_name"] in texts(at)
    assert "[lab] run" in texts(at)  # the log tail

    for tab in TABS[1:]:
        at.session_state["runs_tab"] = tab
        at.run()
        assert not at.exception, (tab, at.exception)
        assert not at.error, (tab, [e.value for e in at.error])
        if tab == "Checkpoints":
            table = frame(at, "checkpoint")
            on_disk = sorted(p.name for p in (finished_run / "checkpoints").iterdir())
            assert sorted(table["checkpoint"]) == on_disk
            assert table["best"].tolist().count("★") == 1
            assert (table["size (MB)"] > 0).all()
        if tab == "Error analysis":
            preds = [json.loads(x) for x in (finished_run / rundir.PREDICTIONS).read_text().splitlines()]
            wrong = sum(p["label"] != p["pred"] for p in preds)
            assert f"{len(preds):,} evaluation reviews, {wrong:,} wrong" in texts(at)
            assert frame(at, "review", last=True).shape[0] == len(preds)
            at.toggle(key="err_only_wrong").set_value(True).run()
            assert frame(at, "review", last=True).shape[0] == wrong
        if tab == "Compare":
            final = frame(at, "TF-IDF accuracy")
            assert final["Accuracy"].tolist() == [pytest.approx(status["final_metrics"]["eval_accuracy"])]
            # compare with the failed run: the configs differ in model and owner
            at.multiselect(key="cmp_runs").set_value([finished_run.name, FAILED_ID]).run()
            assert not at.exception
            at.toggle(key="cmp_only_diff").set_value(True).run()
            fields = frame(at, "field")["field"].tolist()
            assert "model" in fields and "owner" in fields and "dataset" not in fields


def test_failed_run_shows_its_error_first(runs):
    at = page(FAILED_ID)
    assert not at.exception
    assert at.selectbox(key="runs_pick").value == FAILED_ID
    assert FAIL_MESSAGE in shown(at.error[0].value)
    assert any(FAIL_HINT in shown(i.value) for i in at.info)
    assert "RuntimeError: CUDA oom" in texts(at)
    # the error comes before the progress bar and the metrics in the Training tab
    kinds = element_types(at.tabs[0])
    assert kinds.index("error") < kinds.index("progress") < kinds.index("metric")
    assert {m.label: m.value for m in at.metric}["Step"] == "3 / 30"
    # a run name with markup is shown as text
    heading = at.subheader[0].value
    assert shown(heading) == "doomed <b>run</b>" and "<b>" not in heading  # escaped: shown, never rendered


def test_running_run_has_progress_and_eta(runs):
    at = page(RUNNING_ID)
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == "20 / 100"
    assert metrics["ETA"] == "2m 40s"  # 80 steps left at 0.5 steps/s
    assert metrics["Samples/s"] == "8.0"


def test_picker_filters_and_query_param(runs, finished_run):
    at = page()
    assert not at.exception
    options = at.selectbox(key="runs_pick").options
    assert len(options) == 3
    assert at.selectbox(key="runs_pick").value == finished_run.name  # newest first
    assert at.query_params["run"] in ([finished_run.name], finished_run.name)
    at.multiselect(key="runs_state_filter").set_value(["failed"]).run()
    assert at.selectbox(key="runs_pick").value == FAILED_ID
    at.multiselect(key="runs_state_filter").set_value([]).run()
    at.selectbox(key="runs_owner_filter").set_value("carol").run()
    assert at.selectbox(key="runs_pick").value == RUNNING_ID
    at2 = page("20991231-000000-ffffff")  # unknown id: falls back to the newest run
    assert not at2.exception and at2.selectbox(key="runs_pick").value == finished_run.name


def test_tryout_single_text(runs, finished_run):
    at = page(finished_run.name, "Try it")
    assert not at.exception
    at.button(key="try_example_0").click().run()
    assert at.text_area(key="try_text").value.startswith("A warm")
    review = "<script>alert('x')</script> A <b>lovely</b> film 😀"
    at.text_area(key="try_text").set_value(review)
    at.button(key="FormSubmitter:try_form-Classify").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Prediction"] in ("NEGATIVE", "POSITIVE")
    assert metrics["Latency"].endswith(" ms")
    probs = frame(at, "probability")
    assert sorted(probs["label"]) == ["NEGATIVE", "POSITIVE"]
    assert probs["probability"].sum() == pytest.approx(1.0)
    markup = at.html[0].value
    assert "<script" not in markup and "<b>" not in markup
    visible = re.sub(r"<span [^>]*>|</span>", "", re.sub(r"^<div[^>]*>|</div>$", "", markup))
    assert visible == html.escape(review)  # the whole review, as escaped text
    # empty text: a clear message, no result
    at.text_area(key="try_text").set_value("   ")
    at.button(key="FormSubmitter:try_form-Classify").click().run()
    assert not at.exception
    assert "empty" in shown(at.error[0].value)
    assert not any(m.label == "Prediction" for m in at.metric)


def test_tryout_deleted_checkpoint(runs, finished_run):
    at = page(finished_run.name, "Try it")
    options = at.selectbox(key="try_model").options
    choice = next(c for c in options if c.startswith("checkpoint"))
    at.selectbox(key="try_model").select_index(options.index(choice)).run()  # the menu holds ModelChoice objects
    step = choice.rsplit(" ", 1)[-1]
    shutil.rmtree(runs / finished_run.name / "checkpoints" / f"checkpoint-{step}")
    at.text_area(key="try_text").set_value("A fine film.")
    at.button(key="FormSubmitter:try_form-Classify").click().run()
    assert not at.exception
    assert "no longer exists" in shown(at.error[0].value)


def test_tryout_batch_csv(runs, finished_run):
    at = page(finished_run.name, "Try it")
    csv_bytes = b'id,review\n1,"=HYPERLINK(""http://x"")"\n2,A lovely film\n3,Dreadful\n'
    at.file_uploader(key="try_upload").set_value(("reviews.csv", csv_bytes, "text/csv")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="try_column").value == "review"
    at.button(key="try_batch_go").click().run()
    assert not at.exception and not at.error
    out = at.session_state["try_batch"]
    assert out["predicted_label"].isin(["NEGATIVE", "POSITIVE"]).all() and len(out) == 3
    assert at.download_button(key="try_download")
    assert list((runs / rundir.UPLOADS).iterdir()) == []  # the upload was read, then deleted
    # a broken upload: a clear message
    at.file_uploader(key="try_upload").set_value(("bad.csv", b"\x00\x01binary\x02", "text/csv")).run()
    assert not at.exception
    assert "binary" in shown(at.error[0].value)


def test_planted_pickles_never_run(runs, finished_run, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Boom(marker))
    run = runs / finished_run.name
    folders = [run, run / "model", *(run / "checkpoints").iterdir()]
    for folder in folders:
        for name in ("pytorch_model.bin", "optimizer.pt", "training_args.bin", "rng_state.pth"):
            (folder / name).write_bytes(payload)
    at = page(finished_run.name)
    for tab in TABS:
        at.session_state["runs_tab"] = tab
        at.run()
        assert not at.exception
    at.session_state["runs_tab"] = "Try it"
    at.run()
    for i in range(len(at.selectbox(key="try_model").options)):
        at.selectbox(key="try_model").select_index(i).run()
        at.text_area(key="try_text").set_value("A fine film.")
        at.button(key="FormSubmitter:try_form-Classify").click().run()
        assert not at.exception and not at.error
        assert any(m.label == "Prediction" for m in at.metric)
    assert not marker.exists()


def test_distilled_run_is_compared_with_its_teacher(runs, finished_run):
    student = runs / "20990101-000000-5700de"
    shutil.copytree(finished_run, student)
    config = json.loads((student / rundir.CONFIG).read_text())
    config.update(task="distill", teacher=finished_run.name, run_name="the student")
    (student / rundir.CONFIG).write_text(json.dumps(config))
    at = page(student.name, tab="Compare")
    assert not at.exception and not at.error
    table = frame(at, "layers")
    assert table["model"].tolist() == ["teacher", "student"]
    assert "Agreement with the teacher=100.0%" in texts(at)  # same weights, same predictions
    at.button(key="ts_measure").click().run()
    assert not at.exception
    speed = frame(at, "reviews_per_s")
    assert (speed["reviews_per_s"] > 0).all() and (speed["latency_p50_ms"] > 0).all()

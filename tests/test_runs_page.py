"""AppTest of pages/runs.py and its tabs (pages/ui/runs_tabs): a finished tiny run (every tab), a failed
run (its error first), a running run (ETA), the quick tryout (single text, explanation, bad input, batch
CSV, length and row limits), a deleted checkpoint, planted pickles that must never run, read-only mode
and visitors who are not signed in (tryout still works), label names with markup (shown as text), and a
teacher/student speed measurement that cannot run (a message, not a traceback). The chart builders of
pages/ui/charts.py are checked on their own at the end."""
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

from lib.readers import metrics as metric_readers
from lib.readers.progress import Progress
from lib.store import rundir
from pages.ui import charts
from pages.ui.access_notes import READ_ONLY_TEXT
from pages.ui.runs_tabs import batch as batch_tab
from pages.ui.runs_tabs import tryout as tryout_tab

ROOT = Path(__file__).resolve().parents[1]

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
    """What a markdown element shows: run data is escaped with backslashes (pages.ui.text.plain)."""
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


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure (as JSON) drawn with ``key`` (AppTest keeps charts as unknown elements)."""
    found = [e for e in at.get("plotly_chart") if e.key == key]
    assert found, f"no chart with key {key!r}: {[e.key for e in at.get('plotly_chart')]}"
    return json.loads(found[0].proto.spec)


def classify(at: AppTest, text: str) -> AppTest:
    at.text_area(key="try_text").set_value(text)
    return at.button(key="FormSubmitter:try_form-Classify").click().run()


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
    logged = [r for r in metric_readers.read_metrics(finished_run) if r.get("event") == "log" and "loss" in r]
    loss = chart(at, "train_loss")
    assert [t["name"] for t in loss["data"][:2]] == ["raw", "smoothed (0.60)"]
    assert loss["data"][0]["y"] == pytest.approx([r["loss"] for r in logged])
    evals = [r for r in metric_readers.read_metrics(finished_run) if r.get("event") == "eval"]
    assert chart(at, "train_evalacc")["data"][0]["y"] == pytest.approx([r["eval_accuracy"] for r in evals])

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
            counts = chart(at, "err_confusion")["data"][0]["z"]
            assert sum(map(sum, counts)) == len(preds) and counts[0][1] + counts[1][0] == wrong
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


@pytest.mark.parametrize("amx", [True, False])
def test_batch_mode_runs_bf16_on_amx_cpus_and_the_tryout_int8(runs, finished_run, monkeypatch, amx):
    from lib.util import sysinfo
    monkeypatch.setattr(sysinfo, "_CPU_FLAGS", frozenset({"avx512f", "amx_bf16"} if amx else {"avx2"}))
    monkeypatch.delenv("LAB_PREDICT_PRECISION", raising=False)
    at = page(finished_run.name, "Try it")
    at.file_uploader(key="try_upload").set_value(("r.csv", b"text\nA lovely film\nDreadful\n", "text/csv")).run()
    at.button(key="try_batch_go").click().run()
    assert not at.exception and not at.error
    table = "bf16 on PyTorch" if amx else "int8 on "
    assert any(table in c.value and "2 rows predicted" in c.value for c in at.caption), [c.value for c in at.caption]
    at.text_area(key="try_text").set_value("A fine film.")
    at.button(key="FormSubmitter:try_form-Classify").click().run()
    assert not at.exception and at.session_state["try_result"]["precision"] == "int8"
    # Fast CPU mode off: full precision for both
    at.toggle(key="try_fast").set_value(False).run()
    at.button(key="try_batch_go").click().run()
    assert any("fp32 on PyTorch" in c.value for c in at.caption)


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
    student = make_student(runs, runs / finished_run.name)
    at = page(student.name, tab="Compare")
    assert not at.exception and not at.error
    table = frame(at, "layers")
    assert table["model"].tolist() == ["teacher", "student"]
    assert "Agreement with the teacher=100.0%" in texts(at)  # same weights, same predictions
    at.button(key="ts_measure").click().run()
    assert not at.exception
    speed = frame(at, "reviews_per_s")
    assert (speed["reviews_per_s"] > 0).all() and (speed["latency_p50_ms"] > 0).all()


def test_tryout_review_is_bounded(runs, finished_run):
    at = page(finished_run.name, "Try it")
    assert at.text_area(key="try_text").max_chars == tryout_tab.MAX_CHARS  # the browser stops typing there
    long_review = "A fine film. " * (tryout_tab.MAX_CHARS // 13 + 100)
    classify(at, long_review)  # sent anyway (a crafted request): the server keeps only the first MAX_CHARS
    assert not at.exception and not at.error
    assert at.session_state["try_result"]["text"] == long_review[:tryout_tab.MAX_CHARS]
    assert any(m.label == "Prediction" for m in at.metric)
    assert "longer than the model's limit of" in texts(at)  # the model's token limit: said, not hidden


def test_batch_row_limit_comes_from_the_environment(runs, finished_run, monkeypatch):
    monkeypatch.setenv("LAB_MAX_PREDICT_ROWS", "2")
    at = page(finished_run.name, "Try it")
    at.file_uploader(key="try_upload").set_value(
        ("reviews.csv", b"text\nA lovely film\nDreadful\nFine enough\n", "text/csv")).run()
    assert not at.exception and not at.error
    warning = shown(at.warning[0].value)
    assert "first 2 rows" in warning and "LAB_MAX_PREDICT_ROWS" in warning
    at.button(key="try_batch_go").click().run()
    assert not at.exception and not at.error
    assert at.session_state["try_batch"]["text"].tolist() == ["A lovely film", "Dreadful"]


@pytest.mark.parametrize(("value", "expected"), [(None, batch_tab.DEFAULT_MAX_ROWS), ("10", 10),
                                                 ("0", batch_tab.DEFAULT_MAX_ROWS), ("-3", batch_tab.DEFAULT_MAX_ROWS),
                                                 ("lots", batch_tab.DEFAULT_MAX_ROWS)])
def test_batch_row_limit_setting(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("LAB_MAX_PREDICT_ROWS", raising=False)
    else:
        monkeypatch.setenv("LAB_MAX_PREDICT_ROWS", value)
    assert batch_tab.max_rows() == expected


def test_read_only_mode_keeps_looking_and_trying(runs, finished_run, monkeypatch):
    monkeypatch.setenv("LAB_READ_ONLY", "1")
    at = page(finished_run.name)
    assert not at.exception and not at.error
    assert READ_ONLY_TEXT in texts(at)  # the page says so
    for tab in TABS[1:]:
        at.session_state["runs_tab"] = tab
        at.run()
        assert not at.exception and not at.error, (tab, [e.value for e in at.error])
    at.session_state["runs_tab"] = "Try it"
    classify(at.run(), "A lovely film.")
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Prediction"] in ("NEGATIVE", "POSITIVE")
    at.file_uploader(key="try_upload").set_value(("r.csv", b"review\nA lovely film\nDreadful\n", "text/csv")).run()
    at.button(key="try_batch_go").click().run()
    assert not at.exception and not at.error
    assert len(at.session_state["try_batch"]) == 2


def test_visitor_not_signed_in_can_try_models(runs, finished_run):
    """With sign-in configured and nobody signed in, the page works; the tryout too. Nobody is 'me'."""
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
                          "client_id": "lab", "client_secret": "x",
                          "server_metadata_url": "http://localhost:1/.well-known/openid-configuration"}
    at.session_state["lab_owner"] = "bob"   # a typed name is never an identity under sign-in
    at.query_params["run"] = finished_run.name
    at.session_state["runs_tab"] = "Try it"
    at.run()
    assert not at.exception and not at.error
    assert "me" not in at.selectbox(key="runs_owner_filter").options
    classify(at, "A lovely film.")
    assert not at.exception and not at.error
    assert any(m.label == "Prediction" for m in at.metric)


def test_label_names_with_markup_are_shown_as_text(runs, finished_run):
    names = ["*bad* <i>neg</i>", "[pos](http://x.test)"]
    run = runs / finished_run.name
    config = json.loads((run / rundir.CONFIG).read_text())
    (run / rundir.CONFIG).write_text(json.dumps({**config, "label_names": names}))
    model_config = json.loads((run / "model" / "config.json").read_text())
    model_config.update(id2label={"0": names[0], "1": names[1]}, label2id={names[0]: 0, names[1]: 1})
    (run / "model" / "config.json").write_text(json.dumps(model_config))
    at = page(finished_run.name, "Error analysis")
    assert not at.exception and not at.error
    assert at.selectbox(key="err_true").options == ["any", *names]  # menus show options as text
    heat = chart(at, "err_confusion")["data"][0]
    assert heat["x"] == [f"pred {html.escape(n)}" for n in names]  # escaped for plotly's label HTML
    at.session_state["runs_tab"] = "Try it"
    at.run()
    at.selectbox(key="try_model").select_index(0).run()  # the final model
    classify(at, "A lovely film.")
    assert not at.exception and not at.error
    prediction = next(m.value for m in at.metric if m.label == "Prediction")
    assert shown(prediction) in names and "<i>" not in prediction and "](" not in prediction
    why = next(m.value for m in at.markdown if m.value.startswith("**Why**"))
    assert names[1] in shown(why) and "<i>" not in why and "](" not in why
    assert sorted(frame(at, "probability")["label"]) == sorted(names)


def make_student(runs: Path, teacher: Path) -> Path:
    student = runs / "20990101-000000-5700de"
    shutil.copytree(teacher, student)
    config = json.loads((student / rundir.CONFIG).read_text())
    config.update(task="distill", teacher=teacher.name, run_name="the student")
    (student / rundir.CONFIG).write_text(json.dumps(config))
    return student


def test_speed_measurement_without_the_teacher_model_says_why(runs, finished_run):
    student = make_student(runs, runs / finished_run.name)
    shutil.rmtree(runs / finished_run.name / "model")   # the teacher's export is gone
    at = page(student.name, tab="Compare")
    assert not at.exception and not at.error
    assert frame(at, "layers")["model"].tolist() == ["teacher", "student"]
    at.button(key="ts_measure").click().run()
    assert not at.exception
    message = shown(at.error[0].value)
    assert "teacher" in message and "no exported model" in message
    assert not [d for d in at.dataframe if "reviews_per_s" in d.value.columns]


def test_speed_measurement_of_a_broken_model_shows_a_message(runs, finished_run):
    student = make_student(runs, runs / finished_run.name)
    (student / "model" / "model.safetensors").unlink()   # config.json is there, the weights are not
    at = page(student.name, tab="Compare")
    at.button(key="ts_measure").click().run()
    assert not at.exception
    assert "no model.safetensors" in shown(at.error[0].value)
    assert not [d for d in at.dataframe if "reviews_per_s" in d.value.columns]


# ---------------------------------------------------------------------------------------------------
# Chart builders (pages/ui/charts.py)
# ---------------------------------------------------------------------------------------------------
def test_thin_keeps_the_shape_and_the_last_point():
    xs = list(range(10_001))
    tx, ty = charts.thin(xs, [2 * x for x in xs], limit=1000)
    assert len(tx) <= 1002 and tx[-1] == 10_000 and ty[-1] == 20_000 and tx[0] == 0
    assert charts.thin([1, 2], [3, 4], limit=1000) == ([1, 2], [3, 4])


def test_x_range_spans_the_whole_run():
    prog = Progress(state="running", phase=None, step=10, total_steps=200, fraction=0.05, epoch=0.5, num_epochs=4,
                    elapsed_s=5.0, eta_s=None, steps_per_s=None, samples_per_s=None, heartbeat_age_s=None,
                    queue_position=None, error=None, exit_code=None)
    assert charts.x_range(prog, "step") == [0, pytest.approx(202)]
    assert charts.x_range(prog, "epoch") == [0, pytest.approx(4.04)]
    assert charts.x_range(prog, "time") is None and charts.x_range(None, "step") is None


def test_overlay_names_are_escaped_and_loss_is_smoothed():
    rows = [{"event": "log", "step": s, "loss": float(v)} for s, v in ((1, 4), (2, 0), (3, 2))]
    series = metric_readers.MetricSeries(log=rows, eval=[], save=[], end=[])
    fig = charts.overlay_figure([("<b>mine</b>", series)], "loss", "step")
    trace = fig.data[0]
    assert trace.name == "&lt;b&gt;mine&lt;/b&gt;"
    assert list(trace.y) == pytest.approx(metric_readers.ema([4.0, 0.0, 2.0], 0.6))
    assert list(trace.x) == [1, 2, 3]

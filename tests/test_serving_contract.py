"""Predictions read text the way training did, with calibrated probabilities, and two runs can be diffed.

On the shared tiny run (the real job): the export records how text was prepared (lab_preprocessing.json
and the model card) and the predictor, the CLI and checkpoints apply it; a review with ``<br /><br />``
and the same review with blank lines get identical probabilities; the job writes calibration.json (run
and model/) and calibrated probabilities beside the raw ones, the predictor applies the temperature
unless told not to, and the label never changes. ``python -m lib.runs diff`` on two copies of the run
with hand-changed predictions; the Compare tab's review-by-review diff and the Error analysis tab's
confusion-matrix cell and before/after reliability diagrams under AppTest.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lib import predict as predict_cli
from lib import runs as runs_cli
from lib.readers import predictions as pred_readers
from lib.readers.calibration import softmax
from lib.serving.predictor import BASE_MODEL, Predictor
from lib.sources.preprocessing import PREPROCESSING_FILE, clean_text, preprocessing_for
from lib.store import rundir

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "runs.py")
REVIEW = "A slow start.<br /><br />Then it grows on you, and the ending is lovely.<BR/>Recommended."
SAME_WITH_BLANK_LINES = "A slow start.\n\nThen it grows on you, and the ending is lovely.\nRecommended."
B_ID = "20300101-000000-bbbbbb"


@pytest.fixture(scope="module")
def run(tiny_run_dir) -> Path:
    return tiny_run_dir


def _preds(run_dir: Path) -> list[dict]:
    return rundir.read_jsonl(run_dir / rundir.PREDICTIONS)


# ------------------------------------------------------------------------------------- preprocessing
def test_one_cleaning_rule():
    assert clean_text(REVIEW) == SAME_WITH_BLANK_LINES
    assert clean_text(REVIEW, strip_html=False) == REVIEW


def test_export_records_how_text_was_prepared(run):
    config = rundir.read_json(run / rundir.CONFIG)
    record = json.loads((run / rundir.MODEL / PREPROCESSING_FILE).read_text())
    assert record["max_length"] == config["max_length"]
    assert record["strip_html"] is config["strip_html"] is True
    assert record["truncation_side"] == "right"
    assert record["label_names"] == pred_readers.run_label_names(run)
    card = (run / rundir.MODEL / "README.md").read_text()
    assert f"max_length={config['max_length']}" in card and "<br />" in card


def test_br_tags_and_blank_lines_give_identical_probabilities(run):
    model = Predictor(run / rundir.MODEL)
    a, b = model.predict([REVIEW])[0], model.predict([SAME_WITH_BLANK_LINES])[0]
    assert a["scores"] == b["scores"] and a["tokens"] == b["tokens"]
    expl = model.explain(REVIEW)
    assert expl["text"] == SAME_WITH_BLANK_LINES
    assert all(expl["text"][s["start"]:s["end"]] == s["text"] for s in expl["spans"])


def test_predictor_reads_at_the_runs_max_length(run):
    config = rundir.read_json(run / rundir.CONFIG)
    model = Predictor(run / rundir.MODEL)
    assert model.max_length == config["max_length"] < 512
    assert Predictor(run / rundir.MODEL, max_length=64).max_length == 64  # an explicit length still wins


def test_checkpoint_uses_the_runs_config(run):
    checkpoint = sorted((run / rundir.CHECKPOINTS).glob("checkpoint-*"))[-1]
    record = preprocessing_for(checkpoint)
    assert record is not None and record["max_length"] == rundir.read_json(run / rundir.CONFIG)["max_length"]
    model = Predictor(checkpoint)
    assert model.max_length == record["max_length"] and model.strip_html
    a, b = model.predict([REVIEW])[0], model.predict([SAME_WITH_BLANK_LINES])[0]
    assert a["scores"] == b["scores"]


def test_models_without_the_record_keep_todays_behaviour(run, tmp_path):
    old = tmp_path / "old-export"
    shutil.copytree(run / rundir.MODEL, old)
    (old / PREPROCESSING_FILE).unlink()
    (old / rundir.CALIBRATION).unlink()
    model = Predictor(old)
    assert model.preprocessing is None and not model.strip_html and model.max_length == 512
    assert model.temperature == 1.0
    a, b = model.predict([REVIEW, SAME_WITH_BLANK_LINES])
    assert a["tokens"] != b["tokens"]  # the raw tags are read, as before
    assert Predictor(BASE_MODEL).preprocessing is None


def test_cli_defaults_to_the_runs_max_length(run, capsys):
    config = rundir.read_json(run / rundir.CONFIG)
    long_review = " ".join(["a quietly moving film with a fine cast"] * 40)  # ~320 words: over 128, under 512
    assert predict_cli.main(["--model", str(run / rundir.MODEL), "--precision", "fp32", "--batch-size", "1",
                             long_review, REVIEW, SAME_WITH_BLANK_LINES]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0].get("truncated") is True  # cut at the run's 128 tokens, not 512
    assert rows[1]["scores"] == rows[2]["scores"]
    assert predict_cli.main(["--model", str(run / rundir.MODEL), "--precision", "fp32", "--max-length", "512",
                             long_review]) == 0
    assert "truncated" not in json.loads(capsys.readouterr().out)
    expected = Predictor(run / rundir.MODEL, max_length=config["max_length"]).predict([long_review])[0]
    assert rows[0]["scores"] == {k: round(v, 6) for k, v in expected["scores"].items()}


# ------------------------------------------------------------------------------------- calibration
def test_job_writes_calibration(run):
    cal = rundir.read_json(run / rundir.CALIBRATION)
    assert cal == rundir.read_json(run / rundir.MODEL / rundir.CALIBRATION)
    for key in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n"):
        assert isinstance(cal[key], (int, float)) and math.isfinite(cal[key])
    preds = _preds(run)
    assert cal["n"] == len(preds) and cal["temperature"] > 0
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9  # the fitted T is never worse on its own reviews
    logits = np.array([p["logits"] for p in preds])
    labels = [p["label"] for p in preds]
    np.testing.assert_allclose([p["probs"] for p in preds], softmax(logits), atol=2e-5)
    np.testing.assert_allclose([p["probs_calibrated"] for p in preds], softmax(logits, cal["temperature"]), atol=2e-5)
    assert [int(np.argmax(p["probs_calibrated"])) for p in preds] == [p["pred"] for p in preds]
    # the reported eval metrics are the uncalibrated model's (and the labels are the same anyway)
    status = rundir.read_status(run)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == np.array(labels)))
    assert status["final_metrics"]["eval_accuracy"] == pytest.approx(accuracy)
    assert "temperature" in (run / rundir.MODEL / "README.md").read_text()


def test_predictor_applies_the_temperature(run):
    t = rundir.read_json(run / rundir.CALIBRATION)["temperature"]
    calibrated = Predictor(run / rundir.MODEL)
    raw = Predictor(run / rundir.MODEL, calibrated=False)
    assert calibrated.temperature == pytest.approx(t) and raw.temperature == 1.0
    texts = [REVIEW, "Dull and far too long.", "A warm, funny film."]
    for c, r in zip(calibrated.predict(texts), raw.predict(texts)):
        logits = np.log(list(r["scores"].values()))
        np.testing.assert_allclose(list(c["scores"].values()), softmax(logits, t)[0], rtol=1e-6, atol=1e-9)
        assert c["label"] == r["label"]


def test_cli_no_calibration(run, capsys):
    assert predict_cli.main(["--model", str(run / rundir.MODEL), "--precision", "fp32", REVIEW]) == 0
    assert predict_cli.main(["--model", str(run / rundir.MODEL), "--precision", "fp32", "--no-calibration",
                             REVIEW]) == 0
    cal, raw = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Predictor(run / rundir.MODEL, calibrated=False).predict([REVIEW])[0]["scores"]
    assert raw["scores"] == {k: round(v, 6) for k, v in expected.items()}
    assert cal["label"] == raw["label"]
    t = rundir.read_json(run / rundir.CALIBRATION)["temperature"]
    want = softmax(np.log(list(expected.values())), t)[0]
    assert list(cal["scores"].values()) == pytest.approx(list(want), abs=2e-6)


# ------------------------------------------------------------------------------------- run diff
@pytest.fixture()
def two_runs(tmp_path, run, monkeypatch) -> Path:
    """Two copies of the tiny run; in run B, reviews 0 and 1 are flipped (hand-built predictions)."""
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(run, root / run.name)
    shutil.copytree(run, root / B_ID)
    rows = _preds(root / B_ID)
    for r in rows[:2]:
        r["pred"] = 1 - r["pred"]
    (root / B_ID / rundir.PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("LAB_RUNS_DIR", str(root))
    return root


def _expected_kinds(a: list[dict], b: list[dict]) -> dict:
    out = {"fixed": [], "broken": [], "both_wrong": []}
    for ra, rb in zip(a, b):
        ok_a, ok_b = ra["pred"] == ra["label"], rb["pred"] == rb["label"]
        if ok_a != ok_b or not ok_a:
            out["fixed" if ok_b else "broken" if ok_a else "both_wrong"].append(ra["index"])
    return out


def test_runs_diff_cli(two_runs, run, capsys):
    a, b = _preds(two_runs / run.name), _preds(two_runs / B_ID)
    want = _expected_kinds(a, b)
    assert runs_cli.main(["--runs-dir", str(two_runs), "diff", run.name, B_ID, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for kind in ("fixed", "broken", "both_wrong"):
        assert [r["index"] for r in out[kind]] == want[kind]
        assert out["counts"][kind] == len(want[kind])
    assert out["counts"]["changed"] == 2 and out["counts"]["fixed"] + out["counts"]["broken"] == 2
    first = (out["fixed"] + out["broken"])[0]
    assert first["text"] == a[first["index"]]["text"] and first["pred_a"] != first["pred_b"]
    assert runs_cli.main(["--runs-dir", str(two_runs), "diff", run.name, B_ID]) == 0
    text = capsys.readouterr().out
    assert f"fixed {len(want['fixed'])}  broken {len(want['broken'])}" in text


def test_runs_diff_refuses_different_splits(two_runs, run, capsys):
    rows = _preds(two_runs / B_ID)[1:]
    (two_runs / B_ID / rundir.PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert runs_cli.main(["--runs-dir", str(two_runs), "diff", run.name, B_ID, "--json"]) == 2
    err = capsys.readouterr().err
    assert "different eval splits" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------- pages
def _page(run_id: str, tab: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = run_id
    at.session_state["runs_tab"] = tab
    return at.run()


def test_compare_tab_diff(two_runs, run):
    at = _page(run.name, "Compare")
    assert not at.exception
    assert at.selectbox(key="cmp_diff_a").value == run.name
    at.selectbox(key="cmp_diff_b").set_value(B_ID).run()
    want = _expected_kinds(_preds(two_runs / run.name), _preds(two_runs / B_ID))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Fixed"] == str(len(want["fixed"])) and metrics["Broken"] == str(len(want["broken"]))
    for kind in ("fixed", "broken", "both_wrong"):
        at.segmented_control(key="cmp_diff_kind").set_value(kind).run()
        assert not at.exception
        tables = [d.value for d in at.dataframe if "B predicted" in d.value.columns]
        if want[kind]:
            assert tables and tables[0]["#"].tolist() == want[kind]
            assert {"A predicted", "A confidence", "B confidence", "true", "review"} <= set(tables[0].columns)
        else:
            assert not tables


def test_error_analysis_cell_and_both_reliability_diagrams(two_runs, run):
    at = _page(run.name, "Error analysis")
    assert not at.exception
    keys = [e.key for e in at.get("plotly_chart")]
    assert "err_reliability" in keys and "err_reliability_after" in keys
    shown = {m.label for m in at.metric}
    assert {"ECE before calibration", "ECE after calibration"} <= shown
    preds = _preds(two_runs / run.name)

    def review_tables() -> list:
        return [d.value for d in at.dataframe if "review" in d.value.columns]

    without_cell = len(review_tables())
    for cell in ((0, 0), (1, 0), (0, 1)):
        at.selectbox(key="err_cell").set_value(cell).run()
        assert not at.exception
        expected = sorted(p["index"] for p in preds if (p["label"], p["pred"]) == cell)
        tables = review_tables()
        if expected:  # the cell's reviews come first, above the most confident mistakes
            assert len(tables) == without_cell + 1
            assert sorted(tables[0]["#"].tolist()) == expected
        else:
            assert len(tables) == without_cell and "No reviews in this cell." in [c.value for c in at.caption]


def test_tryout_calibration_checkbox(two_runs, run, monkeypatch):
    monkeypatch.setenv("LAB_PREDICT_PRECISION", "fp32")
    at = _page(run.name, "Try it")
    assert not at.exception and at.checkbox(key="try_calibrated").value is True
    shown_conf = {}
    for calibrated in (True, False):
        at.checkbox(key="try_calibrated").set_value(calibrated)
        at.text_area(key="try_text").set_value(REVIEW)
        at.checkbox(key="try_explain").set_value(False)
        at.button(key="FormSubmitter:try_form-Classify").click().run()
        assert not at.exception
        shown_conf[calibrated] = next(m.value for m in at.metric if m.label == "Confidence")
        expected = Predictor(run / rundir.MODEL, calibrated=calibrated).predict_one(REVIEW)
        assert shown_conf[calibrated] == f"{expected['confidence']:.1%}"
        assert any("Calibrated confidence" in c.value for c in at.caption) is calibrated

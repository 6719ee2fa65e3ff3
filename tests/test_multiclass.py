"""Any number of classes, end to end, and files that are not UTF-8.

A generated three-class CSV saved in Windows-1252 (accented letters, curly quotes, the euro sign) goes
through the real job (``python -m lib.train``) on the tiny BERT; the run records the classes and the
encoding, the export answers with the three names, predictions carry three probabilities, and the
readers and serving code work for N classes. Bad label columns get their own messages.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lib.config import TrainConfig
from lib.errors import ConfigError, DataError
from lib.sources.data import describe_labels, load_data
from lib.sources.labels import map_labels
from lib.sources.tables import read_table
from lib.store import rundir

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("negative", "neutral", "positive")
PHRASES = {
    "negative": ["dreadful", "a façade of a film", "boring – truly", "“awful”", "déjà vu of bad ideas",
                 "a waste of 10€"],
    "neutral": ["an ordinary café scene", "it was fine, I suppose", "naïve but harmless",
                "average – neither good nor bad", "the crème of nothing"],
    "positive": ["wonderful", "a “superb” piece", "crème brûlée of cinema", "brilliant – déjà a classic",
                 "worth every €"],
}


def three_class_rows(per_class: int = 30, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = [(f"{rng.choice(PHRASES[c])} and {rng.choice(PHRASES[c])} #{i}", c)
            for c in CLASSES for i in range(per_class)]
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows, encoding: str = "cp1252", header=("text", "label")) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def error_of(exc_type, fn, *args, **kw) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args, **kw)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ the job
@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("multiclass")
    data = write_csv(folder / "three.csv", three_class_rows())
    assert b"\x80" in data.read_bytes() and b"\x93" in data.read_bytes()  # Windows-1252 bytes, not UTF-8
    runs = folder / "runs"
    cmd = [sys.executable, "-m", "lib.train", "--preset", "demo", "--runs-dir", str(runs),
           "--set", "model=tiny-bert", "--set", f"dataset={data}", "--set", "num_train_epochs=2",
           "--set", "logging_steps=3", "--set", "per_device_train_batch_size=8"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "LAB_RUNS_DIR": str(runs)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_cp1252_three_class_csv_trains_and_records_classes_and_encoding(three_class_run):
    run = three_class_run
    assert rundir.read_status(run)["state"] == "finished"
    info = rundir.read_json(run / rundir.DATA_INFO)
    assert info["encoding"] == "cp1252" and info["encoding_label"] == "Windows-1252"
    assert "decoded as Windows-1252" in info["description"]
    assert info["label_names"] == list(CLASSES) and info["num_labels"] == 3 and info["label_scheme"] == "inferred"
    assert info["label_mapping"] == {"negative": 0, "neutral": 1, "positive": 2}
    # 30 per class, 20% held out per class (stratified)
    assert info["class_counts"] == {"train": {"0": 24, "1": 24, "2": 24}, "test": {"0": 6, "1": 6, "2": 6}}
    assert [c["name"] for c in info["classes"]] == list(CLASSES)
    # the accented text arrived intact
    preds = rundir.read_jsonl(run / rundir.PREDICTIONS)
    texts = " ".join(p["text"] for p in preds)
    assert "€" in texts or "“" in texts or "é" in texts
    assert all(ch not in texts for ch in ("\ufffd", "â€"))


def test_export_has_three_labels_and_pipeline_answers_with_their_names(three_class_run):
    from transformers import pipeline
    model_dir = three_class_run / rundir.MODEL
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert cfg["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    clf = pipeline("text-classification", model=str(model_dir))
    every = clf("a “superb” piece and crème brûlée of cinema", top_k=None)
    assert sorted(o["label"] for o in every) == sorted(CLASSES)
    assert abs(sum(o["score"] for o in every) - 1.0) < 1e-4
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    assert "3 classes" in card and "macro-F1" in card and "## Per class" in card
    for name in CLASSES:
        assert f"| {name} |" in card


def test_eval_predictions_have_three_probabilities_and_final_metrics_macro_f1(three_class_run):
    preds = rundir.read_jsonl(three_class_run / rundir.PREDICTIONS)
    assert len(preds) == 18
    for p in preds:
        assert len(p["probs"]) == 3 and abs(sum(p["probs"]) - 1.0) < 1e-4
        assert p["pred"] == max(range(3), key=p["probs"].__getitem__) and p["label"] in (0, 1, 2)
    final = rundir.read_status(three_class_run)["final_metrics"]
    from sklearn.metrics import f1_score
    macro = f1_score([p["label"] for p in preds], [p["pred"] for p in preds], average="macro", zero_division=0)
    assert final["eval_f1"] == pytest.approx(macro, abs=1e-6)
    for name in CLASSES:
        assert {f"eval_precision_{name}", f"eval_recall_{name}", f"eval_f1_{name}"} <= set(final)
    assert 0.0 <= final["eval_roc_auc"] <= 1.0
    baseline = rundir.read_json(three_class_run / rundir.BASELINE)
    assert {"accuracy", "f1", "roc_auc", "f1_neutral"} <= set(baseline) and baseline["eval_size"] == 18


def test_error_analysis_readers_for_three_classes(three_class_run):
    from lib.readers import predictions
    df = predictions.predictions_frame(three_class_run)
    names = predictions.run_label_names(three_class_run)
    assert names == list(CLASSES) and len(df) == 18
    matrix = predictions.confusion_matrix(df, len(names))
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert [sum(row) for row in matrix] == [6, 6, 6]
    assert sum(matrix[i][i] for i in range(3)) == int(df["correct"].sum())
    per = predictions.per_class(df, 3)
    assert [p["support"] for p in per] == [6, 6, 6] and sum(p["predicted"] for p in per) == 18
    by_class = predictions.confident_mistakes_by_class(df, 3, k=2)
    for cls, rows in by_class.items():
        assert len(rows) <= 2 and (rows["label"] == cls).all() and not rows["correct"].any()
    bins, ece = predictions.reliability(df, n_bins=5, n_labels=3)
    assert sum(b["count"] for b in bins) == 18 and bins[0]["lo"] == pytest.approx(1 / 3) and 0 <= ece <= 1


def test_predictor_and_csv_mode_give_every_class_a_probability(three_class_run):
    from lib.serving.batch import predict_frame
    from lib.serving.predictor import Predictor
    predictor = Predictor(three_class_run / rundir.MODEL)
    assert predictor.label_names == list(CLASSES)
    one = predictor.predict_one("naïve but harmless")
    assert set(one["scores"]) == set(CLASSES) and one["label"] in CLASSES
    table = pd.DataFrame({"review": ["wonderful", "dreadful", ""]})
    out = predict_frame(predictor, table, "review")
    for name in CLASSES:
        assert f"p_{name}" in out.columns
    filled = out.iloc[:2]
    sums = filled[[f"p_{n}" for n in CLASSES]].sum(axis=1)
    assert all(abs(s - 1.0) < 1e-4 for s in sums)
    assert out.iloc[2]["predicted_label"] == ""


def test_binary_predictions_stay_readable(tiny_run_dir):
    """A two-class run's eval predictions read as before (p_pos is label 1's probability)."""
    from lib.readers import predictions
    df = predictions.predictions_frame(tiny_run_dir)
    rows = rundir.read_jsonl(tiny_run_dir / rundir.PREDICTIONS)
    assert len(df) == len(rows) and all(len(r["probs"]) == 2 for r in rows)
    assert df["p_pos"].tolist() == pytest.approx([r["probs"][1] for r in rows])
    assert predictions.run_label_names(tiny_run_dir) == ["NEGATIVE", "POSITIVE"]


def test_distillation_for_three_classes(three_class_run, tmp_path):
    """A student distilled from the 3-class run keeps the three classes."""
    import shutil
    runs = three_class_run.parent
    data = rundir.read_json(three_class_run / rundir.CONFIG)["dataset"]
    cmd = [sys.executable, "-m", "lib.train", "--preset", "distill", "--runs-dir", str(runs),
           "--set", f"teacher={three_class_run.name}", "--set", f"dataset={data}", "--set", "student_layers=1",
           "--set", "num_train_epochs=1", "--set", "logging_steps=3", "--set", "per_device_train_batch_size=16",
           "--set", "warmup_steps=0"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "LAB_RUNS_DIR": str(runs)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    student = Path(proc.stdout.strip().splitlines()[-1])
    try:
        cfg = json.loads((student / rundir.MODEL / "config.json").read_text())
        assert cfg["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
        assert cfg["num_hidden_layers"] == 1
        from lib.serving.teacher_student import quality_and_size
        q = quality_and_size(three_class_run, student)
        assert q["same_eval_split"] and q["label_names"] == list(CLASSES)
        assert 0 <= q["student"]["f1"] <= 1 and "f1_neutral" in q["teacher"]
    finally:
        shutil.rmtree(student, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ lib units
def test_compute_metrics_binary_unchanged_and_macro_for_three():
    import numpy as np
    from transformers import EvalPrediction

    from lib.job.training import compute_metrics_fn
    logits2 = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.0, 3.0]])
    binary = compute_metrics_fn(["NEGATIVE", "POSITIVE"])(EvalPrediction(logits2, np.array([0, 1, 1, 1])))
    assert set(binary) == {"accuracy", "f1", "precision", "recall", "roc_auc"}
    assert binary["accuracy"] == 0.75 and binary["precision"] == 1.0 and binary["recall"] == pytest.approx(2 / 3)
    logits3 = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [0, 3.0, 0], [3.0, 0, 0], [0, 0, 3.0]])
    labels3 = np.array([0, 1, 2, 2, 0, 1])
    m = compute_metrics_fn(["neg", "neu", "pos"])(EvalPrediction(logits3, labels3))
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class: neg P=1 R=1; neu P=1/2 R=1/2; pos P=1/2 R=1/2 -> macro-F1 (1 + .5 + .5) / 3
    assert m["f1"] == pytest.approx(2 / 3) and m["f1_neg"] == 1.0 and m["precision_neu"] == 0.5
    assert "roc_auc" in m
    # a class missing from the labels: no one-vs-rest ROC-AUC, the rest still computed
    m2 = compute_metrics_fn(["neg", "neu", "pos"])(EvalPrediction(logits3[:3], np.array([0, 1, 1])))
    assert "roc_auc" not in m2 and "f1" in m2


def test_tfidf_baseline_three_classes():
    from lib.job.baseline import tfidf_baseline
    rows = three_class_rows(per_class=20, seed=1)
    ids = [CLASSES.index(c) for _, c in rows]
    texts = [t for t, _ in rows]
    result = tfidf_baseline(texts[:45], ids[:45], texts[45:], ids[45:], label_names=list(CLASSES))
    assert result["eval_size"] == 15 and 0.5 < result["accuracy"] <= 1.0
    assert {"f1_negative", "f1_neutral", "f1_positive", "roc_auc"} <= set(result)


def test_label_inference_order_and_label_names(tmp_path):
    labels, mapping = map_labels(["pos", "neutral", "neg", "Neutral"], ["NEGATIVE", "POSITIVE"], infer=True)
    assert labels == [2, 1, 0, 1] and mapping["Neutral"] == 1
    stars, _ = map_labels([5, 1, 3, 2, 4, "5"], ["NEGATIVE", "POSITIVE"], infer=True)
    assert stars == [4, 0, 2, 1, 3, 4]
    joy, _ = map_labels(["sadness", "joy", "anger"], ["NEGATIVE", "POSITIVE"], infer=True)
    assert joy == [2, 1, 0]  # words that are not negative/positive: alphabetical
    # label_names fixes the order and the names; numbers 0..N-1 stand for the classes too
    fixed, _ = map_labels(["Bad", "ok", "GOOD", 1], ["good", "ok", "bad"])
    assert fixed == [2, 1, 0, 1]
    # binary conventions are kept
    assert map_labels(["positive", "neg", 0, "1"], ["NEGATIVE", "POSITIVE"], infer=True)[0] == [1, 0, 0, 1]
    rows = three_class_rows(per_class=10)
    path = write_csv(tmp_path / "utf8.csv", [(t, c.upper()) for t, c in rows], encoding="utf-8")
    loaded = load_data(TrainConfig(dataset=str(path), label_names=["POSITIVE", "NEUTRAL", "NEGATIVE"]))
    assert loaded.info["label_names"] == ["POSITIVE", "NEUTRAL", "NEGATIVE"] and loaded.info["label_scheme"] == \
        "label_names"
    assert loaded.info["label_mapping"] == {"POSITIVE": 0, "NEUTRAL": 1, "NEGATIVE": 2}
    assert loaded.info["encoding"] == "utf-8"


def test_encodings_auto_bom_explicit_and_undecodable(tmp_path):
    rows = [("café crème “superb”", "pos"), ("naïve – dull", "neg")]
    cp = read_table(write_csv(tmp_path / "cp.csv", rows))
    assert cp.attrs["encoding_label"] == "Windows-1252" and cp["text"][0] == "café crème “superb”"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + "text,label\ncafé,pos\n".encode())
    frame = read_table(bom)
    assert list(frame.columns) == ["text", "label"] and frame.attrs["encoding_label"] == "UTF-8 with BOM"
    assert read_table(write_csv(tmp_path / "u8.csv", rows, "utf-8")).attrs["encoding_label"] == "UTF-8"
    # an explicit codec: Latin-1 reads bytes Windows-1252 would read differently; UTF-16 with its BOM
    latin = write_csv(tmp_path / "latin.csv", [("caf\xe9 \x80", "pos")], encoding="latin-1")
    assert read_table(latin, encoding="latin-1")["text"][0] == "caf\xe9 \x80"
    assert read_table(latin)["text"][0] == "café €"  # auto: Windows-1252
    u16 = write_csv(tmp_path / "u16.csv", rows, encoding="utf-16")
    assert read_table(u16, encoding="utf-16")["text"].tolist() == [r[0] for r in rows]
    assert "UTF-16" in error_of(DataError, read_table, u16)  # auto keeps today's message
    # neither UTF-8 nor Windows-1252 (0x81 is undefined there): a clear message, with the line
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\nok,1\ncaf\xe9 \x81,0\n")
    msg = error_of(DataError, load_data, TrainConfig(dataset=str(bad)))
    assert "not UTF-8" in msg and "not Windows-1252" in msg and "line 3" in msg and "encoding" in msg
    msg = error_of(DataError, read_table, bad, encoding="utf-8")
    assert "not UTF-8" in msg and "re-save it as utf-8" in msg.lower()
    # binary files keep their messages whatever the encoding
    zipped = tmp_path / "book.csv"
    zipped.write_bytes(b"PK\x03\x04 spreadsheet")
    assert "ZIP" in error_of(DataError, read_table, zipped, encoding="cp1252")
    # the config checks the codec name
    assert "not a text encoding" in error_of(ConfigError, TrainConfig, encoding="klingon")
    assert "not a text encoding" in error_of(ConfigError, TrainConfig, encoding="base64")
    assert TrainConfig(encoding="Latin-1").encoding == "Latin-1"


# ------------------------------------------------------------------------------------------------ bad input
def cfg(path: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset=str(path), **kw)


def test_one_class_only(tmp_path):
    path = write_csv(tmp_path / "one.csv", [(f"review {i}", "neutral") for i in range(6)], "utf-8")
    msg = error_of(DataError, load_data, cfg(path))
    assert "only one class" in msg


def test_more_than_fifty_classes(tmp_path):
    path = write_csv(tmp_path / "ids.csv", [(f"review {i}", f"id-{i}") for i in range(120)], "utf-8")
    msg = error_of(DataError, load_data, cfg(path))
    assert "120 different values" in msg and "more than the 50 classes" in msg and "label_column" in msg
    assert "'id-0'" in msg and "and 110 more" in msg
    assert "label_names must name 2 to 50" in error_of(ConfigError, TrainConfig,
                                                       label_names=[f"c{i}" for i in range(51)])


def test_a_class_too_rare_for_the_eval_split_names_its_rows(tmp_path):
    rows = [(f"review {i}", c) for i, c in enumerate(["negative", "neutral", "positive"] * 5)] + [("odd", "mixed")]
    path = write_csv(tmp_path / "rare.csv", rows, "utf-8")
    msg = error_of(DataError, load_data, cfg(path))
    assert "'mixed' (1 review: row 16 (line 17) of rare.csv)" in msg
    assert "at least 2 reviews of each class" in msg and "test_file" in msg
    # with a separate test file, a class missing from it is named
    test = write_csv(tmp_path / "test.csv", [("a", "negative"), ("b", "positive")], "utf-8")
    train = write_csv(tmp_path / "train.csv", rows[:15], "utf-8")
    msg = error_of(DataError, load_data, cfg(train, test_file=str(test)))
    assert "test split" in msg and "'neutral'" in msg and "no reviews of the class" in msg


def test_a_mostly_empty_label_column(tmp_path):
    rows = [(f"review {i}", "positive" if i < 3 else "") for i in range(10)]
    path = write_csv(tmp_path / "sparse.csv", rows, "utf-8")
    msg = error_of(DataError, load_data, cfg(path))
    assert "empty in 7 of 10 rows" in msg and "mostly empty" in msg and "label_column" in msg
    # a single gap keeps the row-level message
    rows[5] = ("review 5", "negative")
    few = [(t, lab or "negative") for t, lab in rows]
    few[9] = ("review 9", "")
    msg = error_of(DataError, load_data, cfg(write_csv(tmp_path / "gap.csv", few, "utf-8")))
    assert "label is empty" in msg and "row 10" in msg


def test_two_explicit_names_with_three_values_and_unknown_value_for_named_classes(tmp_path):
    rows = three_class_rows(per_class=4)
    path = write_csv(tmp_path / "three.csv", rows, "utf-8")
    msg = error_of(DataError, load_data, cfg(path, label_names=["bad", "good"]))
    assert "3 different values" in msg and "only two classes" in msg and "label_names" in msg
    msg = error_of(DataError, load_data, cfg(path, label_names=["negative", "positive", "mixed"]))
    assert "'neutral'" in msg and "one of the 3 label_names" in msg


def test_describe_labels_for_the_upload_preview(tmp_path):
    path = write_csv(tmp_path / "three.csv", three_class_rows(per_class=5))
    table = read_table(path)
    d = describe_labels(table, "label")
    assert d["ok"] and d["names"] == list(CLASSES) and d["counts"] == {c: 5 for c in CLASSES}
    assert d["encoding"] == "Windows-1252" and d["num_labels"] == 3 and d["how"] == "inferred"
    binary = describe_labels(pd.DataFrame({"label": ["pos", "neg", "neg", "pos"]}), "label")
    assert binary["ok"] and binary["names"] == ["NEGATIVE", "POSITIVE"] and binary["counts"] == {
        "NEGATIVE": 2, "POSITIVE": 2}
    rare = describe_labels(pd.DataFrame({"label": ["a", "b", "c", "a", "b"]}), "label")
    assert not rare["ok"] and "'c' (1 review" in rare["problems"][0] and rare["counts"]["c"] == 1
    missing = describe_labels(table, "stars")
    assert not missing["ok"] and "no label column 'stars'" in missing["problems"][0]


# ------------------------------------------------------------------------------------------------ Runs page
RUNS_PAGE = str(ROOT / "pages" / "runs.py")
RUNS_TABS = ["Training", "Compare", "Checkpoints", "Try it", "Error analysis"]


def _page_text(at) -> str:
    import re
    parts = []
    for kind in ("error", "warning", "info", "success", "markdown", "caption"):
        parts += [re.sub(r"\\(.)", r"\1", str(e.value)) for e in getattr(at, kind)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(parts)


def _frame(at, column: str):
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a {column!r} column"
    return found[0]


def _chart(at, key: str) -> dict:
    found = [e for e in at.get("plotly_chart") if e.key == key]
    assert found, f"no chart {key!r}"
    return json.loads(found[0].proto.spec)


def test_runs_page_every_tab_for_a_three_class_run(three_class_run, tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest
    root = tmp_path / "runs"
    root.mkdir()
    teacher = root / three_class_run.name
    shutil.copytree(three_class_run, teacher)
    student = root / "20990101-000000-5700de"          # a distilled run of the same classes
    shutil.copytree(teacher, student)
    config = json.loads((student / rundir.CONFIG).read_text())
    (student / rundir.CONFIG).write_text(json.dumps({**config, "task": "distill", "teacher": teacher.name,
                                                      "run_name": "three-class student"}))
    monkeypatch.setenv("LAB_RUNS_DIR", str(root))
    preds = rundir.read_jsonl(teacher / rundir.PREDICTIONS)
    for run in (teacher, student):
        at = AppTest.from_file(RUNS_PAGE, default_timeout=120)
        at.query_params["run"] = run.name
        at.run()
        assert not at.exception and not at.error
        assert "Macro-F1" in {m.label for m in at.metric}
        for tab in RUNS_TABS[1:]:
            at.session_state["runs_tab"] = tab
            at.run()
            assert not at.exception, (tab, at.exception)
            assert not at.error, (tab, [e.value for e in at.error])
            if tab == "Error analysis":
                counts = _chart(at, "err_confusion")["data"][0]["z"]
                assert len(counts) == 3 and all(len(r) == 3 for r in counts)
                assert sum(map(sum, counts)) == len(preds)
                per_class = _frame(at, "recall")
                assert per_class["class"].tolist() == list(CLASSES) and per_class["reviews"].tolist() == [6, 6, 6]
                assert at.selectbox(key="err_true").options == ["any", *CLASSES]
                wrong = sum(p["label"] != p["pred"] for p in preds)
                if wrong:
                    assert "per true class" in " ".join(e.label for e in at.expander)
            if tab == "Try it":
                at.selectbox(key="try_model").select_index(0).run()
                at.text_area(key="try_text").set_value("crème brûlée of cinema")
                at.button(key="FormSubmitter:try_form-Classify").click().run()
                assert not at.exception and not at.error
                probs = _frame(at, "probability")
                assert sorted(probs["label"]) == sorted(CLASSES)
                assert abs(probs["probability"].sum() - 1.0) < 1e-4
                assert "supports" in _page_text(at)
            if tab == "Compare" and run == student:
                table = _frame(at, "layers")
                assert table["model"].tolist() == ["teacher", "student"] and "macro-F1" in table.columns
                assert "Agreement with the teacher=100.0%" in _page_text(at)  # same weights


# ------------------------------------------------------------------------------------------------ Train page
def test_train_page_upload_preview_shows_classes_and_encoding(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from pages.ui import session
    runs = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("LAB_READ_ONLY", "LAB_ALLOWED_ROOTS", "LAB_MAX_ACTIVE_RUNS_PER_USER"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state[session.OWNER_KEY] = "tester"
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    assert at.text_input(key="tr_encoding").value == "auto"   # the form field, drawn from the config's metadata
    buf = io.StringIO()
    csv.writer(buf).writerows([("review", "stance"), *three_class_rows(per_class=7)])
    data = buf.getvalue().encode("cp1252")
    at.file_uploader(key="tr_upload").set_value(("tweets.csv", data, "text/csv")).run()
    assert not at.exception, at.exception
    assert any("decoded as Windows-1252" in str(c.value).replace("\\", "") for c in at.caption)
    classes = next(d.value for d in at.dataframe if "reviews" in d.value.columns and "class" in d.value.columns)
    assert classes["class"].tolist() == ["0 = negative", "1 = neutral", "2 = positive"]
    assert classes["reviews"].tolist() == [7, 7, 7]
    preview = next(d.value for d in at.dataframe if "review" in d.value.columns)
    assert any("é" in t or "€" in t or "“" in t for t in preview["review"])
    assert not at.error and not at.button(key="tr_use_upload").disabled
    # a class with a single review: the preview says so before anything is launched
    buf = io.StringIO()
    csv.writer(buf).writerows([("review", "stance"), *three_class_rows(per_class=3), ("one of a kind", "mixed")])
    at.file_uploader(key="tr_upload").set_value(("rare.csv", buf.getvalue().encode("utf-8"), "text/csv")).run()
    assert not at.exception
    assert any("'mixed' (1 review" in e.value.replace("\\", "") for e in at.error)
    assert at.button(key="tr_use_upload").disabled


def test_a_cached_hub_dataset_with_three_named_classes_keeps_the_hub_order(tmp_path, monkeypatch):
    import datasets

    from tests.test_data import fake_hub_cache
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train = [(f"tweet {i}", i % 3) for i in range(30)]
    test = [(f"test tweet {i}", i % 3) for i in range(9)]
    fake_hub_cache(cache, "fakeorg/tweets", "b" * 40, {"train": train, "test": test},
                   names=("positive", "neutral", "negative"))
    loaded = load_data(TrainConfig(dataset="fakeorg/tweets"))
    assert loaded.info["label_names"] == ["positive", "neutral", "negative"]   # the Hub's ids, not re-sorted
    assert [x for x in loaded.dataset["train"]["label"]] == [y for _, y in train]
    assert loaded.info["class_counts"]["test"] == {"0": 3, "1": 3, "2": 3}


# ------------------------------------------------------------------------------------------------ benchmark
def test_bench_three_class_set_is_built_as_documented():
    from bench.multiclass import ending
    from bench.multiclass import three_class_rows as bench_rows
    assert ending("One. Two words here. Three is the last one!", 8) == "Two words here. Three is the last one!"
    assert ending("One. Two words here. Three is the last one!", 6) == "Three is the last one!"
    assert ending("a " * 50 + "end.", 5) == "a a a a end."
    neg = [f"Bad film number {i}. Awful ending {i}." for i in range(12)]
    pos = [f"Good film number {i}. Great ending {i}." for i in range(12)]
    rows = bench_rows(neg + pos, [0] * 12 + [1] * 12, per_class=4, words=3, seed=0)
    assert sorted(label for _, label in rows) == ["mixed"] * 4 + ["negative"] * 4 + ["positive"] * 4
    for text, label in rows:
        kinds = {"Awful": "neg", "Great": "pos"}
        found = [kinds[w] for w in text.split() if w in kinds]
        expected = {"negative": ["neg", "neg"], "positive": ["pos", "pos"], "mixed": ["neg", "pos"]}[label]
        assert sorted(found) == expected
    endings = [t for text, _ in rows for t in text.split(". ")]
    assert len(set(endings)) == len(endings)          # every review is used once


def test_bench_multiclass_runs_end_to_end_on_the_tiny_model(tmp_path):
    md = tmp_path / "BENCH.md"
    proc = subprocess.run([sys.executable, "-m", "bench.multiclass", "--data", "demo", "--model", "tiny-bert",
                           "--train-per-class", "10", "--eval-per-class", "5", "--epochs", "1",
                           "--out-dir", str(tmp_path / "out"), "--md", str(md)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0 <= result["model_macro_f1"] <= 1 and 0 <= result["tfidf_macro_f1"] <= 1
    saved = json.loads((tmp_path / "out" / "multiclass.json").read_text())
    assert saved["label_names"] == ["negative", "mixed", "positive"] and saved["eval_size"] == 15
    text = md.read_text()
    assert "<!-- bench:multiclass -->" in text and "| mixed |" in text and "macro-F1" in text

"""The predictor on onnxruntime: it serves a current ONNX export (the CLI's default place, the job's
``<run>/onnx``), gives PyTorch's probabilities through the same text preparation (cleaning, length,
head+tail truncation), falls back to PyTorch when the export is stale, damaged or onnxruntime is
missing, and ``python -m lib.predict`` then runs without importing torch or transformers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lib.errors import ModelError  # noqa: E402
from lib.job import onnx_export as ex  # noqa: E402
from lib.serving.predictor import Predictor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LONG = ("The first hour is slow and the dialogue is clumsy.<br /><br />" * 12
        + "But the last act is moving and I would watch it again. 8/10")
TEXTS = ["A warm, funny and beautifully acted film.", "Dull.", LONG, "Great cast.<br /><br />Terrible script."]


def _model_folder(parent: Path, *, seed: int = 3, preprocessing: dict | None = None) -> Path:
    from lib.sources.models import load_tokenizer, tiny_bert
    folder = parent / f"model-{seed}"
    tiny_bert(["NEGATIVE", "POSITIVE"], seed=seed).save_pretrained(folder)
    load_tokenizer("bundled-minilm").save_pretrained(folder)
    record = preprocessing or {"max_length": 48, "strip_html": True}
    (folder / "lab_preprocessing.json").write_text(json.dumps(record))
    (folder / "calibration.json").write_text(json.dumps({"temperature": 1.5}))
    return folder


def _export_cli(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.export", "--model", str(folder), "--format", "onnx", "--int8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """A model folder exported by the CLI without --out: the export lands where predictions look."""
    folder = _model_folder(tmp_path_factory.mktemp("served"))
    proc = _export_cli(folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["out"] == str(folder / "onnx")
    return folder


def _same_probabilities(a: list[dict], b: list[dict], tol: float = 1e-4) -> None:
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    assert [r["truncated"] for r in a] == [r["truncated"] for r in b]
    for x, y in zip(a, b):
        for name in x["scores"]:
            assert abs(x["scores"][name] - y["scores"][name]) < tol, (x, y)


def test_int8_predictions_run_on_onnxruntime_when_the_export_is_current(served):
    fast = Predictor(served, precision="int8")
    assert fast.runtime == "onnx" and "onnxruntime" in fast.description
    assert fast.max_length == 48 and fast.strip_html and fast.temperature == 1.5
    results = fast.predict(TEXTS)
    assert all(r["label"] in ("NEGATIVE", "POSITIVE") for r in results)
    assert results[2]["truncated"] and results[2]["tokens"] == 48
    # full precision keeps PyTorch by default: the job's own numbers
    assert Predictor(served, precision="fp32").runtime == "torch"
    assert Predictor(served, precision="int8", runtime="torch").runtime == "torch"


def test_onnx_gives_pytorchs_probabilities_through_the_same_preparation(served, tmp_path):
    # compare the runtimes at full precision
    onnx = Predictor(served, precision="fp32", runtime="onnx")
    torch_ = Predictor(served, precision="fp32", runtime="torch")
    assert onnx.runtime == "onnx" and torch_.runtime == "torch"
    _same_probabilities(onnx.predict(TEXTS), torch_.predict(TEXTS))
    # <br /> cleaning is applied by both: the cleaned and the raw review get identical probabilities
    a, b = onnx.predict(["Great cast.<br /><br />Terrible script.", "Great cast.\n\nTerrible script."])
    assert a["scores"] == b["scores"]
    # explanations score the same words the same way
    ea, eb = onnx.explain(LONG), torch_.explain(LONG)
    assert [s["text"] for s in ea["spans"]] == [s["text"] for s in eb["spans"]]
    assert max(abs(s["score"] - t["score"]) for s, t in zip(ea["spans"], eb["spans"])) < 1e-4


def test_head_and_tail_truncation_is_the_training_jobs_cut_in_both_runtimes(tmp_path):
    import datasets
    from transformers import AutoTokenizer

    from lib.job.tokcache import map_tokenize
    folder = _model_folder(tmp_path, preprocessing={"max_length": 32, "strip_html": True, "head_tokens": 8})
    assert _export_cli(folder).returncode == 0
    onnx = Predictor(folder, precision="fp32", runtime="onnx")
    torch_ = Predictor(folder, precision="fp32", runtime="torch")
    assert onnx.head_tokens == torch_.head_tokens == 8
    _same_probabilities(onnx.predict(TEXTS), torch_.predict(TEXTS))
    # the token ids the predictor feeds are the job's: [CLS] + first 8 + last 22 (ending with [SEP])
    prepared = onnx.prepare(LONG)
    job_ids = map_tokenize(datasets.Dataset.from_dict({"text": [prepared], "label": [1]}),
                           AutoTokenizer.from_pretrained(folder), 32, "dynamic", head_tokens=8)[0][0]["input_ids"]
    for model in (onnx, torch_):
        items, truncated = model._encode([prepared], model.max_length)
        assert items[0]["input_ids"] == list(job_ids) and truncated == [True]
    full = AutoTokenizer.from_pretrained(folder)(prepared)["input_ids"]
    assert job_ids[:9] == full[:9] and job_ids[9:] == full[-23:]
    note = onnx.predict_one(LONG)["note"]
    assert "first 8 and the last 22 tokens" in note
    # the end of a long review is explained at its place in the whole text
    explained = onnx.explain(LONG)
    last = explained["spans"][-1]
    assert explained["text"][last["start"]:last["end"]] == last["text"] == "10"
    assert "skipped the middle" in explained["note"]


def test_a_stale_export_is_not_used(tmp_path):
    folder = _model_folder(tmp_path)
    assert _export_cli(folder).returncode == 0
    from lib.sources.models import tiny_bert
    tiny_bert(["NEGATIVE", "POSITIVE"], seed=9).save_pretrained(folder)   # new weights, old export
    assert not ex.is_current(folder / "onnx", folder)
    assert Predictor(folder, precision="int8").runtime == "torch"
    with pytest.raises(ModelError, match="no current int8 ONNX export"):
        Predictor(folder, precision="int8", runtime="onnx")


def test_a_damaged_export_falls_back_to_pytorch_with_a_note(served, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(served, folder)
    (folder / "onnx" / ex.INT8_FILE).write_bytes(b"not an onnx graph")
    model = Predictor(folder, precision="int8")
    assert model.runtime == "torch" and "could not be used" in model.runtime_note
    assert model.predict(["Fine."])[0]["label"] in ("NEGATIVE", "POSITIVE")
    with pytest.raises(ModelError, match="onnxruntime could not load .*model.int8.onnx"):
        Predictor(folder, precision="int8", runtime="onnx")


def test_without_onnxruntime_predictions_stay_on_pytorch(served, monkeypatch):
    import lib.serving.onnx as serving_onnx
    monkeypatch.setattr(ex, "onnxruntime_available", lambda: False)
    monkeypatch.setattr(serving_onnx, "onnxruntime_available", lambda: False)
    assert Predictor(served, precision="int8").runtime == "torch"
    with pytest.raises(ModelError, match="not installed"):
        Predictor(served, precision="int8", runtime="onnx")
    with pytest.raises(ModelError, match="unknown runtime"):
        Predictor(served, runtime="tensorflow")


def test_the_cli_predicts_on_onnxruntime_without_torch_or_transformers(served, tmp_path):
    code = ("import json, sys\nfrom lib.predict import main\n"
            f"rc = main(['--model', {str(served)!r}, 'A warm and funny film.', 'Dull.'])\n"
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, "
            "'transformers': 'transformers' in sys.modules, 'onnx': 'onnx' in sys.modules}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LAB_PREDICT_PRECISION": "int8"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"rc": 0, "torch": False, "transformers": False, "onnx": False}
    rows = [json.loads(x) for x in lines[:-1]]
    expected = Predictor(served, precision="int8").predict(["A warm and funny film.", "Dull."])
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    assert "Loading weights" not in proc.stderr
    # an explicit runtime works from the command line; a folder without a model is a message, not a traceback
    proc = subprocess.run([sys.executable, "-m", "lib.predict", "--model", str(served), "--runtime", "onnx",
                           "--precision", "fp32", "Dull."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "lib.predict", "--model", str(tmp_path), "--runtime", "onnx",
                           "Dull."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_the_training_job_writes_an_int8_export_predictions_use(tiny_run_dir):
    onnx_dir = tiny_run_dir / "onnx"
    meta = ex.read_meta(onnx_dir)
    assert meta["files"] == {"fp32": ex.ONNX_FILE, "int8": ex.INT8_FILE}
    assert ex.is_current(onnx_dir, tiny_run_dir / "model")
    assert ex.export_dir_for(tiny_run_dir / "model") == onnx_dir
    assert meta["preprocessing"]["max_length"] == json.loads((tiny_run_dir / "config.json").read_text())["max_length"]
    model = Predictor(tiny_run_dir / "model", precision="int8")
    assert model.runtime == "onnx"
    assert model.predict(["A warm, funny film."])[0]["label"] in model.label_names
    assert "ONNX export (int8, with fp32 for near-boundary reviews)" in (tiny_run_dir / "stdout.log").read_text()


def test_new_label_names_in_config_json_make_the_export_stale(served, tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(served, folder)
    assert ex.is_current(folder / "onnx", folder)          # a copy: same weights, same config
    config = json.loads((folder / "config.json").read_text())
    config.update(id2label={"0": "bad", "1": "good"}, label2id={"bad": 0, "good": 1})
    (folder / "config.json").write_text(json.dumps(config))
    assert not ex.is_current(folder / "onnx", folder)
    model = Predictor(folder, precision="int8")
    assert model.runtime == "torch" and model.label_names == ["bad", "good"]


def test_int8_rereads_the_reviews_it_is_unsure_of_in_full_precision(served, tmp_path, monkeypatch):
    import lib.serving.predictor as pr
    texts = [*TEXTS, "Fine, I guess.", "Not bad at all.", "I wanted to love it."]
    plain = Predictor(served, precision="int8", calibrated=False, recheck=False).predict(texts)
    full = Predictor(served, precision="fp32", runtime="onnx", calibrated=False).predict(texts)
    assert any(abs(a["scores"]["POSITIVE"] - b["scores"]["POSITIVE"]) > 1e-6 for a, b in zip(plain, full))

    def gap(r):
        import math
        p = r["scores"]["POSITIVE"]
        return abs(math.log(p / (1 - p)))
    # a threshold between int8's gaps: the rows below it get fp32's answer, the others keep int8's
    gaps = sorted(gap(r) for r in plain)
    cut = (gaps[len(gaps) // 2 - 1] + gaps[len(gaps) // 2]) / 2
    monkeypatch.setattr(pr, "INT8_RECHECK_GAP", cut)
    model = Predictor(served, precision="int8", calibrated=False)
    assert "re-read in fp32" in model.description
    got = model.predict(texts)
    unsure = [gap(r) < cut for r in plain]
    assert model.rechecked == sum(unsure) == len(texts) // 2
    for g, p, f, u in zip(got, plain, full, unsure):
        assert g["scores"] == pytest.approx((f if u else p)["scores"], abs=1e-6), (g, p, f, u)

    # an export without the fp32 graph answers with int8 alone; a damaged fp32 graph too, with a note
    monkeypatch.setattr(pr, "INT8_RECHECK_GAP", 100.0)
    only = tmp_path / "only-int8"
    shutil.copytree(served, only)
    meta = ex.read_meta(only / "onnx")
    meta["files"].pop("fp32")
    (only / "onnx" / ex.META_FILE).write_text(json.dumps(meta))
    (only / "onnx" / ex.ONNX_FILE).unlink()
    alone = Predictor(only, precision="int8", calibrated=False)
    assert alone.runtime == "onnx" and "re-read" not in alone.description
    assert [r["scores"] for r in alone.predict(texts)] == [r["scores"] for r in plain]
    damaged = tmp_path / "damaged-fp32"
    shutil.copytree(served, damaged)
    (damaged / "onnx" / ex.ONNX_FILE).write_bytes(b"not a graph")
    broken = Predictor(damaged, precision="int8", calibrated=False)
    assert [r["scores"] for r in broken.predict(texts)] == [r["scores"] for r in plain]
    assert "not re-read in full precision" in broken.runtime_note and broken.rechecked == 0


def test_an_older_unsmoothed_int8_graph_rereads_with_its_own_wider_gap(served, tmp_path, monkeypatch):
    import lib.serving.predictor as pr
    texts = [*TEXTS, "Fine, I guess.", "Not bad at all."]
    monkeypatch.setattr(pr, "INT8_RECHECK_GAP", 0.0)              # smoothed graphs: never re-read
    monkeypatch.setattr(pr, "INT8_RECHECK_GAP_UNSMOOTHED", 100.0)  # older graphs: always re-read
    assert ex.read_meta(served / "onnx")["quantization"]["smoothing"] == "SmoothQuant"
    model = Predictor(served, precision="int8")
    model.predict(texts)
    assert model.rechecked == 0
    older = tmp_path / "older"
    shutil.copytree(served, older)
    meta = ex.read_meta(older / "onnx")
    for key in ("smoothing", "alpha", "calibration_reviews", "layers"):
        meta["quantization"].pop(key)
    (older / "onnx" / ex.META_FILE).write_text(json.dumps(meta))
    model = Predictor(older, precision="int8")
    model.predict(texts)
    assert model.runtime == "onnx" and model.rechecked == len(texts)


def test_a_graph_reading_weights_from_outside_its_folder_is_refused(served, tmp_path):
    import onnx

    from lib.serving.onnx import OnnxClassifier
    outside = tmp_path / "weights.bin"
    folder = tmp_path / "export"
    folder.mkdir()
    model = onnx.load(str(served / "onnx" / ex.INT8_FILE))
    onnx.save_model(model, str(folder / ex.INT8_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    (folder / "weights.bin").rename(outside)
    graph = onnx.load(str(folder / ex.INT8_FILE), load_external_data=False)
    for tensor in graph.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save_model(graph, str(folder / ex.INT8_FILE))
    with pytest.raises(ModelError, match="outside its own folder"):
        OnnxClassifier(folder / ex.INT8_FILE)
    # the plain graph (no external weights) loads without that check parsing it
    assert OnnxClassifier(served / "onnx", precision="int8").precision == "int8"

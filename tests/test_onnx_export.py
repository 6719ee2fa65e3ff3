"""ONNX export and the onnxruntime classifier on the tiny random BERT: the export agrees with PyTorch
(labels and logits, any batch size and length), the int8 variant, the recorded metadata, refusals, and
``python -m lib.export`` on bad input and with the Hub out of reach."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lib.errors import ModelError  # noqa: E402
from lib.job import onnx_export as ex  # noqa: E402
from lib.serving import onnx as ox  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["A warm, funny and beautifully acted film.", "Dull.",
         "The plot wanders, the jokes land rarely, and the ending arrives without earning anything at all."]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.export", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from lib.sources.models import load_tokenizer, tiny_bert
    folder = tmp_path_factory.mktemp("tiny-model")
    model = tiny_bert(["NEGATIVE", "POSITIVE"], seed=3)
    model.save_pretrained(folder)
    load_tokenizer("bundled-minilm").save_pretrained(folder)
    (folder / "lab_preprocessing.json").write_text(json.dumps({"max_length": 96, "strip_html": True}))
    (folder / "calibration.json").write_text(json.dumps({"temperature": 1.7}))
    return folder


@pytest.fixture(scope="module")
def exported(tiny_dir, tmp_path_factory) -> Path:
    return ex.export_onnx(tiny_dir, tmp_path_factory.mktemp("export") / "onnx", quantize=True)


@pytest.fixture(scope="module")
def torch_side(tiny_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    model.eval()
    return model, AutoTokenizer.from_pretrained(tiny_dir)


def encode(tokenizer, texts):
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np"))


def torch_logits(model, enc) -> np.ndarray:
    import torch
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(np.asarray(v)) for k, v in enc.items()}).logits.numpy()


def test_export_writes_graphs_tokenizer_and_metadata(exported, tiny_dir):
    names = set(os.listdir(exported))
    assert {ex.ONNX_FILE, ex.INT8_FILE, ex.META_FILE, "config.json", "tokenizer.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    meta = ex.read_meta(exported)
    assert meta["files"] == {"fp32": ex.ONNX_FILE, "int8": ex.INT8_FILE}
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["dtype"] == "int64" for i in meta["inputs"])
    assert meta["outputs"][0]["shape"] == ["batch", 2]
    assert meta["opset"] >= 17
    assert meta["label_names"] == ["NEGATIVE", "POSITIVE"]
    # how training prepared text travels with the export, and predictions use its token limit
    assert meta["preprocessing"] == {"max_length": 96, "strip_html": True, "recorded_by_training": True}
    assert meta["max_length"] == 96 and meta["model_max_length"] == 512
    assert ox.OnnxClassifier(exported).max_length == 96
    assert json.loads((exported / "calibration.json").read_text()) == {"temperature": 1.7}
    weights = meta["source"]["weights"]
    assert [w["name"] for w in weights] == ["model.safetensors"]
    assert weights[0]["size"] == (tiny_dir / "model.safetensors").stat().st_size
    assert meta["check"]["fp32"]["max_abs_logit_diff"] < 1e-3
    assert meta["check"]["fp32"]["labels_agree"] == meta["check"]["fp32"]["texts"]
    assert (exported / ex.INT8_FILE).stat().st_size < (exported / ex.ONNX_FILE).stat().st_size
    # attention is fused; residual additions and layer norms stay apart (the fused kernel was the slow one)
    import onnx
    ops = {n.op_type for n in onnx.load(str(exported / ex.ONNX_FILE)).graph.node}
    assert "Attention" in ops and "LayerNormalization" in ops and "SkipLayerNormalization" not in ops
    assert meta["optimizer"]["unfused"] == ["SkipLayerNormFusion"]
    # int8 was made from the smoothed model, its ranges measured on built-in reviews
    quant = meta["quantization"]
    assert quant["smoothing"] == "SmoothQuant" and quant["alpha"] == ex.SMOOTH_ALPHA
    assert quant["calibration_reviews"] == ex.SMOOTH_REVIEWS and quant["layers"] == 2
    assert not (set(names) & {"smoothed.onnx", "smoothed.raw.onnx", "raw.onnx"})   # no leftovers


def test_fp32_graph_agrees_with_pytorch_at_any_batch_and_length(exported, torch_side):
    model, tok = torch_side
    clf = ox.OnnxClassifier(exported, threads=1)
    for texts in (TEXTS[:1], TEXTS[1:2], TEXTS):
        enc = encode(tok, texts)
        ref = torch_logits(model, enc)
        got = clf.logits(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-4)
        assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_padding_does_not_change_a_review_s_logits(exported, torch_side):
    _, tok = torch_side
    clf = ox.OnnxClassifier(exported)
    batch = encode(tok, TEXTS)
    together = clf.logits(**batch)
    for i, text in enumerate(TEXTS):
        alone = clf.logits(**encode(tok, [text]))
        np.testing.assert_allclose(alone[0], together[i], atol=1e-5)


def test_int8_graph_is_close_to_full_precision(exported, torch_side):
    model, tok = torch_side
    enc = encode(tok, TEXTS)
    fp32 = ox.OnnxClassifier(exported).logits(**enc)
    int8 = ox.OnnxClassifier(exported, precision="int8")
    assert int8.precision == "int8" and int8.path.name == ex.INT8_FILE
    got = int8.logits(**enc)
    assert got.shape == fp32.shape
    assert not np.array_equal(got, fp32)                 # it really is another graph
    np.testing.assert_allclose(got, fp32, atol=0.05)     # ... with nearly the same numbers


def test_inputs_of_other_integer_types_and_defaults(exported, torch_side):
    model, tok = torch_side
    enc = encode(tok, TEXTS[:1])
    clf = ox.OnnxClassifier(exported / ex.ONNX_FILE)
    ref = clf.logits(**enc)
    np.testing.assert_allclose(clf.logits(enc["input_ids"].astype(np.int32)), ref, atol=1e-6)  # mask: all ones
    np.testing.assert_allclose(clf.logits(list(enc["input_ids"][0])), ref, atol=1e-6)        # one review, 1-D
    np.testing.assert_allclose(clf.logits(**enc, threads=1), ref, atol=1e-6)                  # another session


def test_fast_tokenizer_gives_the_transformers_ids_without_torch(exported, torch_side):
    _, tok = torch_side
    long_text = " ".join(["a long review that keeps going"] * 60)
    texts = [*TEXTS, long_text, "Line one.\n\nLine two, with UPPER case and accents: café."]
    fast = ox.FastTokenizer(exported, max_length=64)
    encoded = fast.encode(texts)
    ref = tok(texts, truncation=True, max_length=64)
    assert [e[0] for e in encoded] == [list(x) for x in ref["input_ids"]]
    assert [e[2] for e in encoded] == [False] * len(TEXTS) + [True, False]
    clf = ox.OnnxClassifier(exported)
    via_fast = clf.logits(**fast.batch(encoded))
    via_hf = clf.logits(**dict(tok(texts, truncation=True, max_length=64, padding=True, return_tensors="np")))
    np.testing.assert_allclose(via_fast, via_hf, atol=1e-6)
    code = "import sys; import lib.serving.onnx; print('torch' in sys.modules, 'transformers' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["False", "False"]


def test_bad_inputs_and_missing_files_are_model_errors(exported, tmp_path):
    clf = ox.OnnxClassifier(exported)
    with pytest.raises(ModelError, match="must match"):
        clf.logits(np.ones((2, 5), dtype=np.int64), np.ones((2, 4), dtype=np.int64))
    with pytest.raises(ModelError, match="integers"):
        clf.logits(np.ones((1, 5), dtype=np.float32))
    with pytest.raises(ModelError, match="threads"):
        clf.logits(np.ones((1, 5), dtype=np.int64), threads=0)
    with pytest.raises(ModelError, match="does not exist"):
        ox.OnnxClassifier(tmp_path / "nowhere")
    only_fp32 = tmp_path / "only-fp32"
    only_fp32.mkdir()
    (only_fp32 / ex.ONNX_FILE).write_bytes((exported / ex.ONNX_FILE).read_bytes())
    with pytest.raises(ModelError, match="--int8"):
        ox.OnnxClassifier(only_fp32, precision="int8")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    with pytest.raises(ModelError):
        ox.OnnxClassifier(junk)


def test_without_onnxruntime_the_message_says_what_to_install(exported, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)       # import onnxruntime now fails
    assert not ox.onnxruntime_available()
    with pytest.raises(ModelError, match="pip install onnxruntime"):
        ox.OnnxClassifier(exported)
    with pytest.raises(ModelError, match="pip install onnxruntime"):
        ex.export_onnx(tiny_dir, tmp_path / "out")


def test_export_refuses_unsafe_or_clobbering_targets(tiny_dir, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ex.export_onnx(tmp_path / "missing", tmp_path / "out")
    for clobbering in (tiny_dir, tiny_dir.parent):
        with pytest.raises(ModelError, match="must not be the model folder"):
            ex.export_onnx(tiny_dir, clobbering)
    assert (tiny_dir / "model.safetensors").is_file()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="not empty"):
        ex.export_onnx(tiny_dir, busy)
    assert (busy / "notes.txt").read_text() == "keep me"
    pickles = tmp_path / "pickles"
    pickles.mkdir()
    (pickles / "config.json").write_text((tiny_dir / "config.json").read_text())
    (pickles / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError, match="pickle"):
        ex.export_onnx(pickles, tmp_path / "out2")


def test_torch_export_fallback_when_the_torchscript_exporter_fails(tiny_dir, tmp_path, monkeypatch, torch_side):
    import torch
    real = torch.onnx.export

    def no_torchscript(*args, **kwargs):
        if kwargs.get("dynamo") is False:
            raise RuntimeError("TorchScript exporter unavailable")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_torchscript)
    import shutil
    plain = tmp_path / "plain"
    shutil.copytree(tiny_dir, plain)
    (plain / "lab_preprocessing.json").unlink()
    out = ex.export_onnx(plain, tmp_path / "fallback")
    meta = ex.read_meta(out)
    assert meta["preprocessing"]["recorded_by_training"] is False and meta["max_length"] == 512
    assert meta["exporter"] == "torch.onnx.export (torch.export)" and meta["opset"] >= 18
    model, tok = torch_side
    enc = encode(tok, TEXTS)
    np.testing.assert_allclose(ox.OnnxClassifier(out).logits(**enc), torch_logits(model, enc), atol=1e-4)


def test_is_current_follows_the_source_weights(exported, tiny_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)                      # new mtimes, same bytes
    assert ex.is_current(exported, tiny_dir)
    assert ex.is_current(exported, copy)
    from lib.sources.models import tiny_bert
    tiny_bert(["NEGATIVE", "POSITIVE"], seed=4).save_pretrained(copy)   # retrained: other weights
    assert not ex.is_current(exported, copy)


def test_export_cli_writes_and_reports_the_difference(tiny_dir, tmp_path):
    out = tmp_path / "cli-onnx"
    proc = cli("--model", str(tiny_dir), "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["files"] == {"fp32": ex.ONNX_FILE}
    assert result["max_abs_logit_diff"]["fp32"] < 1e-3
    assert "max abs logit difference" in proc.stderr
    assert (out / ex.ONNX_FILE).is_file() and not (out / ex.INT8_FILE).exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/missing", "--format", "onnx", "--out", "{tmp}/o"], "does not exist"),
    (["--model", "{model}", "--format", "onnx", "--opset", "3"], "--opset must be between"),
    (["--model", "{model}", "--format", "zip", "--out", "{tmp}/o"], "invalid choice"),
    (["--model", "{model}", "--format", "hub"], "--repo-id"),
    (["--model", "{tmp}/missing", "--format", "hub", "--repo-id", "me/model"], "does not exist"),
])
def test_export_cli_bad_input_exits_2_without_traceback(tiny_dir, tmp_path, args, message):
    proc = cli(*[a.format(tmp=tmp_path, model=tiny_dir) for a in args])
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()


def test_hub_export_without_token_or_network_stops_with_a_message(tiny_dir):
    no_token = cli("--model", str(tiny_dir), "--format", "hub", "--repo-id", "me/model", env={"HF_TOKEN": ""})
    assert no_token.returncode == 3
    assert "HF_TOKEN" in no_token.stderr and "Traceback" not in no_token.stderr
    # a token, but the Hub's address refuses connections (as an offline machine does)
    offline = cli("--model", str(tiny_dir), "--format", "hub", "--repo-id", "me/model",
                  env={"HF_TOKEN": "hf_not_a_real_token", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": ""})
    assert offline.returncode == 3
    assert "not reachable" in offline.stderr and "nothing was uploaded" in offline.stderr
    assert "Traceback" not in offline.stderr


def test_smoothing_computes_the_same_function_with_other_weights(torch_side):
    import torch
    model, tok = torch_side
    before = {k: v.clone() for k, v in model.state_dict().items()}
    smoothed, facts = ex._smooth_for_int8(model, tok, 64)
    assert facts == {"smoothing": "SmoothQuant", "alpha": ex.SMOOTH_ALPHA, "calibration_reviews": ex.SMOOTH_REVIEWS,
                     "layers": 2}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())    # the model itself is untouched
    moved = [k for k, v in smoothed.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert not any(".attention.self.query." in k or ".attention.self.key." in k for k in moved)  # not asked for
    assert any(k.endswith("attention.self.value.weight") for k in moved)          # folded into value's rows
    assert any(k.endswith("output.dense.weight") and "attention" not in k for k in moved)
    enc = encode(tok, TEXTS)
    np.testing.assert_allclose(torch_logits(smoothed, enc), torch_logits(model, enc), atol=1e-4)


def test_smoothing_is_skipped_for_encoders_not_shaped_like_bert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from lib.sources.models import load_tokenizer
    config = DistilBertConfig(vocab_size=30522, dim=32, hidden_dim=64, n_layers=1, n_heads=2, num_labels=2)
    model = DistilBertForSequenceClassification(config).eval()
    smoothed, facts = ex._smooth_for_int8(model, load_tokenizer("bundled-minilm"), 32)
    assert smoothed is None and facts == {"smoothing": None, "why": "not a BERT-style encoder"}


def test_smoothing_shrinks_int8_error_on_the_bundled_minilm(tmp_path):
    """Real weights (the bundled MiniLM's encoder has the outlier channels smoothing is for): int8 made
    from the smoothed model is closer to full precision than int8 of the plain graph."""
    import torch

    from lib.sources.demo_data import demo_texts
    from lib.sources.models import BUNDLED_MODEL, load_model, load_tokenizer
    torch.manual_seed(0)
    folder = tmp_path / "minilm"
    load_model(BUNDLED_MODEL, ["NEGATIVE", "POSITIVE"]).save_pretrained(folder)
    tok = load_tokenizer(BUNDLED_MODEL)
    tok.save_pretrained(folder)
    out = ex.export_onnx(folder, tmp_path / "onnx", quantize=True)
    assert ex.read_meta(out)["quantization"]["smoothing"] == "SmoothQuant"
    ex._quantize(out / ex.ONNX_FILE, tmp_path / "plain.int8.onnx")
    fp32 = ox.OnnxClassifier(out)
    smooth = ox.OnnxClassifier(out, precision="int8")
    plain = ox.OnnxClassifier(tmp_path / "plain.int8.onnx")
    texts = demo_texts("test")[::10][:48]
    errors = {"smooth": [], "plain": []}
    for start in range(0, len(texts), 8):
        enc = encode(tok, texts[start:start + 8])
        ref = fp32.logits(**enc)
        gap = ref[:, 1] - ref[:, 0]
        for name, clf in (("smooth", smooth), ("plain", plain)):
            got = clf.logits(**enc)
            errors[name] += list(np.abs((got[:, 1] - got[:, 0]) - gap))
    smooth_err, plain_err = float(np.median(errors["smooth"])), float(np.median(errors["plain"]))
    assert smooth_err < 0.8 * plain_err, (smooth_err, plain_err)

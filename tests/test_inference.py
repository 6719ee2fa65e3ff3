"""lib.inference on a real tiny run: loading (final model, checkpoint, base model), batched prediction
in the right order, explanations, bad input, deleted checkpoints, planted pickles, CSV export."""
from __future__ import annotations

import csv
import html
import io
import pickle
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lib.errors import DataError, ModelError
from lib.readers import checkpoints, metrics, predictions, progress
from lib.registry import reconcile
from lib.serving import batch, explain
from lib.serving import predictor as serving_predictor
from lib.util import contention

ROOT = Path(__file__).resolve().parents[1]

TEXTS = ["Great.", "A long, slow and careful film about two brothers and a farm that slowly wins you over " * 3,
         "Terrible acting, awful script.", "ok", "Not my thing at all, but the music is lovely and the cast tries."]


class Boom:
    """Unpickling this creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def plant_pickles(folder: Path, marker: Path, names=("pytorch_model.bin", "optimizer.pt", "training_args.bin",
                                                     "rng_state.pth", "scheduler.pt")) -> None:
    payload = pickle.dumps(Boom(marker))
    for name in names:
        (folder / name).write_bytes(payload)


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir) -> Path:
    return tiny_run_dir


@pytest.fixture(scope="module")
def predictor(run_dir) -> serving_predictor.Predictor:
    return serving_predictor.Predictor(run_dir / "model")


def test_the_planted_payload_really_runs_when_unpickled(tmp_path):
    marker = tmp_path / "sanity"
    pickle.loads(pickle.dumps(Boom(marker)))
    assert marker.exists()  # so "the marker never appears" below means "never unpickled"


def test_model_choices(run_dir):
    choices = serving_predictor.model_choices(run_dir)
    kinds = [c.kind for c in choices]
    assert kinds[0] == "final" and kinds[-1] == "base"
    steps = [int(Path(c.path).name.split("-")[1]) for c in choices if c.kind == "checkpoint"]
    assert steps and steps == sorted(steps, reverse=True)
    assert serving_predictor.model_choices(None) == [choices[-1]]


def test_predict_labels_scores_and_order(predictor):
    results = predictor.predict(TEXTS, batch_size=2)
    assert len(results) == len(TEXTS)
    for r in results:
        assert r["label"] in ("NEGATIVE", "POSITIVE") and set(r["scores"]) == {"NEGATIVE", "POSITIVE"}
        assert sum(r["scores"].values()) == pytest.approx(1.0)
        assert r["label"] == max(r["scores"], key=r["scores"].get)
        assert r["confidence"] == r["scores"][r["label"]]
    # length-sorted batches are put back in input order: same as predicting each text alone
    for text, r in zip(TEXTS, results):
        alone = predictor.predict([text])[0]
        assert alone["tokens"] == r["tokens"]
        for name in alone["scores"]:
            assert alone["scores"][name] == pytest.approx(r["scores"][name], abs=1e-5)
    assert len({r["tokens"] for r in results}) > 2  # the texts really had different lengths


def test_checkpoint_and_base_model_predict(run_dir):
    ck = [c for c in serving_predictor.model_choices(run_dir) if c.kind == "checkpoint"][0]
    p = serving_predictor.Predictor(ck.path)
    assert p.label_names == ["NEGATIVE", "POSITIVE"]
    assert p.predict_one("fine film")["label"] in p.label_names
    base = serving_predictor.Predictor(serving_predictor.BASE_MODEL)
    assert base.label_names == ["NEGATIVE", "POSITIVE"]
    out = base.predict_one("A warm, funny film.")
    assert out["label"] in base.label_names and out["latency_ms"] > 0


def test_bad_text_input(predictor):
    for empty in ("", "   \n\t"):
        with pytest.raises(DataError, match="empty"):
            predictor.predict_one(empty)
        with pytest.raises(DataError, match="empty"):
            predictor.explain(empty)
    assert predictor.predict(["", "good"])[0]["label"] is None
    with pytest.raises(DataError):
        predictor.predict([None])  # type: ignore[list-item]
    # 1 MB of text: cut to the model's limit, with a note
    huge = predictor.predict_one("a truly wonderful film " * 45_000)
    assert huge["truncated"] and huge["tokens"] == predictor.max_length and "limit" in huge["note"]
    one_word = predictor.predict_one("x" * 1_000_000)
    assert one_word["truncated"] and one_word["label"] in predictor.label_names
    # emoji, control characters, HTML: just text
    for odd in ("😀😀😀🎬", "\x00\x07\x1b[31m\u202e", "<script>alert('x')</script><b>bold</b>"):
        res = predictor.predict_one(odd)
        assert res["label"] in predictor.label_names and not res["truncated"]


def test_explain_maps_words_to_the_text(predictor):
    text = "I didn't like it <b>at all</b> 😀, but the ending is lovely."
    expl = predictor.explain(text)
    assert expl["label"] in predictor.label_names and expl["method"] == "occlusion"
    assert expl["spans"], "every word gets a score"
    for span in expl["spans"]:
        assert text[span["start"]:span["end"]] == span["text"]
        assert span["text"].strip()
    covered = {span["text"] for span in expl["spans"]}
    assert {"didn", "like", "ending", "lovely", "😀"} <= covered
    # repeatable (the model is in eval mode, no dropout)
    again = predictor.explain(text)
    assert [s["score"] for s in again["spans"]] == pytest.approx([s["score"] for s in expl["spans"]])
    html_out = explain.highlight_html(text, expl, predictor.label_names)
    assert "<b>" not in html_out and "</b>" not in html_out
    # strip the highlight markup: what is left is exactly the escaped review
    inner = re.sub(r'^<div[^>]*>|</div>$', "", html_out)
    assert re.sub(r"<span [^>]*>|</span>", "", inner) == html.escape(text)
    assert inner.count("<span ") == len(expl["spans"])
    script = "<script>alert(1)</script>"
    assert "<script" not in explain.highlight_html(script, predictor.explain(script))


def test_explain_long_and_wordless_text(predictor):
    long = predictor.explain("good bad " * 2000)
    assert long["truncated"] and long["words_per_unit"] > 1 and "first" in long["note"]
    assert max(s["end"] for s in long["spans"]) <= long["analysed_chars"]
    nothing = predictor.explain("\x07\x08")
    assert nothing["spans"] == [] and "no words" in nothing["note"]


def test_concurrent_predictions_match_sequential(predictor):
    expected = [r["scores"] for r in predictor.predict(TEXTS)]
    errors, outputs = [], []

    def worker():
        try:
            for _ in range(3):
                outputs.append([r["scores"] for r in predictor.predict(TEXTS, batch_size=3)])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(outputs) == 18
    for out in outputs:
        for got, want in zip(out, expected):
            assert got == pytest.approx(want, abs=1e-5)


def test_deleted_checkpoint_gives_a_clear_message(run_dir, tmp_path):
    ck = [c for c in serving_predictor.model_choices(run_dir) if c.kind == "checkpoint"][0]
    copy = tmp_path / "checkpoints" / Path(ck.path).name
    shutil.copytree(ck.path, copy)
    location, mtime = serving_predictor.model_signature(copy)
    assert location == str(copy.resolve()) and mtime > 0
    shutil.rmtree(copy)
    with pytest.raises(ModelError, match="no longer exists"):
        serving_predictor.model_signature(copy)
    with pytest.raises(ModelError, match="no longer exists"):
        serving_predictor.Predictor(copy)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        serving_predictor.Predictor(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelError, match="not a folder"):
        serving_predictor.Predictor(tmp_path / "file.txt")


def test_planted_pickles_are_never_loaded(run_dir, tmp_path):
    marker = tmp_path / "pwned"
    run_copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, run_copy)
    plant_pickles(run_copy / "model", marker)
    plant_pickles(run_copy, marker)
    for ck in (run_copy / "checkpoints").iterdir():
        plant_pickles(ck, marker)  # overwrite the real optimizer.pt etc. with the payload
    # listed, charted, described, predicted with
    runs = reconcile.list_runs(run_copy.parent)
    assert [r.run_id for r in runs] == [run_copy.name]
    metrics.metric_series(run_copy)
    progress.progress(run_copy)
    cks = checkpoints.list_checkpoints(run_copy)
    assert cks and all(c.complete for c in cks)
    predictions.predictions_frame(run_copy)
    for choice in serving_predictor.model_choices(run_copy):
        p = serving_predictor.Predictor(choice.path)
        assert p.predict_one("a fine film")["label"] in p.label_names
        p.explain("a fine film")
    # a folder with only pickle weights is refused outright
    pickle_only = tmp_path / "pickle_only"
    pickle_only.mkdir()
    shutil.copy(run_copy / "model" / "config.json", pickle_only / "config.json")
    plant_pickles(pickle_only, marker)
    with pytest.raises(ModelError, match="pickle"):
        serving_predictor.Predictor(pickle_only)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ CSV
def test_formula_injection_is_neutralised():
    import pandas as pd
    df = pd.DataFrame({"text": ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "a=b"],
                       "n": [-1, 2, 3, 4, 5, 6, 7, 8], "=bad header": ["x"] * 8})
    rows = list(csv.reader(io.StringIO(batch.safe_csv_bytes(df).decode("utf-8"))))
    assert rows[0] == ["text", "n", "'=bad header"]
    assert [r[0] for r in rows[1:]] == ["'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx", "plain", "a=b"]
    assert rows[1][1] == "-1"  # numbers stay numbers
    assert batch.neutralize_cell(-5) == -5 and batch.neutralize_cell("ok") == "ok"


def test_predict_frame_and_uploads(predictor, tmp_path):
    import pandas as pd
    df = pd.DataFrame({"id": [1, 2, 3], "review": ["=HYPERLINK(\"http://x\")", "lovely film", None]})
    out = batch.predict_frame(predictor, df, "review")
    assert list(out.columns[:2]) == ["id", "review"]
    assert out["predicted_label"].tolist()[:2] == [r["label"] for r in predictor.predict(df["review"][:2].tolist())]
    assert out["predicted_label"].tolist()[2] == "" and out["note"].tolist()[2] == "empty text"
    assert {"p_NEGATIVE", "p_POSITIVE", "confidence", "truncated"} <= set(out.columns)
    with pytest.raises(DataError, match="no column 'text'"):
        batch.predict_frame(predictor, df, "text")
    # uploads: read with the data loader's checks, then deleted
    table = batch.upload_columns(tmp_path, b"id,review\n1,good\n2,bad\n", "x.csv")
    assert table["review"].tolist() == ["good", "bad"]
    bad_uploads = [(b"", "a.csv", "empty"), (b"\x00\x01\x02binary", "a.csv", "binary"),
                   (b"review\ncaf\xe9 \x81\n", "a.csv", "UTF-8"), (b"a,b\n1,2,3\n", "a.csv", "fields"),
                   (b"x", "a.exe", "upload a .csv")]
    for data, name, message in bad_uploads:
        with pytest.raises(DataError, match=message):
            batch.upload_columns(tmp_path, data, name)
    assert list((tmp_path / "_uploads").iterdir()) == []


def test_other_load_counts_only_other_processes_with_hysteresis():
    """The decision rule on given counters: (time, machine busy seconds, own CPU seconds)."""
    load = contention.OtherLoad()
    load.cores = 2
    # This process alone kept both cores busy (a big CSV batch): nobody else is there.
    assert load.update((0.0, 0.0, 0.0), (1.0, 1.95, 1.9)) == pytest.approx(0.05) and not load.busy
    # Others keep 1.8 cores busy (a training job): busy.
    assert load.update((0.0, 0.0, 0.0), (1.0, 2.0, 0.2)) == pytest.approx(1.8) and load.busy
    # The job now shares the cores with our one thread (1.2 cores): still busy (hysteresis) ...
    load.update((0.0, 0.0, 0.0), (1.0, 2.0, 0.8))
    assert load.busy
    # ... until the others use less than half the machine.
    load.update((0.0, 0.0, 0.0), (1.0, 1.0, 0.1))
    assert not load.busy
    load.update((0.0, 0.0, 0.0), (1.0, 1.3, 0.0))
    assert not load.busy  # 1.3 < 1.5: not busy from idle


def test_one_torch_thread_while_other_processes_keep_every_core_busy(monkeypatch):
    """Real processes: busy children make the sampler report other load and predictions drop to one
    thread; this process's own CPU time is measured (and subtracted) across all its threads."""
    import time

    import torch
    load = contention.OtherLoad(interval=0.5)
    cores = load.cores
    spin = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin])
            for _ in range(cores)]
    try:
        before = load._sample()
        time.sleep(1.5)
        after = load._sample()
        other = load.update(before, after)
        assert other >= cores - 0.5 and load.busy, other
        monkeypatch.setattr(serving_predictor, "OTHER_LOAD", load)
        load.other = other  # the sampler thread is not started here; is_busy reads the decision
        monkeypatch.setattr(load, "start", lambda: load)
        assert serving_predictor.inference_threads() == 1
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    # Own work is measured over every thread of this process.
    torch.set_num_threads(max(2, serving_predictor._DEFAULT_THREADS or 2))
    before = load._sample()
    x = torch.randn(600, 600)
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        x = torch.tanh(x @ x)
    after = load._sample()
    assert after[2] - before[2] >= 0.5
    load.update((0.0, 0.0, 0.0), (1.0, 0.1, 0.1))
    assert not load.busy and serving_predictor.inference_threads() == serving_predictor._DEFAULT_THREADS
    torch.set_num_threads(serving_predictor._DEFAULT_THREADS)


def test_int8_fast_mode_quantizes_the_encoder_and_keeps_its_answers(monkeypatch):
    """int8 mode: the encoder's linear layers run as dynamically quantized int8, the classifier and pooler
    stay float, and the encoder's output stays close to full precision (the bundled MiniLM)."""
    import torch
    fp32 = serving_predictor.Predictor(serving_predictor.BASE_MODEL)
    int8 = serving_predictor.Predictor(serving_predictor.BASE_MODEL, precision="int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8") and int8.description.endswith("(int8)")
    kinds = {name: type(m).__module__ for name, m in int8.model.named_modules() if type(m).__name__ == "Linear"}
    assert kinds["classifier"] == kinds["bert.pooler.dense"] == "torch.nn.modules.linear"
    encoder = [k for k in kinds if ".encoder." in k]
    assert len(encoder) == 6 * 6 and all("quantized.dynamic" in kinds[k] for k in encoder)
    assert all("quantized" not in type(m).__module__ for m in fp32.model.modules())
    enc = fp32.tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        a = fp32.model.bert(**enc).last_hidden_state[:, 0]
        b = int8.model.bert(**enc).last_hidden_state[:, 0]
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert float(cos.min()) > 0.95, cos  # measured ~0.98; unrelated vectors would be near 0
    # The same text through both: same shape of answer, the latency is measured.
    r8 = int8.predict_one(TEXTS[1])
    assert r8["label"] in int8.label_names and r8["latency_ms"] > 0
    with pytest.raises(ModelError, match="unknown precision 'fp16'"):
        serving_predictor.Predictor(serving_predictor.BASE_MODEL, precision="fp16")
    monkeypatch.delenv("LAB_PREDICT_PRECISION", raising=False)
    assert serving_predictor.default_precision() == "int8"
    monkeypatch.setenv("LAB_PREDICT_PRECISION", "FP32")
    assert serving_predictor.default_precision() == "fp32"
    monkeypatch.setenv("LAB_PREDICT_PRECISION", "bogus")
    assert serving_predictor.default_precision() == "int8"


def test_bf16_mode_runs_the_model_in_bfloat16_and_keeps_its_answers(run_dir):
    """bf16 mode: every weight in bfloat16 on PyTorch, the encoder's output close to full precision (the
    bundled MiniLM), probabilities still float; onnxruntime cannot run it and says so."""
    import torch
    fp32 = serving_predictor.Predictor(serving_predictor.BASE_MODEL)
    bf16 = serving_predictor.Predictor(serving_predictor.BASE_MODEL, precision="bf16")
    assert bf16.precision == "bf16" and bf16.runtime == "torch" and bf16.description.endswith("(bf16)")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    enc = fp32.tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        a = fp32.model.bert(**enc).last_hidden_state[:, 0]
        b = bf16.model.bert(**enc).last_hidden_state[:, 0].float()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert float(cos.min()) > 0.99, cos
    r32, r16 = fp32.predict(TEXTS), bf16.predict(TEXTS)
    for x, y in zip(r32, r16):
        assert all(isinstance(v, float) for v in y["scores"].values())
        assert abs(sum(y["scores"].values()) - 1.0) < 1e-6
        assert max(abs(x["scores"][k] - y["scores"][k]) for k in x["scores"]) < 0.05
    assert bf16.predict_one(TEXTS[0])["latency_ms"] > 0
    with pytest.raises(ModelError, match="bf16 runs on PyTorch only"):
        serving_predictor.Predictor(run_dir / "model", precision="bf16", runtime="onnx")
    run_model = serving_predictor.Predictor(run_dir / "model", precision="bf16")   # auto: PyTorch, not the export
    assert run_model.runtime == "torch" and run_model.predict(TEXTS)[0]["label"] in run_model.label_names


@pytest.mark.parametrize("flags, one, table", [
    ({"avx512f", "avx512_vnni"}, "int8", "int8"),             # no AMX: bf16 is emulated, int8 everywhere
    ({"avx512f", "amx_tile", "amx_bf16"}, "int8", "bf16"),    # AMX: bf16 for tables, int8 for one review
])
def test_the_fast_mode_uses_bf16_for_tables_only_on_cpus_with_amx(monkeypatch, flags, one, table):
    from lib.util import sysinfo
    monkeypatch.setattr(sysinfo, "_CPU_FLAGS", frozenset(flags))
    monkeypatch.delenv("LAB_PREDICT_PRECISION", raising=False)
    assert serving_predictor.bf16_matrix_units() == ("amx_bf16" in flags)
    assert (serving_predictor.fast_precision(), serving_predictor.fast_precision(batch=True)) == (one, table)
    assert serving_predictor.default_precision(batch=True) == table
    monkeypatch.setenv("LAB_PREDICT_PRECISION", "fp32")  # an explicit choice wins for both
    assert serving_predictor.default_precision() == serving_predictor.default_precision(batch=True) == "fp32"


def test_cpu_flags_come_from_the_kernel():
    from lib.util import sysinfo
    flags = sysinfo.cpu_flags()
    assert isinstance(flags, frozenset) and flags is sysinfo.cpu_flags()   # read once
    if Path("/proc/cpuinfo").is_file():
        assert flags and all(f == f.strip() and f for f in flags)

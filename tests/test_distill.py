"""Teacher -> student distillation: the loss by hand, layer cutting, and a tiny end-to-end run."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib.job.distill import cut_layers, distillation_loss, layers_to_keep, narrow_student
from lib.registry import control, launching, reconcile
from lib.store import rundir

ROOT = Path(__file__).resolve().parents[1]


def _softmax(xs, t=1.0):
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def test_loss_matches_a_hand_computation():
    student = [[2.0, -1.0], [0.5, 0.25]]
    teacher = [[1.0, 0.0], [-1.0, 2.0]]
    labels = [0, 1]
    T, alpha = 2.0, 0.3
    ce = sum(-math.log(_softmax(s)[y]) for s, y in zip(student, labels)) / 2
    kl = 0.0
    for s, t in zip(student, teacher):
        ps, pt = _softmax(s, T), _softmax(t, T)
        kl += sum(b * (math.log(b) - math.log(a)) for a, b in zip(ps, pt))
    kl /= 2
    expected = alpha * ce + (1 - alpha) * T * T * kl
    got = distillation_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), T, alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # alpha = 1 is plain cross-entropy; identical logits give zero KL.
    assert distillation_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), T, 1.0).item() \
        == pytest.approx(ce, rel=1e-6)
    same = torch.tensor(student)
    assert distillation_loss(same, same, torch.tensor(labels), T, 0.0).item() == pytest.approx(0.0, abs=1e-7)


def test_layers_are_cut_evenly_and_keep_weights():
    assert layers_to_keep(6, 3) == [1, 3, 5]
    assert layers_to_keep(6, 2) == [2, 5]
    assert layers_to_keep(6, 6) == list(range(6))
    from lib.sources.models import tiny_bert
    model = tiny_bert(["NEG", "POS"])
    student = cut_layers(model, 1)
    assert len(student.bert.encoder.layer) == 1 and student.config.num_hidden_layers == 1
    assert torch.equal(student.bert.encoder.layer[0].attention.self.query.weight,
                       model.bert.encoder.layer[1].attention.self.query.weight)
    assert len(model.bert.encoder.layer) == 2  # the teacher is untouched


def test_narrow_student_takes_the_teachers_weights_where_shapes_match():
    from lib.errors import ConfigError
    teacher = BertForSequenceClassification_from_minilm()
    student, report = narrow_student(teacher, 3, 192, 4, 512, seed=1)
    cfg = student.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (3, 192, 4, 512)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 3
    # Width 192 vs 384: hardly any tensor matches (e.g. the classifier's 2-element bias).
    assert 0 < report["copied"] < report["total"] and "bert.embeddings.word_embeddings.weight" in report["skipped"]
    assert torch.equal(student.classifier.bias, teacher.classifier.bias)
    # Same width, fewer layers: every tensor comes from the teacher, layer i from teacher layer 1, 3, 5.
    same, full = narrow_student(teacher, 3, 384, None, None)
    assert full["copied"] == full["total"] and full["skipped"] == []
    for i, j in enumerate([1, 3, 5]):
        kept, source = same.bert.encoder.layer[i], teacher.bert.encoder.layer[j]
        assert torch.equal(kept.output.dense.weight, source.output.dense.weight)
    assert torch.equal(same.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    with torch.inference_mode():
        x = torch.randint(1000, 2000, (2, 12))
        assert student(input_ids=x).logits.shape == (2, 2)
    with pytest.raises(ConfigError, match="multiple of the number of attention heads"):
        narrow_student(teacher, 2, 100, 12, None)
    with pytest.raises(ConfigError, match="must not exceed the teacher's 6 layers"):
        narrow_student(teacher, 8, 384, None, None)


def BertForSequenceClassification_from_minilm():
    from lib.sources.models import load_model
    torch.manual_seed(0)
    return load_model("bundled-minilm", ["NEGATIVE", "POSITIVE"]).eval()


def test_narrow_student_config_checks():
    from lib.config import preset
    from lib.errors import ConfigError
    with pytest.raises(ConfigError) as err:
        preset("distill", teacher="x", student_attention_heads=4)
    assert "set student_hidden_size too" in str(err.value)
    with pytest.raises(ConfigError) as err:
        preset("distill", teacher="x", student_hidden_size=100, student_attention_heads=12)
    assert "must be a multiple" in str(err.value)
    assert preset("distill", teacher="x", student_hidden_size=192, student_attention_heads=4).student_hidden_size == 192


def test_tiny_distillation_run_exports_a_smaller_working_model(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = ["--runs-dir", str(tmp_path), "--set", "max_train_samples=48", "--set", "max_eval_samples=24",
              "--set", "num_train_epochs=1", "--set", "logging_steps=2"]
    teacher = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "demo", "--set", "model=tiny-bert",
                              *common], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert teacher.returncode == 0, teacher.stderr[-2000:]
    teacher_id = Path(teacher.stdout.strip().splitlines()[-1]).name
    student = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "distill", "--set",
                              f"teacher={teacher_id}", "--set", "student_layers=1", *common],
                             cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert student.returncode == 0, student.stderr[-2000:]
    run_dir = Path(student.stdout.strip().splitlines()[-1])
    status = rundir.read_status(run_dir)
    assert status["state"] == "finished"
    for name in (rundir.CONFIG, rundir.METRICS, rundir.PREDICTIONS, "teacher_logits.npy"):
        assert (run_dir / name).exists(), name
    import numpy as np
    assert np.load(run_dir / "teacher_logits.npy").shape == (48, 2)
    from transformers import pipeline
    clf = pipeline("text-classification", model=str(run_dir / rundir.MODEL))
    assert clf("A lovely film.")[0]["label"] in ("NEGATIVE", "POSITIVE")
    assert clf.model.config.num_hidden_layers == 1
    assert "the teacher cut to 1 layers" in (run_dir / rundir.LOG).read_text()
    # Teacher vs student, as the Runs page shows them.
    from lib.serving import teacher_student
    teacher_dir = teacher_student.teacher_of(run_dir)
    assert teacher_dir.name == teacher_id
    report = teacher_student.quality_and_size(teacher_dir, run_dir)
    assert report["same_eval_split"] and report["eval_size"] == 24
    assert 0.0 <= report["agreement"] <= 1.0
    assert report["teacher"]["layers"] == 2 and report["student"]["layers"] == 1
    assert report["student"]["parameters"] < report["teacher"]["parameters"]
    assert report["student"]["size_mb"] < report["teacher"]["size_mb"]
    texts = ["good film", "a dull and tedious mess"] * 4
    speed = teacher_student.speed_side_by_side(teacher_dir, run_dir, texts, rounds=1)
    assert speed["student"]["reviews_per_s"] > 0 and speed["teacher"]["latency_p50_ms"] > 0
    assert "throughput_ratio" in speed
    # A teacher that is not a finished run is refused with a clear message.
    bad = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "distill", "--set",
                          "teacher=20990101-000000-abcdef", *common], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "no run 20990101-000000-abcdef" in bad.stderr and "Traceback" not in bad.stderr


def test_narrow_student_run_from_a_saved_teacher_folder(tmp_path):
    """The other student kind: a new, narrower BERT from a teacher folder, through the real job."""
    from lib.sources.models import load_tokenizer, tiny_bert
    teacher_dir = tmp_path / "teacher"
    tiny_bert(["NEGATIVE", "POSITIVE"]).save_pretrained(teacher_dir)
    load_tokenizer("tiny-bert").save_pretrained(teacher_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    runs = str(tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "distill", "--runs-dir", runs,
                           "--set", f"teacher={teacher_dir}", "--set", "student_layers=1",
                           "--set", "student_hidden_size=16", "--set", "student_attention_heads=2",
                           "--set", "max_train_samples=32", "--set", "max_eval_samples=16",
                           "--set", "num_train_epochs=1", "--set", "save_strategy=no"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert rundir.read_status(run_dir)["state"] == "finished"
    log = (run_dir / rundir.LOG).read_text()
    assert "a new 1-layer BERT of width 16" in log and "weight tensors copied from the teacher" in log
    from transformers import pipeline
    clf = pipeline("text-classification", model=str(run_dir / rundir.MODEL))
    assert clf.model.config.hidden_size == 16 and clf.model.config.num_hidden_layers == 1
    assert clf("A lovely film.")[0]["label"] in ("NEGATIVE", "POSITIVE")


def test_distillation_run_is_queued_cancelled_and_resumed_like_fine_tuning(tmp_path, monkeypatch):
    """Through the registry (as the Train page launches it): cancel after a checkpoint, resume, finish;
    the teacher's cached logits are reused, not recomputed."""
    import time

    from lib.config import preset
    from lib.sources.models import load_tokenizer, tiny_bert
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher_dir = tmp_path / "teacher"
    tiny_bert(["NEGATIVE", "POSITIVE"]).save_pretrained(teacher_dir)
    load_tokenizer("tiny-bert").save_pretrained(teacher_dir)
    runs_dir = tmp_path / "runs"
    config = preset("distill", teacher=str(teacher_dir), student_layers=1, max_train_samples=200,
                    max_eval_samples=16, num_train_epochs=4.0, per_device_train_batch_size=8, logging_steps=1,
                    eval_strategy="no", save_strategy="steps", save_steps=4, save_total_limit=3)
    run_dir = launching.launch(config, runs_dir, owner="tester")

    def wait(pred, timeout, what):
        end = time.time() + timeout
        while time.time() < end:
            value = pred()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {rundir.read_status(run_dir)}")

    wait(lambda: list((run_dir / rundir.CHECKPOINTS).glob("checkpoint-*/trainer_state.json"))
         if (run_dir / rundir.CHECKPOINTS).is_dir() else None, 200, "a checkpoint")
    logits = run_dir / "teacher_logits.npy"
    assert logits.is_file()
    stamp = logits.stat().st_mtime_ns
    status = control.cancel(run_dir, grace_s=10, by="tester")
    assert status["state"] == "cancelled" and status["step"] < status["total_steps"] == 100
    launching.resume(run_dir)
    final = wait(lambda: (s := reconcile.get_status(run_dir))["state"] not in ("queued", "running") and s, 300,
                 "the resumed run to end")
    assert final["state"] == "finished" and final["step"] == final["total_steps"] == 100 and final["attempt"] == 2
    log = (run_dir / rundir.LOG).read_text()
    assert "resuming from checkpoint-" in log
    assert logits.stat().st_mtime_ns == stamp  # cached in the run directory: not paid for twice
    assert (run_dir / rundir.MODEL / "model.safetensors").is_file()
    assert reconcile.list_runs(runs_dir)[0].state == "finished"

"""Teacher -> student distillation: the loss by hand, layer cutting, and a tiny end-to-end run."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib import rundir
from lib.distill import cut_layers, distillation_loss, layers_to_keep

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
    from lib.models import tiny_bert
    model = tiny_bert(["NEG", "POS"])
    student = cut_layers(model, 1)
    assert len(student.bert.encoder.layer) == 1 and student.config.num_hidden_layers == 1
    assert torch.equal(student.bert.encoder.layer[0].attention.self.query.weight,
                       model.bert.encoder.layer[1].attention.self.query.weight)
    assert len(model.bert.encoder.layer) == 2  # the teacher is untouched


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
    # Teacher vs student, as the Runs page shows them.
    from lib import compare
    teacher_dir = compare.teacher_of(run_dir)
    assert teacher_dir.name == teacher_id
    report = compare.quality_and_size(teacher_dir, run_dir)
    assert report["same_eval_split"] and report["eval_size"] == 24
    assert 0.0 <= report["agreement"] <= 1.0
    assert report["teacher"]["layers"] == 2 and report["student"]["layers"] == 1
    assert report["student"]["parameters"] < report["teacher"]["parameters"]
    assert report["student"]["size_mb"] < report["teacher"]["size_mb"]
    speed = compare.speed_side_by_side(teacher_dir, run_dir, ["good film", "a dull and tedious mess"] * 4, rounds=1)
    assert speed["student"]["reviews_per_s"] > 0 and speed["teacher"]["latency_p50_ms"] > 0
    assert "throughput_ratio" in speed
    # A teacher that is not a finished run is refused with a clear message.
    bad = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "distill", "--set",
                          "teacher=20990101-000000-abcdef", *common], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "no run 20990101-000000-abcdef" in bad.stderr and "Traceback" not in bad.stderr

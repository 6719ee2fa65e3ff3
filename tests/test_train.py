"""The training job as its own process: a complete run directory, exports that pipeline() loads,
clear failures for bad config and unreachable Hub ids."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.config import preset
from lib.errors import HubUnavailableError
from lib.job import training
from lib.store import rundir

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "model=tiny-bert", "--set", "max_train_samples=48", "--set", "max_eval_samples=24",
        "--set", "num_train_epochs=2", "--set", "logging_steps=2", "--set", "per_device_train_batch_size=8",
        "--set", "eval_strategy=epoch", "--set", "frozen_layers=0"]


def run_train(args, env=None, timeout=300):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lib.train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    proc = run_train(["--preset", "demo", "--runs-dir", str(runs), *TINY])
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    return run_dir, proc


def test_tiny_run_writes_the_whole_run_directory(tiny_run):
    run_dir, proc = tiny_run
    assert run_dir.parent.is_dir() and rundir.is_run_id(run_dir.name)
    for name in (rundir.CONFIG, rundir.RUN, rundir.STATUS, rundir.METRICS, rundir.LOG, rundir.DATA_INFO,
                 rundir.BASELINE, rundir.PREDICTIONS):
        assert (run_dir / name).is_file(), name
    status = rundir.read_status(run_dir)
    assert status["state"] == "finished" and status["exit_code"] == 0
    assert status["step"] == status["total_steps"] == 12  # 48 reviews / batch 8 = 6 steps x 2 epochs
    run = rundir.read_json(run_dir / rundir.RUN)
    assert run["argv"][1:3] == ["-m", "lib.train"] and run["pid"] > 0 and run["create_time"] > 0
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    assert config["model"] == "tiny-bert" and config["max_train_samples"] == 48
    rows = rundir.read_jsonl(run_dir / rundir.METRICS)
    events = [r["event"] for r in rows]
    assert events.count("eval") == 2 and events.count("save") == 2 and "end" in events
    logs = [r for r in rows if r["event"] == "log"]
    assert [r["step"] for r in logs] == [2, 4, 6, 8, 10, 12]
    assert all("loss" in r and "learning_rate" in r and "grad_norm" in r for r in logs)
    assert all(r["total_steps"] == 12 for r in rows)
    evals = [r for r in rows if r["event"] == "eval"]
    assert all({"eval_accuracy", "eval_f1", "eval_precision", "eval_recall", "eval_roc_auc"} <= set(r) for r in evals)
    # Checkpoints kept by save_total_limit=2, each with trainer_state.json.
    checkpoints = sorted(p.name for p in (run_dir / rundir.CHECKPOINTS).iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints == ["checkpoint-12", "checkpoint-6"]
    assert (run_dir / rundir.CHECKPOINTS / "checkpoint-12" / "trainer_state.json").is_file()
    baseline = rundir.read_json(run_dir / rundir.BASELINE)
    assert 0.0 <= baseline["accuracy"] <= 1.0 and baseline["eval_size"] == 24
    assert "Traceback" not in (run_dir / rundir.LOG).read_text()
    # TensorBoard event files too (report_tensorboard 'auto' and tensorboard is installed).
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_eval_predictions_are_in_dataset_order(tiny_run):
    """group_by_length is on in the demo preset; predictions must still follow the eval set's order."""
    run_dir, _ = tiny_run
    from lib.config import TrainConfig
    from lib.sources.data import load_data
    config = TrainConfig.load(run_dir / rundir.CONFIG)
    eval_ds = load_data(config).dataset["test"]
    preds = rundir.read_jsonl(run_dir / rundir.PREDICTIONS)
    assert [p["index"] for p in preds] == list(range(len(eval_ds)))
    assert [p["text"] for p in preds] == eval_ds["text"]
    assert [p["label"] for p in preds] == eval_ds["label"]
    assert all(abs(sum(p["probs"]) - 1) < 1e-4 and p["pred"] == int(p["probs"][1] > p["probs"][0]) for p in preds)
    final = rundir.read_status(run_dir)["final_metrics"]
    accuracy = sum(p["pred"] == p["label"] for p in preds) / len(preds)
    assert final["eval_accuracy"] == pytest.approx(accuracy)
    # The job evaluates in length-sorted batches (sort_eval_by_length): each row's probabilities must
    # still be the exported model's answer for that row's own text.
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    assert config.sort_eval_by_length and len(set(len(t) for t in eval_ds["text"])) > 1
    model = BertForSequenceClassification.from_pretrained(run_dir / rundir.MODEL).eval()
    tok = AutoTokenizer.from_pretrained(run_dir / rundir.MODEL)
    with torch.inference_mode():
        for p in preds:
            enc = tok(p["text"], truncation=True, max_length=config.max_length, return_tensors="pt")
            probs = torch.softmax(model(**enc).logits[0].double(), -1).tolist()
            assert probs == pytest.approx(p["probs"], abs=1e-4), p["index"]


def test_export_loads_with_plain_pipeline(tiny_run):
    run_dir, _ = tiny_run
    from transformers import pipeline
    model_dir = run_dir / rundir.MODEL
    assert (model_dir / "model.safetensors").is_file() and not list(model_dir.glob("*.bin"))
    card = (model_dir / "README.md").read_text()
    assert "accuracy" in card and "tiny-bert" in card
    clf = pipeline("text-classification", model=str(model_dir))
    out = clf(["A wonderful film.", "Dreadful and boring."])
    assert {o["label"] for o in out} <= {"NEGATIVE", "POSITIVE"}
    assert all(0.0 <= o["score"] <= 1.0 for o in out)


def test_demo_preset_with_bundled_minilm_learns_and_exports(tmp_path):
    """The offline default model on a small subset: the export answers with the label names."""
    proc = run_train(["--preset", "demo", "--runs-dir", str(tmp_path), "--set", "max_train_samples=96",
                      "--set", "max_eval_samples=48", "--set", "num_train_epochs=1", "--set", "logging_steps=2",
                      "--set", "label_names=neg,pos"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    from transformers import pipeline
    clf = pipeline("text-classification", model=str(run_dir / rundir.MODEL))
    out = clf("An absolute joy from start to finish.")
    assert out[0]["label"] in ("neg", "pos")
    status = rundir.read_status(run_dir)
    assert status["state"] == "finished" and 0.0 <= status["final_metrics"]["eval_accuracy"] <= 1.0


def test_seed_preset_builds_transformers5_training_arguments(tmp_path):
    from transformers import TrainingArguments

    from lib.job.training import training_arguments_kwargs
    kw = training_arguments_kwargs(preset("seed"), tmp_path, device="cpu")
    args = TrainingArguments(**kw)
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch"
    assert args.per_device_train_batch_size == 8 and args.num_train_epochs == 2
    assert args.logging_steps == 500 and args.save_total_limit == 2
    assert args.fp16 is False  # fp16 'auto' is off without a GPU
    assert not any(k.startswith("evaluation_") for k in kw)  # renamed eval_strategy in transformers 5


def test_fp16_auto_turns_on_with_a_gpu(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert training.resolve_precision(preset("seed"), "cuda") == (True, False)
    assert training.resolve_precision(preset("seed"), "cpu") == (False, False)
    assert training.resolve_precision(preset("seed").replace(fp16=False, bf16="auto"), "cuda") == (False, True)


def test_bad_config_fails_with_a_short_message(tmp_path):
    proc = run_train(["--preset", "demo", "--runs-dir", str(tmp_path), "--set", "per_device_train_batch_size=0"])
    assert proc.returncode == 2
    assert "per_device_train_batch_size must be a positive integer, got 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing created for an invalid config


def test_bad_data_fails_before_training_with_status_and_plain_message(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("review,stars\nnice,5\n")
    proc = run_train(["--preset", "demo", "--runs-dir", str(tmp_path / "runs"), "--set", f"dataset={data}",
                      "--set", "model=tiny-bert"])
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and any("text" in line for line in last)
    run_dir = Path(last[-1].split("run directory: ", 1)[1])
    status = rundir.read_status(run_dir)
    assert status["state"] == "failed" and status["error"]["type"] == "DataError"
    assert "Traceback" in (run_dir / rundir.LOG).read_text()  # the full traceback goes to the log only


@pytest.mark.parametrize("offline", ["1", ""])
def test_hub_model_fails_fast_and_clearly(monkeypatch, offline):
    from lib.sources import hub, models
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    hub._probe_cache.clear()
    import transformers  # noqa: F401 - import time is not part of the failure path
    start = time.monotonic()
    with pytest.raises(HubUnavailableError) as info:
        models.load_model("bert-base-uncased", ["NEGATIVE", "POSITIVE"])
    assert time.monotonic() - start < 5.0
    message = str(info.value)
    assert "bert-base-uncased" in message and "bundled-minilm" in message


def test_describe_failure_gives_actionable_hints():
    import errno

    from lib.job.training import describe_failure
    config = preset("demo", per_device_train_batch_size=16)
    oom = describe_failure(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), config)
    assert "per_device_train_batch_size=8" in oom["hint"] and "gradient_accumulation_steps=2" in oom["hint"]
    assert "same effective batch of 16" in oom["hint"]
    full = describe_failure(OSError(errno.ENOSPC, "No space left on device"), config)
    assert "no space left" in full["message"].lower() and full["hint"]

"""Head+tail truncation and frozen layers through the real training job: the job cuts long reviews as
``head_tokens`` says and records it in the export's preprocessing contract (which every prediction path
reads), frozen weights keep their pre-trained values, and bad settings are clear messages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, train_tiny_run

from lib.config import TrainConfig, preset
from lib.errors import ConfigError
from lib.sources.preprocessing import contract, cut_head_tail, head_for, preprocessing_for


def test_cut_head_tail_keeps_the_first_special_token_the_head_and_the_end():
    ids = list(range(100))
    cut = cut_head_tail(ids, 10, 3)
    assert cut == [0, 1, 2, 3] + [94, 95, 96, 97, 98, 99] and len(cut) == 10
    assert cut_head_tail(ids[:10], 10, 3) == ids[:10]           # fits: unchanged
    assert cut_head_tail(ids, 10, 50) == [*range(8), 98, 99]     # head capped: one end token stays
    assert head_for(10, 50) == 7 and head_for(128, 0) == 0


def test_head_tokens_must_leave_room_for_the_end():
    with pytest.raises(ConfigError) as info:
        TrainConfig(max_length=64, head_tokens=62)
    assert "at most max_length - 3 = 61" in info.value.errors["head_tokens"]
    assert not TrainConfig(max_length=64, head_tokens=61).validate()
    with pytest.raises(ConfigError) as info:
        TrainConfig(head_tokens=-1)
    assert "head_tokens" in info.value.errors


def test_the_preprocessing_record_carries_the_head():
    record = contract(max_length=128, strip_html=True, label_names=["neg", "pos"], head_tokens=32)
    assert record["head_tokens"] == 32


def test_the_job_trains_on_head_and_tail_and_keeps_frozen_weights(tmp_path):
    from safetensors.torch import load_file

    from lib.sources.models import tiny_bert
    run = train_tiny_run(tmp_path / "runs", "--set", "max_length=24", "--set", "head_tokens=6",
                         "--set", "freeze_embeddings=true", "--set", "frozen_layers=1", "--set", "seed=5",
                         "--set", "onnx_export=false")
    log = (run / "stdout.log").read_text()
    assert "frozen: the embeddings and the first 1 of 2 layers" in log
    record = preprocessing_for(run / "model")
    assert record["head_tokens"] == 6 and record["max_length"] == 24
    assert "first 6 tokens and its last 16" in (run / "model" / "README.md").read_text()
    assert not (run / "onnx").exists()
    trained = load_file(str(run / "model" / "model.safetensors"))
    start = tiny_bert(json.loads((run / "config.json").read_text())["label_names"] or ["NEGATIVE", "POSITIVE"],
                      seed=5).state_dict()
    for name, value in trained.items():
        frozen = name.startswith("bert.embeddings.") or name.startswith("bert.encoder.layer.0.")
        if frozen:
            assert (value == start[name]).all(), f"{name} changed although it was frozen"
    assert any(not (trained[n] == start[n]).all() for n in trained if n.startswith("bert.encoder.layer.1."))
    # the eval predictions the job wrote were made on the same cut the predictor applies
    from lib.serving.predictor import Predictor
    model = Predictor(run / "model", precision="fp32", runtime="torch")
    assert model.head_tokens == 6 and model.max_length == 24


def test_too_many_frozen_layers_is_a_message(tmp_path):
    cmd = [sys.executable, "-m", "lib.train", "--preset", "demo", "--set", "model=tiny-bert", "--set",
           "max_train_samples=8", "--set", "max_eval_samples=8", "--set", "frozen_layers=5",
           "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    status = json.loads(next(Path(tmp_path / "runs").glob("*/status.json")).read_text())
    assert status["state"] == "failed"
    assert status["error"]["type"] == "ConfigError"
    assert "frozen_layers is 5 but the model has 2 transformer layers" in status["error"]["message"]
    assert "Traceback" not in status["error"]["message"]


def test_the_demo_preset_recipe_and_the_seed_preset_stays_the_tutorial():
    seed = preset("seed")
    assert (seed.head_tokens, seed.freeze_embeddings, seed.frozen_layers) == (0, False, 0)
    assert (seed.max_length, seed.per_device_train_batch_size, seed.num_train_epochs) == (512, 8, 2.0)
    assert not preset("demo").validate()


@pytest.mark.parametrize("bad", ["frozen_layers=-1", "head_tokens=600"])
def test_bad_values_on_the_command_line_exit_2(tmp_path, bad):
    proc = subprocess.run([sys.executable, "-m", "lib.train", "--set", bad, "--runs-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and bad.split("=")[0] in proc.stderr and "Traceback" not in proc.stderr

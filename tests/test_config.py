"""TrainConfig: validation messages, JSON round trip, string coercion, presets."""
import json

import pytest

from lib.config import PRESETS, TrainConfig, field_info, field_names, preset
from lib.errors import ConfigError


def test_defaults_are_valid_and_round_trip_through_json():
    config = TrainConfig()
    assert config.validate() == {}
    again = TrainConfig.from_json(config.to_json())
    assert again == config
    assert json.loads(config.to_json())["per_device_train_batch_size"] == 8


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip(name):
    config = preset(name)
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config


def test_seed_preset_is_the_tutorial():
    c = preset("seed")
    assert (c.model, c.dataset) == ("bert-base-uncased", "imdb")
    assert c.num_train_epochs == 2 and c.per_device_train_batch_size == 8 and c.per_device_eval_batch_size == 8
    assert c.eval_strategy == c.save_strategy == "epoch"
    assert c.logging_steps == 500 and c.save_total_limit == 2 and c.fp16 == "auto"
    assert c.padding == "longest_in_map_batch"
    assert c.max_train_samples == 2000  # 2,000 samples / batch 8 = 250 steps per epoch


def test_demo_preset_is_offline():
    c = preset("demo")
    assert c.model == "bundled-minilm" and c.dataset == "demo" and c.padding == "dynamic"


@pytest.mark.parametrize("field,value,message", [
    ("per_device_train_batch_size", 0, "per_device_train_batch_size must be a positive integer, got 0"),
    ("per_device_train_batch_size", -3, "must be a positive integer, got -3"),
    ("per_device_train_batch_size", "8", "must be a positive integer, got '8'"),
    ("per_device_train_batch_size", 2.5, "must be a positive integer, got 2.5"),
    ("per_device_train_batch_size", True, "must be a positive integer, got True"),
    ("learning_rate", 0, "learning_rate must be greater than 0"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number"),
    ("learning_rate", "fast", "learning_rate must be a number, got 'fast'"),
    ("num_train_epochs", -1, "num_train_epochs must be at least 0.01"),
    ("max_length", 4096, "max_length must be at most 512"),
    ("padding", "sometimes", "padding must be one of dynamic, longest_in_map_batch, max_length"),
    ("fp16", "maybe", "fp16 must be one of auto, true, false"),
    ("eval_strategy", "hourly", "eval_strategy must be one of no, steps, epoch"),
    ("group_by_length", "yes", "group_by_length must be true or false"),
    ("label_names", ["only-one"], "label_names must name 2 to 50 labels"),
    ("label_names", ["pos", "POS"], "must be different names"),
    ("label_names", "NEG,POS", "label_names must be a list of text values"),
    ("run_name", "a\x00b", "run_name contains a NUL byte"),
    ("seed", -1, "seed must be at least 0"),
    ("save_total_limit", 0, "save_total_limit must be a positive integer, got 0"),
    ("warmup_steps", -0.5, "warmup_steps must be at least 0"),
    ("max_steps", 0, "max_steps must be -1"),
    ("dataset", "", "dataset must not be empty"),
])
def test_bad_values_get_clear_messages(field, value, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({field: value})
    assert field in info.value.errors
    assert message in info.value.errors[field]


def test_all_errors_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"per_device_train_batch_size": 0, "learning_rate": -1, "nonsense": 3})
    # Unknown keys are reported first (before types), then a second call shows the value errors.
    assert "nonsense" in info.value.errors
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"per_device_train_batch_size": 0, "learning_rate": -1})
    assert set(info.value.errors) == {"per_device_train_batch_size", "learning_rate"}


def test_cross_field_rules():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"fp16": True, "bf16": True})
    assert "bf16" in info.value.errors
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"load_best_model_at_end": True, "save_strategy": "steps"})
    assert "load_best_model_at_end" in info.value.errors
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"task": "distill"})
    assert "teacher" in info.value.errors


def test_string_overrides_are_parsed_by_field_type():
    c = TrainConfig().with_overrides([
        "per_device_train_batch_size=4", "fp16=false", "max_train_samples=", "warmup_steps=0.1",
        "label_names=neg,pos", "num_train_epochs=3", "group_by_length=off", "run_name=a=b"])
    assert c.per_device_train_batch_size == 4 and c.fp16 is False and c.max_train_samples is None
    assert c.warmup_steps == 0.1 and c.label_names == ["neg", "pos"] and c.num_train_epochs == 3
    assert c.group_by_length is False and c.run_name == "a=b"
    with pytest.raises(ConfigError) as info:
        TrainConfig().with_overrides(["per_device_train_batch_size=eight", "nope=1", "justtext"])
    assert set(info.value.errors) == {"per_device_train_batch_size", "nope", "justtext"}


def test_hostile_free_text_stays_plain_text():
    hostile = "../../etc/passwd; rm -rf ~ $(id) --output_dir=/ ＼ｅｔｃ"
    c = TrainConfig.from_dict({"run_name": hostile, "owner": hostile})
    assert c.run_name == hostile and c.label == hostile


def test_effective_batch_and_field_metadata():
    c = TrainConfig.from_dict({"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4,
                               "num_processes": 2})
    assert c.effective_batch_size == 64
    info = field_info("per_device_train_batch_size")
    assert info["group"] == "Schedule" and info["help"] and info["default"] == 8
    assert set(field_names()) >= {"num_train_epochs", "eval_strategy", "save_total_limit", "fp16", "bf16",
                                  "padding", "group_by_length", "strip_html", "run_name", "owner"}


def test_load_reports_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        TrainConfig.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.load(bad)
    listy = tmp_path / "list.json"
    listy.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        TrainConfig.load(listy)

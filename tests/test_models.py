"""Model sources: which text means which source, and folders that are refused before loading."""
from __future__ import annotations

import pytest

from lib.errors import ModelError
from lib.sources.models import check_safe_folder, load_model, load_tokenizer, resolve_model_source


@pytest.mark.parametrize("spec,kind", [
    ("bundled-minilm", "bundled"), ("tiny-bert", "tiny"), ("bert-base-uncased", "hub"),
    ("google/bert_uncased_L-2_H-128_A-2", "hub"), ("distilbert/distilbert-base-uncased", "hub"),
])
def test_sources_are_recognised(spec, kind):
    assert resolve_model_source(spec).kind == kind


def test_a_local_folder_must_be_written_as_a_path_and_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_source("bert-base-uncased").kind == "hub"
    # A folder with a Hub id's name would be read by from_pretrained instead of the Hub, past the path checks:
    # the name is refused and the message says how to use either.
    (tmp_path / "bert-base-uncased").mkdir()
    with pytest.raises(ModelError, match=r"local folder of that name exists.*\./bert-base-uncased"):
        resolve_model_source("bert-base-uncased")
    assert resolve_model_source("./bert-base-uncased").kind == "local"
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_source("./missing-model")
    with pytest.raises(ModelError, match="neither"):
        resolve_model_source("not a model name!")


def test_pickle_only_and_incomplete_folders_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match="only pickle weights"):
        check_safe_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        check_safe_folder(empty)


def test_bundled_model_has_the_uncased_vocabulary_and_two_named_labels():
    tok = load_tokenizer("bundled-minilm")
    assert tok("this is a test.")["input_ids"] == [101, 2023, 2003, 1037, 3231, 1012, 102]
    model = load_model("bundled-minilm", ["NEGATIVE", "POSITIVE"])
    assert model.config.num_hidden_layers == 6 and model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    tiny = load_model("tiny-bert", ["neg", "pos"])
    assert tiny.config.hidden_size == 32 and tiny.config.label2id == {"neg": 0, "pos": 1}

"""The data-source layer: demo reviews, local files, aclImdb folders, Hub ids, cleaning, splits and errors."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest

from lib.config import TrainConfig
from lib.errors import DataError, HubUnavailableError, LabError
from lib.sources import hub
from lib.sources.data import LoadedData, demo_reviews, load_data
from lib.sources.demo_data import DEMO_DIR
from lib.sources.labels import map_labels
from lib.sources.tables import read_table

TEXTS = [
    "A warm, funny film; I loved it.",
    'The "twist" was obvious, and the acting wooden.',
    "Line one\nline two of a great review",
    "Ça m'a plu — the score is lovely 🎻",
    "Dull, dull, dull.",
    "Best thing I saw this year, 10/10",
    "Tab\tinside and a comma, too",
    "I walked out after an hour.",
]
LABELS = [1, 0, 1, 1, 0, 1, 1, 0]


def col(ds: datasets.Dataset, name: str) -> list:
    """A column as a plain list (datasets 5 returns lazy Column objects)."""
    return list(ds[name])


def cfg(dataset: str, **kw) -> TrainConfig:
    return TrainConfig(dataset=str(dataset), **kw)


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def frame(n: int, *, start: int = 0, pos_every: int = 2) -> pd.DataFrame:
    """n reviews with distinct texts; every pos_every-th is positive."""
    rows = [{"text": f"review number {start + i} " + ("great" if i % pos_every == 0 else "awful"),
             "label": 1 if i % pos_every == 0 else 0} for i in range(n)]
    return pd.DataFrame(rows)


def save(df: pd.DataFrame, path: Path) -> Path:
    kind = path.suffix
    if kind == ".csv":
        df.to_csv(path, index=False)
    elif kind == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif kind == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif kind == ".json":
        df.to_json(path, orient="records", force_ascii=False)
    elif kind == ".parquet":
        df.to_parquet(path, index=False)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


def error_of(exc_type, func, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        func(*args, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ demo
def read_demo_records() -> list[dict]:
    records = []
    for path in sorted(DEMO_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def test_demo_reviews_are_big_balanced_and_split_by_the_split_field():
    dd = demo_reviews()
    assert set(dd) == {"train", "test"}
    assert dd["train"].column_names == ["text", "label"]
    total = len(dd["train"]) + len(dd["test"])
    assert total >= 600
    for split in ("train", "test"):
        labels = col(dd[split], "label")
        assert set(labels) == {0, 1}
        assert abs(labels.count(0) - labels.count(1)) <= 0.005 * len(labels), f"{split} is not balanced"
        assert all(isinstance(t, str) and t.strip() for t in col(dd[split], "text"))
    # the fixed split comes from each record's "split" field, in file order
    records = read_demo_records()
    assert len(records) == total
    for split in ("train", "test"):
        expected = [r for r in records if r["split"] == split]
        assert col(dd[split], "text") == [r["text"] for r in expected]
        assert col(dd[split], "label") == [r["label"] for r in expected]
    # no review is in both splits
    assert not set(col(dd["train"], "text")) & set(col(dd["test"], "text"))


def test_load_demo_uses_the_fixed_split_and_records_it():
    loaded = load_data(TrainConfig())
    assert isinstance(loaded, LoadedData)
    raw = demo_reviews()
    assert loaded.dataset["train"].num_rows == raw["train"].num_rows
    assert col(loaded.dataset["test"], "label") == col(raw["test"], "label")
    info = loaded.info
    json.dumps(info)  # JSON-able
    assert info["source"] == "demo"
    assert info["held_out"] is None
    assert info["label_mapping"] == {"0": 0, "1": 1}
    assert info["rows"] == {"train": raw["train"].num_rows, "test": raw["test"].num_rows}
    test_labels = col(raw["test"], "label")
    assert info["class_counts"]["test"] == {"0": test_labels.count(0), "1": test_labels.count(1)}
    assert all(f.startswith("data/demo_reviews/") and f.endswith(".jsonl") for f in info["files"])
    assert info["description"].endswith(".") and "built-in" in info["description"]
    assert col(load_data(TrainConfig()).dataset["train"], "text") == col(loaded.dataset["train"], "text")


def test_strip_html_applies_to_the_demo_reviews():
    raw = demo_reviews()
    with_tags = [t for t in col(raw["train"], "text") + col(raw["test"], "text") if "<br" in t.lower()]
    assert with_tags, "the demo set is expected to hold some <br /> tags, like IMDb"
    cleaned = load_data(TrainConfig(strip_html=True)).dataset
    assert not any("<br" in t.lower() for t in col(cleaned["train"], "text") + col(cleaned["test"], "text"))
    kept = load_data(TrainConfig(strip_html=False)).dataset
    assert col(kept["train"], "text") == col(raw["train"], "text")


# ------------------------------------------------------------------------------------------------ local files
@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_local_file_round_trip_with_a_test_file(tmp_path, ext):
    df = pd.DataFrame({"text": TEXTS, "label": LABELS})
    test_df = pd.DataFrame({"text": ["Loved it", "Hated it", "Meh, bad"], "label": [1, 0, 0]})
    train = save(df, tmp_path / f"train{ext}")
    test = save(test_df, tmp_path / f"test{ext}")
    loaded = load_data(cfg(train, test_file=str(test), strip_html=False))
    assert col(loaded.dataset["train"], "text") == TEXTS
    assert col(loaded.dataset["train"], "label") == LABELS
    assert col(loaded.dataset["test"], "text") == ["Loved it", "Hated it", "Meh, bad"]
    assert col(loaded.dataset["test"], "label") == [1, 0, 0]
    assert loaded.dataset["train"].column_names == ["text", "label"]
    info = loaded.info
    assert info["source"] == "local"
    assert info["files"] == [str(train.resolve()), str(test.resolve())]
    assert info["held_out"] is None
    assert info["class_counts"]["train"] == {"0": 3, "1": 5}
    # read_table gives the same table back
    table = read_table(train)
    assert list(table.columns) == ["text", "label"]
    assert list(table["text"]) == TEXTS
    assert [int(x) for x in table["label"]] == LABELS


def test_read_table_previews_the_first_rows_and_checks_the_text_column(tmp_path):
    path = save(frame(50), tmp_path / "big.csv")
    preview = read_table(path, max_rows=5)
    assert len(preview) == 5
    assert list(preview["text"]) == list(frame(50)["text"][:5])
    msg = error_of(DataError, read_table, path, text_column="review")
    assert "'review'" in msg and "'text'" in msg and "'label'" in msg


@pytest.mark.parametrize("values, label_names, expected", [
    (["positive", "negative", "Positive", "NEGATIVE"], ["NEGATIVE", "POSITIVE"], [1, 0, 1, 0]),
    (["pos", "neg", "POS", "Neg"], ["NEGATIVE", "POSITIVE"], [1, 0, 1, 0]),
    (["1", "0", " 1 ", "0.0"], ["NEGATIVE", "POSITIVE"], [1, 0, 1, 0]),
    ([1, 0, 1.0, 0.0], ["NEGATIVE", "POSITIVE"], [1, 0, 1, 0]),
    ([True, False, "true", "False"], ["NEGATIVE", "POSITIVE"], [1, 0, 1, 0]),
    (["good", "bad", "Good", "BAD"], ["bad", "good"], [1, 0, 1, 0]),
])
def test_map_labels_variants(values, label_names, expected):
    labels, mapping = map_labels(values, label_names)
    assert labels == expected
    # every original spelling is recorded with what it became
    for value, label in zip(values, expected):
        key = value.strip() if isinstance(value, str) else str(value)
        assert mapping[key] == label


def test_run_label_names_win_over_built_in_words():
    labels, mapping = map_labels(["positive", "negative"], ["positive", "negative"])
    assert labels == [0, 1]
    assert mapping == {"positive": 0, "negative": 1}


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_string_labels_in_files_are_mapped_and_recorded(tmp_path, ext):
    df = pd.DataFrame({"review": ["great", "awful", "fine film", "boring"],
                       "sentiment": ["Positive", "negative", "positive", "NEGATIVE"]})
    test_df = pd.DataFrame({"review": ["wow", "nope"], "sentiment": ["pos", "neg"]})
    train, test = save(df, tmp_path / f"a{ext}"), save(test_df, tmp_path / f"b{ext}")
    loaded = load_data(cfg(train, test_file=str(test), text_column="review", label_column="sentiment"))
    assert col(loaded.dataset["train"], "label") == [1, 0, 1, 0]
    assert col(loaded.dataset["test"], "label") == [1, 0]
    assert loaded.info["label_mapping"] == {"Positive": 1, "negative": 0, "positive": 1, "NEGATIVE": 0,
                                            "pos": 1, "neg": 0}
    assert loaded.info["text_column"] == "review" and loaded.info["label_column"] == "sentiment"


def test_extra_unnamed_and_empty_columns_are_ignored(tmp_path):
    # the pandas index as an unnamed first column, an empty "notes" column, and an empty unnamed last column
    # (a trailing separator on every line)
    df = pd.DataFrame({"text": TEXTS, "label": LABELS, "notes": [""] * len(TEXTS), "": [""] * len(TEXTS)})
    path = tmp_path / "with_index.csv"
    df.to_csv(path)
    content = path.read_text(encoding="utf-8")
    assert content.startswith(",text,label,notes,\n") and content.endswith(",0,,\n")
    table = read_table(path)
    assert list(table.columns) == ["text", "label"]
    test = save(pd.DataFrame({"text": ["ok", "bad"], "label": [1, 0]}), tmp_path / "t.csv")
    loaded = load_data(cfg(path, test_file=str(test), strip_html=False))
    assert col(loaded.dataset["train"], "text") == TEXTS
    assert loaded.dataset["train"].column_names == ["text", "label"]
    assert "Unnamed: 0" in loaded.info["ignored_columns"]["with_index.csv"]


def test_strip_html_turns_br_tags_into_line_breaks(tmp_path):
    df = pd.DataFrame({"text": ["Great<br /><br />film", "Bad<br>acting<BR/>and plot", "no tags"],
                       "label": ["pos", "neg", "neg"]})
    test = save(pd.DataFrame({"text": ["a<br />b", "c"], "label": [1, 0]}), tmp_path / "t.jsonl")
    path = save(df, tmp_path / "html.jsonl")
    on = load_data(cfg(path, test_file=str(test)))
    assert col(on.dataset["train"], "text") == ["Great\n\nfilm", "Bad\nacting\nand plot", "no tags"]
    assert col(on.dataset["test"], "text") == ["a\nb", "c"]
    assert on.info["html_breaks_replaced"] == {"train": 2, "test": 1}
    off = load_data(cfg(path, test_file=str(test), strip_html=False))
    assert col(off.dataset["train"], "text") == list(df["text"])


def test_empty_texts_are_dropped_and_counted(tmp_path):
    df = pd.DataFrame({"text": ["good one", "", "   ", None, "bad one", "<br />", "fine"],
                       "label": [1, 0, 1, 0, 0, 1, 1]})
    path = save(df, tmp_path / "gaps.parquet")
    test = save(pd.DataFrame({"text": ["yes", "no", ""], "label": [1, 0, 1]}), tmp_path / "t.parquet")
    loaded = load_data(cfg(path, test_file=str(test)))
    assert col(loaded.dataset["train"], "text") == ["good one", "bad one", "fine"]
    assert loaded.info["dropped"]["train"]["empty_text"] == 4
    assert loaded.info["dropped"]["train"]["rows"] == [2, 3, 4, 6]
    assert loaded.info["dropped"]["test"]["empty_text"] == 1
    assert "4 empty reviews" not in loaded.info["description"]  # 5 in all
    assert "5 empty reviews dropped" in loaded.info["description"]


def test_only_empty_texts_is_an_error(tmp_path):
    path = write(tmp_path / "blank.csv", 'text,label\n"",1\n"  ",0\n')
    msg = error_of(DataError, load_data, cfg(path))
    assert "empty" in msg and "text_column" in msg


# ------------------------------------------------------------------------------------------------ aclImdb
def make_acl(root: Path, *, with_test: bool = True) -> Path:
    acl = root / "aclImdb"
    reviews = {
        "train": {"pos": ["10_9.txt", "2_8.txt", "1_10.txt"], "neg": ["3_2.txt", "12_1.txt", "4_3.txt"]},
        "test": {"pos": ["5_7.txt", "0_10.txt"], "neg": ["7_4.txt", "6_1.txt"]},
    }
    for split, classes in reviews.items():
        if split == "test" and not with_test:
            continue
        for cls, names in classes.items():
            folder = acl / split / cls
            folder.mkdir(parents=True)
            for name in names:
                write(folder / name, f"{split} {cls} {name}<br /><br />end")
    (acl / "train" / "unsup").mkdir()
    write(acl / "train" / "unsup" / "99_0.txt", "unlabelled review")
    write(acl / "train" / "urls_pos.txt", "http://example.com\n")
    return acl


def test_aclimdb_folder_layout(tmp_path):
    acl = make_acl(tmp_path)
    for given in (tmp_path, acl):  # the folder itself, or the folder that holds aclImdb/
        loaded = load_data(cfg(given))
        train = loaded.dataset["train"]
        assert col(train, "text") == [
            "train neg 3_2.txt\n\nend", "train neg 4_3.txt\n\nend", "train neg 12_1.txt\n\nend",
            "train pos 1_10.txt\n\nend", "train pos 2_8.txt\n\nend", "train pos 10_9.txt\n\nend"]
        assert col(train, "label") == [0, 0, 0, 1, 1, 1]
        assert col(loaded.dataset["test"], "label") == [0, 0, 1, 1]
        assert not any("unlabelled" in t for t in col(train, "text"))
        assert loaded.info["source"] == "aclimdb"
        assert loaded.info["label_mapping"] == {"neg": 0, "pos": 1}
        assert loaded.info["held_out"] is None


def test_aclimdb_without_test_folder_holds_out_a_split(tmp_path):
    make_acl(tmp_path, with_test=False)
    loaded = load_data(cfg(tmp_path, eval_fraction=0.34))
    assert loaded.info["held_out"]["fraction"] == 0.34
    assert loaded.info["class_counts"]["test"] == {"0": 1, "1": 1}
    assert loaded.dataset["train"].num_rows == 4


def test_folder_that_is_not_aclimdb_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    save(frame(4), tmp_path / "stuff" / "a.csv")
    msg = error_of(DataError, load_data, cfg(tmp_path / "stuff"))
    assert "aclImdb" in msg and "train/pos" in msg


# ------------------------------------------------------------------------------------------------ splits
def test_held_out_split_is_stratified_seeded_and_in_dataset_order(tmp_path):
    df = frame(100, pos_every=5)  # 20 positive, 80 negative
    path = save(df, tmp_path / "one.csv")
    a = load_data(cfg(path, eval_fraction=0.25, seed=7))
    b = load_data(cfg(path, eval_fraction=0.25, seed=7))
    c = load_data(cfg(path, eval_fraction=0.25, seed=8))
    assert a.info["held_out"]["fraction"] == 0.25 and a.info["held_out"]["seed"] == 7
    assert a.info["class_counts"]["test"] == {"0": 20, "1": 5}  # 25% of each class
    assert a.info["class_counts"]["train"] == {"0": 60, "1": 15}
    assert col(a.dataset["test"], "text") == col(b.dataset["test"], "text")
    assert col(a.dataset["test"], "text") != col(c.dataset["test"], "text")
    original = list(df["text"])
    for split in ("train", "test"):
        positions = [original.index(t) for t in col(a.dataset[split], "text")]
        assert positions == sorted(positions), f"{split} is not in dataset order"
    assert sorted(col(a.dataset["train"], "text") + col(a.dataset["test"], "text")) == sorted(original)
    assert "held out" in a.info["description"]


def test_max_train_samples_is_a_seeded_shuffle(tmp_path):
    base = load_data(TrainConfig(seed=3)).dataset["train"]
    sub = load_data(TrainConfig(seed=3, max_train_samples=40))
    # the same reviews, in the same order, as datasets' own shuffle(seed).select(range(N)) (the tutorial)
    assert col(sub.dataset["train"], "text") == col(base.shuffle(seed=3).select(range(40)), "text")
    assert col(sub.dataset["train"], "text") != col(base, "text")[:40]
    assert sub.info["subsets"]["max_train_samples"] == {"requested": 40, "available": base.num_rows, "used": 40,
                                                        "seed": 3, "shuffled": True}
    assert sub.info["rows"]["train"] == 40
    assert sub.dataset["test"].num_rows == load_data(TrainConfig(seed=3)).dataset["test"].num_rows


def test_max_eval_samples_keeps_dataset_order(tmp_path):
    full = col(load_data(TrainConfig(seed=5)).dataset["test"], "text")
    sub = load_data(TrainConfig(seed=5, max_eval_samples=30))
    again = load_data(TrainConfig(seed=5, max_eval_samples=30))
    other = load_data(TrainConfig(seed=6, max_eval_samples=30))
    texts = col(sub.dataset["test"], "text")
    assert len(texts) == 30 and texts == col(again.dataset["test"], "text")
    positions = [full.index(t) for t in texts]
    assert positions == sorted(positions)
    assert positions != list(range(30))  # a sample, not just the first rows
    assert col(other.dataset["test"], "text") != texts
    info = sub.info["subsets"]["max_eval_samples"]
    assert info["used"] == 30 and info["shuffled"] is False and info["seed"] == 5
    assert sub.info["subsets"]["max_train_samples"] is None


# ------------------------------------------------------------------------------------------------ errors
def test_missing_file(tmp_path):
    msg = error_of(DataError, load_data, cfg(tmp_path / "nope.csv"))
    assert "does not exist" in msg and "nope.csv" in msg
    good = save(frame(4), tmp_path / "good.csv")
    msg = error_of(DataError, load_data, cfg(good, test_file=str(tmp_path / "missing_test.csv")))
    assert "missing_test.csv" in msg and "does not exist" in msg


def test_file_that_is_not_utf8(tmp_path):
    content = b"text,label\nnice film,1\n" + "caf\xe9 was dull,0\n".encode("latin-1")
    path = write(tmp_path / "latin.csv", content)
    # encoding "auto" reads this as Windows-1252 (tests/test_multiclass.py); asking for UTF-8 keeps the message
    msg = error_of(DataError, load_data, cfg(path, encoding="utf-8"))
    assert "not UTF-8" in msg and "re-save it as utf-8" in msg.lower() and "line 3" in msg


@pytest.mark.parametrize("content, expected", [
    (b"text,label\x00\x01\x02\x00binary junk", "binary"),
    (b"PK\x03\x04\x14\x00\x06\x00 spreadsheet", "ZIP"),
    (b"\xff\xfet\x00e\x00x\x00t\x00", "UTF-16"),
])
def test_binary_files_are_refused(tmp_path, content, expected):
    path = write(tmp_path / "data.csv", content)
    assert expected in error_of(DataError, load_data, cfg(path))


def test_parquet_extension_on_a_text_file(tmp_path):
    path = write(tmp_path / "fake.parquet", "text,label\nhi,1\n")
    assert "not a Parquet file" in error_of(DataError, load_data, cfg(path))


@pytest.mark.parametrize("name, content", [
    ("empty.csv", ""), ("blank.jsonl", "\n\n  \n"), ("header.csv", "text,label\n"),
])
def test_empty_files(tmp_path, name, content):
    msg = error_of(DataError, load_data, cfg(write(tmp_path / name, content)))
    assert "empty" in msg or "no data rows" in msg
    assert "no reviews" in msg


def test_missing_text_or_label_column_lists_the_columns(tmp_path):
    path = save(pd.DataFrame({"review": ["a", "b"], "stars": [1, 0]}), tmp_path / "cols.csv")
    msg = error_of(DataError, load_data, cfg(path))
    assert "no text column 'text'" in msg and "'review'" in msg and "'stars'" in msg
    msg = error_of(DataError, load_data, cfg(path, text_column="review"))
    assert "no label column 'label'" in msg and "'review'" in msg and "'stars'" in msg


def test_more_than_two_classes_lists_them(tmp_path):
    df = pd.DataFrame({"text": [f"r{i}" for i in range(6)], "label": ["pos", "neg", "neutral", "pos", "neg", "mixed"]})
    msg = error_of(DataError, load_data, cfg(save(df, tmp_path / "three.csv")))
    assert "4 different values" in msg
    for value in ("'pos'", "'neg'", "'neutral'", "'mixed'"):
        assert value in msg
    stars = pd.DataFrame({"text": [f"r{i}" for i in range(12)], "label": list(range(12))})
    msg = error_of(DataError, load_data, cfg(save(stars, tmp_path / "stars.csv")))
    assert "12 different values" in msg and "and 2 more" in msg and "'9'" in msg and "'10'" not in msg


def test_a_bad_label_deep_in_the_data_names_its_row(tmp_path):
    labels = ["positive", "negative"] * 300
    labels[436] = "posittive"
    df = pd.DataFrame({"text": [f"review {i}" for i in range(600)], "label": labels})
    msg = error_of(DataError, load_data, cfg(save(df, tmp_path / "deep.csv")))
    assert "row 437" in msg and "'posittive'" in msg and "line 438" in msg
    two = pd.DataFrame({"text": ["a", "b", "c"], "label": ["good", "bad", "good"]})
    msg = error_of(DataError, load_data, cfg(save(two, tmp_path / "words.jsonl")))
    assert "row 1" in msg and "'good'" in msg and "label_names" in msg
    msg = error_of(DataError, map_labels, [1, 0, 0, 2], ["NEGATIVE", "POSITIVE"])
    assert "row 4" in msg and "2" in msg


def test_empty_label_names_its_row(tmp_path):
    path = write(tmp_path / "gap.csv", "text,label\ngood,1\nbad,0\nmeh,\n")
    msg = error_of(DataError, load_data, cfg(path))
    assert "label is empty" in msg and "row 3" in msg


def test_a_split_with_a_single_class(tmp_path):
    train = save(frame(6), tmp_path / "train.csv")
    test = save(pd.DataFrame({"text": ["a", "b"], "label": [1, 1]}), tmp_path / "test.csv")
    msg = error_of(DataError, load_data, cfg(train, test_file=str(test)))
    assert "test split" in msg and "only one class" in msg
    single = save(pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 0, 0]}), tmp_path / "single.csv")
    assert "only one class" in error_of(DataError, load_data, cfg(single))


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    path = write(tmp_path / "reviews.xlsx", "whatever")
    msg = error_of(DataError, load_data, cfg(path))
    for ext in (".csv", ".tsv", ".jsonl", ".parquet"):
        assert ext in msg
    assert "'.xlsx'" in msg


@pytest.mark.parametrize("bad_line", ["too,many,fields", "onlyonefield"])
def test_ragged_csv_rows_name_the_line(tmp_path, bad_line):
    path = write(tmp_path / "ragged.csv", f"text,label\ngood,1\nbad,0\n{bad_line}\nfine,1\n")
    msg = error_of(DataError, load_data, cfg(path))
    assert "line 4" in msg and "header has 2" in msg


def test_trailing_empty_fields_are_not_ragged(tmp_path):
    path = write(tmp_path / "trailing.csv", "text,label\ngood,1,\nbad,0,,\n\nfine,1\nawful,0\n")
    loaded = load_data(cfg(path, eval_fraction=0.5))
    assert sorted(col(loaded.dataset["train"], "text") + col(loaded.dataset["test"], "text")) == [
        "awful", "bad", "fine", "good"]


def test_bad_json_line_names_the_line(tmp_path):
    path = write(tmp_path / "broken.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0\n')
    msg = error_of(DataError, load_data, cfg(path))
    assert "line 2" in msg and "not valid JSON" in msg


def test_neither_demo_hub_id_nor_path():
    msg = error_of(DataError, load_data, cfg("my data set!"))
    assert "'demo'" in msg and "path" in msg


def test_errors_are_lab_errors():
    assert issubclass(DataError, LabError) and issubclass(HubUnavailableError, LabError)


# ------------------------------------------------------------------------------------------------ Hub
@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def assert_offline_message(msg: str, name: str) -> None:
    assert repr(name) in msg
    assert "'demo'" in msg and "local" in msg and "aclImdb" in msg


def test_hub_id_fails_fast_with_hf_hub_offline(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(HubUnavailableError) as info:
        load_data(cfg("imdb"))
    assert time.monotonic() - started < 5
    assert_offline_message(str(info.value), "imdb")


def test_hub_id_fails_fast_without_hf_hub_offline(monkeypatch, empty_hf_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_probe_cache", {})  # a real probe, not a remembered answer
    if hub.hub_reachable(refresh=True)[0]:
        pytest.skip("the Hugging Face Hub is reachable from this machine")
    monkeypatch.setattr(hub, "_probe_cache", {})
    started = time.monotonic()
    with pytest.raises(HubUnavailableError) as info:
        load_data(cfg("stanfordnlp/imdb"))
    assert time.monotonic() - started < 5
    assert_offline_message(str(info.value), "stanfordnlp/imdb")


def test_hub_probe_that_gets_no_answer_still_fails_fast(monkeypatch, empty_hf_cache):
    # An endpoint where nothing listens (a closed port on this machine), whatever the real network is like.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub, "_probe_cache", {})
    started = time.monotonic()
    with pytest.raises(HubUnavailableError):
        load_data(cfg("imdb"))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("hub_id, local", [("imdb", "imdb"), ("stanfordnlp/imdb", "stanfordnlp/imdb")])
def test_local_folder_named_like_a_hub_id_does_not_replace_it(tmp_path, monkeypatch, empty_hf_cache, hub_id, local):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_acl(tmp_path / local)  # a perfectly loadable local copy under the same name
    with pytest.raises(HubUnavailableError) as info:
        load_data(cfg(hub_id))
    assert f"'./{local}'" in str(info.value)  # the message says how to use the local folder instead
    loaded = load_data(cfg(f"./{local}"))  # written as a path, the local folder is used
    assert loaded.info["source"] == "aclimdb"


def fake_hub_cache(cache: Path, repo_id: str, commit: str, splits: dict[str, list[tuple[str, int]]],
                   names=("neg", "pos")) -> None:
    """Write a data set into the cache exactly as datasets does for a Hub download (folder named by commit)."""
    class Fake(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=datasets.Features(
                {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))}))

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name=s, gen_kwargs={"rows": rows}) for s, rows in splits.items()]

        def _generate_examples(self, rows):
            for i, (text, label) in enumerate(rows):
                yield i, {"text": text, "label": label}

    Fake(cache_dir=str(cache), dataset_name=repo_id.split("/")[-1], repo_id=repo_id, config_name="plain_text",
         hash=commit).download_and_prepare()


def test_cached_hub_dataset_loads_offline(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    train = [(f"train review {i}<br />more", i % 2) for i in range(10)]
    test = [(f"test review {i}", i % 2) for i in range(6)]
    unsup = [(f"unlabelled {i}", -1) for i in range(4)]
    fake_hub_cache(empty_hf_cache, "fakeorg/reviews", "0123456789abcdef0123456789abcdef01234567",
                   {"train": train, "test": test, "unsupervised": unsup})
    loaded = load_data(cfg("fakeorg/reviews", max_eval_samples=4))
    assert set(loaded.dataset) == {"train", "test"}
    assert col(loaded.dataset["train"], "text") == [t.replace("<br />", "\n") for t, _ in train]
    assert col(loaded.dataset["train"], "label") == [label for _, label in train]
    assert loaded.dataset["test"].num_rows == 4
    info = loaded.info
    assert info["source"] == "hub" and info["hub_id"] == "fakeorg/reviews" and info["hub_from_cache"] is True
    assert info["label_mapping"] == {"neg": 0, "pos": 1}
    assert info["hub_splits_used"] == {"train": "train", "test": "test"}


def test_cached_hub_dataset_with_only_train_is_held_out_and_local_loads_are_not_used(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train = [(f"review {i}", i % 2) for i in range(20)]
    fake_hub_cache(empty_hf_cache, "fakeorg/onlytrain", "a" * 40, {"train": train}, names=("1", "2"))
    # a newer cache entry made by loading a *local folder* of the same name (hash not a Hub commit): ignored
    fake_hub_cache(empty_hf_cache, "fakeorg/onlytrain", "83a3026cea4ec938",
                   {"train": [("from a local folder", 0), ("also local", 1)] * 3})
    loaded = load_data(cfg("fakeorg/onlytrain", eval_fraction=0.2))
    texts = col(loaded.dataset["train"], "text") + col(loaded.dataset["test"], "text")
    assert sorted(texts) == sorted(t for t, _ in train)
    assert loaded.info["held_out"] == {"fraction": 0.2, "seed": 42, "stratified": True, "from_split": "train",
                                       "train_rows": 16, "test_rows": 4}
    # class names "1"/"2" are not sentiment words: the class ids are used as labels
    assert loaded.info["hub_label_names"] == ["1", "2"]
    assert loaded.info["label_mapping"] == {"0": 0, "1": 1}


def test_hub_columns_are_checked(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_cache(empty_hf_cache, "fakeorg/cols", "b" * 40, {"train": [("x", 0), ("y", 1)] * 3})
    msg = error_of(DataError, load_data, cfg("fakeorg/cols", text_column="sentence"))
    assert "'sentence'" in msg and "'text'" in msg and "'label'" in msg


def test_info_is_complete_and_json_able(tmp_path):
    path = save(frame(40), tmp_path / "all.csv")
    info = load_data(cfg(path, max_train_samples=10)).info
    assert json.loads(json.dumps(info)) == info
    for key in ("source", "description", "files", "text_column", "label_column", "label_mapping", "held_out",
                "dropped", "rows", "class_counts", "subsets"):
        assert key in info, key
    assert info["rows"]["train"] == 10 and info["rows_before_subsets"]["train"] == 32
    assert sum(info["class_counts"]["train"].values()) == 10
    assert not math.isnan(info["held_out"]["fraction"])


def test_hub_test_split_without_labels_is_replaced(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train = [(f"train {i}", i % 2) for i in range(10)]
    unlabelled_test = [(f"test {i}", -1) for i in range(4)]
    validation = [(f"validation {i}", i % 2) for i in range(4)]
    fake_hub_cache(empty_hf_cache, "fakeorg/glue_like", "c" * 40,
                   {"train": train, "validation": validation, "test": unlabelled_test},
                   names=("negative", "positive"))
    loaded = load_data(cfg("fakeorg/glue_like"))
    assert loaded.info["hub_splits_used"] == {"train": "train", "test": "validation"}
    assert col(loaded.dataset["test"], "text") == [t for t, _ in validation]
    assert loaded.info["label_mapping"] == {"negative": 0, "positive": 1}
    assert "validation" in loaded.info["description"]
    fake_hub_cache(empty_hf_cache, "fakeorg/no_eval", "d" * 40, {"train": train, "test": unlabelled_test})
    held = load_data(cfg("fakeorg/no_eval", eval_fraction=0.2))
    assert held.info["held_out"]["test_rows"] == 2 and held.info["hub_splits_used"] == {"train": "train"}


def test_a_data_file_name_without_path_prefix_is_read_locally(tmp_path, monkeypatch):
    """'reviews.csv' typed on its own means the file here, not a Hub id of that name."""
    monkeypatch.chdir(tmp_path)
    save(frame(40), tmp_path / "reviews.csv")
    loaded = load_data(cfg("reviews.csv"))
    assert loaded.info["source"] == "local"
    assert len(loaded.dataset["train"]) + len(loaded.dataset["test"]) == 40


def test_the_built_in_reviews_are_balanced_distinct_and_split_by_film():
    from lib.sources.demo_data import REVISED_SUFFIX, demo_facts
    ds = demo_reviews()
    train, test = ds["train"], ds["test"]
    for split in (train, test):
        labels = split["label"]
        assert abs(sum(labels) - len(labels) / 2) <= len(labels) * 0.02, "labels must stay balanced"
    assert len(set(train["text"])) == len(train["text"]) and len(set(test["text"])) == len(test["text"])
    assert not set(train["text"]) & set(test["text"]), "an eval review must never be trained on"
    facts = demo_facts()
    assert (facts["train"], facts["test"]) == (train.num_rows, test.num_rows)
    # every revision sits beside its original (the first lines of the file without the suffix): same
    # split, opposite verdict, a different text
    revised_files = sorted(DEMO_DIR.glob(f"*{REVISED_SUFFIX}"))
    counted = {"train": 0, "test": 0}
    for revised in revised_files:
        original = revised.with_name(revised.name.replace(REVISED_SUFFIX, ".jsonl"))
        a = [json.loads(x) for x in original.read_text(encoding="utf-8").splitlines() if x.strip()]
        b = [json.loads(x) for x in revised.read_text(encoding="utf-8").splitlines() if x.strip()]
        assert 0 < len(b) <= len(a)
        for x, y in zip(a, b):
            assert y["label"] == 1 - x["label"] and y["text"] != x["text"] and x["split"] == y["split"]
            counted[y["split"]] += 1
    assert counted["test"] > 0
    assert (facts["test_revised"], facts["train_revised"]) == (counted["test"], counted["train"])


def test_the_demo_statement_says_what_the_data_is_and_what_was_measured():
    from lib.sources.demo_data import DEMO_MEASURED, demo_facts, demo_statement
    text = demo_statement()
    facts = demo_facts()
    assert f"{facts['train']:,} for training" in text and f"{facts['test']:,} for evaluation" in text
    assert "written for this project" in text
    if DEMO_MEASURED["imdb_accuracy"] is not None:
        assert f"{DEMO_MEASURED['imdb_accuracy']:.1%}" in text and "real IMDb test reviews" in text

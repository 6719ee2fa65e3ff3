"""The Learn page under AppTest: default inputs, changed inputs, both languages, offline Hub data, bounded
inputs, read-only mode; and the data choices behind it (lib.sources.preview)."""
from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.config import MAX_SAMPLES
from lib.errors import LabError
from lib.job.steps import MAX_LISTED_EVENTS, event_schedule, plan_steps
from lib.job.tokenization import PAD_MODES, pad_batch
from lib.sources import preview
from lib.sources.data import demo_reviews
from lib.sources.models import load_tokenizer
from lib.sources.tables import guess_label_column, guess_text_column
from pages.ui import learn_tabs, learn_text

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "learn.py")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def frame_with(at: AppTest, column: str):
    """The first table on the page that has this column (AppTest does not expose table keys)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r}")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_default_page():
    at = page()
    m = metrics(at)
    assert m["Tokens"] == "7" and m["Characters"] == "15" and m["Words"] == "4" and m["Unknown [UNK]"] == "0"
    assert m["Samples per step"] == "8" and m["Steps per epoch"] == "250" and m["Total steps"] == "500"
    assert m["Reviews"] == f"{demo_reviews()['train'].num_rows:,}"  # the built-in training reviews
    table = frame_with(at, "Attention mask")
    assert table["ID"].tolist() == [101, 2023, 2003, 1037, 3231, 1012, 102]
    assert table["Token"].tolist() == ["[CLS]", "this", "is", "a", "test", ".", "[SEP]"]
    assert any("⌈2,000 ÷ 8⌉ = 250" in c.value for c in at.code)
    assert len(at.json) == 3  # before map, after map, after set_format
    assert not at.error


def test_changed_inputs():
    at = page()
    at.text_area(key="learn_text").set_value("Unaffable 😀 <b>bold</b>").run()
    assert not at.exception
    m = metrics(at)
    assert m["Unknown [UNK]"] == "1"
    assert any("😀" in c.value for c in at.code)  # the unknown characters are listed
    # the chips escape every token: no markup from the text reaches the page
    chips = at.get("html")[0].proto.body
    assert "&lt;" in chips and "<b>" not in chips

    at.slider(key="learn_pad_max_length").set_value(8).run()
    assert not at.exception
    assert any("cut off" in c.value for c in at.caption)
    at.radio(key="learn_pad_mode").set_value("dynamic").run()
    assert not at.exception

    at.slider(key="learn_stats_max_length").set_value(64).run()
    assert not at.exception
    assert metrics(at)["Cut by max_length"] != "0.0%"

    for key, value in (("learn_calc_samples", 33), ("learn_calc_batch", 4), ("learn_calc_accum", 3),
                       ("learn_calc_devices", 2), ("learn_calc_epochs", 1.5)):
        at.number_input(key=key).set_value(value)
    at.run()
    assert not at.exception
    plan = plan_steps(33, 4, 3, 2, 1.5)
    m = metrics(at)
    assert m["Total steps"] == f"{plan.total_steps:,}" and m["Steps per epoch"] == f"{plan.steps_per_epoch:,}"
    assert m["Samples per step"] == "24"

    at.selectbox(key="learn_sch_save").set_value("steps").run()
    at.number_input(key="learn_sch_save_steps").set_value(1.0)
    at.number_input(key="learn_sch_logging").set_value(1.0)
    at.number_input(key="learn_sch_limit").set_value(1)
    at.run()
    assert not at.exception
    sched = event_schedule(plan, logging_steps=1, eval_strategy="epoch", save_strategy="steps", save_steps=1,
                           save_total_limit=1)
    events = frame_with(at, "Checkpoint")
    assert events["Step"].tolist() == [e.step for e in sched.events]
    assert sum("deleted" in str(v) for v in events["Checkpoint"]) == len(sched.deleted) > 0

    at.number_input(key="learn_calc_max_steps").set_value(0).run()  # the Trainer refuses max_steps=0
    assert not at.exception and at.error


def test_load_best_pick():
    at = page()
    at.selectbox(key="learn_sch_eval").set_value("epoch")
    at.checkbox(key="learn_sch_best").set_value(True)
    at.number_input(key="learn_sch_limit").set_value(1)
    at.run()
    assert not at.exception
    at.selectbox(key="learn_sch_best_pick").set_value(250).run()
    assert not at.exception
    assert any("checkpoint-250" in c.value and "checkpoint-500" not in c.value for c in at.caption
               if c.value.startswith("Left at the end"))


def test_chinese():
    at = page()
    at.radio(key="learn_lang").set_value("zh").run()
    assert not at.exception
    assert at.title[0].value == learn_text.ZH["title"]
    m = metrics(at)
    assert m["词片数"] == "7" and m["总步数"] == "500"


def test_local_file_and_offline_hub(tmp_path):
    csv = tmp_path / "reviews.csv"
    csv.write_text("review,label\n" + "".join(f"\"movie number {i} was {'good ' * i}\",{i % 2}\n"
                                                for i in range(1, 41)), encoding="utf-8")
    at = page()
    at.radio(key="learn_ds_source").set_value("path").run()
    at.text_input(key="learn_ds_path").set_value(str(csv)).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="learn_ds_column_path").value == "review"
    assert metrics(at)["Reviews"] == "40"
    at.button(key="learn_calc_use_data").click().run()   # the calculator takes the data set's size
    assert not at.exception
    assert at.number_input(key="learn_calc_samples").value == 40
    assert metrics(at)["Total steps"] == f"{plan_steps(40, 8).total_steps:,}"
    at.radio(key="learn_pad_source").set_value("pick").run()
    assert not at.exception and not at.error

    at.radio(key="learn_ds_source").set_value("hub").run()   # 'imdb' with HF_HUB_OFFLINE=1
    assert not at.exception
    assert at.error and "Hub" in at.error[0].value


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_both_languages_have_every_text():
    assert set(learn_text.EN) == set(learn_text.ZH)
    for key, en in learn_text.EN.items():
        assert _fields(en) == _fields(learn_text.ZH[key]), key
        assert learn_text.ZH[key].strip()
    assert re.search(r"[\u4e00-\u9fff]", learn_text.ZH["calc_intro"])


def test_read_only_mode_leaves_learn_working(monkeypatch):
    monkeypatch.setenv("LAB_READ_ONLY", "1")
    at = page()
    m = metrics(at)
    assert m["Tokens"] == "7" and m["Total steps"] == "500" and m["Reviews"] == f"{demo_reviews()['train'].num_rows:,}"
    assert not at.error


def test_long_text_is_cut_with_a_message():
    at = page()
    at.text_area(key="learn_text").set_value("word " * 1000).run()         # 5,000 characters
    assert not at.exception
    assert metrics(at)["Characters"] == f"{learn_tabs.TEXT_MAX_CHARS:,}"
    assert any("at most 2,000 characters" in c.value for c in at.caption)
    lines = [f"review {i}" for i in range(40)] + ["x" * 800]
    at.text_area(key="learn_pad_texts").set_value("\n".join(lines)).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any("first 32 reviews" in c and "9 more" in c for c in captions)
    kept = lines[:32]                       # the batch that was padded: the first 32 reviews
    batch = pad_batch(load_tokenizer("bundled-minilm"), kept, PAD_MODES[0], 24, 2)
    assert metrics(at)["Real tokens"] == f"{batch.real_tokens:,}"
    short = "\n".join(["short one", "x" * 800])
    at.text_area(key="learn_pad_texts").set_value(short).run()
    assert any("longer than 500 characters" in c.value for c in at.caption)


def test_the_calculator_bounds_its_inputs_and_answers_huge_plans_at_once():
    at = page()
    at.number_input(key="learn_calc_samples").set_value(100_000_000)      # more than TrainConfig allows
    at.run()
    assert at.number_input(key="learn_calc_samples").value <= MAX_SAMPLES
    at.number_input(key="learn_calc_samples").set_value(MAX_SAMPLES)
    at.number_input(key="learn_calc_batch").set_value(1)
    at.number_input(key="learn_calc_epochs").set_value(1000.0)
    at.number_input(key="learn_sch_logging").set_value(1.0)
    at.run()
    assert not at.exception
    plan = plan_steps(MAX_SAMPLES, 1, num_train_epochs=1000)
    assert metrics(at)["Total steps"] == f"{plan.total_steps:,}"
    events = frame_with(at, "Checkpoint")
    assert 0 < len(events) <= MAX_LISTED_EVENTS < plan.total_steps
    assert any(f"{plan.total_steps:,} events in all" in c.value for c in at.caption)


def test_guessing_columns():
    assert guess_text_column(["id", "Review", "label"]) == "Review"
    assert guess_text_column(["a", "b"]) == "a" and guess_text_column([]) is None
    assert guess_label_column(["text", "Sentiment", "x"]) == "Sentiment"
    assert guess_label_column(["a", "b"]) == "b" and guess_label_column([]) is None


def test_which_texts_a_data_choice_stands_for(tmp_path, monkeypatch):
    csv = tmp_path / "r.csv"
    csv.write_text("text,label\nfine<br />film,pos\n,neg\nbad,neg\n", encoding="utf-8")
    kind, path = preview.resolve_path(str(csv))
    assert kind == "file" and path == csv.resolve()
    sample = preview.load_texts("file", str(path), column="text", strip_html=True)
    assert sample.texts == ["fine\nfilm", "bad"] and sample.skipped == 1
    assert sample.labels == [1, 0]                      # labels stay with their texts
    assert preview.table_columns("file", str(path)) == ["text", "label"]
    up = preview.load_texts("upload", "mine.csv", column="text", strip_html=False, runs_dir=tmp_path / "runs",
                            data=csv.read_bytes())
    assert up.texts == ["fine<br />film", "bad"] and not list((tmp_path / "runs" / "_uploads").iterdir())
    demo = preview.load_texts("demo", "demo", split="test")
    assert demo.source is None and len(demo.texts) == len(demo.labels) > 0
    monkeypatch.setenv("LAB_ALLOWED_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(LabError, match="outside the folders"):
        preview.resolve_path(str(csv))

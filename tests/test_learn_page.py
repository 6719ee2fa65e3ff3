"""The Learn page under AppTest: default inputs, changed inputs, both languages, offline Hub data."""
from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.job.steps import event_schedule, plan_steps
from pages.ui import learn_text

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
    assert m["Reviews"] == "480"  # the built-in training reviews
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

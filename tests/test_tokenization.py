"""lib.tokenization with the bundled uncased WordPiece tokenizer (same vocabulary as bert-base-uncased)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.errors import ConfigError
from lib.job import tokenization as tok
from lib.sources.data import demo_reviews
from lib.sources.models import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    t = load_tokenizer("bundled-minilm")
    assert t.is_fast
    return t


@pytest.fixture(scope="module")
def demo_texts():
    return list(demo_reviews()["train"]["text"])


# ---------------------------------------------------------------------------------------------------
# token table
# ---------------------------------------------------------------------------------------------------
def test_tutorial_table(tokenizer):
    table = tok.token_table(tokenizer, "this is a test.")
    assert [(r.token, r.id, r.attention_mask) for r in table.rows] == [
        ("[CLS]", 101, 1), ("this", 2023, 1), ("is", 2003, 1), ("a", 1037, 1), ("test", 3231, 1),
        (".", 1012, 1), ("[SEP]", 102, 1)]
    assert [r.is_special for r in table.rows] == [True, False, False, False, False, False, True]
    assert [(r.start, r.end, r.source) for r in table.rows] == [
        (0, 0, ""), (0, 4, "this"), (5, 7, "is"), (8, 9, "a"), (10, 14, "test"), (14, 15, "."), (0, 0, "")]
    assert table.counts == {"characters": 15, "words": 4, "tokens": 7, "special_tokens": 2, "word_pieces": 0,
                            "unknown": 0, "text_tokens": 5}


def test_word_pieces_unknown_and_offsets(tokenizer):
    text = "Unaffable 😀 film"
    table = tok.token_table(tokenizer, text)
    assert table.tokens == ["[CLS]", "una", "##ffa", "##ble", "[UNK]", "film", "[SEP]"]
    assert [r.is_subword for r in table.rows] == [False, False, True, True, False, False, False]
    unk = [r for r in table.rows if r.is_unk]
    assert len(unk) == 1 and unk[0].source == "😀" and not unk[0].is_special
    assert unk[0].id == tokenizer.unk_token_id
    # every non-special token maps back to characters of the text; pieces of one word share a word index
    for r in table.rows[1:-1]:
        assert r.source == text[r.start:r.end] and r.source
    assert table.rows[1].word == table.rows[2].word == table.rows[3].word != table.rows[5].word
    assert table.counts["unknown"] == 1 and table.counts["word_pieces"] == 2 and table.counts["words"] == 3


def test_uncased(tokenizer):
    assert tok.token_table(tokenizer, "TEST Café").ids == tok.token_table(tokenizer, "test cafe").ids


# ---------------------------------------------------------------------------------------------------
# padding and truncation
# ---------------------------------------------------------------------------------------------------
TEXTS = ["this is a test.", "a test"]


def test_pad_longest(tokenizer):
    b = tok.pad_batch(tokenizer, TEXTS, "longest", max_length=32)
    assert b.input_ids == [[101, 2023, 2003, 1037, 3231, 1012, 102], [101, 1037, 3231, 102, 0, 0, 0]]
    assert b.attention_mask == [[1] * 7, [1, 1, 1, 1, 0, 0, 0]]
    assert b.rows[1].tokens[-1] == "[PAD]"
    assert (b.tokens_processed, b.real_tokens, b.padding_tokens) == (14, 11, 3)
    assert b.padding_share == pytest.approx(3 / 14)
    assert not any(r.truncated for r in b.rows)


def test_pad_max_length(tokenizer):
    b = tok.pad_batch(tokenizer, TEXTS, "max_length", max_length=10)
    assert [r.width for r in b.rows] == [10, 10]
    assert b.input_ids[1] == [101, 1037, 3231, 102] + [0] * 6
    assert b.padding_share == pytest.approx(9 / 20)


def test_pad_dynamic_by_collator(tokenizer):
    texts = TEXTS + ["test", "a"]
    b = tok.pad_batch(tokenizer, texts, "dynamic", max_length=32, collator_batch_size=2)
    # collator batch 1: widths 7 and 7 (padded to 7); batch 2: "test" (3) and "a" (3)
    assert [r.width for r in b.rows] == [7, 7, 3, 3] and [r.group for r in b.rows] == [0, 0, 1, 1]
    assert b.padding_share == pytest.approx(3 / 20)
    one = tok.pad_batch(tokenizer, texts, "dynamic", max_length=32, collator_batch_size=1)
    assert one.padding_share == 0.0
    longest = tok.pad_batch(tokenizer, texts, "longest", max_length=32)
    assert longest.padding_share > b.padding_share


def test_truncation_shows_cut_text(tokenizer):
    b = tok.pad_batch(tokenizer, TEXTS, "longest", max_length=5)
    first = b.rows[0]
    assert first.input_ids == [101, 2023, 2003, 1037, 102]
    assert (first.full_length, first.cut_tokens, first.cut_text) == (7, 2, "test.")
    assert b.rows[1].input_ids == [101, 1037, 3231, 102, 0] and not b.rows[1].truncated
    cells = b.cells()
    assert len(cells) == 10
    assert sum(c["kind"] == "padding" for c in cells) == 1
    assert sum(c["kind"] == "special" for c in cells) == 4


def test_pad_batch_refuses_bad_input(tokenizer):
    with pytest.raises(ConfigError):
        tok.pad_batch(tokenizer, TEXTS, "sideways", 16)
    with pytest.raises(ConfigError):
        tok.pad_batch(tokenizer, TEXTS, "longest", 2)
    with pytest.raises(ConfigError):
        tok.pad_batch(tokenizer, [], "longest", 16)


# ---------------------------------------------------------------------------------------------------
# the map step
# ---------------------------------------------------------------------------------------------------
def test_map_step_example(tokenizer):
    texts = ["this is a test.", "a test", "great"]
    ex = tok.map_step_example(tokenizer, texts, [1, 0, 1], index=1, map_batch_size=2)
    assert ex["before"] == {"text": "a test", "label": 0}
    assert ex["columns_before"] == ["text", "label"]
    assert set(ex["columns_after_map"]) >= {"text", "label", "input_ids", "attention_mask"}
    after = ex["after_map"]
    assert after["text"] == "a test" and after["label"] == 0          # kept
    assert after["input_ids"] == [101, 1037, 3231, 102, 0, 0, 0]        # padded to its map batch's longest
    assert after["attention_mask"] == [1, 1, 1, 1, 0, 0, 0]
    assert (ex["real_tokens"], ex["padding_tokens"], ex["map_batch"]) == (4, 3, [0, 2])
    formatted = ex["after_set_format"]
    assert ex["columns_after_set_format"] == ["label", "input_ids", "attention_mask"]
    assert "text" not in formatted
    assert formatted["input_ids"]["type"] == "torch.Tensor" and formatted["input_ids"]["dtype"] == str(torch.int64)
    assert formatted["input_ids"]["shape"] == [7] and formatted["input_ids"]["values"] == after["input_ids"]
    # the third review sits alone in the second map batch: no padding at all
    ex3 = tok.map_step_example(tokenizer, texts, [1, 0, 1], index=2, map_batch_size=2)
    assert ex3["padding_tokens"] == 0 and ex3["map_batch"] == [2, 3]
    # without padding in map the example keeps its own length
    nopad = tok.map_step_example(tokenizer, texts, [1, 0, 1], index=1, padding=False)
    assert nopad["after_map"]["input_ids"] == [101, 1037, 3231, 102]
    with pytest.raises(ConfigError):
        tok.map_step_example(tokenizer, texts, [1, 0, 1], index=3)
    # a file without labels: only the text column, and set_format keeps what exists
    unlabelled = tok.map_step_example(tokenizer, texts, None, index=0)
    assert unlabelled["columns_before"] == ["text"]
    assert unlabelled["columns_after_set_format"] == ["input_ids", "attention_mask"]


# ---------------------------------------------------------------------------------------------------
# length statistics
# ---------------------------------------------------------------------------------------------------
def test_token_lengths_match_the_tokenizer(tokenizer, demo_texts):
    before = tokenizer.backend_tokenizer.truncation
    lengths = tok.token_lengths(tokenizer, demo_texts, chunk_size=97)
    assert tokenizer.backend_tokenizer.truncation == before  # the tokenizer itself is left as it was
    expected = [len(ids) for ids in tokenizer(demo_texts, truncation=False)["input_ids"]]
    assert lengths.tolist() == expected
    assert max(expected) > 128  # longer than the truncation saved in the bundled tokenizer.json


def test_stats_exact_on_small_lengths():
    s = tok.stats_from_lengths([3, 5, 10, 20], max_length=8, batch_size=1)
    assert (s.n_truncated, s.share_truncated, s.tokens_total, s.tokens_kept, s.tokens_lost) == (2, 0.5, 38, 24, 14)
    assert s.share_tokens_lost == pytest.approx(14 / 38)
    # batch size 1: dynamic and grouped batches have no padding at all
    assert s.padding["dynamic"].padding_share == 0.0 and s.padding["grouped"].padding_share == 0.0
    # one map batch of 1,000: every row padded to the longest (truncated) row, 8
    assert s.padding["tutorial"].tokens_processed == 4 * 8
    assert s.padding["max_length"].padding_share == pytest.approx(1 - 24 / 32)
    assert sum(h["count"] for h in s.histogram) == 4
    # max_length is a bin edge: bins up to it hold the texts that fit, bins after it the ones cut
    fits = sum(h["count"] for h in s.histogram if h["bin_end"] <= 8)
    assert fits == 2 and any(h["bin_end"] == 8 for h in s.histogram)
    exact = tok.stats_from_lengths([8, 9, 30], max_length=8)
    assert sum(h["count"] for h in exact.histogram if h["bin_end"] <= 8) == 1  # 8 tokens fit exactly


def test_padding_schemes_on_demo(tokenizer, demo_texts):
    # a limit most built-in reviews fit under, so that lengths differ and batching schemes differ
    s = tok.length_stats(tokenizer, demo_texts, max_length=256, batch_size=8, map_batch_size=100, seed=1)
    kept = np.minimum(s.lengths, 256)
    assert s.tokens_kept == kept.sum()
    for cost in s.padding.values():
        assert cost.real_tokens == kept.sum()
        assert 0 <= cost.padding_share < 1
        assert cost.padding_share == pytest.approx(1 - kept.sum() / cost.tokens_processed)
    p = {k: v.padding_share for k, v in s.padding.items()}
    assert p["grouped"] < p["dynamic"] < p["tutorial"] <= p["max_length"]
    # whole data set as one batch: dynamic padding = padding to the longest = the tutorial with one map batch
    one = tok.stats_from_lengths(s.lengths, 256, batch_size=len(s.lengths), map_batch_size=len(s.lengths))
    assert one.padding["dynamic"].tokens_processed == one.padding["tutorial"].tokens_processed == \
        len(s.lengths) * kept.max()
    assert s.n_truncated == int((s.lengths > 256).sum())


def test_length_grouped_order_is_a_sorted_permutation():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=1000)
    order = tok.length_grouped_order(lengths, 4, np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(1000))
    assert lengths[order[0]] == lengths.max()          # longest first, as the Trainer does
    mega = 50 * 4
    for s in range(mega, 1000, mega):                  # each megabatch sorted longest-first
        block = lengths[order[s:s + mega]]
        assert (np.diff(block) <= 0).all()


def test_clean_texts():
    texts, skipped = tok.clean_texts(["a<br />b", None, float("nan"), 5, "x<BR>y"], strip_html=True)
    assert texts == ["a\nb", "5", "x\ny"] and skipped == 2
    assert tok.clean_texts(["a<br />b"])[0] == ["a<br />b"]


def test_length_stats_refuses_empty(tokenizer):
    with pytest.raises(ConfigError):
        tok.length_stats(tokenizer, [], 64)

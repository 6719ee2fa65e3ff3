"""The job's fast path: tokenizing once per (data, tokenizer, max_length, padding) through the runs
directory's cache, and length-sorted evaluation whose predictions go back to dataset order."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from lib.config import preset
from lib.job import tokcache
from lib.job.training import eval_order, restore_order, tokenize_dataset
from lib.sources.data import load_data
from lib.sources.models import load_tokenizer
from lib.store import rundir


@pytest.fixture(scope="module")
def demo():
    config = preset("demo", model="tiny-bert", max_train_samples=40, max_eval_samples=30)
    return config, load_data(config).dataset, load_tokenizer("tiny-bert")


def test_second_tokenization_is_read_from_the_cache_with_identical_columns(demo, tmp_path):
    config, data, tok = demo
    cache = tokcache.cache_folder(tmp_path)
    plain = tokenize_dataset(data, tok, config)
    first = tokenize_dataset(data, tok, config, cache_dir=cache)
    second = tokenize_dataset(data, tok, config, cache_dir=cache)
    assert plain.lab_cache_hits == [] and first.lab_cache_hits == []
    assert sorted(second.lab_cache_hits) == ["test", "train"]
    assert len(list(cache.glob("tok-*.arrow"))) == 2
    for split in data:
        a, b = plain[split].with_format(None), second[split].with_format(None)
        assert a["input_ids"] == b["input_ids"] and a["length"] == b["length"] and a["label"] == b["label"]
        assert b["text"] == data[split]["text"]  # map(batched=True) keeps text and label
        assert a["length"] == [sum(m) for m in a["attention_mask"]]
        assert second[split].format["type"] == "torch"
    # The cache is not a run: the registry only sees run ids.
    assert list(rundir.iter_run_dirs(tmp_path)) == []


def test_cache_key_changes_with_what_decides_the_tokens(demo, tmp_path):
    config, data, tok = demo
    cache = tokcache.cache_folder(tmp_path)
    tokenize_dataset(data, tok, config, cache_dir=cache)
    for changed in (config.replace(max_length=64), config.replace(padding="max_length")):
        again = tokenize_dataset(data, tok, changed, cache_dir=cache)
        assert again.lab_cache_hits == [], changed
    other = load_data(config.replace(max_eval_samples=29)).dataset  # other rows: other fingerprint
    assert tokenize_dataset(other, tok, config, cache_dir=cache).lab_cache_hits == ["train"]
    # tiny-bert borrows the bundled MiniLM's tokenizer: the same tokens, so the same entries.
    assert tokcache.tokenizer_identity(load_tokenizer("bundled-minilm")) == tokcache.tokenizer_identity(tok)
    import copy

    from tokenizers import normalizers
    cased = copy.deepcopy(tok)
    cased.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    assert tokcache.tokenizer_identity(cased) != tokcache.tokenizer_identity(tok)
    assert tokenize_dataset(data, cased, config, cache_dir=cache).lab_cache_hits == []
    # Switched off: nothing read or written.
    off = tmp_path / "off"
    assert tokenize_dataset(data, tok, config.replace(tokenization_cache=False), cache_dir=off).lab_cache_hits == []
    assert not off.exists()


def test_prune_removes_least_recently_used_files_first(tmp_path):
    now = time.time()
    for i, name in enumerate(["tok-a.arrow", "tok-b.arrow", "tok-c.arrow"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (now - 100 + i, now - 100 + i))
    (tmp_path / "notes.txt").write_text("not ours")
    assert tokcache.prune(tmp_path, max_bytes=250, keep={"tok-a.arrow"}) == ["tok-b.arrow"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "tok-a.arrow", "tok-c.arrow"]
    assert tokcache.prune(tmp_path, max_bytes=1000) == []


def test_eval_order_sorts_longest_first_and_restore_puts_rows_back(demo):
    config, data, tok = demo
    test = tokenize_dataset(data, tok, config)["test"]
    lengths = np.asarray(test.with_format(None)["length"])
    order = eval_order(test, config)
    assert sorted(order.tolist()) == list(range(len(test)))
    assert list(lengths[order]) == sorted(lengths, reverse=True)
    rows = np.stack([np.arange(len(test)), lengths], axis=1)  # a row "computed" for each review
    back = restore_order(rows[order], order)
    assert np.array_equal(back, rows)
    # The tutorial's padding (already padded in map) and the switch keep dataset order.
    assert eval_order(test, config.replace(sort_eval_by_length=False)) is None
    assert eval_order(test, config.replace(padding="longest_in_map_batch")) is None
    assert restore_order(rows, None) is not None and np.array_equal(restore_order(rows, None), rows)


def test_tokenizer_identity_ignores_the_last_calls_padding_and_truncation():
    tok = load_tokenizer("tiny-bert")
    before = tokcache.tokenizer_identity(tok)
    tok(["a short review", "another, a little longer review"], padding="max_length", truncation=True, max_length=16)
    assert tokcache.tokenizer_identity(tok) == before


def test_shuffled_length_groups_serve_upstreams_batches_in_random_order():
    import torch

    from lib.job.training import make_trainer_class
    trainer_cls = make_trainer_class()
    from transformers.trainer_pt_utils import LengthGroupedSampler
    lengths = [int(x) for x in torch.randint(5, 500, (800,), generator=torch.Generator().manual_seed(0))]
    sampler_cls = trainer_cls.__dict__.get("lab_sampler_cls")
    assert sampler_cls is not None
    up = list(LengthGroupedSampler(8, lengths=lengths, generator=torch.Generator().manual_seed(1)))
    ours = list(sampler_cls(8, lengths=lengths, generator=torch.Generator().manual_seed(1)))
    assert sorted(ours) == list(range(800))
    batches = lambda xs: [tuple(xs[i:i + 8]) for i in range(0, len(xs), 8)]  # noqa: E731
    assert batches(ours)[0] == batches(up)[0] and max(lengths[i] for i in ours[:8]) == max(lengths)
    assert sorted(batches(ours)) == sorted(batches(up))  # the same batches: the same padding
    assert batches(ours) != batches(up)  # in another order
    # upstream runs long-to-short inside each mega-batch of 50 batches; ours does not
    widths = [max(lengths[i] for i in b) for b in batches(ours)]
    descending = sum(a >= b for a, b in zip(widths, widths[1:])) / (len(widths) - 1)
    assert descending < 0.7

"""What the tokenizer does to a review, and what padding costs, computed with the real tokenizer.

The Learn page shows these numbers; nothing here is typed in by hand:

- :func:`token_table`: one row per token (token, id, attention mask, special / word piece / unknown,
  and the characters of the text it came from), plus character, word and token counts.
- :func:`pad_batch`: a small batch padded the three ways the app can pad (to the longest review,
  to ``max_length``, or batch by batch by the data collator) and truncated at ``max_length``.
- :func:`map_step_example`: one example before and after the tutorial's
  ``dataset.map(tokenize, batched=True)`` and after ``set_format("torch", ...)``, made with real
  ``datasets`` calls.
- :func:`length_stats`: token lengths of a whole data set (fast tokenizer, in batches), how much
  truncation cuts, and the share of compute spent on padding under three batching schemes.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lib.errors import ConfigError, ModelError
from lib.sources.preprocessing import strip_html_breaks

PAD_MODES = ("longest", "max_length", "dynamic")
PADDING_SCHEMES = ("tutorial", "dynamic", "grouped", "max_length")


def clean_texts(values: Iterable[Any], strip_html: bool = False) -> tuple[list[str], int]:
    """Texts from a data column: missing values skipped (and counted), everything else as text."""
    out: list[str] = []
    skipped = 0
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            skipped += 1
            continue
        s = v if isinstance(v, str) else str(v)
        out.append(strip_html_breaks(s) if strip_html else s)
    return out, skipped


def _check_max_length(tokenizer, max_length: int) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
        raise ConfigError({"max_length": f"max_length must be a whole number, got {max_length!r}"})
    need = tokenizer.num_special_tokens_to_add() + 1
    if max_length < need:
        raise ConfigError({"max_length": f"max_length must be at least {need} (room for the special tokens and "
                                         f"one word piece), got {max_length}"})
    return int(max_length)


# ---------------------------------------------------------------------------------------------------
# 1. the token table
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenRow:
    position: int
    token: str
    id: int
    attention_mask: int
    is_special: bool
    is_subword: bool     # a word piece that continues a word ("##...")
    is_unk: bool         # the tokenizer did not know these characters
    start: int           # character offsets into the text (0, 0 for special tokens)
    end: int
    source: str          # text[start:end]
    word: int | None     # which word of the text the token belongs to

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TokenTable:
    text: str
    rows: list[TokenRow]
    counts: dict[str, int]

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.rows]

    @property
    def tokens(self) -> list[str]:
        return [r.token for r in self.rows]

    def records(self) -> list[dict]:
        return [r.to_dict() for r in self.rows]


def _require_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("this page needs a fast (Rust) tokenizer, which reports character offsets; the chosen "
                         "model only has a slow one. Use the bundled model or a model with a tokenizer.json.")


def token_table(tokenizer, text: str) -> TokenTable:
    """Every token of ``text`` as the model sees it, mapped back to the characters it came from."""
    _require_fast(tokenizer)
    enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True,
                    return_attention_mask=True, truncation=False, verbose=False)
    ids = enc["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    words = enc.word_ids()
    unk = tokenizer.unk_token_id
    rows = []
    for i, (tid, tok, (s, e), sp, m) in enumerate(zip(ids, tokens, enc["offset_mapping"],
                                                      enc["special_tokens_mask"], enc["attention_mask"])):
        is_unk = unk is not None and tid == unk
        special = bool(sp) and not is_unk
        rows.append(TokenRow(position=i, token=tok, id=int(tid), attention_mask=int(m), is_special=special,
                             is_subword=tok.startswith("##") and not special, is_unk=is_unk, start=int(s),
                             end=int(e), source=text[s:e], word=words[i]))
    counts = {
        "characters": len(text),
        "words": len(text.split()),
        "tokens": len(rows),
        "special_tokens": sum(r.is_special for r in rows),
        "word_pieces": sum(r.is_subword for r in rows),
        "unknown": sum(r.is_unk for r in rows),
    }
    counts["text_tokens"] = counts["tokens"] - counts["special_tokens"]
    return TokenTable(text=text, rows=rows, counts=counts)


# ---------------------------------------------------------------------------------------------------
# 2. padding and truncation on a small batch
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaddedRow:
    text: str
    input_ids: list[int]
    attention_mask: list[int]
    tokens: list[str]
    special: list[bool]      # [CLS], [SEP], [PAD]... at each position
    group: int               # which collator batch the row was padded in (dynamic padding)
    real_tokens: int         # tokens that carry text (attention mask 1)
    full_length: int         # tokens before truncation
    cut_tokens: int          # tokens truncation removed
    cut_text: str            # the end of the text that truncation removed ("" when nothing was cut)

    @property
    def width(self) -> int:
        return len(self.input_ids)

    @property
    def truncated(self) -> bool:
        return self.cut_tokens > 0


@dataclass(frozen=True)
class PaddedBatch:
    mode: str
    max_length: int
    rows: list[PaddedRow]
    collator_batch_size: int

    @property
    def input_ids(self) -> list[list[int]]:
        return [r.input_ids for r in self.rows]

    @property
    def attention_mask(self) -> list[list[int]]:
        return [r.attention_mask for r in self.rows]

    @property
    def tokens_processed(self) -> int:
        return sum(r.width for r in self.rows)

    @property
    def real_tokens(self) -> int:
        return sum(r.real_tokens for r in self.rows)

    @property
    def padding_tokens(self) -> int:
        return self.tokens_processed - self.real_tokens

    @property
    def padding_share(self) -> float:
        total = self.tokens_processed
        return self.padding_tokens / total if total else 0.0

    @property
    def width(self) -> int:
        return max((r.width for r in self.rows), default=0)

    def cells(self) -> list[dict]:
        """One record per (row, position) that exists, for a heatmap: token, id, mask and kind."""
        out = []
        for i, r in enumerate(self.rows):
            for j, (tid, m, tok) in enumerate(zip(r.input_ids, r.attention_mask, r.tokens)):
                kind = "padding" if m == 0 else ("special" if r.special[j] else "text")
                out.append({"row": i, "position": j, "token": tok, "input_id": tid, "attention_mask": m,
                            "kind": kind, "group": r.group})
        return out


def pad_batch(tokenizer, texts: Sequence[str], mode: str = "longest", max_length: int = 512,
              collator_batch_size: int = 2) -> PaddedBatch:
    """Tokenize ``texts`` with truncation at ``max_length`` and pad them as ``mode`` says.

    - ``"longest"``: ``padding=True``, every row padded to the longest row of the batch.
    - ``"max_length"``: ``padding="max_length"``, every row padded to ``max_length``.
    - ``"dynamic"``: no padding while tokenizing; ``DataCollatorWithPadding`` pads each training batch
      of ``collator_batch_size`` rows to its own longest row (rows of different batches differ in width).
    """
    if mode not in PAD_MODES:
        raise ConfigError({"padding": f"padding mode must be one of {', '.join(PAD_MODES)}, got {mode!r}"})
    texts = [str(t) for t in texts]
    if not texts:
        raise ConfigError({"texts": "type at least one review"})
    _require_fast(tokenizer)
    max_length = _check_max_length(tokenizer, max_length)
    if collator_batch_size < 1:
        raise ConfigError({"collator_batch_size": "the collator batch size must be at least 1"})

    full = tokenizer(texts, truncation=False, return_offsets_mapping=True, verbose=False)
    if mode == "dynamic":
        from transformers import DataCollatorWithPadding
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
        collator = DataCollatorWithPadding(tokenizer, return_tensors="np")
        ids: list[list[int]] = []
        masks: list[list[int]] = []
        groups: list[int] = []
        for g, start in enumerate(range(0, len(texts), collator_batch_size)):
            feats = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]}
                     for i in range(start, min(start + collator_batch_size, len(texts)))]
            batch = collator(feats)
            ids += batch["input_ids"].tolist()
            masks += batch["attention_mask"].tolist()
            groups += [g] * len(feats)
    else:
        padding = True if mode == "longest" else "max_length"
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=padding)
        ids, masks, groups = enc["input_ids"], enc["attention_mask"], [0] * len(texts)

    special_ids = set(tokenizer.all_special_ids)
    rows = []
    for i, text in enumerate(texts):
        n_full = len(full["input_ids"][i])
        cut = max(n_full - max_length, 0)
        cut_text = ""
        if cut:
            # token max_length-1 of the untruncated encoding is the first one truncation dropped
            # ([CLS] sits at 0 and [SEP] is re-added at the end)
            start = full["offset_mapping"][i][max_length - 1][0]
            cut_text = text[start:]
        rows.append(PaddedRow(text=text, input_ids=list(ids[i]), attention_mask=list(masks[i]),
                              tokens=tokenizer.convert_ids_to_tokens(list(ids[i])),
                              special=[t in special_ids for t in ids[i]], group=groups[i],
                              real_tokens=int(sum(masks[i])), full_length=n_full, cut_tokens=cut,
                              cut_text=cut_text))
    return PaddedBatch(mode=mode, max_length=max_length, rows=rows, collator_batch_size=collator_batch_size)


# ---------------------------------------------------------------------------------------------------
# 3. the map step
# ---------------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        return {"type": "torch.Tensor", "dtype": str(value.dtype), "shape": list(value.shape),
                "values": value.tolist()}
    if isinstance(value, np.ndarray):
        return {"type": "numpy.ndarray", "dtype": str(value.dtype), "shape": list(value.shape),
                "values": value.tolist()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def map_step_example(tokenizer, texts: Sequence[str], labels: Sequence[int] | None, index: int = 0,
                     max_length: int = 512, padding: bool | str = True, map_batch_size: int = 1000,
                     format_columns: Sequence[str] = ("input_ids", "attention_mask", "label")) -> dict:
    """Example ``index`` before ``map``, after ``map(tokenize, batched=True)``, and after ``set_format("torch")``.

    The tutorial's tokenize function ``tokenizer(batch["text"], padding=padding, truncation=True,
    max_length=max_length)`` runs through a real ``datasets.Dataset.map``. Only the map batch that
    holds the example is mapped (rows ``map_batch`` = [start, end)): with ``padding=True`` that batch
    decides how far the example is padded, exactly as in a map over the whole data set.
    Returns JSON-able dicts (tensors as {type, dtype, shape, values}) and the column lists. With
    ``labels`` None (a file without labels) the data set has only the text column.
    """
    import datasets

    if labels is not None and len(texts) != len(labels):
        raise ConfigError({"labels": f"{len(texts)} texts but {len(labels)} labels"})
    if not len(texts):
        raise ConfigError({"texts": "the data set is empty"})
    if not 0 <= index < len(texts):
        raise ConfigError({"index": f"pick an example between 0 and {len(texts) - 1}, got {index}"})
    if map_batch_size < 1:
        raise ConfigError({"map_batch_size": "the map batch size must be at least 1"})
    max_length = _check_max_length(tokenizer, max_length)
    start = (index // map_batch_size) * map_batch_size
    end = min(start + map_batch_size, len(texts))
    columns = {"text": [str(t) for t in texts[start:end]]}
    if labels is not None:
        columns["label"] = [int(x) for x in labels[start:end]]
    ds = datasets.Dataset.from_dict(columns)

    def tokenize(batch):
        return tokenizer(batch["text"], padding=padding, truncation=True, max_length=max_length)

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        tokenized = ds.map(tokenize, batched=True, batch_size=map_batch_size)
    finally:
        if bars:
            datasets.enable_progress_bars()
    i = index - start
    before = ds[i]
    after_map = tokenized[i]
    columns_after_map = list(tokenized.column_names)
    tokenized.set_format("torch", columns=[c for c in format_columns if c in tokenized.column_names])
    after_format = tokenized[i]
    mask = after_map["attention_mask"]
    return {
        "index": index,
        "map_batch": [start, end],
        "before": _jsonable(before),
        "after_map": _jsonable(after_map),
        "after_set_format": _jsonable(after_format),
        "columns_before": list(ds.column_names),
        "columns_after_map": columns_after_map,
        "columns_after_set_format": list(after_format.keys()),
        "map_batch_size": map_batch_size,
        "padded_length": len(after_map["input_ids"]),
        "real_tokens": int(sum(mask)),
        "padding_tokens": int(len(mask) - sum(mask)),
    }


# ---------------------------------------------------------------------------------------------------
# 4. length statistics of a whole data set
# ---------------------------------------------------------------------------------------------------
def token_lengths(tokenizer, texts: Sequence[str], chunk_size: int = 2000,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Tokens per text (special tokens included, nothing truncated or padded), with the fast tokenizer."""
    n = len(texts)
    out = np.zeros(n, dtype=np.int64)
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:
        backend = copy.deepcopy(backend)  # the saved tokenizer may carry its own truncation/padding
        backend.no_truncation()
        backend.no_padding()
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    for start in range(0, n, chunk_size):
        chunk = [t if isinstance(t, str) else str(t) for t in texts[start:start + chunk_size]]
        if backend is not None:
            lens = [len(e) for e in encode(chunk)]
        else:
            lens = [len(x) for x in tokenizer(chunk, truncation=False, return_attention_mask=False,
                                              return_token_type_ids=False, verbose=False)["input_ids"]]
        out[start:start + len(chunk)] = lens
        if progress is not None:
            progress(min(start + chunk_size, n), n)
    return out


@dataclass(frozen=True)
class PaddingCost:
    scheme: str
    tokens_processed: int
    real_tokens: int
    batches: int

    @property
    def padding_tokens(self) -> int:
        return self.tokens_processed - self.real_tokens

    @property
    def padding_share(self) -> float:
        return 1.0 - self.real_tokens / self.tokens_processed if self.tokens_processed else 0.0


@dataclass(frozen=True)
class LengthStats:
    lengths: np.ndarray = field(repr=False)
    max_length: int
    batch_size: int
    map_batch_size: int
    seed: int
    n_texts: int
    mean: float
    median: float
    p95: float
    longest: int
    shortest: int
    n_truncated: int
    share_truncated: float
    tokens_total: int          # before truncation
    tokens_kept: int           # after truncation (= real tokens the model sees)
    tokens_lost: int
    share_tokens_lost: float
    padding: dict[str, PaddingCost]
    histogram: list[dict]      # bin_start, bin_end, count

    def summary(self) -> dict:
        out = {k: getattr(self, k) for k in ("n_texts", "max_length", "batch_size", "map_batch_size", "mean",
                                             "median", "p95", "longest", "shortest", "n_truncated",
                                             "share_truncated", "tokens_total", "tokens_kept", "tokens_lost",
                                             "share_tokens_lost")}
        out["padding_share"] = {k: v.padding_share for k, v in self.padding.items()}
        return out


def _batch_tokens(lengths_in_order: np.ndarray, batch_size: int) -> tuple[int, int]:
    """Tokens processed when consecutive rows form batches, each padded to its longest row."""
    n = len(lengths_in_order)
    if n == 0:
        return 0, 0
    starts = np.arange(0, n, batch_size)
    maxima = np.maximum.reduceat(lengths_in_order, starts)
    sizes = np.diff(np.append(starts, n))
    return int((maxima * sizes).sum()), len(starts)


def length_grouped_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                         mega_batch_mult: int | None = None) -> np.ndarray:
    """Index order like transformers' LengthGroupedSampler: shuffle, cut into megabatches of
    ``mult × batch_size`` (mult = min(n // (4 × batch_size), 50), at least 1), sort each by length
    (longest first), and move the longest megabatch head to the very front."""
    n = len(lengths)
    if mega_batch_mult is None:
        mega_batch_mult = min(n // (batch_size * 4), 50) or 1
    size = mega_batch_mult * batch_size
    perm = rng.permutation(n)
    parts = []
    for s in range(0, n, size):
        mb = perm[s:s + size]
        parts.append(mb[np.argsort(-lengths[mb], kind="stable")])
    if parts:
        heads = [lengths[p[0]] for p in parts]
        k = int(np.argmax(heads))
        parts[0] = parts[0].copy()
        parts[k] = parts[k].copy()
        parts[0][0], parts[k][0] = parts[k][0], parts[0][0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _histogram(lengths: np.ndarray, max_length: int, bins: int) -> list[dict]:
    """Bins (start, end] with max_length as an edge, so a bin holds either texts that fit or texts that
    get cut: ``bins // 2`` equal bins up to max_length, the same width beyond (at most ``bins`` more;
    a very long tail gets wider bins)."""
    below = max(min(bins // 2, max_length), 1)
    step = max_length / below
    edges = list(np.linspace(0, max_length, below + 1))
    top = int(lengths.max())
    if top > max_length:
        n_above = math.ceil((top - max_length) / step)
        if n_above <= bins:
            edges += [max_length + step * k for k in range(1, n_above + 1)]
        else:
            edges += list(np.linspace(max_length, top, bins + 1)[1:])
    edges_arr = np.asarray(edges, dtype=float)
    # right-closed bins: a text of exactly max_length tokens fits
    idx = np.clip(np.searchsorted(edges_arr, lengths, side="left") - 1, 0, len(edges_arr) - 2)
    counts = np.bincount(idx, minlength=len(edges_arr) - 1)
    return [{"bin_start": round(float(edges_arr[i]), 2), "bin_end": round(float(edges_arr[i + 1]), 2),
             "count": int(c)} for i, c in enumerate(counts)]


def stats_from_lengths(lengths: np.ndarray | Sequence[int], max_length: int, batch_size: int = 8,
                       map_batch_size: int = 1000, seed: int = 42, bins: int = 40) -> LengthStats:
    """Truncation and padding figures for texts of these token lengths (see :func:`length_stats`)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        raise ConfigError({"texts": "the data set has no texts to measure"})
    if batch_size < 1 or map_batch_size < 1:
        raise ConfigError({"batch_size": "batch sizes must be at least 1"})
    if max_length < 1:
        raise ConfigError({"max_length": f"max_length must be at least 1, got {max_length}"})
    kept = np.minimum(lengths, max_length)
    real = int(kept.sum())
    rng = np.random.default_rng(seed)
    train_order = rng.permutation(n)

    # (a) the tutorial: padding=True inside map -> every row padded to the longest (truncated) row of
    #     its map batch of 1,000 (in dataset order); the collator then pads random batches to their longest.
    starts = np.arange(0, n, map_batch_size)
    map_max = np.maximum.reduceat(kept, starts)
    map_padded = np.repeat(map_max, np.diff(np.append(starts, n)))
    tut, nb = _batch_tokens(map_padded[train_order], batch_size)
    # (b) dynamic padding: random batches padded to their own longest row
    dyn, _ = _batch_tokens(kept[train_order], batch_size)
    # (c) length-grouped batches
    grp, _ = _batch_tokens(kept[length_grouped_order(kept, batch_size, rng)], batch_size)
    # (d) everything padded to max_length
    full = n * max_length
    padding = {
        "tutorial": PaddingCost("tutorial", tut, real, nb),
        "dynamic": PaddingCost("dynamic", dyn, real, nb),
        "grouped": PaddingCost("grouped", grp, real, nb),
        "max_length": PaddingCost("max_length", full, real, nb),
    }

    histogram = _histogram(lengths, max_length, bins)
    total = int(lengths.sum())
    trunc = lengths > max_length
    return LengthStats(
        lengths=lengths, max_length=int(max_length), batch_size=int(batch_size), map_batch_size=int(map_batch_size),
        seed=int(seed), n_texts=n, mean=float(lengths.mean()), median=float(np.median(lengths)),
        p95=float(np.percentile(lengths, 95)), longest=int(lengths.max()), shortest=int(lengths.min()),
        n_truncated=int(trunc.sum()), share_truncated=float(trunc.mean()), tokens_total=total, tokens_kept=real,
        tokens_lost=total - real, share_tokens_lost=(total - real) / total if total else 0.0, padding=padding,
        histogram=histogram)


def length_stats(tokenizer, texts: Sequence[str], max_length: int = 512, batch_size: int = 8,
                 map_batch_size: int = 1000, seed: int = 42, bins: int = 40,
                 progress: Callable[[int, int], None] | None = None) -> LengthStats:
    """Token lengths of every text and what truncation and padding do to them.

    Padding share = 1 − real tokens ÷ tokens processed, for (a) the tutorial's ``padding=True`` inside
    ``map`` (pad to the longest review of each map batch of ``map_batch_size`` in dataset order, then
    random training batches), (b) dynamic padding of random batches, (c) length-grouped batches (like
    ``train_sampling_strategy="group_by_length"``), and (d) padding everything to ``max_length``.
    Random batches are drawn with ``seed``.
    """
    if not len(texts):
        raise ConfigError({"texts": "the data set has no texts to measure"})
    _check_max_length(tokenizer, max_length)
    lengths = token_lengths(tokenizer, texts, progress=progress)
    return stats_from_lengths(lengths, max_length, batch_size, map_batch_size, seed, bins)

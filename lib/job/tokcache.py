"""Tokenize once: a cache of tokenized data sets shared by every run in a runs directory.

A team launching several runs on the same reviews (another learning rate, another seed for the
model, a resumed run) would tokenize the same text with the same tokenizer again each time: about
15 s for IMDb's 50,000 reviews at 512 tokens on 2 CPU cores (BENCHMARKS.md, the fast path). The job
instead writes each tokenized split once to ``<runs_dir>/_cache/tokenized/tok-<key>.arrow`` and
memory-maps it on the next run (a fraction of a second).

The key covers everything that decides the tokens: the split's content (the ``datasets``
fingerprint, a hash of the rows after cleaning and subsetting), the tokenizer's full serialisation
(vocabulary, normaliser, special tokens), ``max_length`` and the padding mode, plus a format version.
``datasets`` writes each file to a temporary name and renames it, so two jobs filling the same entry
at once cannot leave a torn file. The cache is pruned oldest-first beyond ``MAX_CACHE_BYTES``; it is
safe to delete the folder at any time.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

CACHE_DIR = "_cache"
TOKENIZED = "tokenized"
FORMAT_VERSION = "v1"
MAX_CACHE_BYTES = int(os.environ.get("LAB_TOKENIZATION_CACHE_BYTES", str(4 * 2**30)))

PADDING_ARG = {"longest_in_map_batch": True, "max_length": "max_length", "dynamic": False}


def cache_folder(runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir) / CACHE_DIR / TOKENIZED


def tokenizer_identity(tokenizer) -> str:
    """A hash of what decides the tokens: the fast tokenizer's full JSON (vocab, normaliser, pre-tokenizer,
    special tokens), or the sorted vocabulary for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # The serialisation also holds the truncation/padding of the last call, which the caller sets
        # anew on every call (and which the key records separately): leave them out.
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        text = json.dumps(state, sort_keys=True)
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    text += f"|{type(tokenizer).__name__}|{getattr(tokenizer, 'padding_side', 'right')}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def cache_key(dataset, tokenizer_id: str, max_length: int, padding: str, head_tokens: int = 0) -> str:
    raw = f"{dataset._fingerprint}|{tokenizer_id}|{int(max_length)}|{padding}|{FORMAT_VERSION}"
    if head_tokens:
        raw += f"|head{int(head_tokens)}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def prune(folder: Path, max_bytes: int = MAX_CACHE_BYTES, *, keep: set[str] = frozenset()) -> list[str]:
    """Delete the least recently used cache files until the folder holds at most ``max_bytes``
    (files named in ``keep`` stay). Returns the names removed."""
    try:
        files = [(f, f.stat()) for f in folder.glob("tok-*.arrow")]
    except OSError:
        return []
    total = sum(st.st_size for _, st in files)
    removed = []
    for f, st in sorted(files, key=lambda x: x[1].st_mtime):
        if total <= max_bytes:
            break
        if f.name in keep:
            continue
        try:
            f.unlink()
        except OSError:
            continue
        total -= st.st_size
        removed.append(f.name)
    return removed


def map_tokenize(dataset, tokenizer, max_length: int, padding: str, *, cache_dir: Path | None = None,
                 tokenizer_id: str | None = None, desc: str = "Tokenizing", head_tokens: int = 0):
    """``dataset.map(tokenize, batched=True)``: adds ``input_ids``, ``attention_mask`` (and
    ``token_type_ids``) and a ``length`` column (real tokens), keeping ``text`` and ``label``.
    ``head_tokens`` > 0: head+tail truncation (:func:`lib.sources.preprocessing.cut_head_tail`).
    With ``cache_dir``, the result is read from / written to the shared cache. Returns (dataset, hit)."""
    from lib.sources.preprocessing import cut_head_tail
    pad = PADDING_ARG[padding]

    def tokenize(batch):
        if head_tokens:
            enc = tokenizer(batch["text"], truncation=False, verbose=False)
            for key in list(enc.keys()):
                enc[key] = [cut_head_tail(v, max_length, head_tokens) for v in enc[key]]
            if pad:
                enc = tokenizer.pad(dict(enc), padding=pad, max_length=max_length)
        else:
            enc = tokenizer(batch["text"], padding=pad, truncation=True, max_length=max_length)
        enc["length"] = [int(sum(m)) for m in enc["attention_mask"]]
        return enc

    if cache_dir is None:
        return dataset.map(tokenize, batched=True, desc=desc), False
    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_id = tokenizer_id or tokenizer_identity(tokenizer)  # callers with several splits hash it once
    path = cache_dir / f"tok-{cache_key(dataset, tokenizer_id, max_length, padding, head_tokens)}.arrow"
    hit = path.is_file()
    out = dataset.map(tokenize, batched=True, cache_file_name=str(path), load_from_cache_file=True, desc=desc)
    if hit:
        try:
            os.utime(path, (time.time(), time.time()))  # recently used: pruned last
        except OSError:
            pass
    prune(cache_dir, keep={path.name})
    return out, hit

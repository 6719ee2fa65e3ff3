"""Incremental, cached reading of JSON-lines files that a job is appending to (``metrics.jsonl``,
``eval_predictions.jsonl``).

For each file the reader remembers the byte offset it has parsed up to and the rows parsed so far;
when the file grew it reads only the new bytes, when it shrank or was replaced (another inode,
different first bytes) it starts over, and when size and modification time are unchanged it returns
the cached rows without reading anything. A torn last line is left for the next read.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lib.store import rundir

try:  # optional: about 3x faster parsing of large metric files; the standard library works too
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

_HEAD_BYTES = 64


# ---------------------------------------------------------------------------------------------------
# Incremental JSON-lines reader
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    offset: int            # bytes parsed so far (always just after a newline)
    head: bytes            # the file's first bytes, to notice a file rewritten in place
    rows: list             # parsed rows (a new list object whenever rows are added)
    version: int           # bumps whenever ``rows`` changes
    derived: dict = field(default_factory=dict)  # caches built from ``rows`` (keyed by name)


_CACHE: dict[str, _Entry] = {}


_CACHE_LOCK = threading.Lock()


MAX_CACHED_FILES = 512     # metrics files: a few MB each even at 10,000 lines


_BIG_CACHE: dict[str, _Entry] = {}


_MAX_BIG_FILES = 4          # eval predictions hold every review's text: keep only the latest few


_versions = iter(range(1, 1 << 62))


def _parse_lines(chunk: bytes) -> list[dict]:
    """JSON objects from complete lines; corrupt lines and non-objects are skipped."""
    if not chunk or chunk.isspace():
        return []
    body = b"[" + chunk.rstrip(b"\n").replace(b"\n", b",") + b"]"  # all lines as one JSON array: fast
    try:
        rows = _orjson.loads(body) if _orjson is not None else json.loads(body.decode("utf-8", errors="replace"))
        return [r for r in rows if isinstance(r, dict)]
    except ValueError:  # orjson.JSONDecodeError is a ValueError too
        pass
    out: list[dict] = []  # a bad or blank line: parse line by line and drop the bad ones
    for line in chunk.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8", errors="replace"))
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _read_jsonl_entry(path: str | os.PathLike, big: bool = False) -> _Entry | None:
    cache, limit = (_BIG_CACHE, _MAX_BIG_FILES) if big else (_CACHE, MAX_CACHED_FILES)
    key = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(key)
    except OSError:
        with _CACHE_LOCK:
            cache.pop(key, None)
        return None
    with _CACHE_LOCK:
        entry = cache.pop(key, None)  # re-inserted below: the dict's order is least recently used first
        if entry is not None:
            cache[key] = entry
    if entry is not None and (entry.dev, entry.ino) == (st.st_dev, st.st_ino) \
            and entry.size == st.st_size and entry.mtime_ns == st.st_mtime_ns:
        return entry  # unchanged: no read at all
    try:
        with rundir.open_nofollow(key, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
            start = 0
            if entry is not None and (entry.dev, entry.ino) == (st.st_dev, st.st_ino) \
                    and st.st_size >= entry.offset and st.st_size > entry.size \
                    and head[:len(entry.head)] == entry.head:
                start = entry.offset  # grown: read only the new bytes
            fh.seek(start)
            chunk = fh.read(max(0, st.st_size - start))
    except OSError:
        return entry
    last_newline = chunk.rfind(b"\n")
    complete = chunk[:last_newline + 1] if last_newline >= 0 else b""  # a torn last line waits
    new_rows = _parse_lines(complete)
    if start and entry is not None:
        rows = entry.rows + new_rows if new_rows else entry.rows
        changed = bool(new_rows)
    else:
        rows, changed = new_rows, True
    fresh = _Entry(dev=st.st_dev, ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                   offset=start + len(complete), head=head[:min(_HEAD_BYTES, start + len(complete))],
                   rows=rows,
                   version=next(_versions) if (changed or entry is None) else entry.version,
                   derived={} if (changed or entry is None) else entry.derived)
    with _CACHE_LOCK:
        cache.pop(key, None)
        while len(cache) >= limit:
            cache.pop(next(iter(cache)))
        cache[key] = fresh
    return fresh


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every complete, valid JSON-object line of ``path`` (cached; treat the list as read-only).

    A missing file gives ``[]``; a torn last line is left for the next call; corrupt lines are skipped.
    """
    entry = _read_jsonl_entry(path)
    return entry.rows if entry is not None else []


def jsonl_version(path: str | os.PathLike) -> int:
    """A number that changes whenever the parsed rows of ``path`` change (0 for a missing file)."""
    entry = _read_jsonl_entry(path)
    return entry.version if entry is not None else 0


def derived(path: Path, name: str, build, big: bool = False):
    """Cache ``build(rows)`` alongside the parsed rows of ``path``; rebuilt when the rows change."""
    entry = _read_jsonl_entry(path, big)
    if entry is None:
        return build([])
    cached = entry.derived.get(name)
    if cached is None:
        cached = build(entry.rows)
        entry.derived[name] = cached
    return cached


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _BIG_CACHE.clear()
    rundir.clear_cache()

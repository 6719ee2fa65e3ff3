"""The Learn page's data choice: built-in reviews, an upload, a local path or a Hub data set.

Which texts a choice stands for is decided by :mod:`lib.sources.preview`; this module draws the
widgets and caches what was loaded (an upload is identified by the digest of its bytes).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from lib.sources import preview, tables
from lib.sources.preview import TextSample

UPLOAD_TYPES = ["csv", "tsv", "jsonl", "json", "parquet"]
SPEC_MAX_CHARS = 500
SOURCE_KEYS = {"demo": "ds_demo", "upload": "ds_upload", "path": "ds_path", "hub": "ds_hub"}


@dataclass(frozen=True)
class DataPick:
    """A loaded data choice: ``key`` identifies it for the caches, ``data`` are an upload's bytes."""

    sample: TextSample
    key: tuple
    data: bytes | None

    @property
    def is_training_split(self) -> bool:
        return self.key[2] in ("train", "")


@st.cache_data(show_spinner=False, max_entries=8)
def load_sample(kind: str, spec: str, split: str, column: str, strip_html: bool, digest: str,
                _data: bytes | None = None, _runs_dir: Path | None = None) -> TextSample:
    """The texts of one data choice (``digest`` stands for an upload's bytes in the cache key)."""
    return preview.load_texts(kind, spec, split=split, column=column, strip_html=strip_html, runs_dir=_runs_dir,
                              data=_data)


@st.cache_data(show_spinner=False, max_entries=8)
def column_names(kind: str, spec: str, digest: str, _data: bytes | None = None,
                 _runs_dir: Path | None = None) -> list[str]:
    return preview.table_columns(kind, spec, runs_dir=_runs_dir, data=_data)


def _column_pick(T: Callable[..., str], columns: list[str], key: str) -> str:
    guess = tables.guess_text_column(columns)
    return st.selectbox(T("ds_column"), columns, key=key, index=columns.index(guess) if guess in columns else 0)


def pick_data(T: Callable[..., str], runs_dir: Path) -> DataPick | None:
    """Draw the data choice and load it; None until a choice is complete. Raises LabError for bad data."""
    source = st.radio(T("ds_source"), preview.SOURCES, key="learn_ds_source", horizontal=True,
                      format_func=lambda s: T(SOURCE_KEYS[s]))
    kind, spec, column, digest, data, ready = source, "demo", "text", "", None, source == "demo"
    if source == "upload":
        up = st.file_uploader(T("ds_upload_label"), type=UPLOAD_TYPES, key="learn_ds_upload")
        if up is None:
            st.info(T("ds_need_file"))
        else:
            data = up.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            spec, ready = up.name, True
            column = _column_pick(T, column_names("upload", spec, digest, _data=data, _runs_dir=runs_dir),
                                  "learn_ds_column_upload")
    elif source == "path":
        typed = st.text_input(T("ds_path_label"), key="learn_ds_path", max_chars=SPEC_MAX_CHARS).strip()
        if not typed:
            st.info(T("ds_need_path"))
        else:
            kind, resolved = preview.resolve_path(typed)
            spec, ready = str(resolved), True
            if kind == "file":
                column = _column_pick(T, column_names("file", spec, ""), "learn_ds_column_path")
    elif source == "hub":
        spec = st.text_input(T("ds_hub_label"), value="imdb", key="learn_ds_hub", max_chars=SPEC_MAX_CHARS).strip()
        ready = bool(spec)
    c1, c2 = st.columns([1, 3])
    split = c1.selectbox(T("ds_split"), ["train", "test"], key="learn_ds_split", disabled=not preview.has_splits(kind))
    strip_html = c2.checkbox(T("ds_strip_html"), value=True, key="learn_ds_strip_html")
    if not ready:
        return None
    key = (kind, spec, split if preview.has_splits(kind) else "", column, strip_html, digest)
    return DataPick(load_sample(*key, _data=data, _runs_dir=runs_dir), key, data)

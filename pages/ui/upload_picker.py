"""The Train form's upload: store a table under a server-made name, preview it (with the encoding it was
decoded as), pick the text and label columns, see the classes the labels become and how many reviews
each has, then put it into the form.

Everything that comes from the file (column names, values, label names) is shown as text: in
``st.dataframe`` or escaped with :func:`plain`, never as Markdown.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

import streamlit as st

from lib.config import field_info
from lib.errors import LabError
from lib.sources import tables
from lib.sources.data import describe_labels
from lib.store import uploads
from pages.ui.config_form import KEY, PREFLIGHT_KEY
from pages.ui.text import plain, show_lab_error

UPLOAD_TYPES = ["csv", "tsv", "jsonl", "ndjson", "json", "parquet", "pq"]
PREVIEW_ROWS = 20
SAVED_KEY = "tr_uploads"      # {file_id: {"path", "name"}}: each upload is stored once per session


def _stored(state: MutableMapping, uploaded, runs_dir: Path, limit_mb: int) -> dict:
    saved: dict = state.setdefault(SAVED_KEY, {})
    entry = saved.get(uploaded.file_id)
    if entry is None:
        path = uploads.save_upload(runs_dir, uploaded.getvalue(), uploaded.name, max_bytes=limit_mb * 2**20)
        entry = saved[uploaded.file_id] = {"path": str(path), "name": uploaded.name}
    return entry


def _label_names(state: MutableMapping) -> list[str]:
    typed = [s.strip() for s in str(state.get(KEY + "label_names", "")).split(",") if s.strip()]
    return typed or list(field_info("label_names")["default"])


def _encoding(state: MutableMapping) -> str:
    return str(state.get(KEY + "encoding") or "auto").strip() or "auto"


def _use_upload(path: str, text_col: str, label_col: str) -> None:
    state = st.session_state
    state[KEY + "dataset"] = path
    state[KEY + "text_column"] = text_col
    state[KEY + "label_column"] = label_col
    state[KEY + "test_file"] = ""
    state.pop(PREFLIGHT_KEY, None)


def upload_picker(state: MutableMapping, runs_dir: Path, limit_mb: int, *, disabled: bool = False) -> None:
    """Upload a table, preview it, pick the columns, see the label mapping, then use it for training."""
    uploaded = st.file_uploader(f"Or upload a CSV, TSV, JSON Lines or Parquet file (up to {limit_mb} MB)",
                                type=UPLOAD_TYPES, key="tr_upload", max_upload_size=limit_mb, disabled=disabled,
                                help="The file is stored in the shared runs folder under a name the server makes "
                                     "up, so the training job can read it.")
    if uploaded is None or disabled:
        return
    try:
        entry = _stored(state, uploaded, runs_dir, limit_mb)
        table = tables.read_table(entry["path"], encoding=_encoding(state))
    except LabError as exc:
        show_lab_error(exc)
        return
    except Exception as exc:  # noqa: BLE001 - a file the readers cannot make sense of at all
        st.error(plain(f"Could not read {uploaded.name}: {type(exc).__name__}: {exc}"), icon=":material/error:")
        return
    columns = [str(c) for c in table.columns]
    decoded = table.attrs.get("encoding_label")
    st.caption(plain(f"{len(table):,} rows, columns: {', '.join(columns)}"
                     + (f" · decoded as {decoded}" if decoded else "")))
    if table.attrs.get("encoding") == "cp1252" and _encoding(state).lower() == "auto":
        st.info(plain(f"{uploaded.name} is not UTF-8, so it was decoded as Windows-1252 (as spreadsheets on "
                      "Windows save CSV). If accented letters look wrong in the preview, set encoding in the "
                      "Data settings below to the file's real encoding."), icon=":material/translate:")
    st.dataframe(table.head(PREVIEW_ROWS), hide_index=True, key="tr_upload_preview")
    if not columns:
        st.error("The file has no usable columns.")
        return
    c1, c2 = st.columns(2)
    text_col = c1.selectbox("Text column", columns, index=columns.index(tables.guess_text_column(columns)),
                            key="tr_upload_text")
    label_col = c2.selectbox("Label column", columns, index=columns.index(tables.guess_label_column(columns)),
                             key="tr_upload_label")
    names = _label_names(state)
    ok = text_col != label_col
    described = describe_labels(table, label_col, names)
    if described["counts"]:
        classes = described["names"]
        how = {"binary": "sentiment labels (0/1, neg/pos, negative/positive)",
               "label_names": "the classes named in label_names",
               "inferred": "one class per value found in the file"}.get(described["how"], "")
        st.write("Label mapping (value in the file → label):")
        st.dataframe({"value in the file": [str(k) for k in described["mapping"]],
                      "becomes": [f"{v} = {classes[v]}" for v in described["mapping"].values()]},
                     hide_index=True, key="tr_upload_mapping")
        st.write(plain(f"{len(classes)} classes ({how}); reviews per class:"))
        st.dataframe({"class": [f"{i} = {name}" for i, name in enumerate(classes)],
                      "reviews": [described["counts"][name] for name in classes]},
                     hide_index=True, key="tr_upload_classes")
    if not ok:
        st.error("The text and label columns must differ.")
    for problem in described["problems"]:
        st.error(plain(problem), icon=":material/error:")
        ok = False
    st.button("Use this file for training", key="tr_use_upload", disabled=not ok, on_click=_use_upload,
              args=(entry["path"], text_col, label_col), icon=":material/check:")

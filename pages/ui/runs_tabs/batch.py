"""Batch mode of the Try it tab: upload a table of reviews, predict every row, download a CSV that is
safe to open in a spreadsheet.

The upload is read (at most the row limit) and deleted at once. A visitor can have at most
``LAB_MAX_PREDICT_ROWS`` rows predicted per table (default :data:`DEFAULT_MAX_ROWS`); bigger files
belong to ``python -m lib.predict --csv``.
"""
from __future__ import annotations

import os
import time

import streamlit as st

from lib.errors import LabError
from lib.registry.reconcile import RunView
from lib.serving import batch, predictor
from pages.ui.runs_tabs import TabContext
from pages.ui.runs_tabs.predictors import get_predictor
from pages.ui.text import plain, show_lab_error

DEFAULT_MAX_ROWS = 5_000
PREVIEW_ROWS = 200
TEXT_COLUMN_GUESSES = ("text", "review", "sentence", "content")


def max_rows() -> int:
    """Rows predicted per uploaded table: ``LAB_MAX_PREDICT_ROWS``, or the default when unset or not a
    positive whole number."""
    try:
        value = int(os.environ.get("LAB_MAX_PREDICT_ROWS", DEFAULT_MAX_ROWS))
    except ValueError:
        return DEFAULT_MAX_ROWS
    return value if value > 0 else DEFAULT_MAX_ROWS


def render(run: RunView, ctx: TabContext, choice: predictor.ModelChoice) -> None:
    st.markdown("**Batch mode**: upload a table of reviews, download the predictions as CSV")
    upload = st.file_uploader("Reviews (CSV, TSV, JSON Lines or Parquet)", type=["csv", "tsv", "jsonl", "parquet"],
                              key="try_upload")
    if upload is None:
        return
    limit = max_rows()
    cached = st.session_state.get("try_table")
    if not cached or cached[0] != upload.file_id:
        try:  # one row more than the limit tells whether the file has more
            table = batch.upload_columns(ctx.runs_dir, upload.getvalue(), upload.name, max_rows=limit + 1)
            st.session_state["try_table"] = (upload.file_id, table)
            st.session_state.pop("try_batch", None)
            st.session_state.pop("try_batch_how", None)
        except LabError as exc:
            st.session_state.pop("try_table", None)
            show_lab_error(exc)
    if not st.session_state.get("try_table"):
        return
    table = st.session_state["try_table"][1]
    if len(table) > limit:
        st.warning(f"Only the first {limit:,} rows are predicted here (this server's limit, LAB_MAX_PREDICT_ROWS); "
                   "use `python -m lib.predict --csv` for bigger files.")
        table = table.head(limit)
    columns = [str(c) for c in table.columns]
    if not columns:
        st.error("The table has no columns with values: upload a file with a header row and a column of reviews.")
        return
    guess = next((c for c in TEXT_COLUMN_GUESSES if c in columns), columns[0])
    column = st.selectbox("Text column", columns, index=columns.index(guess), key="try_column")
    if st.button("Predict all rows", key="try_batch_go"):
        try:
            model = get_predictor(run, choice, batch=True)
            with st.spinner(f"Predicting {len(table):,} reviews…"):
                t0 = time.perf_counter()
                st.session_state["try_batch"] = batch.predict_frame(model, table, column)
                engine = "onnxruntime" if model.runtime == "onnx" else "PyTorch"
                st.session_state["try_batch_how"] = (f"{model.precision} on {engine}, "
                                                     f"{time.perf_counter() - t0:.1f} s")
        except LabError as exc:
            show_lab_error(exc)
    out = st.session_state.get("try_batch")
    if out is not None:
        how = st.session_state.get("try_batch_how")
        how = f" ({how})" if how else ""
        st.caption(plain(f"{len(out):,} rows predicted{how}; the first {min(len(out), PREVIEW_ROWS):,} are shown."))
        st.dataframe(out.head(PREVIEW_ROWS), hide_index=True, key="try_batch_preview")
        st.download_button("Download predictions (CSV)", batch.safe_csv_bytes(out), file_name="predictions.csv",
                           mime="text/csv", key="try_download", on_click="ignore")

"""Predictions for a whole table (the Runs page's CSV mode and ``python -m lib.predict --csv``), and a CSV
safe to open in a spreadsheet (cells that would start a formula are neutralised)."""
from __future__ import annotations

import io
import math
import os
from typing import Any

from lib.errors import DataError
from lib.serving.predictor import Predictor
from lib.store.uploads import save_upload

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------------------------------------------
# Batch mode: tables in, CSV out
# ---------------------------------------------------------------------------------------------------
def neutralize_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (starting with = + - @, tab or CR) gets a leading
    single quote so it shows as text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_csv_bytes(df) -> bytes:
    """The table as UTF-8 CSV with every text cell and column name neutralised against formula injection."""
    out = df.copy()
    out.columns = [neutralize_cell(str(c)) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype).startswith(("string", "str")):
            out[col] = out[col].map(neutralize_cell).astype(object)
    buf = io.StringIO()
    out.to_csv(buf, index=False, lineterminator="\r\n")  # RFC 4180; cells with \r or \n get quoted
    return buf.getvalue().encode("utf-8")


def read_table_file(path: str | os.PathLike, text_column: str, max_rows: int | None = None):
    """Read a CSV/TSV/JSONL/Parquet file of reviews (the data loader's checks: empty, binary, not UTF-8,
    ragged rows) and check that ``text_column`` exists."""
    from lib.sources.tables import read_table
    return read_table(path, text_column=text_column, max_rows=max_rows)


def upload_columns(runs_dir: str | os.PathLike, data: bytes, filename: str, max_rows: int | None = None):
    """Read an uploaded table (deleted right after): a DataFrame."""
    path = save_upload(runs_dir, data, filename, prefix="tryout-")
    try:
        from lib.sources.tables import read_table
        return read_table(path, max_rows=max_rows)
    finally:
        path.unlink(missing_ok=True)


def predict_frame(predictor: Predictor, df, text_column: str, batch_size: int = 16):
    """The table with the predictions added: predicted_label, confidence, p_<label>..., truncated, note."""
    import pandas as pd
    if text_column not in df.columns:
        raise DataError(f"there is no column {text_column!r}; the table has: {', '.join(map(str, df.columns))}")
    texts = ["" if (v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA) else str(v)
             for v in df[text_column].tolist()]
    results = predictor.predict(texts, batch_size=batch_size)
    out = df.copy()

    def free(name: str) -> str:
        while name in out.columns:
            name = "pred_" + name
        return name

    out[free("predicted_label")] = [r["label"] if r["label"] is not None else "" for r in results]
    out[free("confidence")] = [round(r["confidence"], 6) if r["confidence"] is not None else None for r in results]
    for name in predictor.label_names:
        out[free(f"p_{name}")] = [round(r["scores"][name], 6) if r["scores"] else None for r in results]
    out[free("truncated")] = [r["truncated"] for r in results]
    out[free("note")] = [r.get("note", "") for r in results]
    return out

"""Which reviews the Learn page measures for a data choice.

A person picks one of four sources: the built-in reviews (``demo``), an uploaded table (``upload``), a
local path (``path``: a table file or an aclImdb folder, checked against ``LAB_ALLOWED_ROOTS``) or a
Hugging Face Hub data set (``hub``). :func:`resolve_path` turns a typed path into ``file`` or ``folder``;
:func:`load_texts` returns the texts (``<br />`` turned into line breaks with ``strip_html`` and empty
reviews dropped and counted, as the training job does) and their 0/1 labels when the data has a usable
``label`` column.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.config import TrainConfig
from lib.errors import DataError, LabError
from lib.sources.data import _BR_RE, demo_reviews, load_data
from lib.sources.labels import map_labels
from lib.sources.paths import check_local_path
from lib.sources.tables import read_table
from lib.store.uploads import save_upload

SOURCES = ("demo", "upload", "path", "hub")
KINDS = ("demo", "upload", "file", "folder", "hub")   # what a source turns into once it is known
COLUMN_PREVIEW_ROWS = 50                              # rows read to list a table's columns
DEFAULT_LABEL_NAMES = ["NEGATIVE", "POSITIVE"]


@dataclass(frozen=True)
class TextSample:
    """The texts of one data choice: ``source`` is None for the built-in reviews, else what was read."""

    texts: list[str]
    labels: list[int] | None
    source: str | None
    skipped: int


def has_splits(kind: str) -> bool:
    """Whether the source has a train and a test split to choose from (a single table file has one)."""
    return kind not in ("upload", "file")


def resolve_path(text: str) -> tuple[str, Path]:
    """A typed local path as (``"file"`` or ``"folder"``, the checked path); LabError when it is outside the
    allowed folders or missing."""
    path = check_local_path(text, "data")
    return ("file" if path.is_file() else "folder"), path


def _read_upload(runs_dir: str | os.PathLike, data: bytes, filename: str, max_rows: int | None = None):
    """An uploaded table as a DataFrame; the stored copy is removed right after reading."""
    path = save_upload(runs_dir, data, filename, prefix="learn-")
    try:
        return read_table(path, max_rows=max_rows)
    finally:
        path.unlink(missing_ok=True)


def table_columns(kind: str, spec: str, *, runs_dir: str | os.PathLike | None = None,
                  data: bytes | None = None) -> list[str]:
    """The column names of a table file (``file``) or an uploaded table (``upload``), from its first rows."""
    if kind == "upload":
        frame = _read_upload(runs_dir or ".", data or b"", spec, max_rows=COLUMN_PREVIEW_ROWS)
    elif kind == "file":
        frame = read_table(spec, max_rows=COLUMN_PREVIEW_ROWS)
    else:
        raise LabError(f"a {kind} source has no columns to choose from")
    return [str(c) for c in frame.columns]


def _labels_or_none(frame) -> list[int] | None:
    """Class ids from a ``label`` column (0/1 for sentiment labels; one id per value for more classes), or
    None when there is none or it cannot be mapped."""
    if "label" not in frame.columns:
        return None
    try:
        labels, _ = map_labels(frame["label"].tolist(), DEFAULT_LABEL_NAMES, infer=True)
        return [int(x) for x in labels]
    except (LabError, TypeError, ValueError):
        return None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _clean(values: list, labels: list | None, strip_html: bool) -> tuple[list[str], list[int] | None, int]:
    """As the training job cleans reviews: ``<br />`` to line breaks, empty ones dropped (and counted)."""
    texts: list[str] = []
    kept_labels: list[int] = []
    for i, value in enumerate(values):
        text = "" if _missing(value) else (value if isinstance(value, str) else str(value))
        if strip_html and "<" in text:
            text = _BR_RE.sub("\n", text)
        if not text.strip():
            continue
        texts.append(text)
        if labels is not None:
            kept_labels.append(int(labels[i]))
    return texts, (kept_labels if labels is not None else None), len(values) - len(texts)


def load_texts(kind: str, spec: str, *, split: str = "train", column: str = "text", strip_html: bool = True,
               runs_dir: str | os.PathLike | None = None, data: bytes | None = None) -> TextSample:
    """The texts (and labels, where known) of one data choice.

    ``kind`` is one of :data:`KINDS`: ``demo`` (``split`` of the built-in reviews), ``upload`` (``data``
    are the uploaded bytes, ``spec`` their file name; stored in ``runs_dir`` only while reading),
    ``file`` (a checked table path), ``folder`` (an aclImdb folder) or ``hub`` (a Hub id). ``column``
    names the text column of a table. Raises LabError with a message for anything that cannot be read.
    """
    if kind not in KINDS:
        raise LabError(f"unknown data source {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "demo":
        ds = demo_reviews()[split]
        values, labels, source = list(ds["text"]), list(ds["label"]), None
    elif kind in ("upload", "file"):
        frame = (_read_upload(runs_dir or ".", data or b"", spec) if kind == "upload"
                 else read_table(spec, text_column=column))
        if column not in frame.columns:
            raise DataError(f"the table has no column {column!r}; its columns are: "
                            f"{', '.join(map(str, frame.columns))}")
        values, labels, source = frame[column].tolist(), _labels_or_none(frame), spec
    else:  # an aclImdb folder, or a Hub id: the training job's own loader
        loaded = load_data(TrainConfig(dataset=spec, strip_html=False))
        if split not in loaded.dataset:
            raise DataError(f"{spec} has no {split!r} split; it has: {', '.join(loaded.dataset)}")
        ds = loaded.dataset[split]
        values, labels, source = list(ds["text"]), list(ds["label"]), spec
    texts, labels, skipped = _clean(values, labels, strip_html)
    if not texts:
        raise DataError("the data set has no texts to measure")
    return TextSample(texts=texts, labels=labels, source=source, skipped=skipped)

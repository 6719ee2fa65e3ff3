"""Reading a table file a person gave (CSV, TSV, JSON Lines, JSON, Parquet): columns, rows and clear
messages for files that cannot be used (binary, wrong encoding, missing columns).

Text files are decoded as the config's ``encoding`` says: ``auto`` reads UTF-8 (with or without a
byte-order mark) and falls back to Windows-1252, the encoding spreadsheets on Windows save "CSV" in;
any other value is a Python codec name (``latin-1``, ``utf-16``, ``shift_jis``...). The encoding used
is kept with the table (``_Table.encoding``, ``DataFrame.attrs["encoding"]``) so the run can record it.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.config import text_codec
from lib.errors import DataError, LabError
from lib.sources.paths import check_local_path

_INT_RE = re.compile(r"[+-]?\d+")


@dataclass
class _Part:
    """One split before cleaning: texts, raw labels, and where each row came from (for messages)."""
    split: str
    origin: str                      # "reviews.csv", "Hub split 'train'", ...
    texts: list
    labels: list
    rows: list[int]                  # 1-based data row in the origin
    lines: list[int | None] | None = None   # line in the file, where known

    def where(self, i: int) -> str:
        line = self.lines[i] if self.lines else None
        at = f"row {self.rows[i]}" + (f" (line {line})" if line is not None else "")
        return f"{at} of {self.origin}"


SUPPORTED_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet",
}


SUPPORTED_TEXT = "CSV (.csv), TSV (.tsv), JSON Lines (.jsonl), JSON (.json) or Parquet (.parquet)"


_UNNAMED_RE = re.compile(r"Unnamed: \d+(_level_\d+)?")


@dataclass
class _Table:
    """A table read from one file: column names in order, values per column, file line per row."""
    path: Path
    kind: str
    columns: list[str]
    data: dict[str, list]
    lines: list[int | None] = field(default_factory=list)
    encoding: str | None = None      # the codec the file was decoded with (None for Parquet)

    @property
    def n_rows(self) -> int:
        return len(self.lines)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (list, dict, tuple, np.ndarray)) else False
    except (TypeError, ValueError):
        return False


def _is_unnamed(name: str) -> bool:
    return not name.strip() or bool(_UNNAMED_RE.fullmatch(name))


def _column_is_empty(values: list) -> bool:
    return all(_is_missing(v) or (isinstance(v, str) and not v.strip()) for v in values)


def _shown_columns(columns: list[str]) -> str:
    return ", ".join(repr(c) for c in columns) if columns else "(none)"


def _checked_path(text: str | os.PathLike, what: str) -> Path:
    try:
        return check_local_path(str(text), what)
    except LabError as exc:
        raise DataError(str(exc)) from None


# ---------------------------------------------------------------------------------------------- file reading
def _wide_codec(encoding: str) -> bool:
    """An explicit UTF-16/UTF-32 codec: its files hold NUL bytes and start with their own byte-order mark."""
    codec = text_codec(encoding) if encoding and encoding.strip().lower() != "auto" else None
    return bool(codec) and codec.startswith(("utf-16", "utf-32"))


def _check_bytes(path: Path, kind: str, encoding: str = "auto") -> None:
    """Refuse empty, binary and UTF-16 files (unless that encoding was asked for) before parsing them."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    wide = _wide_codec(encoding)
    if size == 0 or (kind != "parquet" and not wide and not head.strip(b" \t\r\n\xef\xbb\xbf")):
        raise DataError(f"The file {path.name} is empty: it holds no reviews. Choose a file with a header "
                        "row and at least one review.")
    if kind == "parquet":
        if not head.startswith(b"PAR1"):
            raise DataError(f"The file {path.name} is not a Parquet file (it does not start with the Parquet "
                            "signature). Save it with pandas' to_parquet, or give it the extension of its "
                            f"real format ({SUPPORTED_TEXT}).")
        return
    if wide:
        return
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"The file {path.name} is encoded as UTF-16, not UTF-8. Set encoding to utf-16, or re-save "
                        "it as UTF-8 (for example 'CSV UTF-8' in a spreadsheet, or `iconv -f utf-16 -t utf-8`).")
    signatures = {b"PK\x03\x04": "a ZIP archive (or an Excel .xlsx workbook)", b"\x1f\x8b": "gzip-compressed",
                  b"PAR1": "a Parquet file", b"%PDF": "a PDF document", b"\xd0\xcf\x11\xe0": "an old Excel/Office file",
                  b"SQLite format 3": "an SQLite database"}
    for magic, what in signatures.items():
        if head.startswith(magic):
            raise DataError(f"The file {path.name} is {what}, not a text table. Export or unpack it to "
                            f"{SUPPORTED_TEXT} first.")
    if b"\x00" in head:
        raise DataError(f"The file {path.name} looks like a binary file (it contains NUL bytes), not "
                        f"{SUPPORTED_TEXT} text.")


ENCODING_LABELS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "cp1252": "Windows-1252",
                   "latin-1": "Latin-1 (ISO-8859-1)", "iso8859-1": "Latin-1 (ISO-8859-1)", "utf-16": "UTF-16"}


def encoding_label(codec: str | None) -> str:
    """How an encoding is shown to people: ``cp1252`` -> ``Windows-1252``, ``utf-8-sig`` -> ``UTF-8 with BOM``."""
    if not codec:
        return ""
    return ENCODING_LABELS.get(codec, ENCODING_LABELS.get(text_codec(codec) or "", codec))


def _first_bad_byte(data: bytes, codec: str) -> str:
    try:
        data.decode(codec)
        return ""
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"byte 0x{data[exc.start]:02x} on line {line}"


def _encoding_error(path: Path, encoding: str = "utf-8") -> DataError:
    data = path.read_bytes()
    utf8 = _first_bad_byte(data, "utf-8")
    if encoding == "auto":
        cp = _first_bad_byte(data, "cp1252")
        return DataError(f"The file {path.name} is not UTF-8 text ({utf8} is not valid UTF-8) and not Windows-1252 "
                         f"either ({cp} has no Windows-1252 character). Set encoding to the file's own encoding "
                         "(for example latin-1, utf-16 or shift_jis), or re-save it as UTF-8 (for example 'CSV UTF-8' "
                         "in a spreadsheet, or `iconv -f <its encoding> -t utf-8 in.csv > out.csv`) and try again.")
    codec = text_codec(encoding) or encoding
    if codec in ("utf-8", "utf-8-sig"):
        detail = f" ({utf8} is not valid UTF-8)" if utf8 else ""
        return DataError(f"The file {path.name} is not UTF-8 text{detail}; it is probably Latin-1 or Windows-1252. "
                         "Set encoding to auto or cp1252, or re-save it as UTF-8 (for example 'CSV UTF-8' in a "
                         "spreadsheet, or `iconv -f latin1 -t utf-8 in.csv > out.csv`) and try again.")
    bad = _first_bad_byte(data, codec)
    return DataError(f"The file {path.name} is not valid {encoding_label(codec)} text"
                     + (f" ({bad} cannot be decoded)" if bad else "")
                     + ". Set encoding to the file's real encoding, or to auto (UTF-8, else Windows-1252).")


def detect_encoding(path: Path, encoding: str = "auto") -> str:
    """The codec to decode ``path`` with. ``auto``: ``utf-8-sig`` when the file starts with a UTF-8 byte-order
    mark, ``utf-8`` when all of it is valid UTF-8, else ``cp1252`` (Windows-1252) when all of it decodes as
    that; DataError when neither does. A named codec is returned in its canonical spelling (``utf-8``
    becomes ``utf-8-sig`` when the file has a byte-order mark, so the mark is not read as text)."""
    import codecs
    wanted = (encoding or "auto").strip()
    if wanted.lower() != "auto":
        codec = text_codec(wanted)
        if codec is None:
            raise DataError(f"encoding {wanted!r} is not a text encoding Python knows; use auto, utf-8, cp1252, "
                            "latin-1 or another codec name")
        if codec == "utf-8":
            with open(path, "rb") as fh:
                return "utf-8-sig" if fh.read(3) == codecs.BOM_UTF8 else "utf-8"
        return codec
    with open(path, "rb") as fh:
        bom = fh.read(3) == codecs.BOM_UTF8
    for codec in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(codec)()
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return "utf-8-sig" if codec == "utf-8" and bom else codec
    raise _encoding_error(path, "auto")


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        name = name.strip()
        if not name:
            name = f"Unnamed: {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def _read_delimited(path: Path, delimiter: str, max_rows: int | None, codec: str = "utf-8-sig") -> _Table:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    sep_name = "tab" if delimiter == "\t" else "comma"
    columns: list[str] = []
    data: dict[str, list] = {}
    lines: list[int | None] = []
    with open(path, encoding=codec, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        last_line = 0
        try:
            for row in reader:
                start, last_line = last_line + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if not columns:
                    columns = _dedupe(row)
                    data = {c: [] for c in columns}
                    continue
                if len(row) != len(columns):
                    if len(row) > len(columns) and not any(x.strip() for x in row[len(columns):]):
                        row = row[:len(columns)]
                    else:
                        lines_txt = f"line {start}" if start == last_line else f"lines {start}-{last_line}"
                        raise DataError(
                            f"{path.name}, {lines_txt} (data row {len(lines) + 1}): {len(row)} fields, but the "
                            f"header has {len(columns)} ({', '.join(columns)}). A review that contains a "
                            f"{sep_name} or a line break must be quoted (\"...\", with inner quotes doubled); "
                            "check the quoting on that line.")
                for c, v in zip(columns, row):
                    data[c].append(v)
                lines.append(start)
                if max_rows is not None and len(lines) >= max_rows:
                    break
        except UnicodeDecodeError:
            raise _encoding_error(path, codec) from None
        except csv.Error as exc:
            raise DataError(f"{path.name}, line {reader.line_num}: this is not valid "
                            f"{'TSV' if delimiter == chr(9) else 'CSV'} ({exc}). Check the quoting there.") from None
    if not columns:
        raise DataError(f"The file {path.name} is empty: it holds no header and no reviews.")
    if not lines:
        raise DataError(f"The file {path.name} has a header ({', '.join(columns)}) but no data rows: it holds "
                        "no reviews.")
    return _Table(path, "tsv" if delimiter == "\t" else "csv", columns, data, lines, codec)


def _records_to_table(path: Path, kind: str, records: list[dict], lines: list[int | None]) -> _Table:
    columns: list[str] = []
    seen: set[str] = set()
    for rec in records:
        for key in rec:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    data = {c: [rec.get(c) for rec in records] for c in columns}
    if not records:
        raise DataError(f"The file {path.name} holds no records: it holds no reviews.")
    return _Table(path, kind, [str(c) for c in columns], {str(k): v for k, v in data.items()}, lines)


def _read_jsonl(path: Path, max_rows: int | None, kind: str = "jsonl", codec: str = "utf-8-sig") -> _Table:
    records: list[dict] = []
    lines: list[int | None] = []
    with open(path, encoding=codec) as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = _loads(line)
                except ValueError as exc:
                    raise DataError(f"{path.name}, line {lineno} (data row {len(records) + 1}) is not valid JSON "
                                    f"({exc.msg}). Each line of a JSON Lines file must be one object like "
                                    '{"text": "...", "label": 1}.') from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path.name}, line {lineno} (data row {len(records) + 1}) is a JSON "
                                    f"{type(obj).__name__}, not an object like {{\"text\": \"...\", "
                                    "\"label\": 1}.")
                records.append(obj)
                lines.append(lineno)
                if max_rows is not None and len(records) >= max_rows:
                    break
        except UnicodeDecodeError:
            raise _encoding_error(path, codec) from None
    table = _records_to_table(path, kind, records, lines)
    table.encoding = codec
    return table


def _read_json(path: Path, max_rows: int | None, codec: str = "utf-8-sig") -> _Table:
    """A .json file: JSON Lines, a list of records, {column: [values]}, {column: {index: value}} or pandas 'split'."""
    try:
        text = path.read_text(encoding=codec)
    except UnicodeDecodeError:
        raise _encoding_error(path, codec) from None
    stripped = text.lstrip()
    whole: Any = None
    if stripped.startswith("["):
        try:
            whole = _loads(text)
        except ValueError as exc:
            raise DataError(f"{path.name} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None
    elif stripped.startswith("{"):
        try:
            whole = _loads(text)
        except ValueError:
            return _read_jsonl(path, max_rows, kind="json", codec=codec)  # one object per line
    if whole is None:
        return _read_jsonl(path, max_rows, kind="json", codec=codec)
    records: list[dict]
    if isinstance(whole, list):
        for i, rec in enumerate(whole):
            if not isinstance(rec, dict):
                raise DataError(f"{path.name}: item {i + 1} of the list is a JSON {type(rec).__name__}, not an "
                                'object like {"text": "...", "label": 1}.')
        records = whole
    elif isinstance(whole, dict) and isinstance(whole.get("columns"), list) and isinstance(whole.get("data"), list):
        cols = [str(c) for c in whole["columns"]]
        records = [dict(zip(cols, row)) for row in whole["data"] if isinstance(row, list)]
    elif isinstance(whole, dict) and whole and all(isinstance(v, (list, dict)) for v in whole.values()):
        cols = list(whole)
        if all(isinstance(v, list) for v in whole.values()):
            n = max(len(v) for v in whole.values())
            records = [{c: (whole[c][i] if i < len(whole[c]) else None) for c in cols} for i in range(n)]
        else:
            index: list[str] = []
            for v in whole.values():
                for k in (v if isinstance(v, dict) else {}):
                    if k not in index:
                        index.append(k)
            records = [{c: (whole[c].get(k) if isinstance(whole[c], dict) else None) for c in cols} for k in index]
    elif isinstance(whole, dict):
        records = [whole]
    else:
        raise DataError(f"{path.name} holds a JSON {type(whole).__name__}; expected records like "
                        '[{"text": "...", "label": 1}, ...] or JSON Lines.')
    if max_rows is not None:
        records = records[:max_rows]
    table = _records_to_table(path, "json", records, [None] * len(records))
    table.encoding = codec
    return table


def _read_parquet(path: Path, max_rows: int | None) -> _Table:
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
        if max_rows is not None:
            batch = next(pf.iter_batches(batch_size=max_rows), None)
            import pyarrow as pa
            table = pa.Table.from_batches([batch]) if batch is not None else pf.schema_arrow.empty_table()
        else:
            table = pf.read()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise DataError(f"The file {path.name} is not a readable Parquet file ({type(exc).__name__}: {exc}).") from None
    columns = [str(c) for c in table.column_names]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        names = ", ".join(map(repr, repeated))
        raise DataError(f"The Parquet file {path.name} has more than one column named {names}; "
                        "give every column its own name and save it again.")
    if table.num_rows == 0:
        raise DataError(f"The Parquet file {path.name} has columns ({', '.join(columns)}) but no rows: it holds "
                        "no reviews.")
    data = {str(c): table.column(c).to_pylist() for c in table.column_names}
    return _Table(path, "parquet", columns, data, [None] * table.num_rows)


def _loads(text: str):
    """json.loads that reports absurdly deep nesting as bad data instead of a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply (more than about 1,000 levels of brackets)", text, 0) from None


def _read_any(path: Path, max_rows: int | None = None, encoding: str = "auto") -> _Table:
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a file. Give a {SUPPORTED_TEXT} file, or an aclImdb folder "
                        "as the data set.")
    suffix = path.suffix.lower()
    kind = SUPPORTED_EXTENSIONS.get(suffix)
    if kind is None:
        shown = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise DataError(f"The file {path.name} has the extension {suffix or '(none)'!r}, which this app cannot "
                        f"read. Supported: {shown}. Save the table as CSV (with a header row) or Parquet.")
    _check_bytes(path, kind, encoding)
    if kind == "parquet":
        return _read_parquet(path, max_rows)
    codec = detect_encoding(path, encoding)
    if kind == "csv":
        return _read_delimited(path, ",", max_rows, codec)
    if kind == "tsv":
        return _read_delimited(path, "\t", max_rows, codec)
    if kind == "jsonl":
        return _read_jsonl(path, max_rows, codec=codec)
    return _read_json(path, max_rows, codec)


def _find_column(table_columns: list[str], wanted: str) -> str | None:
    if wanted in table_columns:
        return wanted
    folded = [c for c in table_columns if c.strip().lower() == wanted.strip().lower()]
    return folded[0] if len(folded) == 1 else None


def _missing_column(what: str, wanted: str, columns: list[str], where: str, kind: str = "") -> DataError:
    shown = [c for c in columns if not _is_unnamed(c)] or columns
    hint = ""
    if kind in ("csv", "tsv"):
        hint = " The first line of the file must name the columns."
    return DataError(f"There is no {what} column {wanted!r} in {where}. Its columns are: {_shown_columns(shown)}. "
                     f"Set {what}_column to one of them.{hint}")


def read_table(path: str | os.PathLike, *, text_column: str | None = None,
               max_rows: int | None = None, encoding: str = "auto") -> pd.DataFrame:
    """Read one CSV/TSV/JSONL/JSON/Parquet file into a DataFrame (for previews and loading).

    Unnamed columns (such as pandas' ``Unnamed: 0`` index) and columns with no values are left out.
    With ``text_column`` that column must exist (otherwise DataError lists the columns that do) and is
    always kept. ``max_rows`` reads only the first rows (quick previews of big files). CSV/TSV columns
    holding only whole numbers come back as integers, everything else as text. ``encoding`` is the
    config's (``auto``: UTF-8, else Windows-1252); the codec used is in ``frame.attrs["encoding"]`` (None
    for Parquet) and how to show it in ``frame.attrs["encoding_label"]``.
    """
    p = _checked_path(path, "data file")
    table = _read_any(p, max_rows, encoding)
    keep_text = _find_column(table.columns, text_column) if text_column else None
    if text_column and keep_text is None:
        raise _missing_column("text", text_column, table.columns, p.name, table.kind)
    columns = [c for c in table.columns
               if c == keep_text or not (_is_unnamed(c) or _column_is_empty(table.data[c]))]
    frame: dict[str, Any] = {}
    for c in columns:
        values = table.data[c]
        if table.kind in ("csv", "tsv") and c != keep_text:
            filled = [v for v in values if v.strip()]
            if filled and all(_INT_RE.fullmatch(v.strip()) for v in filled):
                values = pd.array([int(v) if v.strip() else None for v in values], dtype="Int64")
        frame[c] = values
    out = pd.DataFrame(frame, columns=columns)
    out.attrs["encoding"] = table.encoding
    out.attrs["encoding_label"] = encoding_label(table.encoding)
    return out


# ---------------------------------------------------------------------------------------------- entry point


# ---------------------------------------------------------------------------------------------- column guesses
TEXT_COLUMN_NAMES = ("text", "review", "sentence", "content")
LABEL_COLUMN_NAMES = ("label", "sentiment", "labels", "target")


def guess_text_column(columns: list) -> str | None:
    """The column that most likely holds the review text: the first named text/review/sentence/content
    (any letter case), else the first column; None for no columns."""
    names = [str(c) for c in columns]
    return next((c for c in names if c.lower() in TEXT_COLUMN_NAMES), names[0] if names else None)


def guess_label_column(columns: list) -> str | None:
    """The column that most likely holds the label: the first named label/sentiment/labels/target
    (any letter case), else the last column; None for no columns."""
    names = [str(c) for c in columns]
    return next((c for c in names if c.lower() in LABEL_COLUMN_NAMES), names[-1] if names else None)

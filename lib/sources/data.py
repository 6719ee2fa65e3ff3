"""Where the reviews come from (``load_data``): the built-in demo set, a Hugging Face Hub id, local files,
an aclImdb folder.

Every source ends up as the same thing, a ``datasets.DatasetDict`` with exactly two splits, ``train`` and
``test``, and exactly two columns, ``text`` (the review) and ``label`` (the class id: 0 = negative, 1 =
positive for sentiment; 0..N-1 for a run with N classes, named in ``info["label_names"]``), plus an
``info`` dict that says what was done (the job writes it to ``data.json`` in the run folder): the class
names and counts per split, how each label value was mapped, and for text files the encoding used.

Which source is used depends on ``config.dataset``:

- ``"demo"``: the built-in movie reviews in ``data/demo_reviews/*.jsonl`` with their fixed train/test split.
- a Hub id such as ``imdb`` or ``stanfordnlp/imdb``: loaded from the local Hugging Face cache when it is
  there, otherwise from the Hub. When the Hub cannot be reached this fails within a few seconds with a
  message naming the offline alternatives. A Hub id always means the Hub: a local folder that happens to
  be called ``imdb`` is never used in its place (write local data as a path, e.g. ``./imdb``).
- a path (starting with ``/``, ``./``, ``../`` or ``~``, or with more than one ``/``): a CSV, TSV, JSON
  Lines, JSON or Parquet file (optionally with a separate ``config.test_file``), or a folder laid out like
  the original IMDb download, ``aclImdb/{train,test}/{pos,neg}/*.txt``. Text shaped like a Hub id
  (``reviews.csv``, ``data/reviews.csv``) is read as a Hub id; write ``./data/reviews.csv`` for the file
  (when the Hub fails and such a file exists, the message says so).

Then the same steps run for every source: ``<br />`` tags become line breaks (``strip_html``), empty
reviews are dropped and counted, labels are mapped to class ids (:mod:`lib.sources.labels`: 0/1 from
positive/negative, pos/neg, 1/0, true/false or the run's own two ``label_names``; for 3 to 50 classes the
run's ``label_names`` or, by default, the values found), a seeded, stratified evaluation split is held out when
the data has only one split, and the optional subsets are taken: ``max_train_samples`` shuffles the
training set with the seed and keeps the first N; ``max_eval_samples`` keeps a seeded sample of N reviews
*in dataset order* (the evaluation set is never shuffled, so predictions line up with it).

Anything wrong with the data raises :class:`lib.errors.DataError` (or ``HubUnavailableError``) with a
message that says what is wrong, where (file, row, line) and what to do, before any training starts.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from lib.config import DEMO_DATASET, TrainConfig
from lib.errors import DataError, HubUnavailableError
from lib.sources import hub
from lib.sources.demo_data import DEMO_SPLITS, _read_demo
from lib.sources.labels import LabelScheme, _label_vocab, _map_parts, _norm_label, is_default_label_names
from lib.sources.paths import source_kind, within_allowed_roots
from lib.sources.preprocessing import clean_text
from lib.sources.tables import (
    SUPPORTED_TEXT,
    _checked_path,
    _find_column,
    _is_missing,
    _missing_column,
    _Part,
    _plural,
    _read_any,
    _Table,
    encoding_label,
)
from lib.store import rundir

ROOT = Path(__file__).resolve().parents[2]


SPLITS = DEMO_SPLITS


FEATURES = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})


_HUB_HASH_RE = re.compile(r"[0-9a-f]{40}")


@dataclass
class LoadedData:
    """The loaded data set and a JSON-able record of how it was made."""
    dataset: datasets.DatasetDict
    info: dict


# ---------------------------------------------------------------------------------------------- helpers
# ---------------------------------------------------------------------------------------------- demo
def demo_reviews() -> datasets.DatasetDict:
    """The built-in movie reviews with their fixed train/test split (labels 0 = negative, 1 = positive).

    Reviews keep the order of the files (``data/demo_reviews/*.jsonl``, read in name order).
    """
    splits, _, _ = _read_demo()
    return datasets.DatasetDict({s: datasets.Dataset.from_dict(splits[s], features=FEATURES) for s in SPLITS})


def _demo_parts() -> tuple[list[_Part], dict]:
    splits, files, skipped = _read_demo()
    parts = [_Part(s, f"the built-in {s} reviews", splits[s]["text"], splits[s]["label"],
                   list(range(1, len(splits[s]["text"]) + 1))) for s in SPLITS if splits[s]["text"]]
    info = {"source": "demo", "files": [str(p.relative_to(ROOT)) for p in files]}
    if skipped:
        info["skipped_incomplete_lines"] = skipped
    total = sum(len(p.texts) for p in parts)
    info["_describe"] = f"the built-in movie reviews ({_plural(total, 'review')} in {_plural(len(files), 'file')})"
    return parts, info


# ---------------------------------------------------------------------------------------------- aclImdb
def _acl_root(folder: Path) -> Path | None:
    for candidate in (folder, folder / "aclImdb"):
        if any((candidate / s / c).is_dir() for s in SPLITS for c in ("pos", "neg")):
            return candidate
    return None


def _acl_sort_key(path: Path) -> tuple:
    stem = path.stem.split("_")[0]
    return (int(stem) if stem.isdigit() else float("inf"), path.name)


def _acl_entry(path: Path) -> Path:
    """A folder or file inside an aclImdb tree, refused when it is a symbolic link or lies outside the
    server's allowed folders (``LAB_ALLOWED_ROOTS``): every entry is checked, not only the top folder."""
    if path.is_symlink():
        raise DataError(f"{path} is a symbolic link; the IMDb review folder must hold real folders and files "
                        "(copy the data instead of linking it).")
    if not within_allowed_roots(path.resolve()):
        raise DataError(f"{path} is outside the folders this server allows; ask the admin.")
    return path


def _acl_parts(root: Path) -> tuple[list[_Part], dict]:
    parts: list[_Part] = []
    for split in SPLITS:
        split_dir = root / split
        if split_dir.exists() or split_dir.is_symlink():
            _acl_entry(split_dir)
        if not split_dir.is_dir():
            if split == "train":
                raise DataError(f"The aclImdb folder {root} has no train/ folder (expected train/pos and "
                                "train/neg with one .txt review per file).")
            continue
        texts: list[str] = []
        labels: list[str] = []
        origins: list[int] = []
        for cls in ("neg", "pos"):
            cls_dir = split_dir / cls
            if cls_dir.exists() or cls_dir.is_symlink():
                _acl_entry(cls_dir)
            if not cls_dir.is_dir():
                raise DataError(f"The aclImdb folder {root} has {split}/ but no {split}/{cls}/ folder; both "
                                f"{split}/pos and {split}/neg are needed.")
            files = sorted(cls_dir.glob("*.txt"), key=_acl_sort_key)
            if not files:
                raise DataError(f"{cls_dir} holds no .txt review files.")
            for f in files:
                try:
                    with rundir.open_nofollow(_acl_entry(f), "r", encoding="utf-8-sig") as fh:
                        texts.append(fh.read())
                except UnicodeDecodeError:
                    raise DataError(f"The review file {f} is not UTF-8 text; re-save it as UTF-8.") from None
                except OSError as exc:
                    raise DataError(f"Cannot read {f}: {exc.strerror or exc}.") from None
                labels.append(cls)
                origins.append(len(origins) + 1)
        parts.append(_Part(split, f"{root.name}/{split}", texts, labels, origins))
    info = {"source": "aclimdb", "files": [str(root)],
            "_describe": f"the IMDb review folder {root} (pos/neg text files)"}
    return parts, info


# ---------------------------------------------------------------------------------------------- local files
def _table_part(table: _Table, split: str, config: TrainConfig, used: dict) -> _Part:
    text_col = _find_column(table.columns, config.text_column)
    if text_col is None:
        raise _missing_column("text", config.text_column, table.columns, table.path.name, table.kind)
    label_col = _find_column(table.columns, config.label_column)
    if label_col is None:
        raise _missing_column("label", config.label_column, table.columns, table.path.name, table.kind)
    if text_col == label_col:
        raise DataError(f"text_column and label_column both point at {text_col!r}; they must be two different "
                        f"columns of {table.path.name}.")
    used.setdefault("text_column", text_col)
    used.setdefault("label_column", label_col)
    ignored = [c for c in table.columns if c not in (text_col, label_col)]
    if ignored:
        used.setdefault("ignored_columns", {})[table.path.name] = ignored
    lines = table.lines if any(x is not None for x in table.lines) else None
    return _Part(split, table.path.name, table.data[text_col], table.data[label_col],
                 list(range(1, table.n_rows + 1)), lines)


def _local_parts(spec: str, config: TrainConfig) -> tuple[list[_Part], dict]:
    path = _checked_path(spec, "data")
    if path.is_dir():
        root = _acl_root(path)
        if root is None:
            raise DataError(f"The folder {spec!r} is not an aclImdb folder (expected train/pos, train/neg, "
                            "test/pos and test/neg holding .txt reviews, or an aclImdb/ folder inside it). For a "
                            f"table, give the file itself: {SUPPORTED_TEXT}.")
        if config.test_file.strip():
            raise DataError("test_file applies to a local training file only; an aclImdb folder brings its own "
                            "test/ folder. Clear test_file.")
        return _acl_parts(root)
    used: dict = {}
    table = _read_any(path, encoding=config.encoding)
    encodings = {path.name: table.encoding}
    parts = [_table_part(table, "train", config, used)]
    files = [str(path)]
    if config.test_file.strip():
        test_path = _checked_path(config.test_file.strip(), "test file")
        if test_path == path:
            raise DataError("test_file is the same file as the training data; give a different file, or clear "
                            "test_file to hold out part of the data.")
        test_table = _read_any(test_path, encoding=config.encoding)
        encodings[test_path.name] = test_table.encoding
        parts.append(_table_part(test_table, "test", config, used))
        files.append(str(test_path))
        describe = f"the local files {path.name} (training) and {test_path.name} (evaluation)"
    else:
        describe = f"the local file {path.name}"
    if table.encoding:
        used["encoding"] = table.encoding
        used["encoding_label"] = encoding_label(table.encoding)
        used["encoding_requested"] = config.encoding
        used["encodings"] = {name: encoding_label(codec) if codec else None for name, codec in encodings.items()}
        if table.encoding == "cp1252":
            describe += " (decoded as Windows-1252)"
    info = {"source": "local", "files": files, "_describe": describe, **used}
    return parts, info


# ---------------------------------------------------------------------------------------------- Hub
def hub_cache_candidates(hub_id: str) -> list[Path]:
    """Cached copies of a Hub data set (folders named by a 40-hex Hub commit; never local-folder loads)."""
    from datasets.naming import camelcase_to_snakecase
    root = Path(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE)))
    parts = hub_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    base = root / "___".join(parts)
    if not base.is_dir():
        return []
    found = [d for d in base.glob("*/*/*") if d.is_dir() and _HUB_HASH_RE.fullmatch(d.name)
             and (d / "dataset_info.json").is_file()]
    if not found:
        return []
    configs = sorted({d.parts[-3] for d in found})
    if len(configs) > 1:
        preferred = "default" if "default" in configs else None
        if preferred:
            found = [d for d in found if d.parts[-3] == preferred]
    return sorted(found, key=lambda d: d.stat().st_mtime, reverse=True)


def _load_hub_cache(hub_id: str) -> tuple[datasets.DatasetDict | None, str | None]:
    from datasets.packaged_modules.cache.cache import Cache
    for cache_dir in hub_cache_candidates(hub_id):
        config_name, version, commit = cache_dir.parts[-3:]
        try:
            builder = Cache(cache_dir=str(cache_dir.parents[3]), dataset_name=hub_id.split("/")[-1],
                            repo_id=hub_id, config_name=config_name, version=version, hash=commit)
            builder.download_and_prepare()
            loaded = builder.as_dataset()
        except Exception:  # noqa: BLE001 - an incomplete or foreign cache entry: try the next one, then the Hub
            continue
        if isinstance(loaded, datasets.DatasetDict) and loaded:
            return loaded, str(cache_dir)
    return None, None


def _local_twin_hint(spec: str) -> str:
    twin = Path(spec)
    if twin.exists():
        kind = "folder" if twin.is_dir() else "file"
        return (f" (A local {kind} named {spec!r} exists in the working directory, but a Hub id always means the "
                f"Hub; to use the local {kind}, write it as a path: './{spec}'.)")
    return ""


def _hub_parts(spec: str, config: TrainConfig) -> tuple[list[_Part], dict]:
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
    if spec.lower() in _PACKAGED_DATASETS_MODULES:
        raise DataError(f"{spec!r} is a file format, not a data set. Give the path of a file instead, e.g. "
                        f"./reviews.{spec.lower() if spec.lower() in ('csv', 'json', 'parquet') else 'csv'}.")
    if config.test_file.strip():
        raise DataError("test_file applies to a local training file only; a Hub data set brings its own test "
                        "split. Clear test_file.")
    loaded, cache_dir = _load_hub_cache(spec)
    if loaded is None:
        try:
            hub.require_hub("dataset", spec)
        except HubUnavailableError as exc:
            raise HubUnavailableError(str(exc) + _local_twin_hint(spec)) from None
        from datasets.exceptions import DatasetNotFoundError
        try:
            # "hf://datasets/<id>" means the Hub only: a local folder named like the id is never read.
            loaded = datasets.load_dataset(f"hf://datasets/{spec}")
        except DatasetNotFoundError as exc:
            raise DataError(f"The Hugging Face Hub has no data set {spec!r} that this machine may read ({exc}). "
                            "Check the spelling, or use 'demo' or a local file." + _local_twin_hint(spec)) from None
        except ConnectionError as exc:
            raise HubUnavailableError(hub.unavailable_message("dataset", spec, str(exc))
                                      + _local_twin_hint(spec)) from None
        except Exception as exc:  # noqa: BLE001 - datasets raises many types; the message names it
            raise DataError(f"Could not load the Hub data set {spec!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    available = list(loaded)
    if "train" not in loaded:
        raise DataError(f"The Hub data set {spec!r} has no 'train' split (it has: {', '.join(available)}).")
    chosen = {"train": "train"}
    for candidate in ("test", "validation"):  # an unlabelled test split (all -1, as in GLUE) is skipped
        if candidate in loaded and not _unlabelled(loaded[candidate], config.label_column):
            chosen["test"] = candidate
            break
    parts: list[_Part] = []
    used: dict = {}
    for split, hub_split in chosen.items():
        ds = loaded[hub_split]
        columns = list(ds.column_names)
        text_col = _find_column(columns, config.text_column)
        if text_col is None:
            raise _missing_column("text", config.text_column, columns, f"the Hub data set {spec!r}")
        label_col = _find_column(columns, config.label_column)
        if label_col is None:
            raise _missing_column("label", config.label_column, columns, f"the Hub data set {spec!r}")
        used.setdefault("text_column", text_col)
        used.setdefault("label_column", label_col)
        labels = list(ds[label_col])
        feature = ds.features.get(label_col)
        if isinstance(feature, datasets.ClassLabel):
            used["hub_label_names"] = list(feature.names)
            if len(feature.names) > 2:
                used["_class_names"] = list(feature.names)   # the Hub's class ids and names, kept in order
                labels = [feature.names[v] if isinstance(v, int) and 0 <= v < len(feature.names) else v
                          for v in labels]
            vocab = _label_vocab(config.label_names)
            words = [_norm_label(n) for n in feature.names]
            if (len(words) == 2 and all(w is not None and w in vocab and not w.isdigit() for w in words)
                    and {vocab[w] for w in words} == {0, 1}):
                labels = [feature.names[v] if isinstance(v, int) and 0 <= v < 2 else v for v in labels]
        parts.append(_Part(split, f"the Hub split {hub_split!r}", list(ds[text_col]), labels,
                           list(range(1, len(ds) + 1))))
    info = {"source": "hub", "hub_id": spec, "files": [], "hub_from_cache": cache_dir is not None,
            "hub_cache_dir": cache_dir, "hub_splits_available": available, "hub_splits_used": chosen, **used,
            "_describe": f"the Hugging Face Hub data set {spec!r}"
                         + (" (from the local cache)" if cache_dir else "")}
    return parts, info


def _unlabelled(ds: datasets.Dataset, label_column: str) -> bool:
    """True when a split's labels are all -1 (the Hub's mark for 'no label', as in GLUE test sets)."""
    col = _find_column(list(ds.column_names), label_column)
    if col is None or len(ds) == 0:
        return False
    values = ds[:1000][col]
    return all(isinstance(v, int) and v == -1 for v in values)


# ---------------------------------------------------------------------------------------------- cleaning
def _clean(part: _Part, strip_html: bool) -> tuple[_Part, dict]:
    texts, labels, rows, lines = [], [], [], [] if part.lines is not None else None
    dropped_rows: list[int] = []
    html = 0
    for i, raw in enumerate(part.texts):
        text = "" if _is_missing(raw) else (raw if isinstance(raw, str) else str(raw))
        if strip_html and "<" in text:
            new = clean_text(text, strip_html)
            html += new != text
            text = new
        if not text.strip():
            dropped_rows.append(part.rows[i])
            continue
        texts.append(text)
        labels.append(part.labels[i])
        rows.append(part.rows[i])
        if lines is not None:
            lines.append(part.lines[i])
    report = {"empty_text": len(dropped_rows), "rows": dropped_rows[:10]}
    if not texts:
        raise DataError(f"Every review in {part.origin} is empty ({_plural(len(dropped_rows), 'row')}), so there "
                        "is nothing to train on. Check that text_column names the column with the reviews.")
    return _Part(part.split, part.origin, texts, labels, rows, lines), {"html_breaks_replaced": html, **report}


def _class_counts(labels: list[int], n_labels: int = 2) -> dict[str, int]:
    counts = [0] * n_labels
    for x in labels:
        if 0 <= x < n_labels:
            counts[x] += 1
    return {str(i): int(c) for i, c in enumerate(counts)}


def _check_two_classes(split: str, labels: list[int], label_names: list, origin: str, after: str = "") -> None:
    """Every split needs at least two classes; with more than two classes, every class in every split."""
    counts = _class_counts(labels, max(2, len(label_names)))
    present = [k for k, v in counts.items() if v]
    if len(present) < 2:
        only = int(present[0]) if present else 0
        name = label_names[only] if len(label_names) > only else str(only)
        raise DataError(f"The {split} split ({origin}{after}) has only one class: all "
                        f"{_plural(len(labels), 'review')} are label {only} ({name}). At least two classes are "
                        "needed to train and evaluate a classifier; add reviews of the other class"
                        + (", or use a larger sample." if after else "."))
    absent = [label_names[int(k)] for k, v in counts.items() if not v]
    if absent and split != "whole":
        shown = ", ".join(repr(str(a)) for a in absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10
                                                                 else "")
        plural = "es" if len(absent) > 1 else ""
        raise DataError(f"The {split} split ({origin}{after}) has no reviews of the class{plural} {shown}: "
                        "every class needs examples in both the training and the evaluation split. Add "
                        "reviews of that class" + (", use a larger sample," if after else "")
                        + " or leave the class out of label_names and the data.")


def _check_rare_classes(parts: list[_Part], mapped: list[list[int]], scheme: LabelScheme, label_col: str,
                        needed: int) -> None:
    """Each class needs ``needed`` reviews (2 to hold out a stratified evaluation split): name the rare ones
    and the rows where they are, so a typo ('posittive') is easy to find."""
    counts = [0] * scheme.num_labels
    for m in mapped:
        for x in m:
            counts[x] += 1
    rare = [c for c, n in enumerate(counts) if n < needed]
    if not rare:
        return
    described = []
    for c in rare[:5]:
        where = [part.where(i) for part, m in zip(parts, mapped) for i, x in enumerate(m) if x == c][:3]
        described.append(f"{scheme.names[c]!r} ({_plural(counts[c], 'review')}: {'; '.join(where)})" if where
                         else f"{scheme.names[c]!r} (no reviews)")
    more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
    listing = ", ".join(repr(n) for n in scheme.names[:10]) + (f" and {scheme.num_labels - 10} more"
                                                              if scheme.num_labels > 10 else "")
    what = (f"The label column {label_col!r} has {scheme.num_labels} different values ({listing})"
            if scheme.how == "inferred" else f"This run has {scheme.num_labels} classes ({listing})")
    raise DataError(
        f"{what}, and "
        f"{_plural(len(rare), 'class')} {'has' if len(rare) == 1 else 'have'} fewer than {needed} reviews: "
        f"{', '.join(described)}{more}. Holding out an evaluation split needs at least {needed} reviews of each "
        "class. If a value is a typo, fix those rows; otherwise add reviews of that class, give a separate "
        "test_file, or set label_names to the classes you want.")


def _held_out(labels: list[int], fraction: float, seed: int, n_labels: int = 2) -> tuple[list[int], list[int]]:
    """Stratified, seeded split: (train indices, test indices), both in dataset order."""
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for cls in range(n_labels):
        idx = np.array([i for i, x in enumerate(labels) if x == cls], dtype=np.int64)
        if len(idx) < 2:
            raise DataError(f"Label {cls} has only {_plural(len(idx), 'review')}: holding out an evaluation split "
                            "needs at least two of each class. Add reviews, or give a separate test_file.")
        n_test = min(max(int(round(len(idx) * fraction)), 1), len(idx) - 1)
        test.extend(int(i) for i in rng.permutation(idx)[:n_test])
    test_set = set(test)
    return [i for i in range(len(labels)) if i not in test_set], sorted(test)


def _take(part: _Part, labels: list[int], idx: list[int], split: str, origin: str) -> tuple[_Part, list[int]]:
    return (_Part(split, origin, [part.texts[i] for i in idx], [part.labels[i] for i in idx],
                  [part.rows[i] for i in idx], [part.lines[i] for i in idx] if part.lines else None),
            [labels[i] for i in idx])


def _finish(parts: list[_Part], info: dict, config: TrainConfig) -> LoadedData:
    label_col = info.get("label_column", config.label_column)
    info.setdefault("text_column", config.text_column)
    info.setdefault("label_column", config.label_column)
    cleaned: list[_Part] = []
    dropped: dict[str, dict] = {}
    html: dict[str, int] = {}
    for part in parts:
        c, report = _clean(part, config.strip_html)
        html[part.split] = report.pop("html_breaks_replaced")
        dropped[part.split] = report
        cleaned.append(c)
    class_names = info.pop("_class_names", None)
    use_names = class_names if class_names and is_default_label_names(config.label_names) else config.label_names
    mapped, scheme = _map_parts(cleaned, use_names, label_col)
    names, n_labels = scheme.names, scheme.num_labels
    all_labels = [x for m in mapped for x in m]
    if len(set(all_labels)) < 2:
        _check_two_classes("whole", all_labels, names, "all the data")
    by_split = {p.split: (p, m) for p, m in zip(cleaned, mapped)}
    if "train" not in by_split:
        raise DataError("The data has no training reviews (only a test split was found).")
    held_out = None
    if "test" not in by_split:
        if scheme.how != "binary":
            _check_rare_classes(cleaned, mapped, scheme, label_col, 2)
        part, labels = by_split["train"]
        train_idx, test_idx = _held_out(labels, config.eval_fraction, config.seed, n_labels)
        by_split = {"train": _take(part, labels, train_idx, "train", part.origin),
                    "test": _take(part, labels, test_idx, "test", f"held out from {part.origin}")}
        held_out = {"fraction": config.eval_fraction, "seed": config.seed, "stratified": True,
                    "from_split": "train", "train_rows": len(train_idx), "test_rows": len(test_idx)}
        dropped["test"] = {"empty_text": 0, "rows": [],
                           "note": "held out from the training data after its empty reviews were dropped"}
        html.setdefault("test", 0)
    for split in SPLITS:
        part, labels = by_split[split]
        _check_two_classes(split, labels, names, part.origin)
    rows_before = {s: len(by_split[s][1]) for s in SPLITS}

    subsets: dict[str, Any] = {"max_train_samples": None, "max_eval_samples": None}
    final: dict[str, tuple[list[str], list[int]]] = {s: (by_split[s][0].texts, by_split[s][1]) for s in SPLITS}
    if config.max_train_samples is not None:
        texts, labels = final["train"]
        order = np.random.default_rng(config.seed).permutation(len(texts))[:config.max_train_samples]
        final["train"] = ([texts[i] for i in order], [labels[i] for i in order])
        subsets["max_train_samples"] = {"requested": config.max_train_samples, "available": len(texts),
                                        "used": len(order), "seed": config.seed, "shuffled": True}
        _check_two_classes("train", final["train"][1], names, by_split["train"][0].origin,
                           f", a sample of {len(order)} reviews")
    if config.max_eval_samples is not None:
        texts, labels = final["test"]
        order = sorted(int(i) for i in np.random.default_rng(config.seed).permutation(len(texts))
                       [:config.max_eval_samples])
        final["test"] = ([texts[i] for i in order], [labels[i] for i in order])
        subsets["max_eval_samples"] = {"requested": config.max_eval_samples, "available": len(texts),
                                       "used": len(order), "seed": config.seed, "shuffled": False,
                                       "order": "dataset order"}
        _check_two_classes("test", final["test"][1], names, by_split["test"][0].origin,
                           f", a sample of {len(order)} reviews")

    dataset = datasets.DatasetDict({
        s: datasets.Dataset.from_dict({"text": final[s][0], "label": final[s][1]}, features=FEATURES)
        for s in SPLITS})
    rows = {s: len(final[s][0]) for s in SPLITS}
    describe = info.pop("_describe")
    sentence = describe[0].upper() + describe[1:]
    if held_out:
        sentence += (f", with {config.eval_fraction:.0%} held out for evaluation (stratified, seed "
                     f"{config.seed})")
    elif info["source"] == "demo":
        sentence += ", with their fixed train/test split"
    elif info["source"] == "hub":
        sentence += f", with its {info['hub_splits_used']['test']!r} split used for evaluation"
    elif info["source"] == "aclimdb":
        sentence += ", with its train/ and test/ folders"
    n_dropped = sum(d["empty_text"] for d in dropped.values())
    extras = []
    if n_dropped:
        extras.append(f"{_plural(n_dropped, 'empty review')} dropped")
    if subsets["max_train_samples"]:
        extras.append(f"training on a seeded random {rows['train']:,} of {rows_before['train']:,}")
    if subsets["max_eval_samples"]:
        extras.append(f"evaluating on a seeded {rows['test']:,} of {rows_before['test']:,} kept in dataset order")
    sentence += (": " + "; ".join(extras) if extras else "") + "."
    out = {
        "source": info.pop("source"),
        "description": sentence,
        "dataset": config.dataset,
        "test_file": config.test_file or None,
        **info,
        "label_names": list(names),
        "num_labels": n_labels,
        "label_scheme": scheme.how,
        "label_mapping": scheme.mapping,
        "strip_html": bool(config.strip_html),
        "html_breaks_replaced": html,
        "held_out": held_out,
        "dropped": dropped,
        "rows_before_subsets": rows_before,
        "rows": rows,
        "class_counts": {s: _class_counts(final[s][1], n_labels) for s in SPLITS},
        "classes": [{"id": i, "name": names[i], **{s: _class_counts(final[s][1], n_labels)[str(i)] for s in SPLITS}}
                    for i in range(n_labels)],
        "subsets": subsets,
        "seed": config.seed,
    }
    return LoadedData(dataset=dataset, info=json.loads(json.dumps(out, default=str)))


def load_data(config: TrainConfig) -> LoadedData:
    """Load the data set the config names, clean it and split it; raise DataError when it cannot be used."""
    spec = (config.dataset or "").strip()
    if spec == DEMO_DATASET:
        if config.test_file.strip():
            raise DataError("test_file applies to a local training file only; the built-in demo reviews bring "
                            "their own test split. Clear test_file.")
        parts, info = _demo_parts()
        info["text_column"], info["label_column"] = "text", "label"
    elif source_kind(spec) == "path":
        parts, info = _local_parts(spec, config)
    elif source_kind(spec) == "hub":
        # Hub-id form ('imdb', 'stanfordnlp/imdb') always means the Hub, even when a local file or folder of
        # that name exists; local data is written as a path ('./imdb', '/data/reviews.csv').
        parts, info = _hub_parts(spec, config)
    else:
        raise DataError(f"The data set {spec!r} is neither 'demo', a Hugging Face Hub id like 'imdb' or "
                        "'stanfordnlp/imdb', nor a local path (start local paths with /, ./ or ~).")
    return _finish(parts, info, config)


def describe_labels(table, label_column: str, label_names: list | None = None, *,
                    held_out: bool = True) -> dict:
    """What training would make of a table's label column, before any training (the Train page's upload
    preview): ``{ok, label_column, names, num_labels, counts {name: reviews}, mapping {value: id}, how,
    rows, empty, encoding, problems [messages]}``. ``table`` is a DataFrame from
    :func:`lib.sources.tables.read_table`; ``held_out`` says the evaluation split will be held out of
    this table (each class then needs at least two reviews). Never raises for bad data: what is wrong
    is in ``problems``, with the same message the training job would stop with."""
    encoding = table.attrs.get("encoding_label") or None if hasattr(table, "attrs") else None
    out: dict[str, Any] = {"ok": False, "label_column": label_column, "names": [], "num_labels": 0, "counts": {},
                           "mapping": {}, "how": None, "rows": int(len(table)), "empty": 0, "encoding": encoding,
                           "problems": []}
    column = _find_column([str(c) for c in table.columns], label_column)
    if column is None:
        out["problems"].append(str(_missing_column("label", label_column, [str(c) for c in table.columns],
                                                   "this table")))
        return out
    values = table[column].tolist()
    out["label_column"] = column
    out["empty"] = sum(1 for v in values if _norm_label(v) is None)
    part = _Part("train", "this table", [""] * len(values), values, list(range(1, len(values) + 1)))
    try:
        (mapped,), scheme = _map_parts([part], list(label_names or []) or None, column)
    except DataError as exc:
        out["problems"].append(str(exc))
        return out
    out.update(names=list(scheme.names), num_labels=scheme.num_labels, how=scheme.how, mapping=scheme.mapping,
               counts={name: int(n) for name, n in zip(scheme.names, scheme.counts)})
    try:
        _check_two_classes("whole", mapped, scheme.names, "this table")
        if held_out and scheme.how != "binary":
            _check_rare_classes([part], [mapped], scheme, column, 2)
        elif held_out:
            for cls, n in enumerate(scheme.counts):
                if n < 2:
                    raise DataError(f"Label {cls} ({scheme.names[cls]}) has only {_plural(n, 'review')}: holding "
                                    "out an evaluation split needs at least two of each class. Add reviews, or "
                                    "give a separate test_file.")
    except DataError as exc:
        out["problems"].append(str(exc))
    out["ok"] = not out["problems"]
    return out

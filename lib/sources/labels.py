"""Mapping a label column to class ids.

Two classes (sentiment): the binary conventions (0/1, pos/neg, negative/positive, false/true, in any
letter case) or the run's own two ``label_names``. More classes: the run's ``label_names`` (2 to 50, in
id order; a class may also be written as its number 0..N-1), or, when label_names is left at its
default, the distinct values of the column itself: whole numbers in numeric order, words in the order
negative..., other words alphabetically, ...positive. Every value that cannot be mapped, an empty label,
a mostly empty column and more than 50 classes are reported with a message that names rows.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lib.config import DEFAULT_LABEL_NAMES, MAX_LABELS
from lib.errors import DataError
from lib.sources.tables import _is_missing, _Part

# Label spellings understood everywhere (compared in lower case); the run's own label_names come on top.
BUILTIN_LABELS = {"0": 0, "1": 1, "negative": 0, "positive": 1, "neg": 0, "pos": 1, "false": 0, "true": 1}
# Where sentiment words go when the classes are taken from the data: negative first, positive last.
_FIRST_WORDS = {"negative", "neg", "very negative", "very_negative", "bad"}
_LAST_WORDS = {"positive", "pos", "very positive", "very_positive", "good"}
MOSTLY_EMPTY = 0.5     # a label column empty in more than this share of rows is probably the wrong column


def _norm_label(value: Any) -> str | None:
    """A label value in canonical form for matching: lower case, 1.0 -> "1", True -> "true"; None = missing."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        return None
    low = text.lower()
    try:
        number = float(low)
    except ValueError:
        return low
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return low


@dataclass
class LabelScheme:
    """How a label column became class ids: ``names`` in id order, ``mapping`` (each original spelling ->
    id), ``how`` (``binary``: the sentiment conventions; ``label_names``: the run's names; ``inferred``:
    the values found in the data) and per-class counts of the mapped rows."""
    names: list[str]
    mapping: dict[str, int]
    how: str
    counts: list[int] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.names)


def is_default_label_names(label_names: Iterable[Any] | None) -> bool:
    return [str(x) for x in (label_names or [])] in ([], list(DEFAULT_LABEL_NAMES))


def _label_vocab(label_names: Iterable[Any]) -> dict[str, int]:
    names = list(label_names or [])
    if len(names) <= 2:
        vocab = dict(BUILTIN_LABELS)
    else:
        numeric = any((_norm_label(n) or "").lstrip("+-").isdigit() for n in names)
        vocab = {} if numeric else {str(i): i for i in range(len(names))}
    for i, name in enumerate(names):
        norm = _norm_label(name)
        if norm is not None:
            vocab[norm] = i  # the run's own names win over the built-in spellings
    return vocab


def _known_labels_text(label_names: list) -> str:
    names = list(label_names or [])
    if len(names) > 2:
        shown = ", ".join(str(n) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        return f"this run's label_names ({shown}) or their numbers 0-{len(names) - 1}, in any letter case"
    joined = "/".join(str(n) for n in names)
    extra = f" and this run's label_names ({joined})" if joined else ""
    return f"0/1, negative/positive, neg/pos, false/true{extra}, in any letter case"


def _spelling(raw: Any) -> str:
    return raw.strip() if isinstance(raw, str) else str(raw)


def _class_order(norms: list[str], spellings: dict[str, str]) -> list[str]:
    """Inferred classes in id order: whole numbers numerically, else negative words first, positive words last,
    everything else alphabetically in between."""
    if all(n.lstrip("+-").isdigit() for n in norms):
        return sorted(norms, key=int)

    def key(n: str):
        rank = 0 if n in _FIRST_WORDS else 2 if n in _LAST_WORDS else 1
        return (rank, spellings[n].lower(), spellings[n])
    return sorted(norms, key=key)


def _listing(values: list[str], limit: int = 10) -> str:
    text = ", ".join(repr(v) for v in values[:limit])
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _map_parts(parts: list[_Part], label_names: list, label_column: str, *,
               infer: bool = True) -> tuple[list[list[int]], LabelScheme]:
    """Map every part's labels to class ids with one shared scheme; raise DataError on the first problem.

    With ``infer`` and label_names at its default, data with three or more different labels that are not
    all binary spellings gets one class per distinct value (see the module docstring for the order)."""
    seen: dict[str, str] = {}                 # normalised value -> first original spelling
    first_at: dict[str, tuple[_Part, int]] = {}
    total = missing = 0
    first_missing: tuple[_Part, int] | None = None
    norms_per_part: list[list[str | None]] = []
    for part in parts:
        norms: list[str | None] = []
        for i, raw in enumerate(part.labels):
            total += 1
            norm = _norm_label(raw)
            norms.append(norm)
            if norm is None:
                missing += 1
                if first_missing is None:
                    first_missing = (part, i)
                continue
            if norm not in seen:
                seen[norm] = _spelling(raw)
                first_at[norm] = (part, i)
        norms_per_part.append(norms)
    if first_missing is not None:
        part, i = first_missing
        if missing > MOSTLY_EMPTY * total:
            raise DataError(f"The label column {label_column!r} is empty in {missing:,} of {total:,} rows (the first "
                            f"in {part.where(i)}): it is mostly empty, so it is probably not the column that holds "
                            "the labels. Set label_column to the column with a label on every row, or fill in "
                            "the labels.")
        raise DataError(f"The label is empty in {part.where(i)}: every review needs a label in the "
                        f"{label_column!r} column. Fill it in or remove that row.")
    names = [str(n) for n in (label_names or DEFAULT_LABEL_NAMES)]
    vocab = _label_vocab(names)
    unknown = [n for n in seen if n not in vocab]
    if not unknown:
        how = "binary" if len(names) == 2 else "label_names"
    elif infer and is_default_label_names(label_names) and len(seen) >= 3:
        if len(seen) > MAX_LABELS:
            raise DataError(
                f"The label column {label_column!r} has {len(seen):,} different values "
                f"({_listing(list(seen.values()))}), "
                f"more than the {MAX_LABELS} classes a run can have. Check that label_column names the column "
                "with the labels (not the text or an id), or group the values into fewer classes.")
        order = _class_order(list(seen), seen)
        vocab = {n: i for i, n in enumerate(order)}
        names = [seen[n] for n in order]
        how = "inferred"
    elif len(seen) == 1:
        value = next(iter(seen.values()))
        raise DataError(f"The label column {label_column!r} has only one class: every one of the {total - missing:,} "
                        f"labelled rows says {value!r}. At least two classes are needed to train and evaluate a "
                        "classifier; add reviews of another class, or check that label_column names the labels.")
    else:
        first = min(unknown, key=lambda n: (parts.index(first_at[n][0]), first_at[n][1]))
        part, i = first_at[first]
        raw = part.labels[i]
        shown = list(seen.values())
        if len(names) == 2 and len(seen) > 2:
            raise DataError(
                f"The label column {label_column!r} has {len(seen)} different values ({_listing(shown)}), but this "
                f"run's label_names name only two classes ({names[0]}, {names[1]}). The first value that is not "
                f"one of them is {raw!r} in {part.where(i)}. Set label_names to all {len(seen)} classes in order "
                f"(or back to the default {','.join(DEFAULT_LABEL_NAMES)} to use the values found), or fix that "
                f"row. Known labels: {_known_labels_text(names)}.")
        hint = ""
        if len(names) == 2 and len(shown) == 2:
            hint = (f" If this column uses its own two names, set label_names to them with label 0 first, "
                    f"e.g. label_names={shown[0]},{shown[1]} (or the other order).")
        target = "0/1" if len(names) == 2 else f"one of the {len(names)} label_names"
        raise DataError(f"Cannot turn the label {raw!r} in {part.where(i)} into {target}. Known labels: "
                        f"{_known_labels_text(names)}.{hint}")
    out: list[list[int]] = []
    mapping: dict[str, int] = {}
    counts = [0] * len(names)
    for part, norms in zip(parts, norms_per_part):
        mapped = []
        for raw, norm in zip(part.labels, norms):
            cls = vocab[norm]  # type: ignore[index]
            mapping.setdefault(_spelling(raw), cls)
            counts[cls] += 1
            mapped.append(cls)
        out.append(mapped)
    return out, LabelScheme(names=names, mapping=mapping, how=how, counts=counts)


def map_labels(values: Iterable[Any], label_names: list, *, infer: bool = False) -> tuple[list[int], dict]:
    """Turn label values into class ids and say how: ``(labels, {original value as text: id})``.

    With two ``label_names`` (sentiment) the values become 0/1: understood (in any letter case) are 0/1
    (also "0"/"1", 0.0/1.0), negative/positive, neg/pos, false/true, and the run's ``label_names`` (label
    0 first), which win when they clash with the built-in words. With more names each value must be one
    of them (or its number). ``infer=True`` lets data with three or more values keep its own classes when
    label_names is the default. A value that cannot be mapped, or an empty one, raises DataError naming
    its 1-based row and the value; too many different values raise DataError listing the values found.
    """
    values = list(values)
    part = _Part("data", "the labels", [""] * len(values), values, list(range(1, len(values) + 1)))
    (labels,), scheme = _map_parts([part], label_names, "label", infer=infer)
    return labels, scheme.mapping

"""Mapping a label column to class ids: the binary conventions (pos/neg, 0/1, positive/negative, true/false)
or the run's own ``label_names``; every value that cannot be mapped is reported with its row."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from lib.errors import DataError
from lib.sources.tables import _is_missing, _Part

# Label spellings understood everywhere (compared in lower case); the run's own label_names come on top.
BUILTIN_LABELS = {"0": 0, "1": 1, "negative": 0, "positive": 1, "neg": 0, "pos": 1, "false": 0, "true": 1}




# ---------------------------------------------------------------------------------------------- labels
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


def _label_vocab(label_names: Iterable[Any]) -> dict[str, int]:
    vocab = dict(BUILTIN_LABELS)
    for i, name in enumerate(list(label_names or [])[:2]):
        norm = _norm_label(name)
        if norm is not None:
            vocab[norm] = i  # the run's own names win over the built-in spellings
    return vocab


def _known_labels_text(label_names: list) -> str:
    names = "/".join(str(n) for n in list(label_names or [])[:2])
    extra = f" and this run's label_names ({names})" if names else ""
    return f"0/1, negative/positive, neg/pos, false/true{extra}, in any letter case"


def _map_parts(parts: list[_Part], label_names: list, label_column: str) -> tuple[list[list[int]], dict]:
    """Map every part's labels to 0/1 with one shared vocabulary; raise DataError on the first bad value."""
    vocab = _label_vocab(label_names)
    mapping: dict[str, int] = {}
    classes: dict[str, str] = {}          # normalised value -> first original spelling
    first_bad: tuple[_Part, int, Any] | None = None
    first_missing: tuple[_Part, int] | None = None
    out: list[list[int]] = []
    for part in parts:
        mapped: list[int] = []
        for i, raw in enumerate(part.labels):
            norm = _norm_label(raw)
            if norm is None:
                if first_missing is None:
                    first_missing = (part, i)
                mapped.append(-1)
                continue
            classes.setdefault(norm, str(raw).strip() if isinstance(raw, str) else str(raw))
            if norm in vocab:
                key = str(raw).strip() if isinstance(raw, str) else str(raw)
                mapping.setdefault(key, vocab[norm])
                mapped.append(vocab[norm])
            else:
                if first_bad is None:
                    first_bad = (part, i, raw)
                mapped.append(-1)
        out.append(mapped)
    if first_missing is not None:
        part, i = first_missing
        raise DataError(f"The label is empty in {part.where(i)}: every review needs a label in the "
                        f"{label_column!r} column. Fill it in or remove that row.")
    if first_bad is not None:
        part, i, raw = first_bad
        shown_classes = list(classes.values())
        listing = ", ".join(repr(c) for c in shown_classes[:10])
        if len(shown_classes) > 10:
            listing += f" and {len(shown_classes) - 10} more"
        if len(classes) > 2:
            raise DataError(
                f"The label column {label_column!r} has {len(classes)} different values ({listing}), but "
                f"sentiment training here needs exactly two classes (negative and positive). The first value "
                f"that is not a known label is {raw!r} in {part.where(i)}. Keep only two classes, or fix that "
                f"row. Known labels: {_known_labels_text(label_names)}.")
        hint = ""
        if len(shown_classes) == 2:
            hint = (f" If this column uses its own two names, set label_names to them with label 0 first, "
                    f"e.g. label_names={shown_classes[0]},{shown_classes[1]} (or the other order).")
        raise DataError(
            f"Cannot turn the label {raw!r} in {part.where(i)} into 0/1. Known labels: "
            f"{_known_labels_text(label_names)}.{hint}")
    return out, mapping


def map_labels(values: Iterable[Any], label_names: list) -> tuple[list[int], dict]:
    """Turn label values into 0/1 and say how: ``(labels, {original value as text: 0 or 1})``.

    Understood (in any letter case): 0/1 (also "0"/"1", 0.0/1.0), negative/positive, neg/pos, false/true,
    and the run's ``label_names`` (label 0 first), which win when they clash with the built-in words.
    A value that cannot be mapped, or an empty one, raises DataError naming its 1-based row and the value;
    more than two different values raise DataError listing the values found (up to 10).
    """
    values = list(values)
    part = _Part("data", "the labels", [""] * len(values), values, list(range(1, len(values) + 1)))
    (labels,), mapping = _map_parts([part], label_names, "label")
    return labels, mapping

"""What changed between two runs evaluated on the same reviews: which ones a run fixed, which it broke.

Each run's eval predictions are rows as in ``eval_predictions.jsonl``: ``index`` (position in the eval
split), ``text``, ``label`` (true class), ``pred`` (predicted class) and ``probs`` (one probability per
class). Rows may also be a DataFrame with those columns (a ``confidence`` column stands in for
``probs``).

Two runs can only be compared review by review when they were evaluated on the same split: the same
number of reviews, the same texts in the same order with the same true labels, or, when both runs
recorded one, the same split fingerprint.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lib.errors import RunError

KINDS = ("fixed", "broken", "both_wrong", "both_right")


def _records(rows: Any) -> list[dict]:
    if rows is None:
        return []
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        return rows.to_dict("records")
    return [dict(r) for r in rows]


def _row(r: dict, i: int, run: str) -> dict:
    where = f"run {run}'s prediction row {i + 1}"
    try:
        label = int(r["label"])
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{where} has no true label: these are not eval predictions") from None
    probs = r.get("probs")
    if probs is not None:
        try:
            probs = [float(p) for p in probs]
        except (TypeError, ValueError):
            raise RunError(f"{where} has probabilities that are not numbers") from None
        if not probs:
            probs = None
    pred = r.get("pred")
    if pred is None:
        if probs is None:
            raise RunError(f"{where} has neither a prediction nor probabilities")
        pred = max(range(len(probs)), key=probs.__getitem__)
    try:
        pred = int(pred)
    except (TypeError, ValueError):
        raise RunError(f"{where} has a prediction that is not a class number") from None
    if probs is not None and 0 <= pred < len(probs):
        confidence = probs[pred]
        p_true = probs[label] if 0 <= label < len(probs) else None
    else:
        confidence = r.get("confidence")
        confidence = float(confidence) if confidence is not None else None
        p_true = r.get("p_true")
        p_true = float(p_true) if p_true is not None else None
    text = r.get("text")
    return {"index": int(r.get("index", i)), "text": "" if text is None else str(text), "label": label,
            "pred": pred, "confidence": confidence, "p_true": p_true, "n_probs": len(probs) if probs else 0}


def check_same_split(a: list[dict], b: list[dict], *, fingerprint_a: str | None = None,
                     fingerprint_b: str | None = None) -> None:
    """Raise RunError unless the two runs' predictions cover the same eval reviews in the same order."""
    if not a or not b:
        which = "A" if not a else "B"
        raise RunError(f"run {which} has no eval predictions yet: it must finish its final evaluation before runs "
                       "can be compared review by review")
    if fingerprint_a and fingerprint_b:
        if fingerprint_a != fingerprint_b:
            raise RunError("the two runs were evaluated on different eval splits (their split fingerprints "
                           "differ), so their predictions cannot be compared review by review")
        if len(a) != len(b):
            raise RunError(f"the two runs' prediction files hold {len(a):,} and {len(b):,} reviews although their "
                           "split fingerprints match: one file is incomplete")
        return
    if len(a) != len(b):
        raise RunError(f"the two runs were evaluated on different eval splits ({len(a):,} vs {len(b):,} reviews), "
                       "so their predictions cannot be compared review by review. Compare runs that used the same "
                       "data, max_eval_samples and seed.")
    for ra, rb in zip(a, b):
        if ra["text"] != rb["text"] or ra["index"] != rb["index"]:
            raise RunError(f"the two runs were evaluated on different eval reviews (the first difference is at "
                           f"review {ra['index']}), so their predictions cannot be compared review by review. "
                           "Compare runs that used the same data, max_eval_samples and seed.")
        if ra["label"] != rb["label"]:
            raise RunError(f"review {ra['index']} has true label {ra['label']} in run A and {rb['label']} in run B: "
                           "the runs number their labels differently and cannot be compared")


def _entry(ra: dict, rb: dict) -> dict:
    return {"index": ra["index"], "text": ra["text"], "label": ra["label"],
            "pred_a": ra["pred"], "confidence_a": ra["confidence"], "p_true_a": ra["p_true"],
            "pred_b": rb["pred"], "confidence_b": rb["confidence"], "p_true_b": rb["p_true"]}


def diff_predictions(rows_a: Iterable[dict] | Any, rows_b: Iterable[dict] | Any, *,
                     fingerprint_a: str | None = None, fingerprint_b: str | None = None,
                     label_names: list[str] | None = None, limit: int | None = None) -> dict:
    """Review by review, how run B's eval predictions differ from run A's.

    Returns ``{n, n_labels, label_names, accuracy_a, accuracy_b, counts: {fixed, broken, both_wrong,
    both_right, changed}, fixed: [...], broken: [...], both_wrong: [...]}``: ``fixed`` are reviews wrong in A
    and right in B, ``broken`` right in A and wrong in B, ``both_wrong`` wrong in both (A and B may still
    disagree with each other when there are more than two labels), ``changed`` how many predictions differ.
    Each listed review is ``{index, text, label, pred_a, confidence_a, p_true_a, pred_b, confidence_b,
    p_true_b}`` (confidence: the probability of the predicted label; p_true: of the true label), in eval
    order; ``limit`` caps each list (the counts stay complete). Raises RunError when the runs were not
    evaluated on the same split.
    """
    a = [_row(r, i, "A") for i, r in enumerate(_records(rows_a))]
    b = [_row(r, i, "B") for i, r in enumerate(_records(rows_b))]
    check_same_split(a, b, fingerprint_a=fingerprint_a, fingerprint_b=fingerprint_b)
    n_labels = max([2] + [r["n_probs"] for r in a + b] + [max(r["label"], r["pred"]) + 1 for r in a + b])
    lists: dict[str, list[dict]] = {"fixed": [], "broken": [], "both_wrong": []}
    counts = {k: 0 for k in KINDS}
    changed = 0
    for ra, rb in zip(a, b):
        ok_a, ok_b = ra["pred"] == ra["label"], rb["pred"] == rb["label"]
        kind = ("both_right" if ok_b else "broken") if ok_a else ("fixed" if ok_b else "both_wrong")
        counts[kind] += 1
        changed += ra["pred"] != rb["pred"]
        if kind in lists and (limit is None or len(lists[kind]) < limit):
            lists[kind].append(_entry(ra, rb))
    n = len(a)
    names = list(label_names) if label_names else None
    return {"n": n, "n_labels": n_labels, "label_names": names,
            "accuracy_a": (counts["both_right"] + counts["broken"]) / n,
            "accuracy_b": (counts["both_right"] + counts["fixed"]) / n,
            "counts": {**counts, "changed": changed}, **lists}


def diff_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, *, limit: int | None = None) -> dict:
    """:func:`diff_predictions` of two run directories' ``eval_predictions.jsonl``, with the runs' ids
    (``run_a``, ``run_b``) and class names (run B's). RunError when a run has no predictions yet or the
    two were evaluated on different splits."""
    from lib.readers.predictions import run_label_names
    from lib.store import rundir
    a, b = Path(run_a), Path(run_b)
    rows = []
    for which, d in (("A", a), ("B", b)):
        path = d / rundir.PREDICTIONS
        if not path.is_file():
            raise RunError(f"run {which} ({d.name}) has no eval predictions yet: it must finish its final "
                           "evaluation before runs can be compared review by review")
        rows.append(rundir.read_jsonl(path))
    names_a, names_b = run_label_names(a), run_label_names(b)
    if names_a != names_b:
        raise RunError(f"the two runs have different classes ({', '.join(names_a)} vs {', '.join(names_b)}), so "
                       "their predictions cannot be compared review by review")
    out = diff_predictions(rows[0], rows[1], label_names=names_b, limit=limit)
    return {"run_a": a.name, "run_b": b.name, **out}

"""The eval split's predictions (``eval_predictions.jsonl``) and what error analysis derives from them:
confusion matrix (N x N), per-class scores, filtered rows, confident mistakes (overall and per class),
reliability (calibration) bins of the top label's probability.

Each line of ``eval_predictions.jsonl`` is ``{index, text, label, pred, probs}`` with one probability per
class in ``probs`` (two for a sentiment run, as before)."""
from __future__ import annotations

import os
from pathlib import Path

from lib.store import jsonl, rundir
from lib.util.fmt import num


# ---------------------------------------------------------------------------------------------------
# Eval predictions: error analysis
# ---------------------------------------------------------------------------------------------------
def _predictions_frame(rows: list[dict]):
    import numpy as np
    import pandas as pd
    clean = []
    for r in rows:
        probs = r.get("probs")
        label, pred = r.get("label"), r.get("pred")
        if not isinstance(probs, list) or len(probs) < 2 or not isinstance(label, int) or not isinstance(pred, int):
            continue
        if any(num(p) is None for p in probs):
            continue
        text = r.get("text") if isinstance(r.get("text"), str) else ""
        clean.append((int(r.get("index", len(clean))), text, label, pred, [float(p) for p in probs]))
    if clean:  # one run has one number of classes: rows with another count are damaged
        widths = [len(c[4]) for c in clean]
        n = max(set(widths), key=widths.count)
        clean = [c for c in clean if len(c[4]) == n and 0 <= c[2] < n and 0 <= c[3] < n]
    if not clean:
        return pd.DataFrame(columns=["index", "text", "label", "pred", "confidence", "p_true", "p_pos",
                                     "correct", "words", "chars", "probs"])
    probs = np.array([c[4] for c in clean], dtype=float)
    labels = np.array([c[2] for c in clean])
    preds = np.array([c[3] for c in clean])
    texts = [c[1] for c in clean]
    idx = np.arange(len(clean))
    df = pd.DataFrame({
        "index": [c[0] for c in clean], "text": texts, "label": labels, "pred": preds,
        "confidence": probs[idx, preds], "p_true": probs[idx, labels],
        "p_pos": probs[:, 1] if probs.shape[1] == 2 else np.full(len(clean), np.nan), "correct": labels == preds,
        "words": [len(t.split()) for t in texts], "chars": [len(t) for t in texts],
        "probs": [c[4] for c in clean]})
    return df


def predictions_frame(run_dir: str | os.PathLike):
    """The eval predictions as a DataFrame: index, text, label, pred, confidence (probability of the
    predicted label), p_true, p_pos (probability of label 1; empty with more than two classes), correct,
    words, chars, probs (every class's probability). Empty when the run has none yet."""
    return jsonl.derived(Path(run_dir) / rundir.PREDICTIONS, "frame", _predictions_frame, big=True)


def confusion_matrix(df, n_labels: int = 2) -> list[list[int]]:
    """counts[true][pred]."""
    counts = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(df["label"].tolist(), df["pred"].tolist()):
        if 0 <= t < n_labels and 0 <= p < n_labels:
            counts[t][p] += 1
    return counts


def filter_predictions(df, *, true_label: int | None = None, pred_label: int | None = None,
                       min_words: int | None = None, max_words: int | None = None,
                       only_wrong: bool = False):
    mask = df["label"] == df["label"]
    if true_label is not None:
        mask &= df["label"] == true_label
    if pred_label is not None:
        mask &= df["pred"] == pred_label
    if min_words is not None:
        mask &= df["words"] >= min_words
    if max_words is not None:
        mask &= df["words"] <= max_words
    if only_wrong:
        mask &= ~df["correct"]
    return df[mask]


def confidently_wrong(df, k: int = 10):
    """The ``k`` wrong predictions the model was surest about."""
    wrong = df[~df["correct"]] if len(df) else df
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(k)


def confident_mistakes_by_class(df, n_labels: int, k: int = 5) -> dict[int, object]:
    """For each true class, the ``k`` wrong predictions on its reviews the model was surest about (a
    DataFrame per class id; empty frames for classes without mistakes)."""
    out = {}
    for cls in range(n_labels):
        rows = df[(df["label"] == cls) & ~df["correct"]] if len(df) else df
        out[cls] = rows.sort_values("confidence", ascending=False, kind="stable").head(k)
    return out


def per_class(df, n_labels: int) -> list[dict]:
    """Precision, recall, F1 and counts per class from the predictions: ``[{id, support, predicted,
    correct, precision, recall, f1}]`` (precision/recall None where there is nothing to divide by)."""
    counts = confusion_matrix(df, n_labels)
    out = []
    for c in range(n_labels):
        support = sum(counts[c])
        predicted = sum(counts[t][c] for t in range(n_labels))
        hit = counts[c][c]
        precision = hit / predicted if predicted else None
        recall = hit / support if support else None
        f1 = (2 * precision * recall / (precision + recall) if precision and recall else
              (0.0 if precision is not None and recall is not None else None))
        out.append({"id": c, "support": support, "predicted": predicted, "correct": hit, "precision": precision,
                    "recall": recall, "f1": f1})
    return out


def run_label_names(run_dir: str | os.PathLike, fallback: list[str] | None = None) -> list[str]:
    """The run's class names in id order: the exported model's id2label (what it answers), else data.json
    (what the data turned into, known from the start of training), else config.json's label_names, else
    ``fallback`` (NEGATIVE, POSITIVE)."""
    run_dir = Path(run_dir)
    cfg = rundir.read_json(run_dir / rundir.MODEL / "config.json") or {}
    id2label = cfg.get("id2label") if isinstance(cfg, dict) else None
    if isinstance(id2label, dict) and len(id2label) >= 2:
        try:
            return [str(id2label[k]) for k in sorted(id2label, key=int)]
        except (ValueError, TypeError):
            pass
    for name in (rundir.DATA_INFO, rundir.CONFIG):
        data = rundir.read_json(run_dir / name) or {}
        names = data.get("label_names") if isinstance(data, dict) else None
        if isinstance(names, list) and len(names) >= 2:
            return [str(n) for n in names]
    return list(fallback or ["NEGATIVE", "POSITIVE"])


def reliability(df, n_bins: int = 10, n_labels: int = 2) -> tuple[list[dict], float | None]:
    """Reliability diagram bins over the confidence range [1/n_labels, 1] and the expected
    calibration error (ECE = sum over bins of share × |accuracy − confidence|)."""
    if not len(df):
        return [], None
    lo_all = 1.0 / n_labels
    width = (1.0 - lo_all) / n_bins
    conf = df["confidence"].tolist()
    corr = df["correct"].tolist()
    sums = [[0, 0.0, 0] for _ in range(n_bins)]  # count, confidence sum, correct count
    for c, ok in zip(conf, corr):
        b = min(n_bins - 1, max(0, int((c - lo_all) / width + 1e-9))) if width > 0 else 0  # 0.6 is in [0.6, 0.7)
        sums[b][0] += 1
        sums[b][1] += c
        sums[b][2] += int(bool(ok))
    n = len(conf)
    bins, ece = [], 0.0
    for i, (count, csum, ok) in enumerate(sums):
        lo, hi = lo_all + i * width, lo_all + (i + 1) * width
        if count:
            confidence, accuracy = csum / count, ok / count
            ece += count / n * abs(accuracy - confidence)
        else:
            confidence = accuracy = None
        bins.append({"lo": lo, "hi": hi, "count": count, "confidence": confidence, "accuracy": accuracy})
    return bins, ece

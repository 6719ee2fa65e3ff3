"""Temperature scaling on synthetic models whose calibration is known, ECE/NLL against direct
computation, and run diffs against hand-built prediction rows (including refused comparisons)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lib.errors import DataError, RunError
from lib.readers import calibration as cal
from lib.readers.diff import diff_predictions


# ---------------------------------------------------------------------------------------------------
# Synthetic models
# ---------------------------------------------------------------------------------------------------
def calibrated_sample(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution: labels are drawn from softmax(logits)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, k))
    probs = cal.softmax(logits)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return logits, labels


def overconfident_sample(n: int, k: int, seed: int, scale: float = 5.0):
    """The same, then every logit scaled by ``scale`` with a little noise: an over-confident model."""
    logits, labels = calibrated_sample(n, k, seed)
    rng = np.random.default_rng(seed + 1)
    return logits * scale + rng.normal(0.0, 0.1, size=logits.shape), labels


@pytest.mark.parametrize("k", [2, 3, 5])
def test_overconfident_model_gets_t_above_one_and_better_nll_and_ece(k):
    logits, labels = overconfident_sample(4000, k, seed=10 + k)
    report = cal.calibration_report(logits, labels)
    assert 3.5 < report["temperature"] < 6.5      # the logits were scaled by 5
    assert report["nll_after"] < report["nll_before"]
    assert report["ece_after"] < report["ece_before"]
    assert report["ece_after"] < 0.05
    assert report["n"] == 4000 and report["n_classes"] == k
    # the labels never change, only the confidence
    assert (cal.softmax(logits, report["temperature"]).argmax(1) == logits.argmax(1)).all()
    assert report["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()))


@pytest.mark.parametrize("k", [2, 4])
def test_well_calibrated_model_keeps_t_near_one(k):
    logits, labels = calibrated_sample(6000, k, seed=3 + k)
    t = cal.fit_temperature(logits, labels)
    assert 0.9 < t < 1.1
    # the fitted T is the NLL minimum: nudging it either way does not help
    assert cal.nll(logits, labels, t) <= min(cal.nll(logits, labels, t * 1.05), cal.nll(logits, labels, t / 1.05))


def test_underconfident_model_gets_t_below_one():
    logits, labels = calibrated_sample(4000, 2, seed=21)
    t = cal.fit_temperature(logits / 3.0, labels)
    assert 0.25 < t < 0.45          # about 1/3


def test_perfectly_separated_data_ends_at_the_lower_bound():
    logits = np.array([[3.0, -3.0], [-2.0, 2.0], [4.0, 0.0]])
    labels = np.array([0, 1, 0])
    assert cal.fit_temperature(logits, labels) == pytest.approx(cal.T_MIN)


def test_softmax_and_nll_match_direct_computation():
    logits = np.array([[1000.0, 999.0], [0.0, 2.0], [-1.0, -1.0]])   # huge values: stable
    labels = [0, 1, 1]
    probs = cal.softmax(logits, temperature=2.0)
    e = math.exp(0.5)
    assert probs[0] == pytest.approx([e / (e + 1), 1 / (e + 1)])
    assert probs.sum(axis=1) == pytest.approx([1, 1, 1])
    direct = -np.mean([math.log(probs[i][y]) for i, y in enumerate(labels)])
    assert cal.nll(logits, labels, 2.0) == pytest.approx(direct)


def test_ece_by_hand():
    # 2 classes, 2 bins over [0.5, 1]: [0.5, 0.75) and [0.75, 1]
    probs = [[0.6, 0.4], [0.7, 0.3], [0.1, 0.9], [0.2, 0.8]]
    labels = [0, 1, 1, 0]
    # bin 0: conf 0.65 mean, accuracy 1/2; bin 1: conf 0.85 mean, accuracy 1/2
    assert cal.ece(probs, labels, n_bins=2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.35)
    # perfectly right and sure: zero
    assert cal.ece([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == pytest.approx(0.0)


def test_ece_matches_the_runs_page_reliability_binning():
    pd = pytest.importorskip("pandas")
    from lib.readers.predictions import reliability
    rng = np.random.default_rng(5)
    probs = cal.softmax(rng.normal(0, 3, size=(500, 2)))
    labels = rng.integers(0, 2, size=500)
    df = pd.DataFrame({"confidence": probs.max(1), "correct": probs.argmax(1) == labels})
    _, page_ece = reliability(df, n_bins=10)
    assert cal.ece(probs, labels, n_bins=10) == pytest.approx(page_ece)


def test_logits_from_stored_probabilities_give_the_same_temperature():
    logits, labels = overconfident_sample(2000, 3, seed=8, scale=3.0)
    stored = np.round(cal.softmax(logits), 6)
    t_logits = cal.fit_temperature(logits, labels)
    t_probs = cal.fit_temperature(cal.logits_from_probs(stored), labels)
    assert t_probs == pytest.approx(t_logits, rel=0.05)


@pytest.mark.parametrize("logits, labels, message", [
    ([[1.0], [2.0]], [0, 0], "at least 2 classes"),
    ([[1.0, float("nan")]], [0], "NaN"),
    ([[1.0, 2.0]], [2], "between 0 and 1"),
    ([[1.0, 2.0]], [0, 1], "one label per review"),
    (np.zeros((0, 2)), [], "no reviews"),
])
def test_bad_inputs_are_data_errors(logits, labels, message):
    with pytest.raises(DataError, match=message):
        cal.calibration_report(logits, labels)


def test_temperature_must_be_positive():
    with pytest.raises(DataError, match="positive"):
        cal.softmax([[0.0, 1.0]], temperature=0)


# ---------------------------------------------------------------------------------------------------
# Run diffs
# ---------------------------------------------------------------------------------------------------
TEXTS = ["great", "awful", "fine I guess", "a masterpiece", "boring", "not bad"]
LABELS = [1, 0, 1, 1, 0, 1]


def rows(preds, conf=0.9, texts=TEXTS, labels=LABELS, k=2):
    out = []
    for i, (t, y, p) in enumerate(zip(texts, labels, preds)):
        probs = [(1 - conf) / (k - 1)] * k
        probs[p] = conf
        out.append({"index": i, "text": t, "label": y, "pred": p, "probs": probs})
    return out


def test_diff_counts_and_lists_against_hand_built_rows():
    a = rows([1, 1, 0, 1, 0, 0], conf=0.8)       # right: 0, 3, 4   wrong: 1, 2, 5
    b = rows([1, 0, 1, 0, 0, 0], conf=0.95)      # right: 0, 1, 2, 4  wrong: 3, 5
    d = diff_predictions(a, b)
    assert d["counts"] == {"fixed": 2, "broken": 1, "both_wrong": 1, "both_right": 2, "changed": 3}
    assert [r["index"] for r in d["fixed"]] == [1, 2]
    assert [r["index"] for r in d["broken"]] == [3]
    assert [r["index"] for r in d["both_wrong"]] == [5]
    fixed = d["fixed"][0]
    assert fixed == {"index": 1, "text": "awful", "label": 0, "pred_a": 1, "confidence_a": 0.8,
                     "p_true_a": pytest.approx(0.2), "pred_b": 0, "confidence_b": 0.95, "p_true_b": 0.95}
    assert d["n"] == 6 and d["n_labels"] == 2
    assert d["accuracy_a"] == pytest.approx(3 / 6) and d["accuracy_b"] == pytest.approx(4 / 6)
    # the same comparison the other way round swaps fixed and broken
    back = diff_predictions(b, a)
    assert back["counts"]["fixed"] == 1 and back["counts"]["broken"] == 2


def test_diff_with_three_labels_and_both_wrong_disagreeing():
    labels = [0, 1, 2, 2]
    a = rows([0, 2, 1, 2], texts=TEXTS[:4], labels=labels, k=3)
    b = rows([1, 1, 0, 2], texts=TEXTS[:4], labels=labels, k=3)
    d = diff_predictions(a, b, label_names=["neg", "neutral", "pos"])
    assert d["n_labels"] == 3 and d["label_names"] == ["neg", "neutral", "pos"]
    assert d["counts"] == {"fixed": 1, "broken": 1, "both_wrong": 1, "both_right": 1, "changed": 3}
    wrong = d["both_wrong"][0]
    assert (wrong["pred_a"], wrong["pred_b"], wrong["label"]) == (1, 0, 2)


def test_limit_caps_the_lists_but_not_the_counts():
    a = rows([0, 1, 0, 0, 1, 0])                 # wrong at 0, 1, 2, 3, 4, 5
    b = rows(LABELS)                             # all right
    d = diff_predictions(a, b, limit=2)
    assert d["counts"]["fixed"] == 6 and len(d["fixed"]) == 2


def test_dataframe_rows_with_confidence_only():
    pd = pytest.importorskip("pandas")
    a = pd.DataFrame({"index": range(3), "text": TEXTS[:3], "label": LABELS[:3], "pred": [1, 1, 1],
                      "confidence": [0.7, 0.6, 0.9]})
    b = pd.DataFrame({"index": range(3), "text": TEXTS[:3], "label": LABELS[:3], "pred": [1, 0, 0],
                      "confidence": [0.8, 0.55, 0.65]})
    d = diff_predictions(a, b)
    assert d["counts"] == {"fixed": 1, "broken": 1, "both_wrong": 0, "both_right": 1, "changed": 2}
    assert d["fixed"][0]["confidence_b"] == 0.55


@pytest.mark.parametrize("change, message", [
    (lambda r: r[:-1], "different eval splits"),
    (lambda r: [{**x, "text": x["text"] + "!"} if x["index"] == 2 else x for x in r], "review 2"),
    (lambda r: [{**x, "label": 1 - x["label"]} if x["index"] == 4 else x for x in r], "number their labels"),
    (lambda r: [], "no eval predictions"),
])
def test_mismatched_splits_are_refused(change, message):
    a = rows([1, 0, 1, 1, 0, 1])
    with pytest.raises(RunError, match=message):
        diff_predictions(a, change(rows([1, 0, 1, 1, 0, 1])))


def test_fingerprints_decide_when_both_runs_have_one():
    a = rows([1, 0, 1, 1, 0, 1])
    b = rows([1, 0, 1, 1, 0, 0])
    with pytest.raises(RunError, match="fingerprints differ"):
        diff_predictions(a, b, fingerprint_a="abc", fingerprint_b="def")
    assert diff_predictions(a, b, fingerprint_a="abc", fingerprint_b="abc")["counts"]["broken"] == 1


def test_rows_without_labels_are_refused():
    bad = [{"index": 0, "text": "x", "pred": 1, "probs": [0.1, 0.9]}]
    with pytest.raises(RunError, match="no true label"):
        diff_predictions(bad, bad)

"""Calibrated probabilities: temperature scaling, negative log-likelihood and expected calibration error.

A model is *calibrated* when, among the reviews it labels with 90 % confidence, about 90 % are right.
Fine-tuned transformers are usually over-confident. Temperature scaling fixes that with one number T:
probabilities become ``softmax(logits / T)``. T > 1 softens over-confident predictions, T < 1 sharpens
timid ones, and the predicted label never changes (dividing every logit by the same positive number
keeps their order); only the confidence does.

``fit_temperature`` picks the T that minimises the negative log-likelihood of the true labels on a set
of logits (for example the eval split's), searching log T in [log 0.05, log 20].

All functions take plain arrays (lists or numpy): ``logits`` of shape (reviews, classes) with at least
two classes, ``labels`` the true class index of each review.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lib.errors import DataError

T_MIN, T_MAX = 0.05, 20.0
DEFAULT_BINS = 15


def _logits(logits: Any) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 2:
        raise DataError(f"logits must be a (reviews, classes) table with at least 2 classes, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("the logits contain NaN or infinite values: the model's outputs cannot be calibrated")
    return x


def _labels(labels: Any, n: int, k: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"expected one label per review ({n}), got shape {y.shape}")
    if n and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y.astype(np.float64), 1), 0)):
            raise DataError("labels must be class indices (0, 1, ...)")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= k):
        raise DataError(f"labels must be between 0 and {k - 1} for {k} classes, got {int(y.min())}..{int(y.max())}")
    return y


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise DataError(f"the temperature must be a positive number, got {temperature!r}")
    return t


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Probabilities ``softmax(logits / temperature)``, row by row (numerically stable)."""
    x = _logits(logits) / _check_temperature(temperature)
    return np.exp(_log_softmax(x))


def nll(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under ``softmax(logits / temperature)``."""
    x = _logits(logits)
    y = _labels(labels, x.shape[0], x.shape[1])
    if not len(y):
        raise DataError("no reviews: the negative log-likelihood needs at least one")
    lp = _log_softmax(x / _check_temperature(temperature))
    return float(-lp[np.arange(len(y)), y].mean())


def ece(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label expected calibration error: the reviews are binned by the confidence of their predicted
    label into ``n_bins`` equal-width bins over [1/classes, 1] (a confidence on a bin edge counts in the
    upper bin), and ECE = sum over bins of (share of reviews) × |accuracy − mean confidence|.

    The binning is the Runs page's reliability diagram's (``reliability`` in the predictions reader),
    so with the same number of bins both give the same ECE.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(f"probabilities must be a (reviews, classes) table with at least 2 classes, got {p.shape}")
    if not np.all(np.isfinite(p)) or (p.size and (p.min() < -1e-9 or p.max() > 1 + 1e-9)):
        raise DataError("probabilities must lie between 0 and 1")
    y = _labels(labels, p.shape[0], p.shape[1])
    if not len(y):
        raise DataError("no reviews: ECE needs at least one")
    if int(n_bins) < 1:
        raise DataError(f"n_bins must be at least 1, got {n_bins}")
    n_bins = int(n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    lo = 1.0 / p.shape[1]
    width = (1.0 - lo) / n_bins
    idx = np.clip(np.floor((conf - lo) / width + 1e-9), 0, n_bins - 1).astype(np.int64)
    total = 0.0
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        if count:
            total += count / len(y) * abs(correct[mask].mean() - conf[mask].mean())
    return float(total)


def _golden(f, a: float, b: float, tol: float = 1e-6, max_iter: int = 200) -> float:
    invphi = (math.sqrt(5) - 1) / 2
    c, d = b - invphi * (b - a), a + invphi * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(max_iter):
        if abs(b - a) < tol:
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - invphi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + invphi * (b - a)
            fd = f(d)
    return (a + b) / 2


def fit_temperature(logits: Any, labels: Any, *, bounds: tuple[float, float] = (T_MIN, T_MAX)) -> float:
    """The temperature T (within ``bounds``) that minimises the mean negative log-likelihood of the true
    labels under ``softmax(logits / T)``.

    The search runs over log T (bounded Brent's method from scipy when it is installed, golden-section
    search otherwise); the likelihood has a single minimum there. When every review is predicted right
    with room to spare, sharper is always better and T ends at the lower bound.
    """
    x = _logits(logits)
    y = _labels(labels, x.shape[0], x.shape[1])
    if not len(y):
        raise DataError("no reviews: a temperature can only be fitted on at least one review's logits")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (0 < lo < hi and math.isfinite(hi)):
        raise DataError(f"temperature bounds must be 0 < low < high, got {bounds!r}")
    rows = np.arange(len(y))

    def objective(log_t: float) -> float:
        lp = _log_softmax(x / math.exp(log_t))
        return float(-lp[rows, y].mean())

    a, b = math.log(lo), math.log(hi)
    try:
        from scipy.optimize import minimize_scalar
        res = minimize_scalar(objective, bounds=(a, b), method="bounded", options={"xatol": 1e-6})
        best = float(res.x)
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        best = _golden(objective, a, b)
    for edge in (a, b):  # the bounded search stops just inside an edge; the edge itself may be better
        if objective(edge) <= objective(best):
            best = edge
    return float(math.exp(best))


def calibration_report(logits: Any, labels: Any, *, n_bins: int = DEFAULT_BINS) -> dict:
    """Fit a temperature on ``logits``/``labels`` and say what it changes:
    ``{temperature, ece_before, ece_after, nll_before, nll_after, accuracy, n, n_classes, n_bins}``.
    The accuracy is the same before and after (the labels do not change)."""
    x = _logits(logits)
    y = _labels(labels, x.shape[0], x.shape[1])
    t = fit_temperature(x, y)
    before, after = softmax(x), softmax(x, t)
    return {
        "temperature": t,
        "ece_before": ece(before, y, n_bins),
        "ece_after": ece(after, y, n_bins),
        "nll_before": nll(x, y, 1.0),
        "nll_after": nll(x, y, t),
        "accuracy": float((x.argmax(axis=1) == y).mean()),
        "n": int(len(y)),
        "n_classes": int(x.shape[1]),
        "n_bins": int(n_bins),
    }


def logits_from_probs(probs: Sequence[Sequence[float]], eps: float = 1e-12) -> np.ndarray:
    """Logits that give back ``probs`` under softmax (log probabilities), for predictions stored as
    probabilities only (``eval_predictions.jsonl``); rounding in the file limits their precision."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(f"probabilities must be a (reviews, classes) table with at least 2 classes, got {p.shape}")
    return np.log(np.clip(p, eps, 1.0))

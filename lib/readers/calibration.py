"""Calibrated probabilities for readers and pages: temperature scaling, negative log-likelihood and
expected calibration error. The functions live in :mod:`lib.util.calibration` (the training job fits the
temperature with them too); see there for what each computes."""
from __future__ import annotations

from lib.util.calibration import (  # noqa: F401 - re-exported
    DEFAULT_BINS,
    T_MAX,
    T_MIN,
    calibration_report,
    ece,
    fit_temperature,
    logits_from_probs,
    nll,
    softmax,
)

"""Loaded models for the tryout and the batch mode: each one loaded once per server and shared by every
session (the server log shows each load)."""
from __future__ import annotations

import streamlit as st

from lib.registry.reconcile import RunView
from lib.serving import predictor

FAST_KEY = "try_fast"   # the "Fast CPU mode" toggle
CALIBRATED_KEY = "try_calibrated"   # the "Calibrated probabilities" checkbox


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load_predictor(location: str, mtime: int, max_length: int | None, precision: str,
                   calibrated: bool = True) -> predictor.Predictor:
    """One loaded model per (folder, weights mtime, max length, precision, calibration)."""
    model = predictor.Predictor(location, max_length=max_length, precision=precision, calibrated=calibrated)
    print(f"[lab] loaded model for predictions: {model.description}", flush=True)
    return model


def fast_mode() -> bool:
    """Whether the Fast CPU mode toggle is on (its default: on unless LAB_PREDICT_PRECISION says fp32)."""
    return bool(st.session_state.get(FAST_KEY, predictor.default_precision() != "fp32"))


def precision(batch: bool = False) -> str:
    """fp32 with the Fast CPU mode off; on, the fast mode's precision for one review or for a table
    (``batch``): LAB_PREDICT_PRECISION when it names a fast one, else ``predictor.fast_precision``."""
    if not fast_mode():
        return "fp32"
    chosen = predictor.default_precision(batch)
    return chosen if chosen in predictor.FAST_PRECISIONS else predictor.fast_precision(batch)


def calibrated() -> bool:
    """Whether predictions use the calibrated probabilities (the checkbox; on unless unticked)."""
    return bool(st.session_state.get(CALIBRATED_KEY, True))


def get_predictor(run: RunView, choice: predictor.ModelChoice, batch: bool = False) -> predictor.Predictor:
    """The loaded model for ``choice`` (ModelError when its folder has gone), for one review at a time or
    for a table (``batch``: the fast mode may use another precision for it, see ``precision``): the run's
    max_length applies to its own models, not to the base model; text is prepared as the model records it
    was for training."""
    location, mtime = predictor.model_signature(choice.path)
    max_length = run.config.get("max_length") if choice.kind != "base" else None
    max_length = max_length if isinstance(max_length, int) and not isinstance(max_length, bool) else None
    return load_predictor(location, mtime, max_length, precision(batch), calibrated())

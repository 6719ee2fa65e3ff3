"""Loaded models for the tryout and the batch mode: each one loaded once per server and shared by every
session (the server log shows each load)."""
from __future__ import annotations

import streamlit as st

from lib.registry.reconcile import RunView
from lib.serving import predictor

INT8_KEY = "try_int8"   # the "Fast CPU mode" toggle


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load_predictor(location: str, mtime: int, max_length: int | None, precision: str) -> predictor.Predictor:
    """One loaded model per (folder, weights mtime, max length, precision)."""
    model = predictor.Predictor(location, max_length=max_length, precision=precision)
    print(f"[lab] loaded model for predictions: {model.description}", flush=True)
    return model


def precision() -> str:
    """int8 or fp32, as the person chose with the Fast CPU mode toggle."""
    return "int8" if st.session_state.get(INT8_KEY, predictor.default_precision() == "int8") else "fp32"


def get_predictor(run: RunView, choice: predictor.ModelChoice) -> predictor.Predictor:
    """The loaded model for ``choice`` (ModelError when its folder has gone): the run's max_length applies
    to its own models, not to the base model."""
    location, mtime = predictor.model_signature(choice.path)
    max_length = run.config.get("max_length") if choice.kind != "base" else None
    max_length = max_length if isinstance(max_length, int) and not isinstance(max_length, bool) else None
    return load_predictor(location, mtime, max_length, precision())

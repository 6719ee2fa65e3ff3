"""Showing text safely: user text, run names, reviews and error messages always appear as plain text."""
from __future__ import annotations

import streamlit as st

_MD_SPECIAL = "\\`*_{}[]()#+-.!|<>~$:"


def plain(text: object) -> str:
    """Text made safe for Streamlit's markdown: every markdown character escaped, so names, reviews and
    error messages that contain links, images or tags are shown literally."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))


def show_lab_error(exc: Exception) -> None:
    """Show a LabError's message as plain text (never markdown/HTML from user data)."""
    st.error(plain(exc), icon=":material/error:")

"""Showing text safely: user text, run names, reviews and error messages always appear as plain text.

Also the page's short messages that outlive a rerun (:func:`flash` / :func:`show_flash`) and the limits
on what a text box may hold (:func:`cut_text`, :func:`cut_lines`).
"""
from __future__ import annotations

from collections.abc import MutableMapping

import streamlit as st

_MD_SPECIAL = "\\`*_{}[]()#+-.!|<>~$:"
FLASH_KINDS = ("success", "info", "warning", "error")


def plain(text: object) -> str:
    """Text made safe for Streamlit's markdown: every markdown character escaped, so names, reviews and
    error messages that contain links, images or tags are shown literally."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))


def show_lab_error(exc: Exception) -> None:
    """Show a LabError's message as plain text (never markdown/HTML from user data)."""
    st.error(plain(exc), icon=":material/error:")


def flash(state: MutableMapping, key: str, kind: str, message: str) -> None:
    """Keep a message for the next run of the page (button callbacks run before the page is drawn)."""
    if kind not in FLASH_KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    state[key] = (kind, str(message))


def show_flash(state: MutableMapping, key: str) -> None:
    """Show (once) the message kept under ``key``, as plain text."""
    kept = state.pop(key, None)
    if kept and kept[0] in FLASH_KINDS:
        getattr(st, kept[0])(plain(kept[1]))


def cut_text(text: str, max_chars: int) -> tuple[str, bool]:
    """``text`` cut to ``max_chars`` characters, and whether anything was cut."""
    text = str(text or "")
    return (text[:max_chars], True) if len(text) > max_chars else (text, False)


def cut_lines(text: str, max_lines: int, max_line_chars: int) -> tuple[list[str], int, int]:
    """The non-empty lines of ``text``: at most ``max_lines``, each cut to ``max_line_chars``.

    Returns (lines, lines left out, lines shortened)."""
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    dropped = max(0, len(lines) - max_lines)
    lines = lines[:max_lines]
    shortened = sum(1 for line in lines if len(line) > max_line_chars)
    return [line[:max_line_chars] for line in lines], dropped, shortened

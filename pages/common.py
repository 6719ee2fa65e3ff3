"""Helpers shared by the pages: where the runs live, who is using the app, cached loaders.

Pages stay thin: they read settings from here and call ``lib`` for everything else.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from lib.store.rundir import default_runs_dir

OWNER_KEY = "lab_owner"


def _leave_legacy_multipage_mode() -> None:
    """Make the first page view of a fresh server go through app.py.

    Streamlit treats a folder called ``pages/`` as a legacy (v1) multipage app until the entry point
    has called ``st.navigation`` once. So the very first visit after a (re)start to a bookmarked
    address such as ``/runs`` would run ``pages/runs.py`` on its own, without app.py's router and
    sidebar. Every page imports this module: when that happens, switch the mode off and rerun, so
    app.py runs and routes to the page that was asked for.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - another Streamlit layout
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_multipage_mode()


def runs_dir() -> Path:
    """The shared runs directory: ``$LAB_RUNS_DIR`` or ./runs (created on first use)."""
    path = default_runs_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def auth_configured() -> bool:
    """True when .streamlit/secrets.toml has an [auth] section (OIDC login via st.login)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def logged_in_user() -> str | None:
    if not auth_configured():
        return None
    try:
        if st.user.is_logged_in:
            return str(st.user.get("email") or st.user.get("name") or "")
    except Exception:
        return None
    return None


def current_user() -> str:
    """The logged-in user when authentication is configured, else the name typed in the sidebar."""
    user = logged_in_user()
    if user:
        return user
    return str(st.session_state.get(OWNER_KEY, "") or "").strip()


_MD_SPECIAL = "\\`*_{}[]()#+-.!|<>~$:"


def plain(text: object) -> str:
    """Text made safe for Streamlit's markdown: every markdown character escaped, so names, reviews and
    error messages that contain links, images or tags are shown literally."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))


def show_lab_error(exc: Exception) -> None:
    """Show a LabError's message as plain text (never markdown/HTML from user data)."""
    st.error(plain(exc), icon=":material/error:")


def latest_runs(limit: int = 5) -> list[dict]:
    """The newest runs as table rows (reconciled against their processes on every call)."""
    from lib.registry.reconcile import list_runs
    rows = []
    for run in list_runs(runs_dir())[:limit]:
        acc = run.best_eval_accuracy
        rows.append({"run": run.run_id, "label": run.label, "owner": run.owner,
                     "state": run.display_state, "progress": run.progress or 0.0,
                     "model": run.model, "dataset": run.dataset,
                     "best accuracy": None if acc is None else round(float(acc), 4)})
    return rows

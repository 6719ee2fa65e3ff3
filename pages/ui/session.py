"""Who is using the app and where the runs live, read on the server for every page run.

Every page imports this module first: it also takes Streamlit out of its legacy ``pages/`` mode (see
:func:`_leave_legacy_multipage_mode`).

Identity: with sign-in configured (``[auth]`` in ``.streamlit/secrets.toml``) the actor is the
provider's verified email (or its ``sub``), from ``st.user``, and nothing typed counts; without it the
app runs open and the name typed in the sidebar is only a label for the runs one launches.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from lib.registry.access import Actor, Policy, identity_from_user_info
from lib.store.rundir import default_runs_dir

OWNER_KEY = "lab_owner"   # session key of the sidebar's name box (open mode only)
DEFAULT_MAX_UPLOAD_MB = 200


def _leave_legacy_multipage_mode() -> None:
    """Make the first page view of a fresh server go through app.py.

    Streamlit treats a folder called ``pages/`` as a legacy (v1) multipage app until the entry point
    has called ``st.navigation`` once. So the very first visit after a (re)start to a bookmarked
    address such as ``/runs`` would run ``pages/runs.py`` on its own, without app.py's router and
    sidebar. When that happens, switch the mode off and rerun, so app.py runs and routes to the page
    that was asked for.
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
    """True when .streamlit/secrets.toml has an [auth] section (OIDC sign-in via st.login)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all, or an unreadable one
        return False


def lab_settings() -> dict:
    """The ``[lab]`` section of the secrets (admins, launchers, rendezvous_endpoints), or {}."""
    try:
        lab = st.secrets.get("lab", {})
        return dict(lab) if lab else {}
    except Exception:  # noqa: BLE001 - no secrets file
        return {}


def policy() -> Policy:
    """The server's access settings for this request (secrets and ``LAB_READ_ONLY``)."""
    return Policy.from_settings(lab_settings(), sign_in=auth_configured())


def signed_in_identity() -> str | None:
    """The verified identity of the signed-in person, or None (not signed in, or no sign-in configured)."""
    if not auth_configured():
        return None
    try:
        if not st.user.is_logged_in:
            return None
        return identity_from_user_info(st.user.to_dict())
    except Exception:  # noqa: BLE001 - st.user unavailable outside a browser session
        return None


def actor() -> Actor:
    """Who is acting in this session. Under sign-in only the sign-in counts; in open mode the typed name
    is carried as a label (it grants nothing that an anonymous visitor does not have)."""
    if auth_configured():
        return Actor(signed_in_identity() or "", "sign-in")
    return Actor(typed_name(), "open")


def typed_name() -> str:
    """The name typed in the sidebar (open mode); never an identity."""
    return str(st.session_state.get(OWNER_KEY, "") or "").strip()[:80]


def max_upload_mb() -> int:
    """The largest upload the server accepts, in MB (``LAB_MAX_UPLOAD_MB``, default 200)."""
    try:
        return max(1, int(os.environ.get("LAB_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)))
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB

"""The header above the tabs: the run's name, id, model, data, owner and state."""
from __future__ import annotations

import streamlit as st

from lib.registry.reconcile import RunView
from pages.ui.runs_tabs import STATE_COLORS, STATE_ICONS, TabContext
from pages.ui.text import plain


def render(run: RunView, ctx: TabContext) -> None:
    head_l, head_r = st.columns([4, 1], vertical_alignment="center")
    head_l.subheader(plain(run.label))
    head_l.caption(plain(f"{run.run_id} · model {run.model or '?'} · data {run.dataset or '?'}"
                         + (f" · owner {run.owner}" if run.owner else "")))
    with head_r:
        st.badge(plain(run.state), icon=STATE_ICONS.get(run.state), color=STATE_COLORS.get(run.state, "gray"))

"""The header above the tabs: the run's name, id, model, data, owner and state, how it ended when it
stopped early, its sweep, and its note and tags (user text, shown as text)."""
from __future__ import annotations

import streamlit as st

from lib.registry import sweeps
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
    status = run.status
    if status.get("stopped_early"):
        st.info(plain(f"Stopped early at step {status.get('stopped_at_step')} of {status.get('planned_steps')}: "
                      f"{status.get('metric_for_best_model') or 'the metric'} stopped improving. The best checkpoint, "
                      f"{status.get('best_checkpoint')}, was kept and exported."), icon=":material/front_hand:")
    elif status.get("best_checkpoint") and run.state == "finished":
        st.caption(plain(f"Exported the best checkpoint: {status['best_checkpoint']}."))
    if run.config.get("sweep_id"):
        st.caption(plain(f"Sweep {run.config['sweep_id']}: {sweeps.point_text(run.config.get('sweep_point') or {})}"
                         " (the Sweep tab shows all its runs)."))
    if run.tags:
        st.caption(plain("Tags: " + ", ".join(run.tags)))
    if run.note:
        st.text(run.note)

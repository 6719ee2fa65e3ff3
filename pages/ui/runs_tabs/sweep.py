"""Sweep tab: the runs of the shown run's sweep side by side, their grid values and best metric, a
parallel-coordinates chart of settings → metric, and the best run marked."""
from __future__ import annotations

import streamlit as st

from lib.registry import sweeps
from lib.registry.reconcile import RunView
from pages.ui import charts
from pages.ui.runs_tabs import TabContext
from pages.ui.text import plain

METRICS = ("eval_accuracy", "eval_f1", "eval_loss", "eval_roc_auc")


def render(run: RunView, ctx: TabContext) -> None:
    sweep_id = str(run.config.get("sweep_id") or "")
    if not sweep_id:
        known = sweeps.sweep_ids(list(ctx.runs))
        st.info("This run is not part of a sweep. Launch one with the Sweep option on the Train page"
                + (f"; sweeps here: {', '.join(known[:5])}." if known else "."), icon=":material/grid_view:")
        return
    metric = st.selectbox("Metric", METRICS, key="sweep_metric")
    rows = sweeps.sweep_runs(list(ctx.runs), sweep_id)
    table = sweeps.sweep_table(rows, metric)
    best = table["best"]
    st.caption(plain(f"Sweep {sweep_id}: {len(rows)} run(s) over {', '.join(table['fields'])}."
                     + (f" Best {metric}: run {best}." if best else f" No run has {metric} yet.")))
    shown = [{"best": "★" if r["run_id"] == best else "", **r} for r in table["rows"]]
    st.dataframe(shown, hide_index=True, key="sweep_table",
                 column_config={metric: st.column_config.NumberColumn(metric, format="%.4f")})
    fig = charts.sweep_figure(table)
    if fig is not None:
        charts.show(fig, "sweep_parcoords")

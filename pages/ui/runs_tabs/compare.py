"""Compare tab: several runs' curves on one chart, their final scores and the config fields that differ.
A finished distillation run first shows how it compares with its teacher."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from lib.readers import compare, metrics, progress
from lib.registry.reconcile import RunView
from lib.util.fmt import format_duration
from pages.ui import charts
from pages.ui.runs_tabs import FINAL_KEYS, TabContext, run_title, teacher_student

MAX_OVERLAY = 8
METRICS = ["loss", "eval_accuracy", "eval_f1", "eval_loss", "learning_rate"]
DIFF_STYLE = "background-color: rgba(255, 193, 7, 0.25)"


def render(run: RunView, ctx: TabContext) -> None:
    if run.task == "distill" and run.state == "finished":
        teacher_student.render(run, ctx)
    by_id = ctx.by_id()
    picked = st.multiselect("Runs to overlay", list(by_id), default=[run.run_id], max_selections=MAX_OVERLAY,
                            format_func=lambda i: run_title(by_id[i]), key="cmp_runs")
    picked = [by_id[i] for i in picked if i in by_id]
    if not picked:
        st.info("Pick one or more runs to compare.")
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    metric = c1.segmented_control("Metric", METRICS, default="loss", required=True, key="cmp_metric") or "loss"
    x_axis = c2.selectbox("X axis", list(charts.X_LABELS), format_func=lambda k: charts.X_SHORT[k], key="cmp_x")
    named = [(f"{r.label[:30]} ({r.run_id[-6:]})", metrics.metric_series(r.path)) for r in picked]
    charts.show(charts.overlay_figure(named, metric, x_axis), "cmp_fig")

    st.markdown("**Final metrics**")
    st.dataframe(pd.DataFrame([final_row(r) for r in picked]), hide_index=True, key="cmp_final")

    st.markdown("**Configs** (differences highlighted)")
    rows, differing = compare.compare_configs({r.run_id: r.config for r in picked})
    only_diff = st.toggle("Only differences", value=len(picked) > 1, key="cmp_only_diff")
    shown = [row for row in rows if row["field"] in differing] if only_diff else rows
    frame = pd.DataFrame([{k: table_value(v) for k, v in row.items()} for row in shown])
    if frame.empty:
        st.caption("The configs are identical.")
    else:
        styled = frame.style.apply(lambda row: [DIFF_STYLE if row["field"] in differing else "" for _ in row], axis=1)
        st.dataframe(styled, hide_index=True, key="cmp_configs")


def final_row(run: RunView) -> dict:
    """One run's last scores, its TF-IDF baseline, steps and training time."""
    final = metrics.final_metrics(run.path, run.status)
    base = metrics.read_baseline(run.path) or {}
    prog = progress.progress(run.path, run.status)
    return {"run": run.run_id, "label": run.label, "state": run.state,
            **{name: final.get(k) for k, name in FINAL_KEYS},
            "TF-IDF accuracy": base.get("accuracy"), "steps": prog.step,
            "training time": format_duration(prog.elapsed_s)}


def table_value(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)

"""Compare tab: several runs' curves on one chart, their final scores and the config fields that differ,
and, for two runs evaluated on the same reviews, which reviews the second fixed and which it broke.
A finished distillation run first shows how it compares with its teacher."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from lib.errors import LabError
from lib.readers import compare, diff, metrics, progress
from lib.registry.reconcile import RunView
from lib.store import rundir
from lib.util.fmt import format_duration
from pages.ui import charts
from pages.ui.runs_tabs import FINAL_KEYS, TabContext, run_title, teacher_student
from pages.ui.text import show_lab_error

MAX_OVERLAY = 8
DIFF_ROWS = 500
DIFF_KINDS = {"fixed": "fixed (wrong in A, right in B)", "broken": "broken (right in A, wrong in B)",
              "both_wrong": "both wrong"}
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
    render_diff(run, ctx)


def render_diff(run: RunView, ctx: TabContext) -> None:
    """Review by review: two runs evaluated on the same reviews, what run B fixed and what it broke."""
    st.markdown("**Review by review** (two runs evaluated on the same reviews)")
    with_preds = [r for r in ctx.runs if (r.path / rundir.PREDICTIONS).is_file()]
    ids = [r.run_id for r in with_preds]
    if len(ids) < 2:
        st.caption("Two finished runs are needed to compare their predictions review by review.")
        return
    by_id = {r.run_id: r for r in with_preds}
    c1, c2 = st.columns(2)
    a_default = ids.index(run.run_id) if run.run_id in ids else 0
    run_a = c1.selectbox("Run A", ids, index=a_default, format_func=lambda i: run_title(by_id[i]), key="cmp_diff_a")
    others = [i for i in ids if i != run_a]
    run_b = c2.selectbox("Run B", others, format_func=lambda i: run_title(by_id[i]), key="cmp_diff_b")
    if run_b is None:
        return
    try:
        result = diff.diff_runs(by_id[run_a].path, by_id[run_b].path)
    except LabError as exc:
        show_lab_error(exc)
        return
    counts = result["counts"]
    m = st.columns(4)
    m[0].metric("Fixed", f"{counts['fixed']:,}", help="Wrong in run A, right in run B.")
    m[1].metric("Broken", f"{counts['broken']:,}", help="Right in run A, wrong in run B.")
    m[2].metric("Both wrong", f"{counts['both_wrong']:,}")
    m[3].metric("Accuracy A → B", f"{result['accuracy_a']:.1%} → {result['accuracy_b']:.1%}")
    kind = st.segmented_control("Show", list(DIFF_KINDS), format_func=DIFF_KINDS.get, default="fixed",
                                required=True, key="cmp_diff_kind") or "fixed"
    rows = result[kind]
    names = result.get("label_names") or []

    def name_of(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    if not rows:
        st.caption("No reviews of this kind.")
        return
    st.caption(f"{len(rows):,} reviews" + (f"; the first {DIFF_ROWS:,} are shown." if len(rows) > DIFF_ROWS else "."))
    st.dataframe(pd.DataFrame([{"#": r["index"], "review": r["text"], "true": name_of(r["label"]),
                                "A predicted": name_of(r["pred_a"]), "A confidence": r["confidence_a"],
                                "B predicted": name_of(r["pred_b"]), "B confidence": r["confidence_b"]}
                               for r in rows[:DIFF_ROWS]]), hide_index=True, key="cmp_diff_rows")


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

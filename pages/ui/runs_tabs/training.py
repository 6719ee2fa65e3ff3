"""Training tab: the run's progress, its error when it stopped, its final scores, charts and log.

While the run is queued or running the view refreshes itself every few seconds (a fragment), reading
the run's files again each time.
"""
from __future__ import annotations

import streamlit as st

from lib.readers import metrics, progress
from lib.registry import reconcile
from lib.registry.reconcile import RunView
from lib.util.fmt import format_duration
from pages.ui import charts
from pages.ui.runs_tabs import STATE_ICONS, TabContext, final_keys
from pages.ui.text import plain

POLL_S = 2.0


def render(run: RunView, ctx: TabContext) -> None:
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    x_axis = c1.segmented_control("X axis", list(charts.X_LABELS), format_func=lambda k: charts.X_SHORT[k],
                                  default="step", required=True, key="runs_x_axis") or "step"
    smoothing = c2.slider("Loss smoothing (EMA)", 0.0, 0.99, 0.6, 0.01, key="runs_smoothing",
                          help="0 = raw values; closer to 1 = smoother (TensorBoard-style exponential "
                               "moving average).")
    log_y = c3.toggle("Log scale", key="runs_log_y")
    live = run.active

    @st.fragment(run_every=POLL_S if live else None)
    def view() -> None:
        status = reconcile.get_status(run.path) if live else run.status  # a live run: read it again each time
        prog = progress.progress(run.path, status)
        if live and (prog.terminal or prog.state != run.state):
            st.rerun()  # the run moved on (queued -> running, or ended): redraw the header and the badge
        render_progress(run, prog, status)
        render_charts(run, metrics.metric_series(run.path), x_axis, smoothing, log_y, prog)

    view()


def render_progress(run: RunView, prog: progress.Progress, status: dict) -> None:
    """Why it stopped (first), where it stands, the last evaluation and the log tail."""
    if prog.state in ("failed", "cancelled") and prog.error:
        message = str(prog.error.get("message") or "the run stopped")
        (st.error if prog.state == "failed" else st.warning)(
            f"This run {prog.state}: {plain(message)}", icon=STATE_ICONS[prog.state])
        if prog.error.get("hint"):
            st.info(plain(prog.error["hint"]), icon=":material/lightbulb:")
    elif prog.state == "failed":
        st.error("This run failed. The log below says why.", icon=":material/error:")
    if prog.stalled and prog.active:
        st.warning(f"No sign of life from the job for {format_duration(prog.heartbeat_age_s)}: it may be stuck. "
                   "The log below may say why.", icon=":material/hourglass_disabled:")
    if prog.state == "queued":
        where = f" (position {prog.queue_position} in the queue)" if prog.queue_position else ""
        st.info(f"Waiting for its turn on the training device{where}.", icon=":material/schedule:")
    if prog.phase == "evaluating":
        st.caption("Training done; scoring the evaluation set and exporting the model…")
    total = prog.total_steps
    st.progress(prog.fraction or 0.0, text=f"step {prog.step:,} / {total:,}" if total else f"step {prog.step:,}")
    cols = st.columns(5)
    cols[0].metric("Step", f"{prog.step:,}" + (f" / {total:,}" if total else ""))
    cols[1].metric("Epoch", charts.fmt(prog.epoch, 2) + (f" / {prog.num_epochs:g}" if prog.num_epochs else ""))
    cols[2].metric("Elapsed", format_duration(prog.elapsed_s))
    cols[3].metric("ETA", format_duration(prog.eta_s) if prog.active else "–")
    cols[4].metric("Samples/s", charts.fmt(prog.samples_per_s, 1))
    final = metrics.final_metrics(run.path, status)
    baseline = metrics.read_baseline(run.path)
    if final:
        st.markdown("**Evaluation** (last)")
        keys = final_keys(run)
        mcols = st.columns(len(keys) + 1)
        for col, (key, name) in zip(mcols, keys):
            value = final.get(key)
            delta = None
            if key == "eval_accuracy" and baseline and value is not None:
                delta = f"{value - float(baseline['accuracy']):+.4f} vs TF-IDF"
            col.metric(name, charts.fmt(value), delta=delta)
        if baseline:
            mcols[-1].metric("TF-IDF baseline accuracy", charts.fmt(baseline.get("accuracy")))
    with st.expander("Log (last lines)", expanded=prog.state == "failed"):
        st.code(metrics.log_tail(run.path) or "(nothing logged yet)", language=None)


def render_charts(run: RunView, series: metrics.MetricSeries, x_axis: str, smoothing: float, log_y: bool,
                  prog: progress.Progress | None) -> None:
    if not (series.log or series.eval):
        st.info("No metrics logged yet: the first point appears after logging_steps optimizer steps.")
        return
    span = charts.x_range(prog, x_axis)
    left, right = st.columns(2)
    with left:
        charts.show(charts.loss_figure(series, x_axis, smoothing, log_y, span), "train_loss")
    with right:
        charts.show(charts.eval_figure(series, x_axis, metrics.read_baseline(run.path), span), "train_evalacc")
    for col, (event, metric, title, colour) in zip(st.columns(len(charts.SMALL_CHARTS)), charts.SMALL_CHARTS):
        with col:
            fig = charts.metric_figure(series, event, metric, title, colour, x_axis, log_y, span)
            if fig is None:
                st.caption(f"{title}: nothing logged yet.")
            else:
                charts.show(fig, f"train_{metric}")
    system = charts.system_figure(run.path)
    if system is not None:
        charts.show(system, "train_system")
    else:
        st.caption("System: no CPU or memory readings recorded for this run (system_metrics_every_s).")

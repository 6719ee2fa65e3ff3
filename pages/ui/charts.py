"""Interactive training charts (plotly): loss, evaluation scores, learning rate and gradient norm, runs
overlaid, a confusion matrix and a reliability diagram.

The ``*_figure`` functions only build figures from what :mod:`lib.readers` returns; :func:`show`
draws one. Run data that ends up inside a chart (run names, label names) goes through
:func:`svg_text`, because plotly reads a few HTML tags in its labels.
"""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go
import streamlit as st

from lib.readers import metrics, progress

MAX_POINTS = 4000          # points per line; longer series are thinned evenly (the last point is kept)
MAX_SAVE_MARKS = 60        # dotted "checkpoint saved" lines per chart
X_LABELS = {"step": "optimizer step", "epoch": "epoch", "time": "training time (min)"}
X_SHORT = {"step": "step", "epoch": "epoch", "time": "time"}
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880")
SMALL_CHARTS = (("eval", "eval_loss", "Eval loss", PALETTE[3]),
                ("log", "learning_rate", "Learning rate", PALETTE[4]),
                ("log", "grad_norm", "Gradient norm", PALETTE[5]))
_MARGIN = dict(l=10, r=10, t=40, b=10)


def svg_text(text: object) -> str:
    """Run data inside a plotly label, with the HTML characters escaped so it shows as typed."""
    return html.escape(str(text), quote=True)


def fmt(value: float | None, digits: int = 4) -> str:
    """A score with ``digits`` decimals, or a dash when there is none."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def thin(xs: list, ys: list, limit: int = MAX_POINTS) -> tuple[list, list]:
    """At most about ``limit`` evenly spaced points (and the last one), so long runs draw quickly."""
    if len(xs) <= limit:
        return xs, ys
    k = math.ceil(len(xs) / limit)
    return xs[::k] + xs[-1:], ys[::k] + ys[-1:]


def figure(title: str, x_axis: str, y_title: str, log_y: bool = False, height: int = 300) -> go.Figure:
    """An empty line chart with the lab's layout."""
    fig = go.Figure()
    fig.update_layout(title=title, height=height, margin=_MARGIN, hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title=X_LABELS[x_axis])
    fig.update_yaxes(title=y_title, type="log" if log_y else "linear")
    return fig


def x_range(prog: progress.Progress | None, x_axis: str) -> list[float] | None:
    """The whole run on the x axis (so charts line up and show how far training has come)."""
    if prog is None:
        return None
    if x_axis == "step" and prog.total_steps:
        return [0, prog.total_steps * 1.01]
    if x_axis == "epoch" and prog.num_epochs:
        return [0, prog.num_epochs * 1.01]
    return None


def mark_saves(fig: go.Figure, series: metrics.MetricSeries, x_axis: str, legend: bool = True) -> None:
    """A dotted vertical line where each checkpoint was saved."""
    saves = series.save
    if len(saves) > MAX_SAVE_MARKS:
        saves = saves[:: math.ceil(len(saves) / MAX_SAVE_MARKS)]
    for x in metrics.x_values(saves, x_axis):
        if not math.isnan(x):
            fig.add_vline(x=x, line=dict(color="rgba(120,120,120,0.45)", dash="dot", width=1))
    if saves and legend:  # one legend entry for the markers
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="checkpoint saved",
                                 line=dict(color="rgba(120,120,120,0.6)", dash="dot")))


def show(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


# ---------------------------------------------------------------------------------------------------
# One run's training
# ---------------------------------------------------------------------------------------------------
def loss_figure(series: metrics.MetricSeries, x_axis: str, smoothing: float, log_y: bool,
                span: list[float] | None) -> go.Figure:
    """Training loss, raw and smoothed (TensorBoard-style EMA)."""
    xs, loss = series.xy("log", "loss", x_axis)
    fig = figure("Training loss", x_axis, "loss", log_y)
    rx, ry = thin(xs, loss)
    fig.add_trace(go.Scatter(x=rx, y=ry, mode="lines", name="raw", line=dict(width=1, color="rgba(99,110,250,0.35)")))
    sx, sy = thin(xs, metrics.ema(loss, smoothing))
    fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name=f"smoothed ({smoothing:.2f})",
                             line=dict(width=2, color=PALETTE[0])))
    mark_saves(fig, series, x_axis)
    fig.update_xaxes(range=span)
    return fig


def eval_figure(series: metrics.MetricSeries, x_axis: str, baseline: dict | None,
                span: list[float] | None) -> go.Figure:
    """Evaluation accuracy and F1 over training, with the TF-IDF baseline as a dashed line."""
    fig = figure("Eval accuracy and F1" + ("" if series.eval else " (no evaluation yet)"), x_axis, "score", False)
    fig.update_yaxes(range=[0, 1.02])
    for i, (metric, name) in enumerate((("eval_accuracy", "accuracy"), ("eval_f1", "F1"))):
        xs, vals = series.xy("eval", metric, x_axis)
        if vals:
            x, y = thin(xs, vals)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, line=dict(color=PALETTE[i + 1])))
    if baseline:
        fig.add_hline(y=float(baseline["accuracy"]), line=dict(color="gray", dash="dash"),
                      annotation_text=f"TF-IDF baseline accuracy {float(baseline['accuracy']):.3f}",
                      annotation_position="bottom right")
    mark_saves(fig, series, x_axis)
    fig.update_xaxes(range=span)
    return fig


def metric_figure(series: metrics.MetricSeries, event: str, metric: str, title: str, colour: str, x_axis: str,
                  log_y: bool, span: list[float] | None) -> go.Figure | None:
    """A small chart of one logged metric, or None while nothing was logged."""
    xs, vals = series.xy(event, metric, x_axis)
    if not vals:
        return None
    fig = figure(title, x_axis, metric, log_y, height=260)
    x, y = thin(xs, vals)
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if event == "eval" else "lines", name=metric,
                             line=dict(color=colour)))
    mark_saves(fig, series, x_axis, legend=False)
    fig.update_layout(showlegend=False)
    fig.update_xaxes(range=span)
    return fig


# ---------------------------------------------------------------------------------------------------
# Several runs
# ---------------------------------------------------------------------------------------------------
def overlay_figure(named_series: list[tuple[str, metrics.MetricSeries]], metric: str, x_axis: str) -> go.Figure:
    """One metric of several runs on one chart (the training loss smoothed)."""
    event = "eval" if metric.startswith("eval_") else "log"
    title = "training loss (smoothed)" if metric == "loss" else metric.replace("_", " ")
    fig = figure(title, x_axis, metric, False, height=380)
    fig.update_layout(showlegend=True)
    for i, (name, series) in enumerate(named_series):
        xs, vals = series.xy(event, metric, x_axis)
        if metric == "loss":
            vals = metrics.ema(vals, 0.6)
        x, y = thin(xs, vals)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines" if event == "log" else "lines+markers", name=svg_text(name),
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    return fig


# ---------------------------------------------------------------------------------------------------
# Error analysis
# ---------------------------------------------------------------------------------------------------
def confusion_figure(counts: list[list[int]], names: list[str]) -> go.Figure:
    """counts[true][pred] as a heatmap, true labels top to bottom."""
    fig = go.Figure(go.Heatmap(z=counts, x=[svg_text(f"pred {n}") for n in names],
                               y=[svg_text(f"true {n}") for n in names],
                               text=counts, texttemplate="%{text}", colorscale="Blues", showscale=False))
    fig.update_layout(title="Confusion matrix", height=max(320, 120 + 28 * len(names)), margin=_MARGIN)
    fig.update_yaxes(autorange="reversed")
    return fig


def reliability_figure(bins: list[dict], ece: float | None, n_labels: int,
                       title: str = "Reliability diagram") -> go.Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    filled = [b for b in bins if b["count"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[(b["lo"] + b["hi"]) / 2 for b in filled], y=[b["accuracy"] for b in filled],
                         width=[(b["hi"] - b["lo"]) * 0.9 for b in filled], name="accuracy",
                         customdata=[b["count"] for b in filled],
                         hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} reviews)"))
    lo = 1.0 / max(1, n_labels)
    fig.add_trace(go.Scatter(x=[lo, 1], y=[lo, 1], mode="lines", name="perfect calibration",
                             line=dict(dash="dash", color="gray")))
    fig.update_layout(title=f"{title} (ECE {fmt(ece, 3)})", height=320, margin=_MARGIN)
    fig.update_xaxes(title="confidence", range=[lo, 1])
    fig.update_yaxes(title="accuracy", range=[0, 1])
    return fig


# ---------------------------------------------------------------------------------------------------
# System use and sweeps
# ---------------------------------------------------------------------------------------------------
def system_figure(run_dir) -> go.Figure | None:
    """The job's memory (RSS, MB) and CPU use (%, 100 = one core) over training time, with each GPU's
    utilisation and memory when the run recorded them; None when it recorded no system readings."""
    series = metrics.system_series(run_dir)
    if not series:
        return None
    fig = figure("System", "time", "memory (MB)")
    for i, (key, (xs, ys)) in enumerate(series.items()):
        xs, ys = thin(xs, ys)
        on_right = key == "cpu_percent" or key.endswith("_util")
        name = {"rss_mb": "memory (RSS, MB)", "cpu_percent": "CPU (%)"}.get(key, key.replace("_", " "))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, yaxis="y2" if on_right else "y",
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(yaxis2=dict(title="CPU / GPU use (%)", overlaying="y", side="right", rangemode="tozero"))
    return fig


def sweep_figure(table: dict) -> go.Figure | None:
    """Parallel coordinates of a sweep: one line per run from its grid values to its metric (the best run
    darkest). None when no run has the metric yet."""
    rows = [r for r in table["rows"] if isinstance(r.get(table["metric"]), (int, float))]
    if not rows:
        return None
    dims = []
    for name in table["fields"]:
        values = [r.get(name) for r in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            dims.append(dict(label=svg_text(name), values=[float(v) for v in values]))
        else:
            levels = sorted({str(v) for v in values})
            dims.append(dict(label=svg_text(name), values=[levels.index(str(v)) for v in values],
                             tickvals=list(range(len(levels))), ticktext=[svg_text(x) for x in levels]))
    scores = [float(r[table["metric"]]) for r in rows]
    dims.append(dict(label=svg_text(table["metric"]), values=scores))
    fig = go.Figure(go.Parcoords(line=dict(color=scores, colorscale="Viridis", showscale=True), dimensions=dims))
    fig.update_layout(title="Settings → " + svg_text(table["metric"]), height=340, margin=dict(l=60, r=40, t=60, b=20))
    return fig

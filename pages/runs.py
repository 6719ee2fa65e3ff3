"""Runs: follow training live, compare runs, look at checkpoints, try a model, see where it goes wrong.

Everything shown here is read from the runs directory (``lib.logs``, ``lib.inference``); this page
only lays it out.
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lib.errors import LabError
from lib.readers import checkpoints, compare, metrics, predictions, progress
from lib.registry import reconcile
from lib.serving import batch, examples, explain, predictor
from lib.store import rundir
from lib.store.rundir import STATES
from pages.common import current_user, plain, runs_dir, show_lab_error

POLL_S = 2.0
BATCH_MAX_ROWS = 2000
MAX_POINTS = 4000
STATE_COLORS = {"queued": "blue", "running": "orange", "finished": "green", "failed": "red", "cancelled": "gray"}
STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:", "finished": ":material/check:",
               "failed": ":material/error:", "cancelled": ":material/block:"}
X_LABELS = {"step": "optimizer step", "epoch": "epoch", "time": "training time (min)"}
X_SHORT = {"step": "step", "epoch": "epoch", "time": "time"}
FINAL_KEYS = (("eval_accuracy", "Accuracy"), ("eval_f1", "F1"), ("eval_loss", "Eval loss"),
              ("eval_roc_auc", "ROC-AUC"))
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880")


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
def svg_text(text: object) -> str:
    """Run data inside a plotly label: plotly understands a few HTML tags there, so escape them."""
    return html.escape(str(text), quote=True)


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load_predictor(location: str, mtime: int, max_length: int | None, precision: str) -> predictor.Predictor:
    """One loaded model per (folder, weights mtime, max length, precision), shared by every session."""
    predictor = predictor.Predictor(location, max_length=max_length, precision=precision)
    print(f"[lab] loaded model for predictions: {predictor.description}", flush=True)  # the server log shows each load
    return predictor


def thin(xs: list, ys: list, limit: int = MAX_POINTS) -> tuple[list, list]:
    if len(xs) <= limit:
        return xs, ys
    k = math.ceil(len(xs) / limit)
    return xs[::k] + xs[-1:], ys[::k] + ys[-1:]


def figure(title: str, x_axis: str, y_title: str, log_y: bool = False, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10), hovermode="x unified",
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
    saves = series.save
    if len(saves) > 60:
        saves = saves[:: math.ceil(len(saves) / 60)]
    for x, row in zip(metrics.x_values(saves, x_axis), saves):
        if not math.isnan(x):
            fig.add_vline(x=x, line=dict(color="rgba(120,120,120,0.45)", dash="dot", width=1))
    if saves and legend:  # one legend entry for the markers
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="checkpoint saved",
                                 line=dict(color="rgba(120,120,120,0.6)", dash="dot")))


def show(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


# ---------------------------------------------------------------------------------------------------
# Run picker
# ---------------------------------------------------------------------------------------------------
st.title("Runs")
root = runs_dir()
all_runs = reconcile.list_runs(root)
if not all_runs:
    st.info("No runs yet. Launch one on the Train page: it shows up here while it trains.")
    st.stop()

c_state, c_owner = st.columns(2)
state_filter = c_state.multiselect("State", list(STATES), key="runs_state_filter", placeholder="all states")
owners = sorted({r.owner for r in all_runs if r.owner})
me = current_user()
owner_options = ["everyone"] + (["me"] if me else []) + [o for o in owners if o != me]
owner_filter = c_owner.selectbox("Owner", owner_options, key="runs_owner_filter")
runs = [r for r in all_runs
        if (not state_filter or r.state in state_filter)
        and (owner_filter == "everyone" or r.owner == (me if owner_filter == "me" else owner_filter))]
if not runs:
    st.info("No run matches these filters.")
    st.stop()
by_id = {r.run_id: r for r in runs}
all_by_id = {r.run_id: r for r in all_runs}
if st.session_state.get("runs_pick") not in by_id:
    st.session_state.pop("runs_pick", None)
    wanted = st.query_params.get("run")
    if wanted in by_id:
        st.session_state["runs_pick"] = wanted
run_id = st.selectbox("Run (newest first)", list(by_id), key="runs_pick",
                      format_func=lambda i: f"{by_id[i].label} · {i}")
if st.query_params.get("run") != run_id:
    st.query_params["run"] = run_id
run = by_id[run_id]
config = rundir.read_config(run.path)
label_names = [str(x) for x in (config.get("label_names") or ["NEGATIVE", "POSITIVE"])]

head_l, head_r = st.columns([4, 1], vertical_alignment="center")
head_l.subheader(plain(run.label))
head_l.caption(plain(f"{run.run_id} · model {run.model or '?'} · data {run.dataset or '?'}"
                  + (f" · owner {run.owner}" if run.owner else "")))
with head_r:
    st.badge(run.state, icon=STATE_ICONS.get(run.state), color=STATE_COLORS.get(run.state, "gray"))

tab_train, tab_compare, tab_ckpt, tab_try, tab_errors = st.tabs(
    ["Training", "Compare", "Checkpoints", "Try it", "Error analysis"], key="runs_tab", on_change="rerun")


def is_open(tab) -> bool:
    return tab.open is not False  # None when tabs do not track state: render everything


# ---------------------------------------------------------------------------------------------------
# Training: progress and charts (live while the run is queued or running)
# ---------------------------------------------------------------------------------------------------
def render_progress(prog: progress.Progress, status: dict) -> None:
    if prog.state in ("failed", "cancelled") and prog.error:
        message = str(prog.error.get("message") or "the run stopped")
        (st.error if prog.state == "failed" else st.warning)(
            f"This run {prog.state}: {plain(message)}", icon=STATE_ICONS[prog.state])
        if prog.error.get("hint"):
            st.info(plain(prog.error["hint"]), icon=":material/lightbulb:")
    elif prog.state == "failed":
        st.error("This run failed. The log below says why.", icon=":material/error:")
    if prog.stalled and prog.active:
        age = progress.format_duration(prog.heartbeat_age_s)
        st.warning(f"No sign of life from the job for {age}: it may be stuck. The log below may say why.",
                   icon=":material/hourglass_disabled:")
    if prog.state == "queued":
        where = f" (position {prog.queue_position} in the queue)" if prog.queue_position else ""
        st.info(f"Waiting for its turn on the training device{where}.", icon=":material/schedule:")
    if prog.phase == "evaluating":
        st.caption("Training done; scoring the evaluation set and exporting the model…")
    total = prog.total_steps
    text = f"step {prog.step:,} / {total:,}" if total else f"step {prog.step:,}"
    st.progress(prog.fraction or 0.0, text=text)
    cols = st.columns(5)
    epoch_txt = fmt(prog.epoch, 2) + (f" / {prog.num_epochs:g}" if prog.num_epochs else "")
    cols[0].metric("Step", f"{prog.step:,}" + (f" / {total:,}" if total else ""))
    cols[1].metric("Epoch", epoch_txt)
    cols[2].metric("Elapsed", progress.format_duration(prog.elapsed_s))
    cols[3].metric("ETA", progress.format_duration(prog.eta_s) if prog.active else "–")
    cols[4].metric("Samples/s", fmt(prog.samples_per_s, 1))
    final = metrics.final_metrics(run.path, status)
    baseline = metrics.read_baseline(run.path)
    if final:
        st.markdown("**Evaluation** (last)")
        mcols = st.columns(len(FINAL_KEYS) + 1)
        for col, (key, name) in zip(mcols, FINAL_KEYS):
            value = final.get(key)
            delta = None
            if key == "eval_accuracy" and baseline and value is not None:
                delta = f"{value - baseline['accuracy']:+.4f} vs TF-IDF"
            col.metric(name, fmt(value), delta=delta)
        if baseline:
            mcols[-1].metric("TF-IDF baseline accuracy", fmt(baseline.get("accuracy")))
    with st.expander("Log (last lines)", expanded=prog.state == "failed"):
        tail = metrics.log_tail(run.path)
        st.code(tail or "(nothing logged yet)", language=None)


def render_charts(series: metrics.MetricSeries, x_axis: str, smoothing: float, log_y: bool, key: str,
                  prog: progress.Progress | None = None) -> None:
    if not (series.log or series.eval):
        st.info("No metrics logged yet: the first point appears after logging_steps optimizer steps.")
        return
    baseline = metrics.read_baseline(run.path)
    span = x_range(prog, x_axis)
    left, right = st.columns(2)
    with left:
        xs, loss = series.xy("log", "loss", x_axis)
        fig = figure("Training loss", x_axis, "loss", log_y)
        rx, ry = thin(xs, loss)
        fig.add_trace(go.Scatter(x=rx, y=ry, mode="lines", name="raw", line=dict(width=1, color="rgba(99,110,250,0.35)")))
        sx, sy = thin(xs, metrics.ema(loss, smoothing))
        fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name=f"smoothed ({smoothing:.2f})",
                                 line=dict(width=2, color=PALETTE[0])))
        mark_saves(fig, series, x_axis)
        fig.update_xaxes(range=span)
        show(fig, f"{key}_loss")
    with right:
        fig = figure("Eval accuracy and F1" + ("" if series.eval else " (no evaluation yet)"), x_axis, "score", False)
        fig.update_yaxes(range=[0, 1.02])
        for i, (metric, name) in enumerate((("eval_accuracy", "accuracy"), ("eval_f1", "F1"))):
            xs, vals = series.xy("eval", metric, x_axis)
            if vals:
                fig.add_trace(go.Scatter(x=xs, y=vals, mode="lines+markers", name=name,
                                         line=dict(color=PALETTE[i + 1])))
        if baseline:
            fig.add_hline(y=float(baseline["accuracy"]), line=dict(color="gray", dash="dash"),
                          annotation_text=f"TF-IDF baseline accuracy {baseline['accuracy']:.3f}",
                          annotation_position="bottom right")
        mark_saves(fig, series, x_axis)
        fig.update_xaxes(range=span)
        show(fig, f"{key}_evalacc")
    left, mid, right = st.columns(3)
    for col, (event, metric, title, colour) in zip(
            (left, mid, right), (("eval", "eval_loss", "Eval loss", PALETTE[3]),
                                 ("log", "learning_rate", "Learning rate", PALETTE[4]),
                                 ("log", "grad_norm", "Gradient norm", PALETTE[5]))):
        with col:
            xs, vals = series.xy(event, metric, x_axis)
            if not vals:
                st.caption(f"{title}: nothing logged yet.")
                continue
            fig = figure(title, x_axis, metric, log_y, height=260)
            x, y = thin(xs, vals)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if event == "eval" else "lines", name=metric,
                                     line=dict(color=colour)))
            mark_saves(fig, series, x_axis, legend=False)
            fig.update_layout(showlegend=False)
            fig.update_xaxes(range=span)
            show(fig, f"{key}_{metric}")


def training_view(x_axis: str, smoothing: float, log_y: bool, live: bool) -> None:
    @st.fragment(run_every=POLL_S if live else None)
    def view() -> None:
        status = reconcile.get_status(run.path)
        prog = progress.progress(run.path, status)
        if live and (prog.terminal or prog.state != run.state):
            st.rerun()  # the run moved on (queued -> running, or ended): redraw the header and the badge
        render_progress(prog, status)
        render_charts(metrics.metric_series(run.path), x_axis, smoothing, log_y, key="train", prog=prog)
    view()


if is_open(tab_train):
    with tab_train:
        c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
        x_axis = c1.segmented_control("X axis", list(X_LABELS), format_func=lambda k: X_SHORT[k], default="step",
                                      required=True, key="runs_x_axis") or "step"
        smoothing = c2.slider("Loss smoothing (EMA)", 0.0, 0.99, 0.6, 0.01, key="runs_smoothing",
                              help="0 = raw values; closer to 1 = smoother (TensorBoard-style exponential "
                                   "moving average).")
        log_y = c3.toggle("Log scale", key="runs_log_y")
        training_view(x_axis, smoothing, log_y, live=run.active)


# ---------------------------------------------------------------------------------------------------
# Compare
# ---------------------------------------------------------------------------------------------------
def table_value(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def teacher_student_view(student_dir: Path) -> None:
    """A distilled run next to its teacher: quality on the same eval split, size, and measured speed."""
    try:
        teacher_dir = compare.teacher_of(student_dir)
        report = compare.quality_and_size(teacher_dir, student_dir)
    except LabError as exc:
        st.info(plain(f"Teacher and student cannot be compared yet: {exc}"))
        return
    st.markdown(f"**Teacher → student** · teacher run {plain(teacher_dir.name)}")
    rows = []
    for name in ("teacher", "student"):
        r = report[name]
        rows.append({"model": name, "layers": r.get("layers"), "parameters": r.get("parameters"),
                     "size (MB)": r.get("size_mb"), "accuracy": r.get("accuracy"), "F1": r.get("f1")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ts_table")
    c1, c2 = st.columns(2)
    if report.get("agreement") is not None:
        c1.metric("Agreement with the teacher", f"{report['agreement']:.1%}")
    if report.get("accuracy_kept") is not None:
        c2.metric("Accuracy kept", f"{report['accuracy_kept']:.1%}")
    if not report["same_eval_split"]:
        st.warning("The two runs were evaluated on different reviews, so agreement is not shown.")
    key = f"ts_speed_{student_dir.name}"
    if st.button("Measure speed side by side", key="ts_measure", icon=":material/speed:",
                 help="Loads both models and times single reviews and a batch, alternating between them."):
        texts = [p["text"] for p in predictions.predictions_frame(student_dir).to_dict("records")][:64] or ["A fine film."]
        with st.spinner("Timing teacher and student…"):
            st.session_state[key] = compare.speed_side_by_side(teacher_dir, student_dir, texts)
    speed = st.session_state.get(key)
    if speed:
        st.dataframe(pd.DataFrame([{"model": n, **speed[n]} for n in ("teacher", "student")]), hide_index=True,
                     key="ts_speed_table")
        if speed.get("throughput_ratio"):
            st.caption(f"The student classifies {speed['throughput_ratio']:.2f}× as many reviews per second in batches, "
                       f"with {speed.get('latency_ratio', 0):.2f}× lower single-review latency.")
    st.divider()


if is_open(tab_compare):
    with tab_compare:
        if config.get("task") == "distill" and run.state == "finished":
            teacher_student_view(Path(run.path))
        picked = st.multiselect("Runs to overlay", list(all_by_id), default=[run_id], max_selections=8,
                                format_func=lambda i: f"{all_by_id[i].label} · {i}", key="cmp_runs")
        if not picked:
            st.info("Pick one or more runs to compare.")
        else:
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            cmp_metric = c1.segmented_control(
                "Metric", ["loss", "eval_accuracy", "eval_f1", "eval_loss", "learning_rate"], default="loss",
                required=True, key="cmp_metric") or "loss"
            cmp_x = c2.selectbox("X axis", list(X_LABELS), format_func=lambda k: X_SHORT[k], key="cmp_x")
            event = "eval" if cmp_metric.startswith("eval_") else "log"
            title = "training loss (smoothed)" if cmp_metric == "loss" else cmp_metric.replace("_", " ")
            fig = figure(title, cmp_x, cmp_metric, False, height=380)
            fig.update_layout(showlegend=True)
            for i, rid in enumerate(picked):
                series = metrics.metric_series(all_by_id[rid].path)
                xs, vals = series.xy(event, cmp_metric, cmp_x)
                if cmp_metric == "loss":
                    vals = metrics.ema(vals, 0.6)
                x, y = thin(xs, vals)
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines" if event == "log" else "lines+markers",
                                         name=svg_text(f"{all_by_id[rid].label[:30]} ({rid[-6:]})"),
                                         line=dict(color=PALETTE[i % len(PALETTE)])))
            show(fig, "cmp_fig")

            st.markdown("**Final metrics**")
            rows = []
            for rid in picked:
                r = all_by_id[rid]
                final = metrics.final_metrics(r.path)
                base = metrics.read_baseline(r.path) or {}
                prog = progress.progress(r.path)
                rows.append({"run": rid, "label": r.label, "state": r.state,
                             **{name: final.get(k) for k, name in FINAL_KEYS},
                             "TF-IDF accuracy": base.get("accuracy"), "steps": prog.step,
                             "training time": progress.format_duration(prog.elapsed_s)})
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="cmp_final")

            st.markdown("**Configs** (differences highlighted)")
            configs = {rid: rundir.read_config(all_by_id[rid].path) for rid in picked}
            cfg_rows, differing = compare.compare_configs(configs)
            only_diff = st.toggle("Only differences", value=len(picked) > 1, key="cmp_only_diff")
            shown = [r for r in cfg_rows if r["field"] in differing] if only_diff else cfg_rows
            frame = pd.DataFrame([{k: table_value(v) for k, v in r.items()} for r in shown])
            if frame.empty:
                st.caption("The configs are identical.")
            else:
                styled = frame.style.apply(
                    lambda row: ["background-color: rgba(255, 193, 7, 0.25)" if row["field"] in differing else ""
                                 for _ in row], axis=1)
                st.dataframe(styled, hide_index=True, key="cmp_configs")


# ---------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------
if is_open(tab_ckpt):
    with tab_ckpt:
        ckpts = checkpoints.list_checkpoints(run.path)
        if not ckpts:
            st.info("No checkpoints yet (save_strategy decides when they are written).")
        else:
            metric_key, greater = checkpoints.best_metric_key(config)
            limit = config.get("save_total_limit")
            st.caption(plain(f"Best by {metric_key} ({'higher' if greater else 'lower'} is better). save_total_limit = "
                          f"{limit if limit else 'none (all kept)'}"
                          + (", load_best_model_at_end keeps the best." if config.get("load_best_model_at_end")
                             else ".")))
            table = pd.DataFrame([{
                "checkpoint": c.name, "step": c.step, "epoch": c.epoch,
                "accuracy": c.metrics.get("eval_accuracy"), "F1": c.metrics.get("eval_f1"),
                "eval loss": c.metrics.get("eval_loss"),
                "size (MB)": round(c.size_bytes / 1e6, 1) if c.on_disk else None,
                "on disk": c.on_disk, "kept": c.kept, "best": "★" if c.best else "", "note": c.note,
            } for c in ckpts])
            st.dataframe(table, hide_index=True, key="ckpt_table")


# ---------------------------------------------------------------------------------------------------
# Try it: quick sentiment tryout
# ---------------------------------------------------------------------------------------------------
def set_text(text: str) -> None:
    st.session_state["try_text"] = text
    st.session_state.pop("try_result", None)


def get_predictor(choice: predictor.ModelChoice) -> predictor.Predictor:
    location, mtime = predictor.model_signature(choice.path)
    max_length = config.get("max_length") if choice.kind != "base" else None
    precision = "int8" if st.session_state.get("try_int8", predictor.default_precision() == "int8") else "fp32"
    return load_predictor(location, mtime, int(max_length) if isinstance(max_length, int) else None, precision)


def render_result(res: dict) -> None:
    result, expl, text, names = res["result"], res.get("explanation"), res["text"], res["labels"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Prediction", result["label"])
    c2.metric("Confidence", f"{result['confidence']:.1%}")
    c3.metric("Latency", f"{result['latency_ms']:.0f} ms", help=predictor.PRECISIONS[res.get("precision", "fp32")])
    if result.get("note"):
        st.info(result["note"], icon=":material/content_cut:")
    probs = pd.DataFrame({"label": list(result["scores"]), "probability": list(result["scores"].values())})
    st.dataframe(probs, hide_index=True, key="try_probs", column_config={
        "probability": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0, format="%.3f")})
    if expl:
        st.markdown("**Why** (occlusion: hide each word and see how much the prediction drops; green pushes towards "
                    f"{plain(names[-1])}, red towards {plain(names[0])})")
        st.html(explain.highlight_html(text, expl, names))
        if expl.get("note"):
            st.caption(plain(expl["note"]))
        top = sorted(expl["spans"], key=lambda s: -abs(s["score"]))[:15]
        if top:
            st.dataframe(pd.DataFrame([{"word": s["text"], "weight": round(s["score"], 5)} for s in top]),
                         hide_index=True, key="try_top_words")


if is_open(tab_try):
    with tab_try:
        choices = predictor.model_choices(run.path)
        prev = st.session_state.get("try_model")
        if isinstance(prev, predictor.ModelChoice) and prev not in choices and prev.kind != "base" \
                and prev.path.startswith(str(run.path) + os.sep):
            choices.insert(0, prev)  # deleted since it was picked: keep it, so the person sees what happened
        choice = st.selectbox("Model", choices, format_func=lambda c: c.label, key="try_model",
                              help="The run's exported model, one of its checkpoints, or the base model before "
                                   "fine-tuning (its classifier head is untrained: expect coin flips).")
        st.toggle("Fast CPU mode (int8)", value=predictor.default_precision() == "int8", key="try_int8",
                  help="On: the encoder's weights run as 8-bit integers (dynamic quantization): about twice as fast "
                       "on a CPU and the same answer for ~99% of reviews. Off: full precision, exactly the numbers "
                       "the training job evaluated with. Applies to the tryout and the batch mode.")
        st.caption("Examples:")
        ex_cols = st.columns(len(examples.EXAMPLES))
        for i, (name, example) in enumerate(examples.EXAMPLES.items()):
            ex_cols[i].button(name, key=f"try_example_{i}", on_click=set_text, args=(example,))
        with st.form("try_form", border=False):
            text = st.text_area("Review", key="try_text", height=140, placeholder="Type or paste a movie review…")
            explain = st.checkbox("Explain the decision word by word", value=True, key="try_explain")
            submitted = st.form_submit_button("Classify", type="primary")
        if submitted:
            try:
                predictor.check_text(text)
                predictor = get_predictor(choice)
                result = predictor.predict_one(text)
                expl = None
                if explain:
                    with st.spinner("Explaining…"):
                        expl = predictor.explain(text)
                st.session_state["try_result"] = {"result": result, "explanation": expl, "text": text,
                                                  "labels": predictor.label_names, "precision": predictor.precision}
            except LabError as exc:
                st.session_state.pop("try_result", None)
                show_lab_error(exc)
        if st.session_state.get("try_result"):
            render_result(st.session_state["try_result"])

        st.divider()
        st.markdown("**Batch mode**: upload a table of reviews, download the predictions as CSV")
        upload = st.file_uploader("Reviews (CSV, TSV, JSON Lines or Parquet)", type=["csv", "tsv", "jsonl", "parquet"],
                                  key="try_upload")
        if upload is not None:
            cached = st.session_state.get("try_table")
            if not cached or cached[0] != upload.file_id:
                try:
                    table = batch.upload_columns(root, upload.getvalue(), upload.name, max_rows=BATCH_MAX_ROWS + 1)
                    st.session_state["try_table"] = (upload.file_id, table)
                    st.session_state.pop("try_batch", None)
                except LabError as exc:
                    st.session_state.pop("try_table", None)
                    show_lab_error(exc)
            if st.session_state.get("try_table"):
                table = st.session_state["try_table"][1]
                if len(table) > BATCH_MAX_ROWS:
                    st.warning(f"Only the first {BATCH_MAX_ROWS:,} rows are predicted here; use `python -m "
                               "lib.predict --csv` for bigger files.")
                    table = table.head(BATCH_MAX_ROWS)
                columns = [str(c) for c in table.columns]
                guess = next((c for c in ("text", "review", "sentence", "content") if c in columns), columns[0])
                column = st.selectbox("Text column", columns, index=columns.index(guess), key="try_column")
                if st.button("Predict all rows", key="try_batch_go"):
                    try:
                        predictor = get_predictor(choice)
                        with st.spinner(f"Predicting {len(table):,} reviews…"):
                            out = batch.predict_frame(predictor, table, column)
                        st.session_state["try_batch"] = out
                    except LabError as exc:
                        show_lab_error(exc)
                out = st.session_state.get("try_batch")
                if out is not None:
                    st.dataframe(out.head(200), hide_index=True, key="try_batch_preview")
                    st.download_button("Download predictions (CSV)", batch.safe_csv_bytes(out),
                                       file_name="predictions.csv", mime="text/csv", key="try_download",
                                       on_click="ignore")


# ---------------------------------------------------------------------------------------------------
# Error analysis
# ---------------------------------------------------------------------------------------------------
def name_of(i: int) -> str:
    return label_names[i] if 0 <= i < len(label_names) else str(i)


if is_open(tab_errors):
    with tab_errors:
        df = predictions.predictions_frame(run.path)
        if df.empty:
            st.info("No evaluation predictions yet: they are written when the run finishes training.")
        else:
            wrong = int((~df["correct"]).sum())
            st.caption(f"{len(df):,} evaluation reviews, {wrong:,} wrong ({wrong / len(df):.1%}).")
            left, right = st.columns(2)
            with left:
                counts = predictions.confusion_matrix(df, len(label_names))
                fig = go.Figure(go.Heatmap(z=counts, x=[svg_text(f"pred {name_of(i)}") for i in range(len(counts))],
                                           y=[svg_text(f"true {name_of(i)}") for i in range(len(counts))],
                                           text=counts, texttemplate="%{text}", colorscale="Blues", showscale=False))
                fig.update_layout(title="Confusion matrix", height=320, margin=dict(l=10, r=10, t=40, b=10))
                fig.update_yaxes(autorange="reversed")
                show(fig, "err_confusion")
            with right:
                bins, ece = predictions.reliability(df, n_bins=10, n_labels=len(label_names))
                filled = [b for b in bins if b["count"]]
                fig = go.Figure()
                fig.add_trace(go.Bar(x=[(b["lo"] + b["hi"]) / 2 for b in filled], y=[b["accuracy"] for b in filled],
                                     width=[(b["hi"] - b["lo"]) * 0.9 for b in filled], name="accuracy",
                                     customdata=[b["count"] for b in filled],
                                     hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} reviews)"))
                lo = 1.0 / len(label_names)
                fig.add_trace(go.Scatter(x=[lo, 1], y=[lo, 1], mode="lines", name="perfect calibration",
                                         line=dict(dash="dash", color="gray")))
                fig.update_layout(title=f"Reliability diagram (ECE {fmt(ece, 3)})", height=320,
                                  margin=dict(l=10, r=10, t=40, b=10))
                fig.update_xaxes(title="confidence", range=[lo, 1])
                fig.update_yaxes(title="accuracy", range=[0, 1])
                show(fig, "err_reliability")
            st.metric("Expected calibration error", fmt(ece, 3),
                      help="Average gap between confidence and accuracy, weighted by how many reviews fall in each "
                           "confidence bin. 0 = perfectly calibrated.")

            def view(frame: pd.DataFrame) -> pd.DataFrame:
                return pd.DataFrame({"#": frame["index"], "review": frame["text"],
                                     "true": [name_of(i) for i in frame["label"]],
                                     "predicted": [name_of(i) for i in frame["pred"]],
                                     "confidence": frame["confidence"].round(4), "words": frame["words"]})

            st.markdown("**Most confidently wrong**")
            worst = predictions.confidently_wrong(df, 10)
            if worst.empty:
                st.success("No wrong predictions on the evaluation set.")
            else:
                st.dataframe(view(worst), hide_index=True, key="err_worst")

            st.markdown("**Browse predictions**")
            f1, f2, f3, f4 = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
            any_label = ["any"] + label_names
            t_sel = f1.selectbox("True label", any_label, key="err_true")
            p_sel = f2.selectbox("Predicted label", any_label, key="err_pred")
            lo_w, hi_w = int(df["words"].min()), int(df["words"].max())
            words = f3.slider("Length (words)", lo_w, max(hi_w, lo_w + 1), (lo_w, max(hi_w, lo_w + 1)),
                              key="err_words")
            only_wrong = f4.toggle("Only wrong", key="err_only_wrong")
            picked_df = predictions.filter_predictions(
                df, true_label=None if t_sel == "any" else label_names.index(t_sel),
                pred_label=None if p_sel == "any" else label_names.index(p_sel),
                min_words=words[0], max_words=words[1], only_wrong=only_wrong)
            st.caption(f"{len(picked_df):,} reviews match.")
            st.dataframe(view(picked_df.head(500)), hide_index=True, key="err_browse")

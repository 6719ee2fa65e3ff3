"""Error analysis tab: where the model goes wrong on the evaluation set (an N x N confusion matrix whose
cells list their reviews, scores per class, calibration of the top label before and after temperature
scaling, its most confident mistakes overall and per class, and every prediction to browse)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.readers import predictions
from lib.registry.reconcile import RunView
from pages.ui import charts
from pages.ui.runs_tabs import TabContext, label_names
from pages.ui.text import plain

ANY = -1            # "any label" in the filters
BROWSE_ROWS = 500   # rows shown in the browse table


def render(run: RunView, ctx: TabContext) -> None:
    df = predictions.predictions_frame(run.path)
    if df.empty:
        st.info("No evaluation predictions yet: they are written when the run finishes training.")
        return
    names = label_names(run)

    def name_of(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    wrong = int((~df["correct"]).sum())
    st.caption(f"{len(df):,} evaluation reviews, {wrong:,} wrong ({wrong / len(df):.1%}).")
    counts = predictions.confusion_matrix(df, len(names))
    confusion_chart(counts, [name_of(i) for i in range(len(counts))])
    render_cell(df, counts, name_of)
    render_calibration(run, df, len(names))
    if len(names) > 2:
        st.markdown("**Per class**")
        st.dataframe(pd.DataFrame([{"class": name_of(p["id"]), "reviews": p["support"], "predicted": p["predicted"],
                                    "precision": p["precision"], "recall": p["recall"], "F1": p["f1"]}
                                   for p in predictions.per_class(df, len(names))]).round(4),
                     hide_index=True, key="err_per_class")

    def table(frame: pd.DataFrame) -> pd.DataFrame:
        return review_table(frame, name_of)

    st.markdown("**Most confidently wrong**")
    worst = predictions.confidently_wrong(df, 10)
    if worst.empty:
        st.success("No wrong predictions on the evaluation set.")
    else:
        st.dataframe(table(worst), hide_index=True, key="err_worst")
        by_class = predictions.confident_mistakes_by_class(df, len(names), k=5)
        with st.expander("Most confidently wrong, per true class"):
            for cls, rows in by_class.items():
                st.markdown(f"True class **{plain(name_of(cls))}**: "
                            + (f"{int(((df['label'] == cls) & ~df['correct']).sum()):,} wrong" if len(rows)
                               else "no mistakes"))
                if len(rows):
                    st.dataframe(table(rows), hide_index=True, key=f"err_worst_class_{cls}")

    st.markdown("**Browse predictions**")
    f1, f2, f3, f4 = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
    options = [ANY, *range(len(names))]
    label_of = {ANY: "any", **{i: name_of(i) for i in range(len(names))}}.get
    true_label = f1.selectbox("True label", options, format_func=label_of, key="err_true")
    pred_label = f2.selectbox("Predicted label", options, format_func=label_of, key="err_pred")
    lo_w, hi_w = int(df["words"].min()), int(df["words"].max())
    hi_w = max(hi_w, lo_w + 1)
    words = f3.slider("Length (words)", lo_w, hi_w, (lo_w, hi_w), key="err_words")
    only_wrong = f4.toggle("Only wrong", key="err_only_wrong")
    picked = predictions.filter_predictions(
        df, true_label=None if true_label == ANY else true_label, pred_label=None if pred_label == ANY else pred_label,
        min_words=words[0], max_words=words[1], only_wrong=only_wrong)
    st.caption(f"{len(picked):,} reviews match.")
    st.dataframe(table(picked.head(BROWSE_ROWS)), hide_index=True, key="err_browse")


ECE_HELP = ("Average gap between confidence (the probability of the predicted label) and accuracy, weighted by "
            "how many reviews fall in each confidence bin. 0 = perfectly calibrated.")


def review_table(frame: pd.DataFrame, name_of) -> pd.DataFrame:
    return pd.DataFrame({"#": frame["index"], "review": frame["text"],
                         "true": [name_of(i) for i in frame["label"]],
                         "predicted": [name_of(i) for i in frame["pred"]],
                         "confidence": frame["confidence"].round(4), "words": frame["words"]})


def confusion_chart(counts: list[list[int]], names: list[str]) -> None:
    """The confusion matrix; clicking a cell picks it in the cell menu below (which lists its reviews)."""
    fig = charts.confusion_figure(counts, names)
    event = st.plotly_chart(fig, key="err_confusion", on_select="rerun", selection_mode="points",
                            config={"displaylogo": False})
    try:
        points = list(event["selection"]["points"])
    except (KeyError, TypeError):
        points = []
    xs, ys = list(fig.data[0].x), list(fig.data[0].y)
    clicked = None
    if points and points[-1].get("x") in xs and points[-1].get("y") in ys:
        clicked = (ys.index(points[-1]["y"]), xs.index(points[-1]["x"]))
    if clicked is not None and clicked != st.session_state.get("_err_cell_clicked"):
        st.session_state["err_cell"] = clicked  # the menu below has not been drawn yet in this run
    st.session_state["_err_cell_clicked"] = clicked


def render_cell(df: pd.DataFrame, counts: list[list[int]], name_of) -> None:
    """A confusion-matrix cell picker: the reviews of the picked (true, predicted) cell."""
    cells = [None] + [(t, p) for t in range(len(counts)) for p in range(len(counts))]

    def cell_name(cell) -> str:
        if cell is None:
            return "pick a cell of the matrix"
        t, p = cell
        return f"true {name_of(t)} → predicted {name_of(p)} ({counts[t][p]:,} reviews)"

    cell = st.selectbox("Reviews in a confusion-matrix cell", cells, format_func=cell_name, key="err_cell")
    if cell is not None:
        rows = predictions.cell_reviews(df, *cell)
        if rows.empty:
            st.caption("No reviews in this cell.")
        else:
            st.caption(f"{len(rows):,} reviews, most confident first"
                       + (f"; the first {BROWSE_ROWS:,} are shown." if len(rows) > BROWSE_ROWS else "."))
            st.dataframe(review_table(rows.head(BROWSE_ROWS), name_of), hide_index=True, key="err_cell_rows")


def render_calibration(run: RunView, df: pd.DataFrame, n_labels: int) -> None:
    """Reliability before temperature scaling and, when the run fitted a temperature, after it."""
    bins, ece = predictions.reliability(df, n_bins=10, n_labels=n_labels)
    cal = predictions.read_calibration(run.path)
    after_bins, after_ece = predictions.reliability(df, n_bins=10, n_labels=n_labels, calibrated=True)
    left, right = st.columns(2)
    with left:
        charts.show(charts.reliability_figure(bins, ece, n_labels, title="Before calibration (raw)"),
                    "err_reliability")
        st.metric("ECE before calibration" if after_bins else "Expected calibration error", charts.fmt(ece, 3),
                  help=ECE_HELP)
    with right:
        if after_bins:
            charts.show(charts.reliability_figure(after_bins, after_ece, n_labels,
                                                  title="After temperature scaling"), "err_reliability_after")
            st.metric("ECE after calibration", charts.fmt(after_ece, 3),
                      delta=None if ece is None or after_ece is None else f"{after_ece - ece:+.3f}",
                      delta_color="inverse", help=ECE_HELP)
        else:
            st.info("This run has no fitted temperature (runs trained before calibration was added): only the "
                    "raw probabilities are shown.")
    if cal and after_bins:
        st.caption(f"Temperature {cal['temperature']:.3f}, fitted on these {int(cal.get('n') or len(df)):,} "
                   "evaluation reviews after training (so the 'after' diagram is measured on the reviews it was "
                   "fitted on). The labels and the metrics above are the same before and after: only the "
                   "confidence changes. Predictions in the Try it tab use the calibrated probabilities unless "
                   "the checkbox is off.")

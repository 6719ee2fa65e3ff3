"""Error analysis tab: where the model goes wrong on the evaluation set (an N x N confusion matrix,
scores per class, calibration of the top label, its most confident mistakes overall and per class, and
every prediction to browse)."""
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
    left, right = st.columns(2)
    counts = predictions.confusion_matrix(df, len(names))
    bins, ece = predictions.reliability(df, n_bins=10, n_labels=len(names))
    with left:
        charts.show(charts.confusion_figure(counts, [name_of(i) for i in range(len(counts))]), "err_confusion")
    with right:
        charts.show(charts.reliability_figure(bins, ece, len(names)), "err_reliability")
    st.metric("Expected calibration error", charts.fmt(ece, 3),
              help="Average gap between confidence (the probability of the predicted label) and accuracy, "
                   "weighted by how many reviews fall in each confidence bin. 0 = perfectly calibrated.")
    if len(names) > 2:
        st.markdown("**Per class**")
        st.dataframe(pd.DataFrame([{"class": name_of(p["id"]), "reviews": p["support"], "predicted": p["predicted"],
                                    "precision": p["precision"], "recall": p["recall"], "F1": p["f1"]}
                                   for p in predictions.per_class(df, len(names))]).round(4),
                     hide_index=True, key="err_per_class")

    def table(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"#": frame["index"], "review": frame["text"],
                             "true": [name_of(i) for i in frame["label"]],
                             "predicted": [name_of(i) for i in frame["pred"]],
                             "confidence": frame["confidence"].round(4), "words": frame["words"]})

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

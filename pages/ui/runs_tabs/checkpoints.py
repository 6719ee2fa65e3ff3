"""Checkpoints tab: every checkpoint the run saved, its scores and size, which one is best and which
ones save_total_limit keeps."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.readers import checkpoints
from lib.registry.reconcile import RunView
from pages.ui.runs_tabs import TabContext
from pages.ui.text import plain


def render(run: RunView, ctx: TabContext) -> None:
    ckpts = checkpoints.list_checkpoints(run.path, run.status)
    if not ckpts:
        st.info("No checkpoints yet (save_strategy decides when they are written).")
        return
    metric_key, greater = checkpoints.best_metric_key(run.config)
    limit = run.config.get("save_total_limit")
    keeps_best = ", load_best_model_at_end keeps the best." if run.config.get("load_best_model_at_end") else "."
    st.caption(plain(f"Best by {metric_key} ({'higher' if greater else 'lower'} is better). save_total_limit = "
                     f"{limit if limit else 'none (all kept)'}{keeps_best}"))
    table = pd.DataFrame([{
        "checkpoint": c.name, "step": c.step, "epoch": c.epoch,
        "accuracy": c.metrics.get("eval_accuracy"), "F1": c.metrics.get("eval_f1"),
        "eval loss": c.metrics.get("eval_loss"),
        "size (MB)": round(c.size_bytes / 1e6, 1) if c.on_disk else None,
        "on disk": c.on_disk, "kept": c.kept, "best": "★" if c.best else "", "note": c.note,
    } for c in ckpts])
    st.dataframe(table, hide_index=True, key="ckpt_table")

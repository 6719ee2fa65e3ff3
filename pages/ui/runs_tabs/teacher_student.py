"""A distilled run next to its teacher: quality on the same eval split, size, and speed measured side by side."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from lib.errors import LabError
from lib.readers import predictions
from lib.registry.reconcile import RunView
from lib.serving import teacher_student
from lib.store import rundir
from pages.ui.runs_tabs import TabContext
from pages.ui.text import plain, show_lab_error

SPEED_TEXTS = 64   # eval reviews timed per model


def render(run: RunView, ctx: TabContext) -> None:
    try:
        teacher_dir = teacher_student.teacher_of(run.path)
        report = teacher_student.quality_and_size(teacher_dir, run.path)
    except LabError as exc:
        st.info(plain(f"Teacher and student cannot be compared yet: {exc}"))
        return
    st.markdown(f"**Teacher → student** · teacher run {plain(teacher_dir.name)}")
    f1_name = "F1" if len(report.get("label_names") or []) <= 2 else "macro-F1"
    rows = [{"model": name, "layers": report[name].get("layers"), "parameters": report[name].get("parameters"),
             "size (MB)": report[name].get("size_mb"), "accuracy": report[name].get("accuracy"),
             f1_name: report[name].get("f1")} for name in ("teacher", "student")]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ts_table")
    c1, c2 = st.columns(2)
    if report.get("agreement") is not None:
        c1.metric("Agreement with the teacher", f"{report['agreement']:.1%}")
    if report.get("accuracy_kept") is not None:
        c2.metric("Accuracy kept", f"{report['accuracy_kept']:.1%}")
    if not report["same_eval_split"]:
        st.warning("The two runs were evaluated on different reviews, so agreement is not shown.")
    render_speed(teacher_dir, run.path)
    st.divider()


def missing_model(teacher_dir: Path, student_dir: Path) -> str | None:
    """Why the speed cannot be measured (a run without its exported model), or None."""
    for name, folder in (("teacher", teacher_dir), ("student", student_dir)):
        if not (Path(folder) / rundir.MODEL / "config.json").is_file():
            return (f"The {name} run {folder.name} has no exported model (model/) any more, so the speed cannot "
                    "be measured. Train it to the end again, or compare two runs that still have their models.")
    return None


def render_speed(teacher_dir: Path, student_dir: Path) -> None:
    key = f"ts_speed_{student_dir.name}"
    if st.button("Measure speed side by side", key="ts_measure", icon=":material/speed:",
                 help="Loads both models and times single reviews and a batch, alternating between them."):
        st.session_state.pop(key, None)
        why_not = missing_model(teacher_dir, student_dir)
        if why_not:
            st.error(plain(why_not), icon=":material/error:")
        else:
            texts = predictions.predictions_frame(student_dir)["text"].tolist()[:SPEED_TEXTS] or ["A fine film."]
            try:
                with st.spinner("Timing teacher and student…"):
                    st.session_state[key] = teacher_student.speed_side_by_side(teacher_dir, student_dir, texts)
            except LabError as exc:
                show_lab_error(exc)
            except OSError as exc:  # a model folder removed while it was being timed
                st.error(plain(f"The speed could not be measured: {exc.strerror or exc}. A model folder may have "
                               "been removed meanwhile; try again."), icon=":material/error:")
    speed = st.session_state.get(key)
    if speed:
        st.dataframe(pd.DataFrame([{"model": n, **speed[n]} for n in ("teacher", "student")]), hide_index=True,
                     key="ts_speed_table")
        if speed.get("throughput_ratio"):
            st.caption(f"The student classifies {speed['throughput_ratio']:.2f}× as many reviews per second in "
                       f"batches, with {speed.get('latency_ratio', 0):.2f}× lower single-review latency.")

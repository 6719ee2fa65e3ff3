"""The Learn page's step calculator: steps per epoch and in total, the formula, and when the Trainer
logs, evaluates and saves (with the checkpoints ``save_total_limit`` leaves).

The number boxes stop at TrainConfig's own upper bounds (where a field has one). The schedule is worked
out arithmetically by :func:`lib.job.steps.event_schedule` (exact counts, a bounded list of events), so
any value a visitor types stays cheap.
"""
from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from lib.config import field_info
from lib.errors import LabError
from lib.job import steps as stepslib
from pages.ui import learn_views
from pages.ui.learn_data import DataPick
from pages.ui.text import show_lab_error

Text = Callable[..., str]


def _bound(name: str, fallback):
    """TrainConfig's upper bound of a field, where it has one."""
    return field_info(name).get("max") or fallback


def steps_tab(T: Text, pick: DataPick | None) -> None:
    """Tab 5: steps per epoch and in total, the formula, and the log/eval/save schedule."""
    max_samples = int(_bound("max_train_samples", 100_000_000))
    if pick is not None and pick.is_training_split:
        n_data = min(len(pick.sample.texts), max_samples)
        c = st.columns([3, 1])
        c[0].caption(T("calc_use_data", n=n_data))
        c[1].button(T("calc_use_button"), key="learn_calc_use_data",
                    on_click=lambda: st.session_state.update(learn_calc_samples=n_data))
    c = st.columns(4)
    st.session_state.setdefault("learn_calc_samples", 2000)  # default here: the "use this number" button sets it
    n_samples = int(c[0].number_input(T("calc_samples"), 1, max_samples, key="learn_calc_samples"))
    per_device = int(c[1].number_input(T("calc_batch"), 1, int(_bound("per_device_train_batch_size", 4096)), 8,
                                       key="learn_calc_batch"))
    devices = int(c[2].number_input(T("calc_devices"), 1, int(_bound("num_processes", 64) * _bound("num_nodes", 64)),
                                    1, key="learn_calc_devices"))
    accum = int(c[3].number_input(T("calc_accum"), 1, int(_bound("gradient_accumulation_steps", 1024)), 1,
                                  key="learn_calc_accum"))
    c = st.columns([1, 1, 2])
    epochs = float(c[0].number_input(T("calc_epochs"), 0.01, float(_bound("num_train_epochs", 1000.0)), 2.0, step=0.5,
                                     format="%g", key="learn_calc_epochs"))
    max_steps = int(c[1].number_input(T("calc_max_steps"), -1, int(_bound("max_steps", 10_000_000)), -1,
                                      key="learn_calc_max_steps"))
    drop_last = c[2].checkbox(T("calc_drop_last"), value=False, key="learn_calc_drop_last")
    try:
        plan = stepslib.plan_steps(n_samples, per_device, accum, devices, epochs, max_steps, drop_last)
    except LabError as exc:
        st.caption(T("calc_error"))
        show_lab_error(exc)
        return
    m = st.columns(4)
    m[0].metric(T("m_samples_per_step"), f"{plan.samples_per_step:,}")
    m[1].metric(T("m_steps_per_epoch"), f"{plan.steps_per_epoch:,}")
    m[2].metric(T("m_total_steps"), f"{plan.total_steps:,}")
    m[3].metric(T("m_final_epoch"), f"{plan.final_epoch:.4g}")
    st.markdown(f"**{T('formula_header')}**")
    st.code(learn_views.formula_text(plan, T), language=None)
    for note in learn_views.plan_notes(plan, T):
        st.caption("• " + note)
    st.markdown(f"**{T('schedule_header')}**")
    schedule_view(T, plan)


def schedule_view(T: Text, plan) -> None:
    """When the Trainer logs, evaluates and saves, and which checkpoints are left at the end."""
    interval_max = float(_bound("logging_steps", 1e9))
    c = st.columns(4)
    logging = c[0].number_input(T("sch_logging"), 0.001, interval_max, 500.0, format="%g", key="learn_sch_logging",
                                help=T("sch_steps_help"))
    eval_strategy = c[1].selectbox(T("sch_eval_strategy"), stepslib.STRATEGIES, index=2, key="learn_sch_eval")
    eval_steps = c[2].number_input(T("sch_eval_steps"), 0.0, interval_max, 0.0, format="%g", key="learn_sch_eval_steps",
                                   help=T("sch_steps_help"), disabled=eval_strategy != "steps")
    save_strategy = c[3].selectbox(T("sch_save_strategy"), stepslib.STRATEGIES, index=2, key="learn_sch_save")
    c = st.columns(4)
    save_steps = c[0].number_input(T("sch_save_steps"), 0.001, interval_max, 500.0, format="%g",
                                   key="learn_sch_save_steps", help=T("sch_steps_help"),
                                   disabled=save_strategy != "steps")
    limit = int(c[1].number_input(T("sch_limit"), 0, int(_bound("save_total_limit", 1000)), 2, key="learn_sch_limit"))
    load_best = c[2].checkbox(T("sch_best"), value=False, key="learn_sch_best")

    def as_steps(x: float):
        return int(x) if x >= 1 and float(x).is_integer() else float(x)

    try:
        sched = stepslib.event_schedule(
            plan, logging_steps=as_steps(logging), eval_strategy=eval_strategy,
            eval_steps=None if eval_steps == 0 else as_steps(eval_steps), save_strategy=save_strategy,
            save_steps=as_steps(save_steps), save_total_limit=limit or None, load_best_model_at_end=load_best)
    except LabError as exc:
        show_lab_error(exc)
        return
    every = {"no": T("sch_none"), "epoch": T("sch_epoch")}
    st.caption(T("sch_summary", log=T("every", n=sched.logging_every),
                 ev=every.get(eval_strategy) or T("every", n=sched.eval_every),
                 save=every.get(save_strategy) or T("every", n=sched.save_every),
                 n=sched.checkpoint_count, k=len(sched.surviving)))
    surviving = sched.surviving
    if load_best and sched.checkpoints and limit:
        st.caption(T("best_note"))
        best = st.selectbox(T("best_pick"), sched.checkpoints, index=len(sched.checkpoints) - 1,
                            key="learn_sch_best_pick", format_func=lambda s: f"checkpoint-{s}")
        surviving = sched.surviving_with_best(best)
    if not sched.events:
        st.info(T("no_events"))
    else:
        if sched.truncated:
            st.caption(T("timeline_truncated", n=sched.counts["events"], shown=len(sched.events)))
        st.altair_chart(learn_views.timeline(sched.events, plan, surviving, T), height=200, key="learn_timeline")
    if sched.events:
        st.dataframe(learn_views.events_frame(sched.events, surviving, T), hide_index=True, key="learn_events_table")
    if load_best and sched.checkpoints and limit:
        st.caption(T("best_left", ckpts=", ".join(f"checkpoint-{s}" for s in surviving)))

"""The run table of the Train page (with Cancel, Resume, Delete and Clone) and Home's latest runs.

Rows come from :func:`lib.registry.reconcile.list_runs` (one :class:`RunView` per run). Every managing
button works through a callback that asks the registry to act with the session's actor and the server's
policy at that moment (:mod:`lib.registry.access` decides; a refusal is shown as text). The buttons are
also disabled with the reason beforehand, and in read-only mode they are not offered at all, except to
admins who signed in. With ``LAB_BACKEND=slurm`` the table has a Slurm job column, and the picked run
says what Slurm reports about its job (state, place in the queue, reason, nodes).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from lib.errors import LabError
from lib.readers import metrics, progress
from lib.registry import access, control, launching, reconcile
from lib.registry import backend as backends
from lib.registry.access import Actor, Policy
from lib.registry.reconcile import RunView
from lib.store import rundir
from lib.util.fmt import format_duration, format_time
from pages.ui import session
from pages.ui.text import flash, plain, show_flash

SELECTED_KEY = "tr_selected"
LAST_LAUNCHED_KEY = "tr_last_launched"
CONFIRM_KEY = "tr_confirm"
FLASH_KEY = "tr_table_flash"
PROGRESS_COLUMN = st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent")


def state_text(run: RunView) -> str:
    """The state as the table shows it: with the queue position, or "preparing" before the first step."""
    if run.display_state == "queued" and run.queue_position:
        return f"queued (#{run.queue_position})"
    if run.display_state == "running" and not run.total_steps:
        return "running (preparing)"
    return run.display_state


def _eta(run: RunView) -> str:
    if run.state != "running":
        return ""
    try:
        return format_duration(progress.progress(run.path, run.status).eta_s, missing="")
    except Exception:  # noqa: BLE001 - an ETA is a nicety; a half-written log must not break the table
        return ""


def _rss(run: RunView) -> float | None:
    """A running job's memory (RSS, MB) from its latest system reading."""
    if run.state != "running":
        return None
    reading = metrics.latest_system(run.path)
    return reading.get("rss_mb") if reading else None


def slurm_column(runs: list[RunView]) -> bool:
    """Whether the run table has a Slurm job column: runs go to Slurm, or some run went there."""
    try:
        if backends.is_slurm():
            return True
    except LabError:
        pass
    return any(r.backend == backends.SLURM for r in runs)


def table_rows(runs: list[RunView], *, job_column: bool = False) -> list[dict]:
    """The Train page's run table (with the Slurm job id after the run id when ``job_column``)."""
    return [{
        "run": r.run_id, **({"Slurm job": r.slurm_job_id or ""} if job_column else {}),
        "label": r.label, "owner": r.owner, "state": state_text(r),
        "progress": r.progress if r.progress is not None else 0.0,
        "steps": f"{r.step}/{r.total_steps}" if r.total_steps else "", "ETA": _eta(r),
        "model": r.model, "dataset": r.dataset, "started": format_time(r.started_at, missing=""),
        "duration": format_duration(r.duration_s, missing=""), "best accuracy": r.best_eval_accuracy,
        "memory (MB)": _rss(r), "tags": ", ".join(r.tags),
    } for r in runs]


def latest_rows(runs: list[RunView], limit: int = 5) -> list[dict]:
    """Home's short table of the newest runs."""
    return [{"run": r.run_id, "label": r.label, "owner": r.owner, "state": r.display_state,
             "progress": r.progress or 0.0, "model": r.model, "dataset": r.dataset,
             "best accuracy": None if r.best_eval_accuracy is None else round(float(r.best_eval_accuracy), 4)}
            for r in runs[:limit]]


def show_latest(runs: list[RunView], *, limit: int = 5, key: str = "home_latest_runs") -> None:
    rows = latest_rows(runs, limit)
    if not rows:
        st.info("No runs yet. Start with the demo preset on the Train page: it takes a few minutes on a laptop CPU.")
        return
    st.dataframe(rows, hide_index=True, key=key, column_config={"progress": PROGRESS_COLUMN})


# ---------------------------------------------------------------------------------------------------
# Managing one run
# ---------------------------------------------------------------------------------------------------
def managing_offered(actor: Actor, policy: Policy) -> bool:
    """Whether Cancel/Resume/Delete are drawn at all (not in read-only mode, except for signed-in admins)."""
    return not policy.read_only or policy.is_admin(actor)


def _ask(action: str | None, run_id: str | None) -> None:
    st.session_state[CONFIRM_KEY] = (action, run_id) if action else None


def _act(action: str, run_id: str, runs_dir: Path) -> None:
    """Button callback: cancel, resume or delete, as the person signed in now (the registry decides)."""
    state = st.session_state
    state[CONFIRM_KEY] = None
    actor, policy = session.actor(), session.policy()
    try:
        run_dir = rundir.resolve_run_dir(runs_dir, run_id)
        if action == "cancel":
            status = control.cancel(run_dir, by=actor.identity or "app", actor=actor, policy=policy)
            flash(state, FLASH_KEY, "success", f"Run {run_id} is {status.get('state')}.")
        elif action == "resume":
            launching.resume(run_dir, launched_by=f"app:{actor.identity}", actor=actor, policy=policy)
            flash(state, FLASH_KEY, "success", f"Run {run_id} resumes from its newest checkpoint.")
        elif action == "delete":
            control.delete(run_dir, actor=actor, policy=policy)
            flash(state, FLASH_KEY, "success", f"Run {run_id} was deleted.")
    except LabError as exc:
        flash(state, FLASH_KEY, "error", str(exc))


def _reasons(run: RunView, actor: Actor, policy: Policy) -> dict[str, str | None]:
    """Why each action is not possible now (None: it is)."""
    manage = access.why_not_manage(run.path, actor, policy)
    return {
        "cancel": manage or (None if run.active else f"Run {run.run_id} is {run.state}: nothing to cancel."),
        "resume": access.why_not_resume(run.path, actor, policy) or (
            None if run.state in rundir.RESUMABLE_STATES else "Only a failed or cancelled run can be resumed."),
        "delete": manage or (f"Run {run.run_id} is {run.state}: cancel it first." if run.active else None),
    }


def _slurm_notes(run: RunView) -> None:
    """What Slurm says about an active run's job: its state, why it waits, its place in the queue."""
    if run.status.get("slurm_note"):
        st.warning(plain(run.status["slurm_note"]), icon=":material/cloud_off:")
    if not run.active:
        return
    if not run.slurm_job_id:
        st.caption("Being submitted to Slurm…")
        return
    parts = [f"Slurm job {run.slurm_job_id}"]
    if run.slurm_state:
        parts.append(run.slurm_state.lower())
    if run.queue_position:
        parts.append(f"#{run.queue_position} in the queue")
    if run.slurm_reason:
        parts.append(run.slurm_reason)
    if run.nodes:
        parts.append(f"on {run.nodes}")
    st.caption(plain(" · ".join(parts)))


def _run_notes(run: RunView) -> None:
    if run.backend == backends.SLURM:
        _slurm_notes(run)
    if run.error:
        st.error(plain(f"{run.error.get('message', '')} {run.error.get('hint', '')}".strip()),
                 icon=":material/error:")
        if run.error.get("log_tail"):
            with st.expander("End of the log"):
                st.code(run.error["log_tail"], language=None)
    if run.stalled:
        age = run.status.get("heartbeat_age_s") or 0
        st.warning(f"No sign of life from this run for {format_duration(age)}. It may be busy loading data or "
                   "evaluating; check the log on the Runs page.", icon=":material/hourglass_empty:")


def _action_buttons(run: RunView, actor: Actor, policy: Policy, runs_dir: Path, on_clone: Callable) -> None:
    c = st.columns(5)
    c[0].page_link("pages/runs.py", label="Open in Runs", icon=":material/monitoring:",
                   query_params={"run": run.run_id})
    if c[1].button("Clone", key="tr_clone", icon=":material/content_copy:", on_click=on_clone, args=(run.run_id,),
                   help="Copy this run's settings into the form above"):
        st.rerun()  # the form lives outside this fragment: draw the whole page again
    if not managing_offered(actor, policy):
        st.caption("This lab is read-only: runs can be looked at and tried, not cancelled, resumed or deleted here.")
        return
    why = _reasons(run, actor, policy)
    c[2].button("Cancel", key="tr_cancel", icon=":material/stop_circle:", disabled=why["cancel"] is not None,
                help=why["cancel"] or "Stop this run (it can be resumed later)", on_click=_ask,
                args=("cancel", run.run_id))
    c[3].button("Resume", key="tr_resume", icon=":material/play_circle:", disabled=why["resume"] is not None,
                help=why["resume"] or "Continue from the newest complete checkpoint", on_click=_act,
                args=("resume", run.run_id, runs_dir))
    c[4].button("Delete", key="tr_delete", icon=":material/delete:", disabled=why["delete"] is not None,
                help=why["delete"] or "Delete this run and all its files", on_click=_ask, args=("delete", run.run_id))
    who = access.why_not_manage(run.path, actor, policy)
    if who:
        st.caption(plain(who))
    pending = st.session_state.get(CONFIRM_KEY)
    if pending and pending[1] == run.run_id and why.get(pending[0]) is None:
        action = pending[0]
        verb = {"cancel": "Stop", "delete": "Delete everything of"}[action]
        st.warning(plain(f"{verb} run {run.run_id} ({run.label})?"), icon=":material/warning:")
        yes, no = st.columns(2)
        yes.button(f"Yes, {action} it", key="tr_confirm_yes", type="primary", on_click=_act,
                   args=(action, run.run_id, runs_dir))
        no.button("No, keep it", key="tr_confirm_no", on_click=_ask, args=(None, None))


def run_panel(runs_dir: Path, on_clone: Callable[[str], None]) -> None:
    """The table of every run, a run picker, and what can be done with the picked run (a fragment body)."""
    runs = reconcile.list_runs(runs_dir)
    if not runs:
        st.info("No runs yet. Launch one above.")
        return
    st.dataframe(table_rows(runs, job_column=slurm_column(runs)), hide_index=True, key="tr_run_table", column_config={
        "progress": PROGRESS_COLUMN, "best accuracy": st.column_config.NumberColumn("best accuracy", format="%.3f"),
        "memory (MB)": st.column_config.NumberColumn("memory (MB)", format="%.0f",
                                                     help="A running job's resident memory, from its last reading")})
    by_id = {r.run_id: r for r in runs}
    state = st.session_state
    if state.get(SELECTED_KEY) not in by_id:
        wanted = state.get(LAST_LAUNCHED_KEY)
        state[SELECTED_KEY] = wanted if wanted in by_id else runs[0].run_id
    selected = st.selectbox("Run", list(by_id), key=SELECTED_KEY,
                            format_func=lambda i: f"{i} · {by_id[i].label[:60]} · {state_text(by_id[i])}")
    run = by_id[selected]
    _run_notes(run)
    _action_buttons(run, session.actor(), session.policy(), runs_dir, on_clone)
    show_flash(state, FLASH_KEY)

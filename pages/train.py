"""Train: pick a preset or an earlier run, adjust the settings, see what the run will do, launch it.

The job runs in its own process on the training box: closing this tab or restarting the app does not
stop it. Runs wait in a queue when the device is busy and start by themselves. Launching, cancelling,
resuming and deleting go through ``lib.registry``, which checks at that moment who may; this page only
draws the form (``pages.ui.config_form``), the preview and the run table (``pages.ui.run_table``).
"""
from __future__ import annotations

import streamlit as st

from lib.config import PRESET_HELP, PRESETS, TrainConfig, preset
from lib.errors import LabError
from lib.registry import access, launching, preflight, reconcile
from lib.registry import backend as backends
from lib.registry.access import Actor, Policy
from lib.store import rundir
from pages.ui import config_form, experiment_panel, run_table, session
from pages.ui.access_notes import launch_notice
from pages.ui.step_preview import preview
from pages.ui.text import flash, plain, show_flash
from pages.ui.upload_picker import upload_picker

REFRESH_S = 2.0                  # the run table refreshes itself this often
FLASH_KEY = "tr_flash"
DATA_FIELDS = ("dataset", "test_file", "text_column", "label_column", "label_names", "encoding", "eval_fraction",
               "max_train_samples", "max_eval_samples", "strip_html", "seed", "max_length")


# ---------------------------------------------------------------------------------------------------
# Filling the form (button callbacks)
# ---------------------------------------------------------------------------------------------------
def _load_preset() -> None:
    name = st.session_state.get("tr_preset") or "demo"
    config_form.load_into_form(st.session_state, preset(name), f"preset {name}")


def _load_run(run_id: str | None = None) -> None:
    state = st.session_state
    run_id = run_id or state.get("tr_clone_pick")
    try:
        config = launching.load_config(rundir.resolve_run_dir(session.runs_dir(), run_id))
    except LabError as exc:
        flash(state, FLASH_KEY, "error", str(exc))
        return
    config_form.load_into_form(state, config.replace(owner=""), f"a clone of run {run_id}")
    flash(state, FLASH_KEY, "info", f"The form now holds the settings of run {run_id}. Change what you like and "
                                    "launch it as a new run.")


def _load_distill() -> None:
    """Fill the form with a distillation of a finished run: same data and eval split, a smaller student."""
    state = st.session_state
    run_id = state.get("tr_distill_pick")
    try:
        teacher = launching.load_config(rundir.resolve_run_dir(session.runs_dir(), run_id))
        config = preset("distill", teacher=run_id, run_name=f"student of {teacher.label}"[:200],
                        **{name: getattr(teacher, name) for name in DATA_FIELDS})
    except LabError as exc:
        flash(state, FLASH_KEY, "error", str(exc))
        return
    config_form.load_into_form(state, config, f"a distillation of run {run_id}")
    flash(state, FLASH_KEY, "info", f"The form now distils run {run_id} into a {config.student_layers}-layer student "
                                    "on the same data. Launch it, then compare teacher and student on the Runs page.")


def _copy_owner() -> None:
    name = str(st.session_state.get("tr_owner_input", "")).strip()
    if name:  # the box can fire with '' on a rerun: never wipe a name typed in the sidebar
        st.session_state[session.OWNER_KEY] = name


def _launch() -> None:
    """Launch button callback: the form as it is now, checked, then launched as the person acting now."""
    state = st.session_state
    actor, policy = session.actor(), session.policy()
    refused = access.why_not_launch(actor, policy)  # the registry checks again; this spares the preflight
    if refused:
        flash(state, FLASH_KEY, "error", refused)
        return
    config, errors = config_form.config_from_form(state, policy, owner=_owner(actor, policy))
    if config is None:
        flash(state, FLASH_KEY, "error", "Fix the settings marked below first.")
        return
    with st.spinner("Checking the model and data before starting…"):
        problems = preflight.preflight(config)
    if problems:
        state[config_form.PREFLIGHT_KEY] = {"config": config.to_json(), "errors": problems}
        return
    try:
        run_dir = launching.launch(config, session.runs_dir(), owner=session.typed_name(),
                                   launched_by=f"app:{actor.identity}", actor=actor, policy=policy)
    except LabError as exc:
        flash(state, FLASH_KEY, "error", str(exc))
        return
    state[run_table.LAST_LAUNCHED_KEY] = state[run_table.SELECTED_KEY] = run_dir.name
    flash(state, FLASH_KEY, "success", f"Launched run {run_dir.name}. It trains in the background: you can close "
                                       "this tab and come back later.")


# ---------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------
@st.cache_data(ttl=60, show_spinner=False)
def _train_samples(config_json: str) -> int | None:
    """Training reviews of a config, when known cheaply (a table file is read once a minute at most)."""
    return preflight.estimate_train_samples(TrainConfig.from_json(config_json))


def _owner(actor: Actor, policy: Policy) -> str:
    """Whose the run will be: the signed-in identity, or in open mode the name typed (a label)."""
    return actor.identity if policy.sign_in else session.typed_name()


def _pickers(earlier: list) -> None:
    c1, c2 = st.columns(2)
    with c1:
        names = list(PRESETS)
        st.selectbox("Preset", names, key="tr_preset", index=names.index("demo") if "demo" in names else 0,
                     format_func=lambda p: f"{p}: {PRESET_HELP.get(p, '')}")
        st.button("Load preset", key="tr_load_preset", on_click=_load_preset, icon=":material/tune:")
    with c2:
        if not earlier:
            st.caption("Earlier runs will show up here to clone.")
            return
        labels = {r.run_id: f"{r.run_id} · {r.label[:50]}" for r in earlier}
        if st.session_state.get("tr_clone_pick") not in labels:
            st.session_state.pop("tr_clone_pick", None)
        st.selectbox("Or clone an earlier run", list(labels), key="tr_clone_pick", format_func=labels.get)
        st.button("Clone its settings", key="tr_clone_top", on_click=_load_run, icon=":material/content_copy:")
        finished = {r.run_id: labels[r.run_id] for r in earlier if r.state == "finished"}
        if finished:
            if st.session_state.get("tr_distill_pick") not in finished:
                st.session_state.pop("tr_distill_pick", None)
            st.selectbox("Or distil from run", list(finished), key="tr_distill_pick", format_func=finished.get,
                         help="Train a smaller, faster student that imitates this finished run (the teacher).")
            st.button("Distil it", key="tr_distill_top", on_click=_load_distill, icon=":material/compress:")


def _launch_controls(config: TrainConfig | None, actor: Actor, policy: Policy) -> None:
    why = access.why_not_launch(actor, policy)
    if policy.read_only and why:
        return  # read-only: launching is not offered at all (the banner above says so)
    if not policy.sign_in and not session.typed_name():
        st.warning("Type your name before launching: it is shown as the owner of your runs.")
        st.text_input("Your name", key="tr_owner_input", on_change=_copy_owner, max_chars=80)
        why = why or "Type your name first: it is shown as the owner of your runs."
    if config is None:
        why = why or "Fix the settings marked above first."
    st.button("Launch", key="tr_launch", type="primary", disabled=why is not None, icon=":material/rocket_launch:",
              help=why, on_click=_launch)
    if why:
        st.caption(plain(why))


def _where_runs_go() -> None:
    """Under Slurm: the partition (and account) runs are submitted to."""
    try:
        if backends.is_slurm():
            st.caption(":material/dns: " + plain(f"{backends.describe()}. Slurm queues them and picks their nodes."))
    except LabError as exc:
        st.error(plain(str(exc)), icon=":material/error:")


def main() -> None:
    st.title("Train a model")
    state = st.session_state
    root = session.runs_dir()
    actor, policy = session.actor(), session.policy()
    launch_notice(actor, policy)
    if config_form.SOURCE_KEY not in state:
        config_form.load_into_form(state, preset("demo"), "preset demo")
    show_flash(state, FLASH_KEY)

    st.subheader("Start from")
    _pickers(reconcile.list_runs(root))
    st.caption(plain(f"The form holds the settings of {state.get(config_form.SOURCE_KEY, 'preset demo')}."))

    config, errors = config_form.config_from_form(state, policy, owner=_owner(actor, policy))
    errors = config_form.errors_with_preflight(state, config, errors)
    st.subheader("Settings")
    may_upload = access.can_launch(actor, policy)
    config_form.render(state, errors, policy, data_extra=lambda: upload_picker(
        state, root, session.max_upload_mb(), disabled=not may_upload))

    n_train = _train_samples(config.to_json()) if config is not None else None
    if config is not None:
        preview(config, n_train)
    else:
        st.warning("Fix the settings marked above to see what the run will do.")
    experiment_panel.estimate_section(state, config, root, actor, policy)
    _launch_controls(config, actor, policy)
    experiment_panel.sweep_section(state, config, n_train, actor, policy, _owner(actor, policy))

    st.subheader("Runs")
    _where_runs_go()
    st.caption("Refreshes every few seconds. Runs keep going when you close this tab.")
    st.fragment(run_every=REFRESH_S)(run_table.run_panel)(root, _load_run)


main()

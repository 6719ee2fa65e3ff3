"""Train: pick a preset or an earlier run, adjust the settings, see what the run will do, launch it.

The job runs in its own process on the training box: closing this tab or restarting the app does not
stop it. Runs wait in a queue when the device is busy and start by themselves. Everything here goes
through ``lib.runs``; this page only draws the form and the run table.
"""
from __future__ import annotations

import os
import re
import shlex
import time
from pathlib import Path

import streamlit as st

from lib.config import GROUPS, PRESET_HELP, PRESETS, TrainConfig, field_info, field_names, preset
from lib.errors import ConfigError, LabError
from lib.readers import progress
from lib.registry import access, control, launching, preflight, reconcile
from lib.sources import labels, tables
from lib.store import rundir, uploads
from pages import common

KEY = "tr_"                      # form widget keys: tr_<field name>
REFRESH_S = 2.0                  # the run table refreshes itself this often
UPLOAD_TYPES = ["csv", "tsv", "jsonl", "ndjson", "json", "parquet", "pq"]
ALWAYS_OPEN = ("Run", "Data", "Model", "Schedule")
BOOL_WORDS = {True: "on", False: "off", "auto": "auto"}


def _plain(text) -> str:
    """Text from users or runs, escaped so that Streamlit's markdown shows it as typed (no links, images, math)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", str(text))


plain = getattr(common, "plain", None) or _plain


# ---------------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------------
def lab_access() -> tuple[list[str], list[str] | None]:
    """(admins, launchers) from the ``[lab]`` section of .streamlit/secrets.toml (launchers None = anyone signed in)."""
    try:
        lab = st.secrets.get("lab", {}) or {}
        admins = [str(x) for x in lab.get("admins", []) or []]
        launchers = lab.get("launchers")
        return admins, ([str(x) for x in launchers] if launchers is not None else None)
    except Exception:  # noqa: BLE001 - no secrets file
        return [], None


def max_upload_mb() -> int:
    try:
        return max(1, int(os.environ.get("LAB_MAX_UPLOAD_MB", "200")))
    except ValueError:
        return 200


# ---------------------------------------------------------------------------------------------------
# The form's state: one session_state key per TrainConfig field
# ---------------------------------------------------------------------------------------------------
def _to_widget(name: str, value):
    """A config value as the form widget holds it."""
    kind = field_info(name)["type"]
    if kind in ("choice", "bool"):
        return value
    if kind == "int" and not _optional(name):
        return int(value)
    if kind == "list":
        return ", ".join(str(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and name not in ("learning_rate",):
        return str(int(value)) if abs(value) >= 1 else str(value)
    return str(value)


def _optional(name: str) -> bool:
    return field_info(name)["default"] is None or name in ("max_train_samples", "max_eval_samples",
                                                          "save_total_limit", "eval_steps", "save_steps")


def load_into_form(config: TrainConfig, source: str) -> None:
    for name in field_names():
        st.session_state[KEY + name] = _to_widget(name, getattr(config, name))
    st.session_state["tr_source"] = source
    st.session_state.pop("tr_preflight", None)
    st.session_state.pop("tr_upload_error", None)


def _load_preset() -> None:
    name = st.session_state.get("tr_preset") or "demo"
    load_into_form(preset(name), f"preset {name}")


def _load_run(run_id: str | None = None) -> None:
    run_id = run_id or st.session_state.get("tr_clone_pick")
    try:
        config = launching.load_config(rundir.resolve_run_dir(common.runs_dir(), run_id))
    except LabError as exc:
        st.session_state["tr_flash"] = ("error", str(exc))
        return
    load_into_form(config.replace(owner=""), f"a clone of run {run_id}")
    st.session_state["tr_flash"] = ("info", f"The form now holds the settings of run {run_id}. Change what you "
                                            "like and launch it as a new run.")


DATA_FIELDS = ("dataset", "test_file", "text_column", "label_column", "label_names", "eval_fraction",
               "max_train_samples", "max_eval_samples", "strip_html", "seed", "max_length")


def _load_distill(run_id: str | None = None) -> None:
    """Fill the form with a distillation of a finished run: same data and eval split, a smaller student."""
    run_id = run_id or st.session_state.get("tr_distill_pick")
    try:
        teacher = launching.load_config(rundir.resolve_run_dir(common.runs_dir(), run_id))
        config = preset("distill", teacher=run_id, run_name=f"student of {teacher.label}"[:200],
                        **{name: getattr(teacher, name) for name in DATA_FIELDS})
    except LabError as exc:
        st.session_state["tr_flash"] = ("error", str(exc))
        return
    load_into_form(config, f"a distillation of run {run_id}")
    st.session_state["tr_flash"] = ("info", f"The form now distils run {run_id} into a {config.student_layers}-layer "
                                            "student on the same data. Launch it, then compare teacher and "
                                            "student on the Runs page.")


def form_values() -> dict:
    return {name: st.session_state.get(KEY + name) for name in field_names()}


def config_from_form(owner: str) -> tuple[TrainConfig | None, dict[str, str]]:
    values = form_values()
    data = {}
    for name, value in values.items():
        if value is None and not _optional(name):
            continue
        data[name] = value
    data["owner"] = owner
    errors: dict[str, str] = {}
    for _ in range(3):  # values that do not even parse first; then the checks of everything else
        try:
            config = TrainConfig.from_dict(data, coerce_strings=True)
            return (config, {}) if not errors else (None, errors)
        except ConfigError as exc:
            fresh = {k: v for k, v in exc.errors.items() if k not in errors}
            errors.update(exc.errors)
            if not fresh:
                break
            for name in fresh:
                data.pop(name, None)  # try the rest with the default in its place
    return None, errors


# ---------------------------------------------------------------------------------------------------
# Widgets
# ---------------------------------------------------------------------------------------------------
def field_widget(name: str, errors: dict[str, str], *, disabled: bool = False) -> None:
    info = field_info(name)
    key = KEY + name
    label = name.replace("_", " ")
    help_text = info.get("help", "")
    kind = info["type"]
    if kind == "choice":
        options = list(info["choices"])
        if st.session_state.get(key) not in options:
            st.session_state[key] = info["default"]
        st.selectbox(label, options, key=key, help=help_text, disabled=disabled,
                     format_func=lambda v: BOOL_WORDS.get(v, str(v)) if isinstance(v, bool) else str(v))
    elif kind == "bool":
        st.toggle(label, key=key, help=help_text, disabled=disabled)
    elif kind == "int" and not _optional(name):
        lo, hi = info.get("min"), info.get("max")
        st.number_input(label, min_value=lo, max_value=hi, step=1, key=key, help=help_text, disabled=disabled)
    else:
        placeholder = "empty = none" if _optional(name) else ""
        st.text_input(label, key=key, help=help_text, disabled=disabled, placeholder=placeholder, max_chars=500)
    if name in errors:
        st.error(plain(errors[name]), icon=":material/error:")


def upload_section(errors: dict[str, str], disabled: bool) -> None:
    """Upload a table, preview it, pick the columns, see the label mapping, then use it."""
    limit = max_upload_mb()
    uploaded = st.file_uploader(f"Or upload a CSV, TSV, JSON Lines or Parquet file (up to {limit} MB)",
                                type=UPLOAD_TYPES, key="tr_upload", max_upload_size=limit, disabled=disabled,
                                help="The file is stored in the shared runs folder under a name the server makes "
                                     "up, so the training job can read it.")
    if uploaded is None:
        return
    saved: dict = st.session_state.setdefault("tr_uploads", {})
    entry = saved.get(uploaded.file_id)
    if entry is None:
        try:
            entry = {"path": str(store_upload(uploaded, limit)), "name": uploaded.name}
        except LabError as exc:
            st.error(plain(exc), icon=":material/error:")
            return
        saved[uploaded.file_id] = entry
    path = Path(entry["path"])
    try:
        table = tables.read_table(path)
    except LabError as exc:
        st.error(plain(exc), icon=":material/error:")
        return
    except Exception as exc:  # noqa: BLE001 - a file we cannot parse at all
        st.error(plain(f"Could not read {entry['name']}: {type(exc).__name__}: {exc}"), icon=":material/error:")
        return
    st.caption(plain(f"{len(table):,} rows, columns: {', '.join(map(str, table.columns))}"))
    st.dataframe(table.head(20), hide_index=True, key="tr_upload_preview")
    columns = [str(c) for c in table.columns]
    if not columns:
        st.error("The file has no usable columns.")
        return
    guess_text = next((c for c in columns if c.lower() in ("text", "review", "sentence", "content")), columns[0])
    guess_label = next((c for c in columns if c.lower() in ("label", "sentiment", "labels", "target")),
                       columns[-1])
    c1, c2 = st.columns(2)
    text_col = c1.selectbox("Text column", columns, index=columns.index(guess_text), key="tr_upload_text")
    label_col = c2.selectbox("Label column", columns, index=columns.index(guess_label), key="tr_upload_label")
    label_names = [s.strip() for s in str(st.session_state.get(KEY + "label_names", "")).split(",") if s.strip()]
    try:
        _, mapping = labels.map_labels(list(table[label_col]), label_names or ["NEGATIVE", "POSITIVE"])
        shown = {str(k): f"{v} = {(label_names or ['NEGATIVE', 'POSITIVE'])[v]}" for k, v in mapping.items()}
        st.write("Label mapping (value in the file → label):")
        st.table({"value in the file": list(shown), "becomes": list(shown.values())})
        ok = text_col != label_col
        if not ok:
            st.error("The text and label columns must differ.")
    except LabError as exc:
        st.error(plain(exc), icon=":material/error:")
        ok = False
    st.button("Use this file for training", key="tr_use_upload", disabled=disabled or not ok,
              on_click=_use_upload, args=(str(path), text_col, label_col), icon=":material/check:")


def store_upload(uploaded, limit_mb: int) -> Path:
    """Save an upload under <runs_dir>/_uploads/ with a server-made name (the user's file name is never a path)."""
    return uploads.save_upload(common.runs_dir(), uploaded.getvalue(), uploaded.name, max_bytes=limit_mb * 2**20)


def _use_upload(path: str, text_col: str, label_col: str) -> None:
    st.session_state[KEY + "dataset"] = path
    st.session_state[KEY + "text_column"] = text_col
    st.session_state[KEY + "label_column"] = label_col
    st.session_state[KEY + "test_file"] = ""
    st.session_state.pop("tr_preflight", None)


# ---------------------------------------------------------------------------------------------------
# Preview
# ---------------------------------------------------------------------------------------------------
@st.cache_data(ttl=60, show_spinner=False)
def _train_samples(config_json: str) -> int | None:
    return preflight.estimate_train_samples(TrainConfig.from_json(config_json))


def preview(config: TrainConfig) -> None:
    st.subheader("What this run will do")
    n = _train_samples(config.to_json())
    if n is None:
        n = st.number_input("Training reviews (the size of this data set is not known before loading it)",
                            min_value=1, value=25000, step=1000, key="tr_preview_samples")
    try:
        from lib.job import steps
    except ImportError:
        steps = None
    row1, row2 = st.columns(4), st.columns(4)
    row1[0].metric("Training reviews", f"{n:,}")
    row1[1].metric("Effective batch", f"{config.effective_batch_size:,}",
                   help="per-device batch × processes × machines × gradient accumulation")
    if steps is None:
        st.caption("The step preview is not available in this installation.")
    else:
        try:
            schedule = steps.schedule_for_config(config, n)
            plan = schedule.plan
            row1[2].metric("Steps per epoch", f"{plan.steps_per_epoch:,}")
            row1[3].metric("Optimizer steps", f"{plan.total_steps:,}", help="in the whole run")
            row2[0].metric("Log events", f"{len(schedule.steps_of('log')):,}")
            row2[1].metric("Evaluations", f"{len(schedule.steps_of('eval')):,}")
            row2[2].metric("Checkpoints saved", f"{len(schedule.steps_of('save')):,}")
            row2[3].metric("Checkpoints kept", f"{len(schedule.surviving):,}",
                           help="checkpoints left on disk at the end (save_total_limit)")
            formula = getattr(plan, "formula", None)
            if formula:
                st.caption(formula() if callable(formula) else str(formula))
            for note in getattr(schedule, "notes", []) or []:
                st.caption(note)
        except LabError as exc:
            st.warning(plain(exc))
        except Exception as exc:  # noqa: BLE001 - the preview must never break the form
            st.warning(plain(f"No step preview for these settings ({type(exc).__name__}: {exc})."))
    argv = launching.job_command(config, Path("<runs-dir>") / "<new-run-id>")
    st.caption("The command the job will run (in its own process, with the settings saved in the run's config.json):")
    st.code(shlex.join(argv), language="bash")


# ---------------------------------------------------------------------------------------------------
# The run table
# ---------------------------------------------------------------------------------------------------
def _fmt_time(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def _row_state(row) -> str:
    state = row.display_state
    if state == "queued" and row.queue_position:
        return f"queued (#{row.queue_position})"
    if state == "running" and not row.total_steps:
        return "running (preparing)"
    return state


def run_table_body(user: str, admins: list[str], auth: bool) -> None:
    root = common.runs_dir()
    rows = reconcile.list_runs(root)
    if not rows:
        st.info("No runs yet. Launch one above.")
        return
    table = []
    for row in rows:
        eta = ""
        if row.state == "running":
            try:
                eta = progress.format_duration(progress.progress(row.path, row.status).eta_s)
            except Exception:  # noqa: BLE001
                eta = ""
        table.append({
            "run": row.run_id, "label": row.label, "owner": row.owner, "state": _row_state(row),
            "progress": row.progress if row.progress is not None else 0.0,
            "steps": f"{row.step}/{row.total_steps}" if row.total_steps else "",
            "ETA": eta, "model": row.model, "dataset": row.dataset,
            "started": _fmt_time(row.started_at),
            "duration": progress.format_duration(row.duration_s) if row.duration_s is not None else "",
            "best accuracy": row.best_eval_accuracy,
        })
    st.dataframe(table, hide_index=True, key="tr_run_table", column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
        "best accuracy": st.column_config.NumberColumn("best accuracy", format="%.3f"),
    })
    ids = [r.run_id for r in rows]
    by_id = {r.run_id: r for r in rows}
    wanted = st.session_state.get("tr_last_launched")
    if st.session_state.get("tr_selected") not in ids:
        st.session_state["tr_selected"] = wanted if wanted in ids else ids[0]
    selected = st.selectbox("Run", ids, key="tr_selected",
                            format_func=lambda i: f"{i} · {by_id[i].label[:60]} · {_row_state(by_id[i])}")
    row = by_id[selected]
    run_dir = Path(row.path)
    allowed = (not auth) or access.can_manage(run_dir, user, admins)
    why = "" if allowed else f"Only the owner ({row.owner or 'unknown'}) or an admin can do this."
    if row.error:
        st.error(plain(f"{row.error.get('message', '')} {row.error.get('hint', '')}".strip()),
                 icon=":material/error:")
        if row.error.get("log_tail"):
            with st.expander("End of the log"):
                st.code(row.error["log_tail"], language=None)
    if row.stalled:
        age = row.status.get("heartbeat_age_s") or 0
        st.warning(f"No sign of life from this run for {progress.format_duration(age)}. It may be busy loading data or "
                   "evaluating; check the log on the Runs page.", icon=":material/hourglass_empty:")
    c = st.columns(5)
    try:
        c[0].page_link("pages/runs.py", label="Open in Runs", icon=":material/monitoring:",
                       query_params={"run": selected})
    except Exception:  # noqa: BLE001 - the Runs page is not part of this app (yet)
        c[0].caption(f"Run id: {selected}")
    if c[1].button("Clone", key="tr_clone", icon=":material/content_copy:", on_click=_load_run, args=(selected,),
                   help="Copy this run's settings into the form above"):
        st.rerun()
    active = row.state in ("queued", "running")
    c[2].button("Cancel", key="tr_cancel", icon=":material/stop_circle:", disabled=not (allowed and active),
                help=why or "Stop this run (it can be resumed later)", on_click=_ask, args=("cancel", selected))
    c[3].button("Resume", key="tr_resume", icon=":material/play_circle:",
                disabled=not (allowed and row.state in rundir.RESUMABLE_STATES),
                help=why or "Continue from the newest complete checkpoint", on_click=_do, args=("resume", selected, user))
    c[4].button("Delete", key="tr_delete", icon=":material/delete:", disabled=not (allowed and not active),
                help=why or "Delete this run and all its files", on_click=_ask, args=("delete", selected))
    pending = st.session_state.get("tr_confirm")
    if pending and pending[1] == selected:
        action, run_id = pending
        verb = {"cancel": "Stop", "delete": "Delete everything of"}[action]
        st.warning(plain(f"{verb} run {run_id} ({row.label})?"), icon=":material/warning:")
        y, n = st.columns(2)
        y.button(f"Yes, {action} it", key="tr_confirm_yes", type="primary", on_click=_do,
                 args=(action, run_id, user))
        n.button("No, keep it", key="tr_confirm_no", on_click=_ask, args=(None, None))
    flash = st.session_state.pop("tr_table_flash", None)
    if flash:
        getattr(st, flash[0])(plain(flash[1]))


def _ask(action, run_id) -> None:
    st.session_state["tr_confirm"] = (action, run_id) if action else None


def _do(action: str, run_id: str, user: str) -> None:
    """Cancel, resume or delete (button callback; checks permission again at the moment of acting)."""
    st.session_state["tr_confirm"] = None
    admins, _ = lab_access()
    try:
        run_dir = rundir.resolve_run_dir(common.runs_dir(), run_id)
        if common.auth_configured() and not access.can_manage(run_dir, user, admins):
            raise LabError("Only the run's owner or an admin can do this.")
        if action == "cancel":
            status = control.cancel(run_dir, by=user or "app")
            st.session_state["tr_table_flash"] = ("success", f"Run {run_id} is {status.get('state')}.")
        elif action == "resume":
            launching.resume(run_dir, launched_by=f"app:{user}")
            st.session_state["tr_table_flash"] = ("success", f"Run {run_id} resumes from its newest checkpoint.")
        elif action == "delete":
            control.delete(run_dir)
            st.session_state["tr_table_flash"] = ("success", f"Run {run_id} was deleted.")
    except LabError as exc:
        st.session_state["tr_table_flash"] = ("error", str(exc))


# ---------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------
def launch_clicked(config: TrainConfig, user: str) -> None:
    with st.spinner("Checking the model and data before starting…"):
        problems = preflight.preflight(config)
    if problems:
        st.session_state["tr_preflight"] = {"config": config.to_json(), "errors": problems}
        st.rerun()
    try:
        run_dir = launching.launch(config, common.runs_dir(), owner=user, launched_by=f"app:{user}")
    except LabError as exc:
        common.show_lab_error(exc)
        return
    st.session_state["tr_last_launched"] = run_dir.name
    st.session_state["tr_selected"] = run_dir.name
    st.session_state["tr_flash"] = ("success", f"Launched run {run_dir.name}. It trains in the background: you "
                                               "can close this tab and come back later.")
    st.rerun()


def main() -> None:
    st.title("Train a model")
    auth = common.auth_configured()
    user = common.current_user()
    admins, launchers = lab_access()
    if auth:
        if not common.logged_in_user():
            st.info("Sign in to launch runs or manage your own; until then this page is read-only.")
            if st.button("Sign in", key="tr_login"):
                st.login()
        may_launch = access.can_launch(user, launchers, admins)
        if common.logged_in_user() and not may_launch:
            st.info(f"You are signed in as {plain(user)}, but you are not on this lab's list of people who may launch runs. "
                    "You can still watch every run.")
    else:
        may_launch = True
        st.caption("This lab is running open: no sign-in is configured, so anyone who can open it may launch, "
                   "cancel and delete runs. That is fine for a demo on your own machine; see the README to "
                   "set up sign-in on a shared server.")

    if "tr_source" not in st.session_state:
        load_into_form(preset("demo"), "preset demo")
    flash = st.session_state.pop("tr_flash", None)
    if flash:
        getattr(st, flash[0])(plain(flash[1]))

    # 1. Where to start from
    st.subheader("Start from")
    c1, c2 = st.columns(2)
    with c1:
        names = list(PRESETS)
        st.selectbox("Preset", names, key="tr_preset", index=names.index("demo") if "demo" in names else 0,
                     format_func=lambda p: f"{p}: {PRESET_HELP.get(p, '')}")
        st.button("Load preset", key="tr_load_preset", on_click=_load_preset, icon=":material/tune:")
    with c2:
        earlier = [r for r in reconcile.list_runs(common.runs_dir())]
        if earlier:
            labels = {r.run_id: f"{r.run_id} · {r.label[:50]}" for r in earlier}
            if st.session_state.get("tr_clone_pick") not in labels:
                st.session_state.pop("tr_clone_pick", None)
            st.selectbox("Or clone an earlier run", list(labels), key="tr_clone_pick",
                         format_func=lambda i: labels.get(i, i))
            st.button("Clone its settings", key="tr_clone_top", on_click=_load_run, icon=":material/content_copy:")
            finished = {r.run_id: labels[r.run_id] for r in earlier if r.state == "finished"}
            if finished:
                if st.session_state.get("tr_distill_pick") not in finished:
                    st.session_state.pop("tr_distill_pick", None)
                st.selectbox("Or distil from run", list(finished), key="tr_distill_pick",
                             format_func=lambda i: finished.get(i, i),
                             help="Train a smaller, faster student that imitates this finished run (the teacher).")
                st.button("Distil it", key="tr_distill_top", on_click=_load_distill, icon=":material/compress:")
        else:
            st.caption("Earlier runs will show up here to clone.")
    st.caption(plain(f"The form holds the settings of {st.session_state.get('tr_source', 'preset demo')}."))

    # 2. The form (errors from the last check appear under their field)
    config, errors = config_from_form(user)
    pre = st.session_state.get("tr_preflight")
    if pre and config is not None and pre.get("config") == config.to_json():
        errors = {**pre["errors"], **errors}
    task = st.session_state.get(KEY + "task", "finetune")
    st.subheader("Settings")
    for group in GROUPS:
        if group == "Distillation" and task != "distill":
            continue
        names = [n for n in field_names() if field_info(n).get("group") == group and n != "owner"]
        n_err = sum(1 for n in names if n in errors)
        title = f"{group} · {n_err} to fix" if n_err else group
        with st.expander(title, expanded=group in ALWAYS_OPEN or n_err > 0):
            if group == "Data":
                upload_section(errors, disabled=not may_launch)
            cols = st.columns(2)
            for i, field in enumerate(names):
                with cols[i % 2]:
                    field_widget(field, errors)
    other = {k: v for k, v in errors.items() if k not in field_names()}
    for key, msg in other.items():
        st.error(plain(f"{key}: {msg}"))

    # 3. Preview and launch
    if config is not None:
        preview(config)
    else:
        st.warning("Fix the settings marked above to see what the run will do.")
    if not user:
        st.warning("Type your name before launching: it is shown as the owner of your runs.")
        st.text_input("Your name", key="tr_owner_input", on_change=_copy_owner, max_chars=100)
    ready = config is not None and bool(user) and may_launch
    if st.button("Launch", key="tr_launch", type="primary", disabled=not ready, icon=":material/rocket_launch:",
                 help=None if ready else "Fix the settings, type your name, or sign in first"):
        launch_clicked(config, user)

    # 4. Runs
    st.subheader("Runs")
    st.caption("Refreshes every few seconds. Runs keep going when you close this tab.")
    st.fragment(run_every=REFRESH_S)(run_table_body)(user, admins, auth)


def _copy_owner() -> None:
    name = str(st.session_state.get("tr_owner_input", "")).strip()
    if name:  # the box can fire with '' on a rerun: never wipe a name typed in the sidebar
        st.session_state[common.OWNER_KEY] = name


main()

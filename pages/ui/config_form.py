"""The Train form, drawn from TrainConfig's own field metadata (group, help, choices, min, max).

One session-state key per field (``tr_<field>``), so the form survives reruns and a preset, a clone or
an upload can fill it. The page passes the session state in; nothing here keeps state of its own.

Multi-node fields (``num_nodes``, ``node_rank``, ``rdzv_endpoint``) appear only when an admin listed
rendezvous endpoints (``[lab] rendezvous_endpoints``); then ``rdzv_endpoint`` is a choice among them.
A field that is not offered keeps TrainConfig's default, whatever the session state holds. When runs go
to Slurm, ``num_nodes`` is offered and the other two never are (Slurm's node list gives the rendezvous).
"""
from __future__ import annotations

from collections.abc import MutableMapping

import streamlit as st

from lib.config import GROUPS, TrainConfig, field_info, field_names, on_slurm
from lib.errors import ConfigError
from lib.registry.access import Policy
from pages.ui.text import plain

KEY = "tr_"                                   # form widget keys: tr_<field name>
SOURCE_KEY = "tr_source"                      # what the form was last filled from
PREFLIGHT_KEY = "tr_preflight"                # problems found by the last launch attempt
ALWAYS_OPEN = ("Run", "Data", "Model", "Schedule")
MULTI_NODE = ("num_nodes", "node_rank", "rdzv_endpoint")
NOT_IN_FORM = ("owner", "sweep_id", "sweep_point")  # filled in by the app or a sweep, never typed
BOOL_WORDS = {True: "on", False: "off", "auto": "auto"}
TEXT_MAX_CHARS = 500                          # TrainConfig refuses longer text values


def is_optional(name: str) -> bool:
    """Whether a field may be left empty (TrainConfig's own rule)."""
    return bool(field_info(name)["optional"])


def offered(name: str, policy: Policy) -> bool:
    """Whether the form shows this field to a visitor under this policy."""
    if name in NOT_IN_FORM:
        return False
    if on_slurm():  # Slurm picks the nodes and the job finds its rendezvous on the first one
        return name not in ("node_rank", "rdzv_endpoint")
    return name not in MULTI_NODE or bool(policy.rendezvous_endpoints)


# ---------------------------------------------------------------------------------------------------
# Form state <-> TrainConfig
# ---------------------------------------------------------------------------------------------------
def to_widget(name: str, value):
    """A config value as the form widget holds it."""
    kind = field_info(name)["type"]
    if kind in ("choice", "bool"):
        return value
    if kind == "int" and not is_optional(name):
        return int(value)
    if kind == "list":
        return ", ".join(str(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and name != "learning_rate":
        return str(int(value)) if abs(value) >= 1 else str(value)
    return str(value)


def load_into_form(state: MutableMapping, config: TrainConfig, source: str) -> None:
    """Fill every field of the form from ``config``; ``source`` says where it came from (shown)."""
    for name in field_names():
        state[KEY + name] = to_widget(name, getattr(config, name))
    state[SOURCE_KEY] = source
    state.pop(PREFLIGHT_KEY, None)


def form_values(state: MutableMapping, policy: Policy) -> dict:
    """The values of the fields the form offers (the others keep their defaults)."""
    return {name: state.get(KEY + name) for name in field_names() if offered(name, policy)}


def parse_values(values: dict, owner: str) -> tuple[TrainConfig | None, dict[str, str]]:
    """A TrainConfig from form values, or None and every problem found as {field: message}.

    Values that do not parse (``fast`` as a learning rate) are reported first; the other fields are
    then checked once with defaults in the place of those values, so both kinds show at the same time.
    """
    data = {name: value for name, value in values.items() if value is not None or is_optional(name)}
    data["owner"] = owner
    try:
        return TrainConfig.from_dict(data, coerce_strings=True), {}
    except ConfigError as exc:
        errors = dict(exc.errors)
    try:
        TrainConfig.from_dict({k: v for k, v in data.items() if k not in errors}, coerce_strings=True)
    except ConfigError as exc:
        errors = {**exc.errors, **errors}
    return None, errors


def config_from_form(state: MutableMapping, policy: Policy, owner: str) -> tuple[TrainConfig | None, dict]:
    return parse_values(form_values(state, policy), owner)


def errors_with_preflight(state: MutableMapping, config: TrainConfig | None, errors: dict) -> dict:
    """The form's errors plus the problems the last launch attempt found, while the form is unchanged."""
    pre = state.get(PREFLIGHT_KEY)
    if pre and config is not None and pre.get("config") == config.to_json():
        return {**pre["errors"], **errors}
    return errors


# ---------------------------------------------------------------------------------------------------
# Widgets
# ---------------------------------------------------------------------------------------------------
def _rendezvous_widget(state: MutableMapping, key: str, label: str, help_text: str, policy: Policy,
                       disabled: bool) -> None:
    options = ["", *policy.rendezvous_endpoints]
    if state.get(key) not in options:
        state[key] = ""
    st.selectbox(label, options, key=key, disabled=disabled,
                 help=help_text + " Only the endpoints an admin allowed can be used.",
                 format_func=lambda e: e or "none (one machine)")


def field_widget(state: MutableMapping, name: str, errors: dict[str, str], policy: Policy, *,
                 disabled: bool = False) -> None:
    """One field's widget, with its problem (if any) right below it."""
    info = field_info(name)
    key, label, help_text, kind = KEY + name, name.replace("_", " "), info.get("help", ""), info["type"]
    if name == "rdzv_endpoint":
        _rendezvous_widget(state, key, label, help_text, policy, disabled)
    elif kind == "choice":
        options = list(info["choices"])
        if state.get(key) not in options:
            state[key] = info["default"]
        st.selectbox(label, options, key=key, help=help_text, disabled=disabled,
                     format_func=lambda v: BOOL_WORDS.get(v, str(v)) if isinstance(v, bool) else str(v))
    elif kind == "bool":
        st.toggle(label, key=key, help=help_text, disabled=disabled)
    elif kind == "int" and not is_optional(name):
        st.number_input(label, min_value=info.get("min"), max_value=info.get("max"), step=1, key=key,
                        help=help_text, disabled=disabled)
    else:
        st.text_input(label, key=key, help=help_text, disabled=disabled, max_chars=TEXT_MAX_CHARS,
                      placeholder="empty = none" if is_optional(name) else "")
    if name in errors:
        st.error(plain(errors[name]), icon=":material/error:")


def group_fields(group: str, policy: Policy) -> list[str]:
    return [n for n in field_names() if field_info(n).get("group") == group and offered(n, policy)]


def render(state: MutableMapping, errors: dict[str, str], policy: Policy, *, data_extra=None) -> None:
    """Every group of the form in an expander (open when it holds a problem). ``data_extra`` is drawn at the
    top of the Data group (the upload picker)."""
    task = state.get(KEY + "task", "finetune")
    drawn: set[str] = set()
    for group in GROUPS:
        if group == "Distillation" and task != "distill":
            continue
        names = group_fields(group, policy)
        drawn.update(names)
        n_err = sum(1 for n in names if n in errors)
        with st.expander(f"{group} · {n_err} to fix" if n_err else group, expanded=group in ALWAYS_OPEN or n_err > 0):
            if group == "Data" and data_extra is not None:
                data_extra()
            if group == "Hardware" and on_slurm():
                st.caption("Runs go to Slurm: num nodes asks Slurm for that many machines, and the job sets up "
                           "training across them by itself.")
            elif group == "Hardware" and not policy.rendezvous_endpoints:
                st.caption("Training on several machines is not offered here: an admin allows it by listing "
                           "rendezvous endpoints ([lab] rendezvous_endpoints).")
            cols = st.columns(2)
            for i, name in enumerate(names):
                with cols[i % 2]:
                    field_widget(state, name, errors, policy)
    for key, message in errors.items():  # problems of settings that have no widget on the page now
        if key not in drawn:
            st.error(plain(f"{key}: {message}"))

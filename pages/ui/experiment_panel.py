"""The Train page's sweep option and estimate button.

- **Sweep**: up to three fields, each with a comma-separated list of values; the panel shows how many
  runs that makes and how many optimizer steps they add up to, then launches one run per combination
  through :func:`lib.registry.sweeps.launch_sweep` (the registry checks permission and the quota for
  each run; a refused part is reported by name).
- **Estimate**: a short dry run of the form's settings on this machine (:mod:`lib.registry.estimate`):
  seconds per optimizer step, the time the run would take and its peak memory. It waits for the device
  queue instead of taking a slot from a run.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

import streamlit as st

from lib.config import field_info, field_names
from lib.errors import ConfigError, LabError
from lib.registry import access, estimate, preflight, sweeps
from lib.registry.access import Actor, Policy
from lib.util.fmt import format_duration
from pages.ui import config_form, session
from pages.ui.text import flash, plain

SWEEP_ON_KEY = "tr_sweep_on"
ESTIMATE_KEY = "tr_estimate_result"
FLASH_KEY = "tr_flash"
SWEEP_SLOTS = 3


def sweep_fields() -> list[str]:
    """Fields the form can sweep: numbers, choices and switches (not text lists, not who owns a run)."""
    return [n for n in field_names() if n not in sweeps.NOT_SWEEPABLE and n not in config_form.NOT_IN_FORM
            and field_info(n)["type"] in ("int", "float", "choice", "bool")]


def entries(state: MutableMapping) -> list[tuple[str, str]]:
    return [(state.get(f"tr_sweep_field_{i}") or "", state.get(f"tr_sweep_values_{i}") or "")
            for i in range(SWEEP_SLOTS)]


def _launch_sweep(owner: str) -> None:
    """Launch-sweep button callback: the form and the grid as they are now, as the person acting now."""
    state = st.session_state
    actor, policy = session.actor(), session.policy()
    refused = access.why_not_launch(actor, policy)
    if refused:
        flash(state, FLASH_KEY, "error", refused)
        return
    config, _errors = config_form.config_from_form(state, policy, owner=owner)
    if config is None:
        flash(state, FLASH_KEY, "error", "Fix the settings marked below first.")
        return
    problems = preflight.preflight(config)
    if problems:
        state[config_form.PREFLIGHT_KEY] = {"config": config.to_json(), "errors": problems}
        return
    try:
        plan = sweeps.plan_from_entries(config, entries(state))
        result = sweeps.launch_sweep(plan, session.runs_dir(), owner=session.typed_name(),
                                     launched_by=f"app:{actor.identity}", actor=actor, policy=policy)
    except LabError as exc:
        flash(state, FLASH_KEY, "error", str(exc))
        return
    text = (f"Sweep {result.sweep_id}: launched {len(result.launched)} of {plan.n_runs} run(s); they wait in the "
            "queue and start one after another.")
    if result.refused:
        names = "; ".join(sweeps.point_text(p) for p, _ in result.refused)
        text += f" Not launched: {names}. {result.refused[0][1]}"
    flash(state, FLASH_KEY, "warning" if result.refused else "success", text)


def sweep_section(state: MutableMapping, config, n_train: int | None, actor: Actor, policy: Policy,
                  owner: str) -> None:
    """The Sweep option: pick up to three fields and their values, see what it makes, launch it."""
    if not st.toggle("Sweep: one run per combination of values", key=SWEEP_ON_KEY,
                     help="Try several settings at once. Every combination becomes a run of its own in the queue."):
        return
    options = [""] + sweep_fields()
    for i in range(SWEEP_SLOTS):
        c1, c2 = st.columns([1, 2])
        c1.selectbox(f"Field {i + 1}", options, key=f"tr_sweep_field_{i}",
                     format_func=lambda n: n.replace("_", " ") if n else "(none)")
        c2.text_input(f"Values {i + 1}, comma separated", key=f"tr_sweep_values_{i}", max_chars=500,
                      placeholder="for example 2e-5, 5e-5")
    chosen = [(k, v) for k, v in entries(state) if k]
    if not chosen:
        st.caption("Pick a field and type its values.")
        return
    if config is None:
        st.warning("Fix the settings marked above to see what the sweep makes.")
        return
    try:
        plan = sweeps.plan_from_entries(config, chosen, num_train_samples=n_train)
    except ConfigError as exc:
        for message in exc.errors.values():
            st.error(plain(message), icon=":material/error:")
        return
    steps = (f"{plan.total_steps:,} optimizer steps in all" if plan.total_steps is not None
             else "the number of steps is known once the data is loaded")
    st.info(plain(f"This sweep makes {plan.n_runs} run(s), {steps}."), icon=":material/grid_view:")
    st.caption(plain("; ".join(sweeps.point_text(p) for p in plan.points[:12])
                     + (" …" if plan.n_runs > 12 else "")))
    why = access.why_not_launch(actor, policy)
    if not policy.sign_in and not owner:
        why = why or "Type your name first: it is shown as the owner of your runs."
    st.button(f"Launch sweep ({plan.n_runs} runs)", key="tr_sweep_launch", icon=":material/grid_view:",
              disabled=why is not None, help=why, on_click=_launch_sweep, args=(owner,))


def estimate_section(state: MutableMapping, config, runs_dir: Path, actor: Actor, policy: Policy) -> None:
    """The Estimate button and the last estimate of these settings."""
    why = access.why_not_launch(actor, policy) or (None if config is not None else "Fix the settings first.")
    clicked = st.button("Estimate", key="tr_estimate", icon=":material/timer:", disabled=why is not None,
                        help=why or "A short dry run here (about 30 s): a few real optimizer steps with these "
                                    "settings, to tell how long the run takes and how much memory it needs.")
    if clicked and config is not None:
        with st.spinner("Measuring a few optimizer steps…"):
            try:
                state[ESTIMATE_KEY] = {"config": config.to_json(), "result": estimate.estimate(config, runs_dir)}
            except LabError as exc:
                state[ESTIMATE_KEY] = {"config": config.to_json(), "error": str(exc)}
    shown = state.get(ESTIMATE_KEY)
    if not shown:
        return
    if config is None or shown["config"] != config.to_json():
        st.caption("The settings changed since this estimate; estimate again to measure them.")
    if shown.get("error"):
        st.warning(plain(shown["error"]), icon=":material/timer_off:")
        return
    r = shown["result"]
    cols = st.columns(4)
    cols[0].metric("Seconds per step", f"{r['seconds_per_step']:.3f}")
    cols[1].metric("Estimated time", format_duration(r["eta_s"]))
    cols[2].metric("Peak memory", f"{r['peak_rss_mb']:,.0f} MB")
    cols[3].metric("Fits in free memory", "yes" if r["fits_in_free_memory"] else "no")
    for line in estimate.summary_lines(r):
        st.caption(plain(line))

"""Runs: follow training live, compare runs, look at checkpoints, try a model, see where it goes wrong.

Everything shown here is read from the runs directory through ``lib``; this page picks the run (from
the filters, the menu or the ``?run=`` address) and lets each tab in ``pages/ui/runs_tabs`` draw itself.
"""
from __future__ import annotations

import streamlit as st

from lib.registry import reconcile
from lib.registry.reconcile import RunView
from lib.store.rundir import STATES
from pages.ui import session
from pages.ui.access_notes import read_only_banner
from pages.ui.runs_tabs import (
    TabContext,
    checkpoints,
    compare,
    errors,
    notes,
    overview,
    run_title,
    sweep,
    training,
    tryout,
)

TABS = (("Training", training), ("Compare", compare), ("Checkpoints", checkpoints), ("Try it", tryout),
        ("Error analysis", errors), ("Sweep", sweep), ("Notes", notes))


def filtered(runs: list[RunView], me: str) -> list[RunView]:
    """The runs that pass the state and owner filters (drawn here)."""
    c_state, c_owner = st.columns(2)
    states = c_state.multiselect("State", list(STATES), key="runs_state_filter", placeholder="all states")
    owners = sorted({r.owner for r in runs if r.owner})
    options = ["everyone"] + (["me"] if me else []) + [o for o in owners if o != me]
    owner = c_owner.selectbox("Owner", options, key="runs_owner_filter")
    wanted = me if owner == "me" else owner
    tags = sorted({t for r in runs for t in r.tags})
    picked = st.multiselect("Tags", tags, key="runs_tag_filter", placeholder="any tags") if tags else []
    return [r for r in runs if (not states or r.state in states) and (owner == "everyone" or r.owner == wanted)
            and all(t in r.tags for t in picked)]


def pick(runs: list[RunView]) -> RunView:
    """The run to show: the menu's choice, else the one in the address (?run=), else the newest."""
    by_id = {r.run_id: r for r in runs}
    if st.session_state.get("runs_pick") not in by_id:
        st.session_state.pop("runs_pick", None)
        wanted = st.query_params.get("run")
        if wanted in by_id:
            st.session_state["runs_pick"] = wanted
    run_id = st.selectbox("Run (newest first)", list(by_id), key="runs_pick", format_func=lambda i: run_title(by_id[i]))
    if st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id
    return by_id[run_id]


st.title("Runs")
actor, policy = session.actor(), session.policy()
read_only_banner(actor, policy)   # looking and trying models stay open to everyone; this page manages nothing
root = session.runs_dir()
all_runs = reconcile.list_runs(root)
if not all_runs:
    st.info("No runs yet. Launch one on the Train page: it shows up here while it trains.")
    st.stop()
shown = filtered(all_runs, actor.identity)
if not shown:
    st.info("No run matches these filters.")
    st.stop()
run = pick(shown)
ctx = TabContext(runs_dir=root, actor=actor, policy=policy, runs=tuple(all_runs))
overview.render(run, ctx)
for tab, (_, module) in zip(st.tabs([name for name, _ in TABS], key="runs_tab", on_change="rerun"), TABS):
    if tab.open is not False:  # None when tabs do not track state: render every tab
        with tab:
            module.render(run, ctx)

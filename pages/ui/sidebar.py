"""The sidebar every page shares: where the runs live, who is using the lab, the Hub, library versions."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from lib.registry import backend as backends
from lib.registry.access import Actor, Policy
from lib.sources import hub
from lib.util import sysinfo
from pages.ui.session import OWNER_KEY
from pages.ui.text import plain


@st.cache_data(ttl=300, show_spinner=False)
def hub_status() -> tuple[bool, str]:
    """Checked once per 5 minutes with a 2-second timeout: the sidebar never hangs."""
    return hub.hub_reachable(timeout=2.0)


@st.cache_data(show_spinner=False)
def library_versions() -> dict[str, str]:
    return sysinfo.versions()


def _who(actor: Actor, policy: Policy) -> None:
    if policy.sign_in:
        if actor.signed_in:
            st.caption(plain(f"Signed in as {actor.identity}"))
            st.button("Log out", key="lab_logout", on_click=st.logout)
        else:
            st.button("Log in", key="lab_login", on_click=st.login, type="primary")
            st.caption("You can look around; logging in lets you launch and manage runs.")
        return
    # Open mode: the name is only a label for the runs one launches, never an identity.
    st.text_input("Your name", key=OWNER_KEY, max_chars=80, help="Shown as the owner of the runs you launch.")
    st.caption(":material/lock_open: Running open: no login is configured, so the name is only a label (fine for "
               "a local demo). See the README to require one on a shared server.")


def draw(runs_dir: Path, actor: Actor, policy: Policy) -> None:
    """Draw the shared sidebar (call it inside ``with st.sidebar``)."""
    st.caption("Runs directory")
    st.code(str(runs_dir), language=None)
    warning = backends.startup_warning(runs_dir)  # under Slurm: a folder the other nodes cannot see
    if warning:
        st.warning(plain(warning), icon=":material/warning:")
    _who(actor, policy)
    if policy.read_only:
        st.caption(":material/visibility: Read-only lab: nothing can be launched, cancelled, resumed or deleted "
                   "from the browser.")
    reachable, _ = hub_status()
    if reachable:
        st.caption(":material/cloud_done: Hugging Face Hub reachable")
    else:
        st.caption(":material/cloud_off: Hugging Face Hub not reachable: the bundled model and built-in "
                   "reviews work offline.")
    with st.expander("Versions"):
        st.dataframe([{"library": k, "version": v} for k, v in library_versions().items()], hide_index=True,
                     key="lab_versions")

"""BERT Sentiment Lab: the Streamlit entry point. It routes to the pages and draws the shared sidebar.

Run it with ``streamlit run app.py``.
"""
from __future__ import annotations

import streamlit as st

from lib.sources import hub
from lib.util import sysinfo
from pages import common

st.set_page_config(page_title="BERT Sentiment Lab", page_icon=":material/reviews:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:", url_path="runs"),
]


@st.cache_data(ttl=300, show_spinner=False)
def hub_status() -> tuple[bool, str]:
    """Checked once per 5 minutes with a 2-second timeout: the sidebar never hangs."""
    return hub.hub_reachable(timeout=2.0)


@st.cache_data(show_spinner=False)
def library_versions() -> dict[str, str]:
    return sysinfo.versions()


nav = st.navigation(PAGES)

with st.sidebar:
    st.caption("Runs directory")
    st.code(str(common.runs_dir()), language=None)
    if common.auth_configured():
        if common.logged_in_user():
            st.caption(f"Signed in as {common.current_user()}")
            st.button("Log out", key="lab_logout", on_click=st.logout)
        else:
            st.button("Log in", key="lab_login", on_click=st.login, type="primary")
            st.caption("You can look around; logging in lets you launch and manage runs.")
    else:
        st.text_input("Your name", key=common.OWNER_KEY, max_chars=80,
                      help="Shown as the owner of the runs you launch.")
        st.caption(":material/lock_open: Running open: no login is configured (fine for a local demo). "
                   "See the README to require one on a shared server.")
    reachable, reason = hub_status()
    if reachable:
        st.caption(":material/cloud_done: Hugging Face Hub reachable")
    else:
        st.caption(":material/cloud_off: Hugging Face Hub not reachable: the bundled model and built-in "
                   "reviews work offline.")
    with st.expander("Versions"):
        st.dataframe([{"library": k, "version": v} for k, v in library_versions().items()], hide_index=True,
                     key="lab_versions")

nav.run()

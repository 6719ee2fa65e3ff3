"""BERT Sentiment Lab: the Streamlit entry point. It only routes and draws the shared sidebar.

Run it with ``streamlit run app.py``.
"""
from __future__ import annotations

import streamlit as st

from pages import common

st.set_page_config(page_title="BERT Sentiment Lab", page_icon=":material/reviews:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
]

nav = st.navigation(PAGES)

with st.sidebar:
    st.caption("Runs directory")
    st.code(str(common.runs_dir()), language=None)
    if common.logged_in_user():
        st.caption(f"Signed in as {common.current_user()}")
    else:
        st.text_input("Your name", key=common.OWNER_KEY, help="Shown as the owner of the runs you launch.")

nav.run()

"""BERT Sentiment Lab: the Streamlit entry point. It routes to the pages and draws the shared sidebar.

Run it with ``streamlit run app.py``.
"""
from __future__ import annotations

import streamlit as st

from pages.ui import session, sidebar

st.set_page_config(page_title="BERT Sentiment Lab", page_icon=":material/reviews:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:", url_path="runs"),
]

nav = st.navigation(PAGES)
with st.sidebar:
    sidebar.draw(session.runs_dir(), session.actor(), session.policy())
nav.run()

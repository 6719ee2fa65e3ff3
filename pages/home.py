"""Home: what the lab is for, the three steps, the hardware, and the latest runs."""
from __future__ import annotations

import streamlit as st

from lib.registry import reconcile
from lib.sources.demo_data import demo_statement
from lib.util import sysinfo
from pages.ui import run_table, session
from pages.ui.access_notes import read_only_banner


@st.cache_data(show_spinner=False)
def hardware() -> dict:
    return sysinfo.hardware()


st.title("BERT Sentiment Lab")
read_only_banner(session.actor(), session.policy())
st.markdown(
    "Fine-tune a BERT model to tell positive movie reviews from negative ones, watch it learn, and try it "
    "yourself. Everything works offline with the bundled MiniLM model and the built-in movie reviews; with "
    "a network, Hugging Face Hub models such as `bert-base-uncased` and data sets such as `imdb` work too."
)

c1, c2, c3 = st.columns(3)
with c1:
    st.subheader(":material/school: 1. Learn")
    st.write("See how a review becomes WordPiece tokens, a padded batch and a number of optimizer steps.")
    st.page_link("pages/learn.py", label="Open Learn", icon=":material/arrow_forward:")
with c2:
    st.subheader(":material/model_training: 2. Train")
    st.write("Pick a preset, launch a training job on this machine, queue, cancel or resume it.")
    st.page_link("pages/train.py", label="Open Train", icon=":material/arrow_forward:")
with c3:
    st.subheader(":material/monitoring: 3. Runs")
    st.write("Follow training live, compare runs, try the model on your own reviews, find its mistakes.")
    st.page_link("pages/runs.py", label="Open Runs", icon=":material/arrow_forward:")

with st.expander("What the offline demo model knows", icon=":material/info:"):
    st.markdown(demo_statement())

st.divider()
left, right = st.columns([1, 2])
with left:
    st.subheader("This machine")
    st.write(sysinfo.hardware_summary(hardware()))
    versions = sysinfo.versions()
    st.caption(f"torch {versions['torch']} · transformers {versions['transformers']} · "
               f"datasets {versions['datasets']} · streamlit {versions['streamlit']}")
with right:
    st.subheader("Latest runs")
    run_table.show_latest(reconcile.list_runs(session.runs_dir()), limit=5)

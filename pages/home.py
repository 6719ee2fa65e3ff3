"""Home: what the lab is for and where to start."""
from __future__ import annotations

import streamlit as st

st.title("BERT Sentiment Lab")
st.markdown(
    """
Fine-tune a BERT model to tell positive movie reviews from negative ones, watch it learn, and try it.

1. **Learn** how text becomes tokens, padded batches and optimizer steps.
2. **Train** a model: pick a preset, launch a job on the shared training box, and queue, cancel or resume it.
3. **Runs**: follow training live, compare runs, try the model on your own reviews and see where it goes wrong.

Everything works offline with the bundled MiniLM model and the built-in movie reviews.
"""
)

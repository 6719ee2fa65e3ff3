"""Learn: how text becomes tokens, padded batches and optimizer steps, computed on real data.

The logic lives in ``lib.job.tokenization``, ``lib.job.steps`` and ``lib.sources.preview``; the words in
``pages.ui.learn_text``; the tabs in ``pages.ui.learn_tabs`` and ``pages.ui.learn_steps``. Every input
is bounded (text by characters and lines, numbers by TrainConfig's limits), so any value stays cheap.
"""
from __future__ import annotations

import streamlit as st

from lib.config import BUNDLED_MODEL
from lib.errors import LabError
from lib.job import tokenization as tok
from lib.sources.models import load_tokenizer
from pages.ui import learn_data, learn_steps, learn_tabs, session
from pages.ui.learn_text import LANGUAGES, text
from pages.ui.text import plain, show_lab_error

MAP_BATCH = 1000      # the tutorial's map batch size (datasets' default)

lang = st.radio("Language / 语言", list(LANGUAGES), format_func=LANGUAGES.get, horizontal=True, key="learn_lang")


def T(key: str, **values) -> str:
    return text(lang, key, **values)


@st.cache_resource(show_spinner=False, max_entries=4)
def get_tokenizer(spec: str):
    return load_tokenizer(spec)


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_lengths(key: tuple, model_spec: str, _data: bytes | None = None):
    """Token length of every review: the slow part (seconds for 25,000 IMDb reviews), cached."""
    sample = learn_data.load_sample(*key, _data=_data, _runs_dir=session.runs_dir())
    return tok.token_lengths(get_tokenizer(model_spec), sample.texts)


@st.cache_data(show_spinner=False, max_entries=64)
def dataset_stats(key: tuple, model_spec: str, max_length: int, batch_size: int, _data: bytes | None = None):
    lengths = dataset_lengths(key, model_spec, _data=_data)
    return tok.stats_from_lengths(lengths, max_length, batch_size, map_batch_size=MAP_BATCH, seed=42)


st.title(T("title"))
st.caption(T("intro"))
model_spec = st.text_input(T("model_label"), value=BUNDLED_MODEL, key="learn_model", help=T("model_help"),
                           max_chars=learn_data.SPEC_MAX_CHARS).strip() or BUNDLED_MODEL
try:
    with st.spinner("…"):
        tokenizer = get_tokenizer(model_spec)
except LabError as exc:
    show_lab_error(exc)
    st.stop()
st.caption(T("model_loaded", name=plain(model_spec), vocab=len(tokenizer),
             lower=str(bool(getattr(tokenizer, "do_lower_case", False)))))

tab_tokens, tab_padding, tab_map, tab_stats, tab_steps = st.tabs(
    [T("tab_tokens"), T("tab_padding"), T("tab_map"), T("tab_stats"), T("tab_steps")])

with tab_stats:  # first: the padding, map and steps tabs use the data chosen here
    st.subheader(T("stats_header"))
    st.caption(T("stats_intro"))
    try:
        data = learn_data.pick_data(T, session.runs_dir())
    except LabError as exc:
        st.caption(T("stats_error"))
        show_lab_error(exc)
        data = None
    if data is not None:
        learn_tabs.stats_tab(T, data, lambda max_length, batch: dataset_stats(
            data.key, model_spec, max_length, batch, _data=data.data), MAP_BATCH)

with tab_tokens:
    st.subheader(T("tok_header"))
    st.caption(T("tok_intro"))
    learn_tabs.tokens_tab(T, tokenizer)

with tab_padding:
    st.subheader(T("pad_header"))
    st.caption(T("pad_intro"))
    learn_tabs.padding_tab(T, tokenizer, data)

with tab_map:
    st.subheader(T("map_header"))
    st.markdown(T("map_intro"))
    learn_tabs.map_tab(T, tokenizer, data, MAP_BATCH)

with tab_steps:
    st.subheader(T("calc_header"))
    st.caption(T("calc_intro"))
    learn_steps.steps_tab(T, data)

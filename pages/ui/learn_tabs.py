"""The Learn page's first four tabs: tokens, padding and truncation, the map step, data set lengths.

Each function draws one tab from what it is given (``T`` is the text lookup in the chosen language).
Inputs are bounded: the text box by characters, the padded batch by reviews and characters per review.
"""
from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from lib.errors import LabError
from lib.job import tokenization as tok
from pages.ui import learn_views
from pages.ui.learn_data import DataPick
from pages.ui.text import cut_lines, cut_text, plain, show_lab_error

Text = Callable[..., str]
DEFAULT_TEXT = "this is a test."
DEFAULT_BATCH = (
    "A wonderful film.\n"
    "The acting was fine, but the story dragged on far too long and the ending made no sense at all.\n"
    "Boring!\n"
    "I expected a lot more from this director after his last movie, which I loved; this one is flat, slow "
    "and forgettable, and I will not watch it again."
)
TEXT_MAX_CHARS = 2_000                       # the tokenizer box
BATCH_MAX_LINES, LINE_MAX_CHARS = 32, 500    # the padded batch: reviews, and characters in each


def tokens_tab(T: Text, tokenizer) -> None:
    """Tab 1: the tokens of a typed text (at most TEXT_MAX_CHARS characters)."""
    typed = st.text_area(T("tok_input"), value=DEFAULT_TEXT, key="learn_text", height=90, max_chars=TEXT_MAX_CHARS)
    user_text, was_cut = cut_text(typed, TEXT_MAX_CHARS)
    if was_cut or len(typed) >= TEXT_MAX_CHARS:
        st.caption(T("cut_chars", limit=TEXT_MAX_CHARS))
    if not user_text:
        st.info(T("empty_text"))
        return
    try:
        table = tok.token_table(tokenizer, user_text)
    except LabError as exc:
        show_lab_error(exc)
        return
    c = table.counts
    m = st.columns(4)
    m[0].metric(T("count_chars"), f"{c['characters']:,}")
    m[1].metric(T("count_words"), f"{c['words']:,}")
    m[2].metric(T("count_tokens"), f"{c['tokens']:,}",
                help=T("count_help_tokens", text=c["text_tokens"], special=c["special_tokens"]))
    m[3].metric(T("count_unknown"), f"{c['unknown']:,}")
    st.markdown(f"**{T('tok_chips')}**")
    st.html(learn_views.chips_html(table.rows))
    st.caption(T("tok_legend"))
    if c["unknown"]:
        st.warning(T("unk_warning", n=c["unknown"]))
        st.code(" ".join(r.source for r in table.rows if r.is_unk), language=None)
    st.dataframe(learn_views.token_frame(table, T), hide_index=True, key="learn_token_table")
    st.markdown(T("tok_special"))
    st.markdown(T("tok_offsets"))


def batch_texts(T: Text, pick: DataPick | None) -> list[str]:
    """The reviews of the padded batch: typed (one per line) or picked from the data, at most BATCH_MAX_LINES."""
    how = st.radio(T("pad_source"), ["type", "pick"] if pick else ["type"], key="learn_pad_source", horizontal=True,
                   format_func=lambda s: T("pad_source_type") if s == "type" else T("pad_source_pick"))
    if how == "pick" and pick:
        texts = pick.sample.texts
        n_pick = min(len(texts), 50)
        picked = st.multiselect(T("pad_pick"), list(range(n_pick)), default=list(range(min(4, n_pick))),
                                key="learn_pad_pick", max_selections=BATCH_MAX_LINES,
                                help=T("pick_limit", limit=BATCH_MAX_LINES),
                                format_func=lambda i: f"{i}: {texts[i][:70]}")
        return [texts[i] for i in picked[:BATCH_MAX_LINES]]
    raw = st.text_area(T("pad_texts"), value=DEFAULT_BATCH, key="learn_pad_texts", height=130,
                       max_chars=BATCH_MAX_LINES * (LINE_MAX_CHARS + 1))
    lines, dropped, shortened = cut_lines(raw, BATCH_MAX_LINES, LINE_MAX_CHARS)
    if dropped:
        st.caption(T("cut_lines", limit=BATCH_MAX_LINES, n=dropped))
    if shortened:
        st.caption(T("cut_line_chars", n=shortened, limit=LINE_MAX_CHARS))
    return lines


def padding_tab(T: Text, tokenizer, pick: DataPick | None) -> None:
    """Tab 2: one batch padded and truncated each way."""
    texts = batch_texts(T, pick)
    c1, c2, c3 = st.columns([2, 2, 1])
    max_length = c1.slider(T("pad_maxlen"), 8, 512, 24, key="learn_pad_max_length")
    mode = c2.radio(T("pad_mode"), tok.PAD_MODES, key="learn_pad_mode", format_func=lambda m: T(f"mode_{m}"))
    collator_bs = int(c3.number_input(T("pad_collator"), 1, 64, 2, key="learn_pad_collator",
                                      disabled=mode != "dynamic"))
    st.caption(T(f"mode_help_{mode}"))
    if not texts:
        st.info(T("pad_empty"))
        return
    try:
        batches = {m: tok.pad_batch(tokenizer, texts, m, max_length, collator_bs) for m in tok.PAD_MODES}
    except LabError as exc:
        show_lab_error(exc)
        return
    batch = batches[mode]
    m = st.columns(3)
    m[0].metric(T("pad_share"), f"{batch.padding_share:.1%}")
    m[1].metric(T("pad_processed"), f"{batch.tokens_processed:,}")
    m[2].metric(T("pad_real"), f"{batch.real_tokens:,}")
    cells = learn_views.batch_cells(batch, mode, T)
    for field, title, key in (("kind", "pad_ids_chart", "learn_heat_ids"),
                              ("mask", "pad_mask_chart", "learn_heat_mask")):
        st.altair_chart(learn_views.heatmap(cells, field, T(title), batch.width, T),
                        height=learn_views.heat_height(cells), key=key)
    st.markdown(f"**{T('pad_compare')}**")
    st.dataframe(learn_views.padding_compare_frame(batches, T), hide_index=True, key="learn_pad_compare")
    st.markdown(f"**{T('pad_truncated')}**")
    cut_rows = [(i, r) for i, r in enumerate(batch.rows) if r.truncated]
    if not cut_rows:
        st.caption(T("pad_none_truncated", max_length=max_length))
    for i, r in cut_rows:
        st.caption(T("pad_truncated_row", row=i + 1, n=r.cut_tokens, full=r.full_length,
                     kept=r.full_length - r.cut_tokens))
        st.text(learn_views.short(r.cut_text, 600))


def map_tab(T: Text, tokenizer, pick: DataPick | None, map_batch: int) -> None:
    """Tab 3: one review before and after the tutorial's ``map`` step."""
    if pick is None:
        st.info(T("map_no_data"))
        return
    texts = pick.sample.texts
    c1, c2 = st.columns(2)
    idx = int(c1.number_input(T("map_index"), 0, len(texts) - 1, 0, key="learn_map_index"))
    pad = c2.radio(T("map_padding"), ["true", "false"], key="learn_map_padding",
                   format_func=lambda v: T("map_pad_true") if v == "true" else T("map_pad_false")) == "true"
    try:
        ex = tok.map_step_example(tokenizer, texts, pick.sample.labels, index=idx, max_length=512, padding=pad,
                                  map_batch_size=map_batch)
    except LabError as exc:
        show_lab_error(exc)
        return
    st.caption(T("map_columns", before=", ".join(ex["columns_before"]), after=", ".join(ex["columns_after_map"]),
                 formatted=", ".join(ex["columns_after_set_format"])))
    for col, (title, value, depth) in zip(st.columns(3), (("map_before", learn_views.short(ex["before"]), True),
                                                         ("map_after", learn_views.short(ex["after_map"]), 1),
                                                         ("map_format", ex["after_set_format"], 2))):
        with col:
            st.markdown(f"**{T(title)}**")
            st.json(value, expanded=depth)
    if pad:
        st.info(T("map_summary", real=ex["real_tokens"], pad=ex["padding_tokens"], start=ex["map_batch"][0],
                  end=ex["map_batch"][1] - 1, width=ex["padded_length"]))
    else:
        st.info(T("map_summary_nopad", real=ex["real_tokens"]))
    st.markdown(T("map_cost"))


def stats_tab(T: Text, pick: DataPick, stats_for: Callable[[int, int], object], map_batch: int) -> None:
    """Tab 4's numbers for the chosen data; ``stats_for(max_length, batch_size)`` computes (and caches) them."""
    texts = pick.sample.texts
    st.caption(T("ds_loaded", n=len(texts), source=plain(pick.sample.source) if pick.sample.source else T("ds_demo")))
    if pick.sample.skipped:
        st.caption(T("ds_skipped", n=pick.sample.skipped))
    c1, c2 = st.columns(2)
    max_length = c1.slider(T("stats_maxlen"), 16, 512, 512, step=8, key="learn_stats_max_length")
    batch = int(c2.number_input(T("stats_batch"), 1, 1024, 8, key="learn_stats_batch"))
    try:
        with st.spinner(T("stats_computing", n=len(texts))):
            stats = stats_for(max_length, batch)
    except LabError as exc:
        show_lab_error(exc)
        return
    m = st.columns(5)
    m[0].metric(T("m_texts"), f"{stats.n_texts:,}")
    m[1].metric(T("m_median"), f"{stats.median:,.0f}")
    m[2].metric(T("m_p95"), f"{stats.p95:,.0f}")
    m[3].metric(T("m_truncated"), f"{stats.share_truncated:.1%}", help=f"{stats.n_truncated:,}")
    m[4].metric(T("m_lost"), f"{stats.share_tokens_lost:.1%}",
                help=T("m_lost_help", lost=stats.tokens_lost, total=stats.tokens_total))
    st.altair_chart(learn_views.length_histogram(stats, T), height=300, key="learn_hist")
    st.markdown(f"**{T('padding_header')}**")
    st.dataframe(learn_views.padding_frame(stats, T), hide_index=True, key="learn_padding_table", column_config={
        T("col_waste"): st.column_config.ProgressColumn(T("col_waste"), format="percent", min_value=0.0, max_value=1.0),
        T("col_positions"): st.column_config.NumberColumn(format="localized")})
    st.caption(T("padding_explain", map_batch=map_batch, batch=stats.batch_size))

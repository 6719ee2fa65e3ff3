"""Learn: how text becomes tokens, padded batches and optimizer steps, computed on real data.

The logic lives in ``lib.tokenization`` and ``lib.steps``; the words in ``lib.learn_text``.
"""
from __future__ import annotations

import hashlib
import html
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run pages/learn.py` puts only pages/ on the path
    sys.path.insert(0, str(ROOT))

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from lib.config import BUNDLED_MODEL, TrainConfig  # noqa: E402
from lib.errors import LabError  # noqa: E402
from lib.job import steps as stepslib  # noqa: E402
from lib.job import tokenization as tok  # noqa: E402
from lib.sources import data as data_sources
from lib.sources import tables
from pages import common  # noqa: E402
from pages.ui.learn_text import LANGUAGES, text  # noqa: E402

DEFAULT_TEXT = "this is a test."
DEFAULT_BATCH = (
    "A wonderful film.\n"
    "The acting was fine, but the story dragged on far too long and the ending made no sense at all.\n"
    "Boring!\n"
    "I expected a lot more from this director after his last movie, which I loved; this one is flat, slow "
    "and forgettable, and I will not watch it again."
)
SOURCES = ("demo", "upload", "path", "hub")
MAP_BATCH = 1000

lang = st.radio("Language / 语言", list(LANGUAGES), format_func=LANGUAGES.get, horizontal=True, key="learn_lang")


def T(key: str, **values) -> str:
    return text(lang, key, **values)


# ---------------------------------------------------------------------------------------------------
# cached loaders
# ---------------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def get_tokenizer(spec: str):
    from lib.sources.models import load_tokenizer
    return load_tokenizer(spec)


def _labels_or_none(df: pd.DataFrame) -> list[int] | None:
    if "label" not in df.columns:
        return None
    try:
        from lib.sources.labels import map_labels
        labels, _ = map_labels(df["label"].tolist(), ["NEGATIVE", "POSITIVE"])
        return [int(x) for x in labels]
    except (LabError, TypeError, ValueError):
        return None


@st.cache_data(show_spinner=False, max_entries=8)
def load_texts(kind: str, spec: str, split: str, column: str, strip_html: bool, digest: str,
               _data: bytes | None = None) -> dict:
    """{texts, labels (or None), source, skipped} for one data choice (``digest`` identifies an upload)."""
    labels = None
    if kind == "demo":
        ds = data_sources.demo_reviews()[split]
        values, labels, source = ds["text"], ds["label"], None  # the page names it in the chosen language
    elif kind == "upload":
        from lib.serving.batch import upload_columns
        df = upload_columns(common.runs_dir(), _data or b"", spec)
        if column not in df.columns:
            raise LabError(f"the uploaded file has no column {column!r}; its columns are: "
                           f"{', '.join(map(str, df.columns))}")
        values, labels, source = df[column].tolist(), _labels_or_none(df), spec
    elif kind == "file":
        df = tables.read_table(spec, text_column=column)
        values, labels, source = df[column].tolist(), _labels_or_none(df), spec
    else:  # an aclImdb folder, or a Hub id
        loaded = data_sources.load_data(TrainConfig(dataset=spec, strip_html=False))
        ds = loaded.dataset[split]
        values, labels, source = ds["text"], ds["label"], spec
    keep = [v is not None and not (isinstance(v, float) and v != v) for v in values]
    texts, skipped = tok.clean_texts(values, strip_html=strip_html)
    if labels is not None:
        labels = [int(lab) for lab, k in zip(labels, keep) if k]
    if not texts:
        raise LabError("the data set has no texts to measure")
    return {"texts": texts, "labels": labels, "source": source, "skipped": skipped}


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_lengths(key: tuple, model_spec: str, _data: bytes | None = None):
    """Token length of every review: the slow part (seconds for 25,000 IMDb reviews), cached."""
    loaded = load_texts(*key, _data=_data)
    return tok.token_lengths(get_tokenizer(model_spec), loaded["texts"])


@st.cache_data(show_spinner=False, max_entries=64)
def dataset_stats(key: tuple, model_spec: str, max_length: int, batch_size: int, _data: bytes | None = None):
    lengths = dataset_lengths(key, model_spec, _data=_data)
    return tok.stats_from_lengths(lengths, max_length, batch_size, map_batch_size=MAP_BATCH, seed=42)


@st.cache_data(show_spinner=False, max_entries=8)
def upload_column_names(name: str, digest: str, _data: bytes) -> list[str]:
    from lib.serving.batch import upload_columns
    return [str(c) for c in upload_columns(common.runs_dir(), _data, name, max_rows=50).columns]


@st.cache_data(show_spinner=False, max_entries=8)
def file_column_names(path: str) -> list[str]:
    from lib.sources.tables import read_table
    return [str(c) for c in read_table(path, max_rows=50).columns]


# ---------------------------------------------------------------------------------------------------
# small view helpers
# ---------------------------------------------------------------------------------------------------
CHIP_COLOURS = {"special": ("#E4E6EE", "#444A5E"), "word": ("#DCE4FF", "#1C2E8A"),
                "piece": ("#FFE6C7", "#8A4B00"), "unk": ("#FFD4D4", "#9B1111")}


def _kind(row) -> str:
    if row.is_unk:
        return "unk"
    if row.is_special:
        return "special"
    return "piece" if row.is_subword else "word"


def chips_html(rows) -> str:
    """Coloured token chips. Every token and source text is escaped: user text never becomes HTML."""
    parts = []
    for r in rows:
        bg, fg = CHIP_COLOURS[_kind(r)]
        title = html.escape(f"id {r.id} · chars {r.start}–{r.end} · {r.source!r}", quote=True)
        parts.append(
            f'<span title="{title}" style="display:inline-block;margin:2px 3px;padding:2px 7px;'
            f'border-radius:6px;background:{bg};color:{fg};font-family:monospace;font-size:0.95rem">'
            f'{html.escape(r.token)}<sub style="opacity:.6;margin-left:3px">{r.id}</sub></span>')
    return '<div style="line-height:2.1">' + "".join(parts) + "</div>"


def short(value, limit: int = 300):
    """Long review texts shortened for display (the JSON shows what map really keeps)."""
    if isinstance(value, dict):
        return {k: short(v, limit) for k, v in value.items()}
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"… (+{len(value) - limit:,})"
    return value


def kind_label(row) -> str:
    return T({"unk": "kind_unk", "special": "kind_special", "piece": "kind_piece", "word": "kind_word"}[_kind(row)])


def heatmap(cells: pd.DataFrame, field: str, title: str, width_cols: int) -> alt.Chart:
    if field == "kind":
        colour = alt.Color("kind_label:N", title=None, scale=alt.Scale(
            domain=[T("legend_text"), T("legend_special"), T("legend_padding")],
            range=["#4B5FD6", "#9AA3BF", "#F1F2F6"]))
    else:
        colour = alt.Color("attention_mask:O", title=None, scale=alt.Scale(domain=[1, 0],
                                                                           range=["#2E9E5B", "#F1F2F6"]))
    base = alt.Chart(cells).encode(
        x=alt.X("position:O", title=T("axis_position"),
                axis=alt.Axis(labelAngle=0, values=list(range(0, width_cols, max(1, width_cols // 16))))),
        y=alt.Y("row_label:N", title=T("axis_row"), sort=None),
        tooltip=[alt.Tooltip("row_label:N", title=T("axis_row")), alt.Tooltip("position:O"),
                 alt.Tooltip("token:N"), alt.Tooltip("input_id:Q"), alt.Tooltip("attention_mask:Q")])
    chart = base.mark_rect(stroke="white", strokeWidth=0.5).encode(color=colour)
    if width_cols <= (20 if field == "kind" else 48):
        label = "input_id:Q" if field == "kind" else "attention_mask:Q"
        chart = chart + base.mark_text(fontSize=8).encode(
            text=label, color=alt.condition(alt.datum.attention_mask == 1, alt.value("white"), alt.value("#6B7185")))
    return chart.properties(title=title)


def heat_height(cells: pd.DataFrame) -> int:
    return 110 + 30 * int(cells["row"].nunique())


# ---------------------------------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------------------------------
st.title(T("title"))
st.caption(T("intro"))

model_spec = st.text_input(T("model_label"), value=BUNDLED_MODEL, key="learn_model", help=T("model_help")).strip()
model_spec = model_spec or BUNDLED_MODEL
try:
    with st.spinner("…"):
        tokenizer = get_tokenizer(model_spec)
except LabError as exc:
    common.show_lab_error(exc)
    st.stop()
st.caption(T("model_loaded", name=common.plain(model_spec), vocab=len(tokenizer),
             lower=str(bool(getattr(tokenizer, "do_lower_case", False)))))

tab_tokens, tab_padding, tab_map, tab_stats, tab_steps = st.tabs(
    [T("tab_tokens"), T("tab_padding"), T("tab_map"), T("tab_stats"), T("tab_steps")])

# ----------------------------------------------------------------------------------- 4. data (first:
# tabs 2 and 3 use the data chosen here)
data = None
data_key = None
data_bytes = None
with tab_stats:
    st.subheader(T("stats_header"))
    st.caption(T("stats_intro"))
    source = st.radio(T("ds_source"), SOURCES, key="learn_ds_source", horizontal=True,
                      format_func=lambda s: T({"demo": "ds_demo", "upload": "ds_upload", "path": "ds_path",
                                               "hub": "ds_hub"}[s]))
    try:
        kind, spec, column, digest, ready = source, "demo", "text", "", source == "demo"
        if source == "upload":
            up = st.file_uploader(T("ds_upload_label"), type=["csv", "tsv", "jsonl", "json", "parquet"],
                                  key="learn_ds_upload")
            if up is None:
                st.info(T("ds_need_file"))
            else:
                data_bytes = up.getvalue()
                digest = hashlib.sha256(data_bytes).hexdigest()
                cols = upload_column_names(up.name, digest, data_bytes)
                column = st.selectbox(T("ds_column"), cols, key="learn_ds_column_upload",
                                      index=cols.index("text") if "text" in cols else 0)
                spec, ready = up.name, True
        elif source == "path":
            spec = st.text_input(T("ds_path_label"), key="learn_ds_path").strip()
            if not spec:
                st.info(T("ds_need_path"))
            else:
                from lib.sources.paths import check_local_path
                resolved = check_local_path(spec, "data")  # allowed roots and existence checked first
                spec = str(resolved)
                if resolved.is_file():
                    kind = "file"
                    cols = file_column_names(spec)
                    column = st.selectbox(T("ds_column"), cols, key="learn_ds_column_path",
                                          index=cols.index("text") if "text" in cols else 0)
                else:
                    kind = "folder"
                ready = True
        elif source == "hub":
            spec = st.text_input(T("ds_hub_label"), value="imdb", key="learn_ds_hub").strip()
            ready = bool(spec)
        c1, c2 = st.columns([1, 3])
        split = c1.selectbox(T("ds_split"), ["train", "test"], key="learn_ds_split",
                             disabled=kind in ("upload", "file"))
        strip_html = c2.checkbox(T("ds_strip_html"), value=True, key="learn_ds_strip_html")
        if ready:
            data_key = (kind, spec, split if kind not in ("upload", "file") else "", column, strip_html, digest)
            data = load_texts(*data_key, _data=data_bytes)
    except LabError as exc:
        st.caption(T("stats_error"))
        common.show_lab_error(exc)
        data, data_key = None, None

    if data is not None:
        shown = common.plain(data["source"]) if data["source"] else T("ds_demo")
        st.caption(T("ds_loaded", n=len(data["texts"]), source=shown))
        if data["skipped"]:
            st.caption(T("ds_skipped", n=data["skipped"]))
        c1, c2 = st.columns(2)
        stats_max_length = c1.slider(T("stats_maxlen"), 16, 512, 512, step=8, key="learn_stats_max_length")
        stats_batch = int(c2.number_input(T("stats_batch"), 1, 1024, 8, key="learn_stats_batch"))
        try:
            with st.spinner(T("stats_computing", n=len(data["texts"]))):
                stats = dataset_stats(data_key, model_spec, stats_max_length, stats_batch, _data=data_bytes)
        except LabError as exc:
            common.show_lab_error(exc)
            stats = None
        if stats is not None:
            m = st.columns(5)
            m[0].metric(T("m_texts"), f"{stats.n_texts:,}")
            m[1].metric(T("m_median"), f"{stats.median:,.0f}")
            m[2].metric(T("m_p95"), f"{stats.p95:,.0f}")
            m[3].metric(T("m_truncated"), f"{stats.share_truncated:.1%}", help=f"{stats.n_truncated:,}")
            m[4].metric(T("m_lost"), f"{stats.share_tokens_lost:.1%}",
                        help=T("m_lost_help", lost=stats.tokens_lost, total=stats.tokens_total))
            hist = pd.DataFrame(stats.histogram)
            hist["part"] = [T("hist_cut") if b >= stats.max_length else T("hist_kept") for b in hist["bin_start"]]
            bars = alt.Chart(hist).mark_bar().encode(
                x=alt.X("bin_start:Q", bin="binned", title=T("hist_x")), x2="bin_end:Q",
                y=alt.Y("count:Q", title=T("hist_y")),
                color=alt.Color("part:N", title=None, scale=alt.Scale(domain=[T("hist_kept"), T("hist_cut")],
                                                                       range=["#4B5FD6", "#F2A65A"])),
                tooltip=["bin_start", "bin_end", "count"])
            rule = alt.Chart(pd.DataFrame({"max_length": [stats.max_length]})).mark_rule(
                color="#D62728", strokeWidth=2).encode(x="max_length:Q")
            st.altair_chart((bars + rule).properties(title=T("hist_title")), height=300, key="learn_hist")

            st.markdown(f"**{T('padding_header')}**")
            rows = [{T("col_scheme"): T(f"scheme_{k}"), T("col_positions"): c.tokens_processed,
                     T("col_waste"): c.padding_share} for k, c in stats.padding.items()]
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="learn_padding_table",
                         column_config={T("col_waste"): st.column_config.ProgressColumn(
                             T("col_waste"), format="percent", min_value=0.0, max_value=1.0),
                             T("col_positions"): st.column_config.NumberColumn(format="localized")})
            st.caption(T("padding_explain", map_batch=MAP_BATCH, batch=stats.batch_size))

# ----------------------------------------------------------------------------------- 1. tokens
with tab_tokens:
    st.subheader(T("tok_header"))
    st.caption(T("tok_intro"))
    user_text = st.text_area(T("tok_input"), value=DEFAULT_TEXT, key="learn_text", height=90)
    if not user_text:
        st.info(T("empty_text"))
    else:
        try:
            table = tok.token_table(tokenizer, user_text)
        except LabError as exc:
            common.show_lab_error(exc)
            table = None
        if table is not None:
            c = table.counts
            m = st.columns(4)
            m[0].metric(T("count_chars"), f"{c['characters']:,}")
            m[1].metric(T("count_words"), f"{c['words']:,}")
            m[2].metric(T("count_tokens"), f"{c['tokens']:,}",
                        help=T("count_help_tokens", text=c["text_tokens"], special=c["special_tokens"]))
            m[3].metric(T("count_unknown"), f"{c['unknown']:,}")
            st.markdown(f"**{T('tok_chips')}**")
            st.html(chips_html(table.rows))
            st.caption(T("tok_legend"))
            if c["unknown"]:
                st.warning(T("unk_warning", n=c["unknown"]))
                st.code(" ".join(r.source for r in table.rows if r.is_unk), language=None)
            df = pd.DataFrame({
                T("col_position"): [r.position for r in table.rows],
                T("col_token"): [r.token for r in table.rows],
                T("col_id"): [r.id for r in table.rows],
                T("col_mask"): [r.attention_mask for r in table.rows],
                T("col_kind"): [kind_label(r) for r in table.rows],
                T("col_chars"): [f"{r.start}–{r.end}" for r in table.rows],
                T("col_source"): [r.source for r in table.rows],
            })
            st.dataframe(df, hide_index=True, key="learn_token_table")
            st.markdown(T("tok_special"))
            st.markdown(T("tok_offsets"))

# ----------------------------------------------------------------------------------- 2. padding
with tab_padding:
    st.subheader(T("pad_header"))
    st.caption(T("pad_intro"))
    options = ["type", "pick"] if data is not None else ["type"]
    how = st.radio(T("pad_source"), options, key="learn_pad_source", horizontal=True,
                   format_func=lambda s: T("pad_source_type") if s == "type" else T("pad_source_pick"))
    if how == "pick" and data is not None:
        n_pick = min(len(data["texts"]), 50)
        picked = st.multiselect(T("pad_pick"), list(range(n_pick)), default=list(range(min(4, n_pick))),
                                key="learn_pad_pick",
                                format_func=lambda i: f"{i}: {data['texts'][i][:70]}")
        batch_texts = [data["texts"][i] for i in picked]
    else:
        raw = st.text_area(T("pad_texts"), value=DEFAULT_BATCH, key="learn_pad_texts", height=130)
        batch_texts = [line for line in raw.splitlines() if line.strip()]
    c1, c2, c3 = st.columns([2, 2, 1])
    pad_max_length = c1.slider(T("pad_maxlen"), 8, 512, 24, key="learn_pad_max_length")
    mode = c2.radio(T("pad_mode"), tok.PAD_MODES, key="learn_pad_mode",
                    format_func=lambda m: T(f"mode_{m}"))
    collator_bs = int(c3.number_input(T("pad_collator"), 1, 64, 2, key="learn_pad_collator",
                                      disabled=mode != "dynamic"))
    st.caption(T(f"mode_help_{mode}"))
    if not batch_texts:
        st.info(T("pad_empty"))
    else:
        try:
            batches = {m: tok.pad_batch(tokenizer, batch_texts, m, pad_max_length, collator_bs)
                       for m in tok.PAD_MODES}
        except LabError as exc:
            common.show_lab_error(exc)
            batches = None
        if batches is not None:
            batch = batches[mode]
            m = st.columns(3)
            m[0].metric(T("pad_share"), f"{batch.padding_share:.1%}")
            m[1].metric(T("pad_processed"), f"{batch.tokens_processed:,}")
            m[2].metric(T("pad_real"), f"{batch.real_tokens:,}")
            cells = pd.DataFrame(batch.cells())
            kind_names = {"text": T("legend_text"), "special": T("legend_special"), "padding": T("legend_padding")}
            cells["kind_label"] = cells["kind"].map(kind_names)
            cells["row_label"] = [f"{r + 1}" + (f" · b{g + 1}" if mode == "dynamic" else "")
                                  for r, g in zip(cells["row"], cells["group"])]
            st.altair_chart(heatmap(cells, "kind", T("pad_ids_chart"), batch.width),
                            height=heat_height(cells), key="learn_heat_ids")
            st.altair_chart(heatmap(cells, "mask", T("pad_mask_chart"), batch.width),
                            height=heat_height(cells), key="learn_heat_mask")
            st.markdown(f"**{T('pad_compare')}**")
            st.dataframe(pd.DataFrame([{T("col_mode"): T(f"mode_{k}"), T("col_width"): b.width,
                                        T("col_processed"): b.tokens_processed,
                                        T("col_padding_share"): f"{b.padding_share:.1%}"}
                                       for k, b in batches.items()]), hide_index=True, key="learn_pad_compare")
            st.markdown(f"**{T('pad_truncated')}**")
            cut_rows = [(i, r) for i, r in enumerate(batch.rows) if r.truncated]
            if not cut_rows:
                st.caption(T("pad_none_truncated", max_length=pad_max_length))
            for i, r in cut_rows:
                st.caption(T("pad_truncated_row", row=i + 1, n=r.cut_tokens, full=r.full_length,
                             kept=r.full_length - r.cut_tokens))
                st.text(short(r.cut_text, 600))

# ----------------------------------------------------------------------------------- 3. map
with tab_map:
    st.subheader(T("map_header"))
    st.markdown(T("map_intro"))
    if data is None:
        st.info(T("map_no_data"))
    else:
        c1, c2 = st.columns(2)
        idx = int(c1.number_input(T("map_index"), 0, len(data["texts"]) - 1, 0, key="learn_map_index"))
        pad_choice = c2.radio(T("map_padding"), ["true", "false"], key="learn_map_padding",
                              format_func=lambda v: T("map_pad_true") if v == "true" else T("map_pad_false"))
        labels = data["labels"]
        try:
            ex = tok.map_step_example(tokenizer, data["texts"], labels, index=idx, max_length=512,
                                      padding=pad_choice == "true", map_batch_size=MAP_BATCH)
        except LabError as exc:
            common.show_lab_error(exc)
            ex = None
        if ex is not None:
            st.caption(T("map_columns", before=", ".join(ex["columns_before"]),
                         after=", ".join(ex["columns_after_map"]),
                         formatted=", ".join(ex["columns_after_set_format"])))
            c1, c2, c3 = st.columns(3)
            with c1:
                st.markdown(f"**{T('map_before')}**")
                st.json(short(ex["before"]), expanded=True)
            with c2:
                st.markdown(f"**{T('map_after')}**")
                st.json(short(ex["after_map"]), expanded=1)
            with c3:
                st.markdown(f"**{T('map_format')}**")
                st.json(ex["after_set_format"], expanded=2)
            if pad_choice == "true":
                st.info(T("map_summary", real=ex["real_tokens"], pad=ex["padding_tokens"],
                          start=ex["map_batch"][0], end=ex["map_batch"][1] - 1, width=ex["padded_length"]))
            else:
                st.info(T("map_summary_nopad", real=ex["real_tokens"]))
            st.markdown(T("map_cost"))

# ----------------------------------------------------------------------------------- 5. steps
with tab_steps:
    st.subheader(T("calc_header"))
    st.caption(T("calc_intro"))
    if data is not None and data_key[2] in ("train", ""):
        n_data = len(data["texts"])
        c = st.columns([3, 1])
        c[0].caption(T("calc_use_data", n=n_data))
        c[1].button(T("calc_use_button"), key="learn_calc_use_data",
                    on_click=lambda: st.session_state.update(learn_calc_samples=n_data))
    c = st.columns(4)
    st.session_state.setdefault("learn_calc_samples", 2000)  # default here: the "use this number" button sets it
    n_samples = int(c[0].number_input(T("calc_samples"), 1, 100_000_000, key="learn_calc_samples"))
    per_device = int(c[1].number_input(T("calc_batch"), 1, 4096, 8, key="learn_calc_batch"))
    devices = int(c[2].number_input(T("calc_devices"), 1, 4096, 1, key="learn_calc_devices"))
    accum = int(c[3].number_input(T("calc_accum"), 1, 1024, 1, key="learn_calc_accum"))
    c = st.columns([1, 1, 2])
    epochs = float(c[0].number_input(T("calc_epochs"), 0.01, 1000.0, 2.0, step=0.5, format="%g",
                                     key="learn_calc_epochs"))
    max_steps = int(c[1].number_input(T("calc_max_steps"), -1, 10_000_000, -1, key="learn_calc_max_steps"))
    drop_last = c[2].checkbox(T("calc_drop_last"), value=False, key="learn_calc_drop_last")
    try:
        plan = stepslib.plan_steps(n_samples, per_device, accum, devices, epochs, max_steps, drop_last)
    except LabError as exc:
        st.caption(T("calc_error"))
        common.show_lab_error(exc)
        plan = None
    if plan is not None:
        m = st.columns(4)
        m[0].metric(T("m_samples_per_step"), f"{plan.samples_per_step:,}")
        m[1].metric(T("m_steps_per_epoch"), f"{plan.steps_per_epoch:,}")
        m[2].metric(T("m_total_steps"), f"{plan.total_steps:,}")
        m[3].metric(T("m_final_epoch"), f"{plan.final_epoch:.4g}")
        st.markdown(f"**{T('formula_header')}**")
        st.code("\n".join(f"{T('f_' + k)} = {expr} = {v:,}" if expr else f"{T('f_' + k)} = {v:,}"
                          for k, expr, v in plan.formula_parts), language=None)
        notes = []
        if plan.num_devices == 1 and plan.last_batch_size != plan.per_device_batch_size:
            notes.append(T("note_partial_batch", n=plan.last_batch_size))
        if plan.last_step_batches != plan.gradient_accumulation_steps:
            notes.append(T("note_accum_remainder", batches=plan.batches_per_epoch_per_device,
                           accum=plan.gradient_accumulation_steps, last=plan.last_step_batches))
        if plan.repeated_samples:
            notes.append(T("note_repeated", devices=plan.num_devices, n=plan.repeated_samples))
        if plan.dropped_samples:
            notes.append(T("note_dropped", n=plan.dropped_samples))
        if plan.uses_max_steps:
            notes.append(T("note_max_steps", steps=plan.total_steps, epoch=plan.final_epoch))
        elif plan.total_steps % plan.steps_per_epoch:
            notes.append(T("note_fraction", steps=plan.total_steps % plan.steps_per_epoch,
                           per_epoch=plan.steps_per_epoch))
        for note in notes:
            st.caption("• " + note)

        st.markdown(f"**{T('schedule_header')}**")
        c = st.columns(4)
        logging_steps = float(c[0].number_input(T("sch_logging"), 0.001, 1e9, 500.0, format="%g",
                                                key="learn_sch_logging", help=T("sch_steps_help")))
        eval_strategy = c[1].selectbox(T("sch_eval_strategy"), stepslib.STRATEGIES, index=2, key="learn_sch_eval")
        eval_steps = float(c[2].number_input(T("sch_eval_steps"), 0.0, 1e9, 0.0, format="%g",
                                             key="learn_sch_eval_steps", help=T("sch_steps_help"),
                                             disabled=eval_strategy != "steps"))
        save_strategy = c[3].selectbox(T("sch_save_strategy"), stepslib.STRATEGIES, index=2, key="learn_sch_save")
        c = st.columns(4)
        save_steps = float(c[0].number_input(T("sch_save_steps"), 0.001, 1e9, 500.0, format="%g",
                                             key="learn_sch_save_steps", help=T("sch_steps_help"),
                                             disabled=save_strategy != "steps"))
        limit = int(c[1].number_input(T("sch_limit"), 0, 1000, 2, key="learn_sch_limit"))
        load_best = c[2].checkbox(T("sch_best"), value=False, key="learn_sch_best")

        def as_steps(x: float):
            return int(x) if x >= 1 and float(x).is_integer() else x

        try:
            sched = stepslib.event_schedule(
                plan, logging_steps=as_steps(logging_steps), eval_strategy=eval_strategy,
                eval_steps=None if eval_steps == 0 else as_steps(eval_steps), save_strategy=save_strategy,
                save_steps=as_steps(save_steps), save_total_limit=limit or None,
                load_best_model_at_end=load_best)
        except LabError as exc:
            common.show_lab_error(exc)
            sched = None
        if sched is not None:
            def every(n, strategy):
                if strategy == "no":
                    return T("sch_none")
                if strategy == "epoch":
                    return T("sch_epoch")
                return T("every", n=n)
            st.caption(T("sch_summary", log=T("every", n=sched.logging_every),
                         ev=every(sched.eval_every, eval_strategy), save=every(sched.save_every, save_strategy),
                         n=len(sched.checkpoints), k=len(sched.surviving)))
            surviving = sched.surviving
            if load_best and sched.checkpoints and limit:
                st.caption(T("best_note"))
                best = st.selectbox(T("best_pick"), sched.checkpoints, index=len(sched.checkpoints) - 1,
                                    key="learn_sch_best_pick", format_func=lambda s: f"checkpoint-{s}")
                surviving = sched.surviving_with_best(best)
            if not sched.events:
                st.info(T("no_events"))
            else:
                points = []
                for e in sched.events:
                    for k in e.kinds:
                        status = T(f"ev_{k}")
                        if k == "save":
                            status = T("ev_kept") if e.step in surviving else T("ev_deleted")
                        points.append({"step": e.step, "epoch": round(e.epoch, 4), "event": T(f"ev_{k}"),
                                       "status": status})
                pts = pd.DataFrame(points)
                domain = [T("ev_log"), T("ev_eval"), T("ev_kept"), T("ev_deleted")]
                chart = alt.Chart(pts).mark_point(filled=True, size=90).encode(
                    x=alt.X("step:Q", title=T("col_step"), scale=alt.Scale(domain=[0, plan.total_steps])),
                    y=alt.Y("event:N", title=None, sort=[T("ev_log"), T("ev_eval"), T("ev_save")]),
                    color=alt.Color("status:N", title=None, scale=alt.Scale(
                        domain=domain, range=["#9AA3BF", "#4B5FD6", "#2E9E5B", "#D62728"])),
                    shape=alt.Shape("status:N", title=None, scale=alt.Scale(
                        domain=domain, range=["circle", "diamond", "square", "cross"])),
                    tooltip=["step", "epoch", "event", "status"])
                epoch_lines = pd.DataFrame({"step": [min((e + 1) * plan.steps_per_epoch, plan.total_steps)
                                                     for e in range(plan.epochs_started)]})
                rules = alt.Chart(epoch_lines).mark_rule(color="#C8CCDA", strokeDash=[4, 3]).encode(x="step:Q")
                st.altair_chart((rules + chart).properties(title=T("timeline_title")), height=200,
                                key="learn_timeline")
                table = pd.DataFrame([{
                    T("col_step"): e.step, T("col_epoch"): round(e.epoch, 4),
                    T("col_events"): ", ".join(T(f"ev_{k}") for k in e.kinds),
                    T("col_checkpoint"): (f"checkpoint-{e.step}: " + (T("kept") if e.step in surviving
                                                                       else T("deleted")))
                    if "save" in e.kinds else ""} for e in sched.events])
                st.dataframe(table, hide_index=True, key="learn_events_table")
            if load_best and sched.checkpoints and limit:
                st.caption(T("best_left", ckpts=", ".join(f"checkpoint-{s}" for s in surviving)))

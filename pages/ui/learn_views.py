"""The Learn page's views: token chips, tables and altair charts (length histogram, padded-batch
heatmaps, the log/eval/save timeline).

Every function takes what it shows and ``T``, the page's text lookup in the chosen language
(``T(key, **values) -> str``). Token and review text is escaped wherever it meets HTML.
"""
from __future__ import annotations

import html
from collections.abc import Callable

import altair as alt
import pandas as pd

Text = Callable[..., str]

CHIP_COLOURS = {"special": ("#E4E6EE", "#444A5E"), "word": ("#DCE4FF", "#1C2E8A"),
                "piece": ("#FFE6C7", "#8A4B00"), "unk": ("#FFD4D4", "#9B1111")}


def token_kind(row) -> str:
    if row.is_unk:
        return "unk"
    if row.is_special:
        return "special"
    return "piece" if row.is_subword else "word"


def chips_html(rows) -> str:
    """Coloured token chips. Every token and source text is escaped: user text never becomes HTML."""
    parts = []
    for r in rows:
        bg, fg = CHIP_COLOURS[token_kind(r)]
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


def token_frame(table, T: Text) -> pd.DataFrame:
    kinds = {"unk": "kind_unk", "special": "kind_special", "piece": "kind_piece", "word": "kind_word"}
    rows = table.rows
    return pd.DataFrame({
        T("col_position"): [r.position for r in rows], T("col_token"): [r.token for r in rows],
        T("col_id"): [r.id for r in rows], T("col_mask"): [r.attention_mask for r in rows],
        T("col_kind"): [T(kinds[token_kind(r)]) for r in rows],
        T("col_chars"): [f"{r.start}–{r.end}" for r in rows], T("col_source"): [r.source for r in rows],
    })


# ---------------------------------------------------------------------------------------------------
# Data set lengths
# ---------------------------------------------------------------------------------------------------
def length_histogram(stats, T: Text) -> alt.LayerChart:
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
    return (bars + rule).properties(title=T("hist_title"))


def padding_frame(stats, T: Text) -> pd.DataFrame:
    return pd.DataFrame([{T("col_scheme"): T(f"scheme_{k}"), T("col_positions"): c.tokens_processed,
                          T("col_waste"): c.padding_share} for k, c in stats.padding.items()])


# ---------------------------------------------------------------------------------------------------
# Padded batches
# ---------------------------------------------------------------------------------------------------
def batch_cells(batch, mode: str, T: Text) -> pd.DataFrame:
    cells = pd.DataFrame(batch.cells())
    kind_names = {"text": T("legend_text"), "special": T("legend_special"), "padding": T("legend_padding")}
    cells["kind_label"] = cells["kind"].map(kind_names)
    cells["row_label"] = [f"{r + 1}" + (f" · b{g + 1}" if mode == "dynamic" else "")
                          for r, g in zip(cells["row"], cells["group"])]
    return cells


def heatmap(cells: pd.DataFrame, field: str, title: str, width_cols: int, T: Text) -> alt.Chart:
    """The padded batch as a grid: token kinds (``field="kind"``) or the attention mask."""
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


def padding_compare_frame(batches: dict, T: Text) -> pd.DataFrame:
    return pd.DataFrame([{T("col_mode"): T(f"mode_{k}"), T("col_width"): b.width,
                          T("col_processed"): b.tokens_processed, T("col_padding_share"): f"{b.padding_share:.1%}"}
                         for k, b in batches.items()])


# ---------------------------------------------------------------------------------------------------
# Steps and the event timeline
# ---------------------------------------------------------------------------------------------------
def formula_text(plan, T: Text) -> str:
    return "\n".join(f"{T('f_' + k)} = {expr} = {v:,}" if expr else f"{T('f_' + k)} = {v:,}"
                     for k, expr, v in plan.formula_parts)


def plan_notes(plan, T: Text) -> list[str]:
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
        notes.append(T("note_fraction", steps=plan.total_steps % plan.steps_per_epoch, per_epoch=plan.steps_per_epoch))
    return notes


def timeline(events, plan, surviving, T: Text) -> alt.LayerChart:
    """Each log, evaluation and save on the step axis; saved checkpoints marked kept or deleted."""
    surviving = set(surviving)
    points = []
    for e in events:
        for k in e.kinds:
            status = T(f"ev_{k}")
            if k == "save":
                status = T("ev_kept") if e.step in surviving else T("ev_deleted")
            points.append({"step": e.step, "epoch": round(e.epoch, 4), "event": T(f"ev_{k}"), "status": status})
    domain = [T("ev_log"), T("ev_eval"), T("ev_kept"), T("ev_deleted")]
    chart = alt.Chart(pd.DataFrame(points)).mark_point(filled=True, size=90).encode(
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
    return (rules + chart).properties(title=T("timeline_title"))


def events_frame(events, surviving, T: Text) -> pd.DataFrame:
    surviving = set(surviving)
    return pd.DataFrame([{
        T("col_step"): e.step, T("col_epoch"): round(e.epoch, 4),
        T("col_events"): ", ".join(T(f"ev_{k}") for k in e.kinds),
        T("col_checkpoint"): (f"checkpoint-{e.step}: " + (T("kept") if e.step in surviving else T("deleted")))
        if "save" in e.kinds else ""} for e in events])

"""Notes tab: the run's note and tags, shown as text, and edited by its owner or an admin.

Saving goes through :func:`lib.registry.notes.annotate`, which checks at that moment who may.
"""
from __future__ import annotations

import streamlit as st

from lib.errors import LabError
from lib.registry import access, notes
from lib.registry.reconcile import RunView
from pages.ui.runs_tabs import TabContext
from pages.ui.text import plain


def render(run: RunView, ctx: TabContext) -> None:
    stored = notes.read_notes(run.path)
    st.markdown("**Note**")
    st.text(stored["note"] or "(no note yet)")
    st.caption(plain("Tags: " + (", ".join(stored["tags"]) or "none")))
    why = access.why_not_manage(run.path, ctx.actor, ctx.policy)
    if why:
        st.caption(plain(f"Editing: {why}"))
        return
    with st.form(f"notes_form_{run.run_id}"):
        note = st.text_area("Note", value=stored["note"], max_chars=notes.MAX_NOTE_CHARS, key="notes_text",
                            help="Why this run, what it showed. Shown as plain text.")
        tags = st.text_input("Tags, comma separated", value=", ".join(stored["tags"]), key="notes_tags",
                             max_chars=600, help=f"Up to {notes.MAX_TAGS} short tags: letters, digits, . _ + -")
        saved = st.form_submit_button("Save note and tags", icon=":material/save:")
    if saved:
        try:
            notes.annotate(run.path, note=note, tags=[t for t in tags.split(",") if t.strip()], actor=ctx.actor,
                           policy=ctx.policy)
        except LabError as exc:
            st.error(plain(exc), icon=":material/error:")
            return
        st.success("Saved.")
        st.rerun()

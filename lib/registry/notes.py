"""Notes and tags on a run: why it was run, what it showed, and a few words to find it by.

They live in the run's folder as ``notes.json`` (``{"note", "tags", "updated_at", "updated_by"}``),
written atomically; config.json stays exactly as launched. The run's owner or an admin may change them
(the same rule as cancelling, :func:`lib.registry.access.why_not_manage`). Notes and tags are user text:
pages show them as text, never as markup.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from lib.errors import ConfigError, RunError
from lib.registry import access
from lib.registry.access import CLI_POLICY, Actor, Policy, cli_actor
from lib.store import rundir

NOTES = "notes.json"
MAX_NOTE_CHARS = 4000
MAX_TAGS = 16
MAX_TAG_CHARS = 32
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def normalise_tag(tag: str) -> str:
    """A tag as stored: stripped and lower-case; ConfigError when it is too long or has other characters."""
    text = str(tag or "").strip().lower()
    if not text:
        raise ConfigError({"tag": "a tag must not be empty"})
    if len(text) > MAX_TAG_CHARS:
        raise ConfigError({"tag": f"tag {text[:40]!r}... is {len(text)} characters; keep tags to {MAX_TAG_CHARS}"})
    if not TAG_RE.match(text):
        raise ConfigError({"tag": f"tag {text!r} may only hold letters, digits and . _ + - (starting with a letter "
                                  "or digit)"})
    return text


def check_note(note: str) -> str:
    text = str(note or "").replace("\r\n", "\n").strip()
    if "\x00" in text:
        raise ConfigError({"note": "the note contains a NUL byte; remove it"})
    if len(text) > MAX_NOTE_CHARS:
        raise ConfigError({"note": f"the note is {len(text)} characters long; keep it to {MAX_NOTE_CHARS}"})
    return text


def read_notes(run_dir: str | os.PathLike) -> dict:
    """``{"note": str, "tags": [str], "updated_at", "updated_by"}`` of a run (empty note and tags when none).
    A damaged notes.json reads as no notes."""
    data = rundir.read_json(Path(run_dir) / NOTES)
    data = data if isinstance(data, dict) else {}
    note = data.get("note") if isinstance(data.get("note"), str) else ""
    tags = [t for t in data.get("tags") or [] if isinstance(t, str)] if isinstance(data.get("tags"), list) else []
    return {"note": note[:MAX_NOTE_CHARS], "tags": tags[:MAX_TAGS], "updated_at": data.get("updated_at"),
            "updated_by": data.get("updated_by") if isinstance(data.get("updated_by"), str) else None}


def annotate(run_dir: str | os.PathLike, *, note: str | None = None, tags: Iterable[str] | None = None,
             add_tags: Iterable[str] = (), remove_tags: Iterable[str] = (), actor: Actor | None = None,
             policy: Policy | None = None) -> dict:
    """Change a run's note and tags; returns what is stored now.

    ``note`` replaces the note (None keeps it, "" clears it); ``tags`` replaces all tags (None keeps them);
    ``add_tags`` / ``remove_tags`` change them one by one. Only the run's owner or an admin may do this
    (checked now, raises :class:`lib.registry.access.PermissionDenied`).
    """
    actor = actor or cli_actor()
    policy = policy or CLI_POLICY
    run_dir = rundir.checked_run_dir(run_dir)
    access.require(access.why_not_manage(run_dir, actor, policy))
    new_note = check_note(note) if note is not None else None
    replace = [normalise_tag(t) for t in tags] if tags is not None else None
    plus = [normalise_tag(t) for t in add_tags]
    minus = {normalise_tag(t) for t in remove_tags}
    with rundir.run_lock(run_dir) as held:
        if not held:
            raise RunError(f"cannot lock run {run_dir.name} (is the runs directory read-only?)")
        current = read_notes(run_dir)
        final_tags = list(current["tags"]) if replace is None else []
        for t in (replace or []) + plus:
            if t not in final_tags:
                final_tags.append(t)
        final_tags = [t for t in final_tags if t not in minus]
        if len(final_tags) > MAX_TAGS:
            raise ConfigError({"tag": f"a run can have at most {MAX_TAGS} tags (this would make {len(final_tags)})"})
        data = {"note": current["note"] if new_note is None else new_note, "tags": final_tags,
                "updated_at": time.time(), "updated_by": actor.identity or None}
        rundir.atomic_write_json(run_dir / NOTES, data)
    return read_notes(run_dir)

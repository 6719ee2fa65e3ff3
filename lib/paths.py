"""Local paths that a person typed (data files, model folders): checked before anything reads them.

On a shared server, set ``LAB_ALLOWED_ROOTS`` (folders separated by ``:``) to restrict local data and
model paths to those folders; the runs directory is always allowed (uploads and finished runs' models
live there). Unset, any readable path is allowed (a local, single-user setup).
"""
from __future__ import annotations

import os
from pathlib import Path

from lib.errors import LabError


def allowed_roots() -> list[Path]:
    raw = os.environ.get("LAB_ALLOWED_ROOTS", "").strip()
    if not raw:
        return []
    roots = [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]
    from lib.rundir import default_runs_dir
    roots.append(default_runs_dir())
    return roots


def looks_like_path(text: str) -> bool:
    """True for text written as a path: starts with /, ./, ../, ~ or contains a path separator."""
    return text.startswith(("/", "./", "../", "~")) or os.sep in text or (os.altsep or "\x00") in text


def check_local_path(text: str, what: str, *, must_exist: bool = True) -> Path:
    """Resolve a typed path; refuse NUL bytes, paths outside the allowed roots and missing files."""
    if "\x00" in text:
        raise LabError(f"the {what} path contains a NUL byte; remove it")
    path = Path(text).expanduser().resolve()
    roots = allowed_roots()
    if roots and not any(path == r or r in path.parents for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise LabError(f"the {what} path {text!r} is outside the folders this server allows ({shown}); "
                       "ask the admin or upload the file instead")
    if must_exist and not path.exists():
        raise LabError(f"the {what} path {text!r} does not exist (resolved to {path})")
    return path

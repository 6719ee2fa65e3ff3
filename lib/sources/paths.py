"""Local paths that a person typed (data files, model folders): checked before anything reads them.

On a shared server, set ``LAB_ALLOWED_ROOTS`` (folders separated by ``:``) to restrict local data and
model paths to those folders; the runs directory is always allowed (uploads and finished runs' models
live there). Unset, any readable path is allowed (a local, single-user setup).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from lib.errors import LabError
from lib.store.rundir import default_runs_dir


def allowed_roots() -> list[Path]:
    raw = os.environ.get("LAB_ALLOWED_ROOTS", "").strip()
    if not raw:
        return []
    roots = [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]
    roots.append(default_runs_dir())
    return roots


PATH_PREFIXES = ("/", "./", "../", "~")
DATA_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def looks_like_hub_id(text: str) -> bool:
    """'imdb', 'stanfordnlp/imdb', 'bert-base-uncased': at most one slash, no path-like prefix."""
    return bool(_HUB_ID_RE.fullmatch(text or ""))


def looks_like_path(text: str) -> bool:
    """True for text written as a path: starts with /, ./, ../, ~ or contains a path separator."""
    return text.startswith(PATH_PREFIXES) or os.sep in text or (os.altsep or "\x00") in text


def source_kind(text: str) -> str:
    """The one rule for telling a typed local path from a Hugging Face Hub id.

    - ``"path"``: written as a path (``/``, ``./``, ``../``, ``~``), or a data file name that exists
      here (``reviews.csv``), or text with a slash that is not shaped like a Hub id;
    - ``"hub"``: shaped like a Hub id (``imdb``, ``stanfordnlp/imdb``, ``bert-base-uncased``). A local
      folder of the same name never hides the Hub id: local data is written as a path (``./imdb``);
    - ``"unknown"``: neither.
    """
    text = (text or "").strip()
    if text.startswith(PATH_PREFIXES):
        return "path"
    if text.lower().endswith(DATA_FILE_SUFFIXES) and Path(text).expanduser().exists():
        return "path"
    if looks_like_hub_id(text):
        return "hub"
    if looks_like_path(text):
        return "path"
    return "unknown"


def shadowing_local_path(hub_id: str) -> Path | None:
    """The local file or folder a Hub-shaped name would silently load instead (model loaders look in the
    working directory first), or None. Callers refuse such a name instead of reading an unchecked path."""
    path = Path(hub_id)
    return path if hub_id and path.exists() else None


def within_allowed_roots(path: Path) -> bool:
    """True when ``path`` (already resolved) lies inside one of the allowed roots, or no roots are set."""
    roots = allowed_roots()
    return not roots or any(path == r or r in path.parents for r in roots)


def check_local_path(text: str, what: str, *, must_exist: bool = True) -> Path:
    """Resolve a typed path; refuse NUL bytes, paths outside the allowed roots and missing files."""
    if "\x00" in text:
        raise LabError(f"the {what} path contains a NUL byte; remove it")
    if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in Path(text).parts):
        raise LabError(f"the {what} path has a name longer than 255 bytes, which no file system allows; "
                       "check the path")
    try:
        path = Path(text).expanduser().resolve(strict=False)
        exists = path.exists()
    except RuntimeError:
        raise LabError(f"the {what} path {text[:200]!r} is a symbolic link loop; point it at a real file or "
                       "folder") from None
    except OSError as exc:
        raise LabError(f"the {what} path {text[:200]!r} cannot be read ({exc.strerror or exc}); check the "
                       "path") from None
    roots = allowed_roots()
    if roots and not any(path == r or r in path.parents for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise LabError(f"the {what} path {text[:200]!r} is outside the folders this server allows ({shown}); "
                       "ask the admin or upload the file instead")
    if must_exist and not exists:
        raise LabError(f"the {what} path {text!r} does not exist (resolved to {path})")
    return path

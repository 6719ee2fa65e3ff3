"""Uploaded data files: ``<runs_dir>/_uploads/<server-made name>``, written atomically.

The person's file name only decides the format (its extension); it is never part of a path. A file is
written to a hidden temporary name first and renamed into place, so a reader never sees half of one.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from lib.errors import DataError
from lib.store import rundir

EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def upload_folder(runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir) / rundir.UPLOADS


def save_upload(runs_dir: str | os.PathLike, data: bytes, filename: str, *, prefix: str = "",
                max_bytes: int | None = None) -> Path:
    """Store uploaded bytes under ``<runs_dir>/_uploads`` with a server-made name and return its path.

    Refuses an empty file, a file over ``max_bytes`` and an extension the lab cannot read.
    """
    ext = Path(str(filename or "")).suffix.lower()
    if ext not in EXTENSIONS:
        raise DataError(f"Files ending in {ext or '(nothing)'} are not supported; upload a .csv, .tsv, .jsonl, "
                        ".json or .parquet file.")
    if not data:
        raise DataError("The uploaded file is empty: it holds no reviews.")
    if max_bytes is not None and len(data) > max_bytes:
        raise DataError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. Upload a "
                        "smaller file or ask the admin to raise LAB_MAX_UPLOAD_MB.")
    folder = upload_folder(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = prefix + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(6) + ext
    target = folder / name
    tmp = folder / f".{name}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


DEFAULT_RETENTION_DAYS = 7.0


def retention_days() -> float:
    """``LAB_UPLOAD_RETENTION_DAYS`` (default 7): how long an upload no run uses is kept."""
    try:
        return max(0.0, float(os.environ.get("LAB_UPLOAD_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)))
    except ValueError:
        return DEFAULT_RETENTION_DAYS


def referenced_uploads(runs_dir: str | os.PathLike) -> set[str]:
    """Names of the uploads some run's config reads (``dataset`` or ``test_file`` inside ``_uploads/``)."""
    folder = upload_folder(runs_dir).resolve()
    names: set[str] = set()
    for run_dir in rundir.iter_run_dirs(runs_dir):
        config = rundir.read_config(run_dir)
        for key in ("dataset", "test_file"):
            value = str(config.get(key) or "").strip()
            if value and os.sep in value:
                path = Path(value)
                if path.parent == folder or path.parent.resolve() == folder:
                    names.add(path.name)
    return names


def prune_uploads(runs_dir: str | os.PathLike, *, days: float | None = None, now: float | None = None) -> list[str]:
    """Delete uploads older than ``days`` (default :func:`retention_days`) that no run uses; return their
    names. An upload a run's config reads is kept however old it is, so resuming or cloning that run works."""
    folder = upload_folder(runs_dir)
    if not folder.is_dir():
        return []
    days = retention_days() if days is None else days
    cutoff = (time.time() if now is None else now) - days * 86400
    keep = referenced_uploads(runs_dir)
    removed = []
    for entry in os.scandir(folder):
        if entry.name in keep or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return sorted(removed)

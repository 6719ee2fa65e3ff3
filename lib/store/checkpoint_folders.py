"""Checkpoint folders of a run (``<run>/checkpoints/checkpoint-N/``): the one scan every reader uses.

Nothing here opens a pickle: a checkpoint is judged by its ``trainer_state.json`` (JSON) and by which
files exist. Symlinked folders are never followed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from lib.store import rundir

PREFIX = "checkpoint-"


def checkpoint_folders(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-N`` folder of the run, oldest first (symlinks skipped)."""
    folder = Path(run_dir) / rundir.CHECKPOINTS
    found: list[tuple[int, Path]] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(PREFIX) and entry.is_dir(follow_symlinks=False):
            try:
                found.append((int(entry.name[len(PREFIX):]), Path(entry.path)))
            except ValueError:
                continue
    return sorted(found)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint folders, oldest first (by step number)."""
    return [path for _, path in checkpoint_folders(run_dir)]


def has_weights(path: Path) -> bool:
    try:
        return any(n.endswith(".safetensors") for n in os.listdir(path))
    except OSError:
        return False


def checkpoint_is_complete(path: Path) -> bool:
    """trainer_state.json parses and the weight and optimizer files exist."""
    state = rundir.read_json(path / "trainer_state.json")
    if not isinstance(state, dict) or "global_step" not in state:
        return False
    has_optimizer = (path / "optimizer.pt").is_file() or (path / "optimizer.bin").is_file()
    return has_weights(path) and has_optimizer


def folder_size(path: Path) -> int:
    """Bytes of all regular files below ``path`` (symlinks neither counted nor followed)."""
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                    elif entry.is_dir(follow_symlinks=False):
                        total += folder_size(Path(entry.path))
                except OSError:
                    continue
    except OSError:
        pass
    return total


def remove_torn_checkpoints(run_dir: Path) -> list[str]:
    """Delete checkpoints that are not complete (a save that failed half-way); return their names."""
    removed = []
    for path in list_checkpoints(run_dir):
        if not checkpoint_is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    for tmp in (Path(run_dir) / rundir.CHECKPOINTS).glob("tmp-checkpoint-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    return removed


def newest_complete_checkpoint(run_dir: Path) -> Path | None:
    for path in reversed(list_checkpoints(run_dir)):
        if checkpoint_is_complete(path):
            return path
    return None

"""The run directory: one folder per training run, the contract between the job and the pages.

::

    <runs_dir>/<run_id>/
      config.json          the TrainConfig exactly as launched (never rewritten)
      run.json             argv, pid, pgid, process create_time, host, user, created_at
      status.json          state, step/total, heartbeat, error (atomic writes)
      metrics.jsonl        one JSON object per log/eval/save event (append only)
      stdout.log           the job's stdout + stderr
      data.json            what the data loader did: sources, label mapping, split, dropped rows
      baseline.json        TF-IDF + logistic regression scored on the same eval split
      checkpoints/         Trainer output_dir (checkpoint-N/ with trainer_state.json)
      model/               final export: model + tokenizer + model card
      eval_predictions.jsonl  the eval split's predictions in dataset order

Run ids are made here, never from user text: ``YYYYMMDD-HHMMSS-xxxxxx`` (UTC time plus a random
hex suffix), created with an exclusive ``mkdir`` so two launches in the same second never share a
folder. :func:`resolve_run_dir` is the only way a run id coming from outside becomes a path.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.errors import RunError

CONFIG = "config.json"
RUN = "run.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
LOG = "stdout.log"
DATA_INFO = "data.json"
BASELINE = "baseline.json"
CHECKPOINTS = "checkpoints"
MODEL = "model"
ONNX = "onnx"  # the ONNX export of model/ for fast CPU predictions (model.onnx, model.int8.onnx, onnx.json)
PREDICTIONS = "eval_predictions.jsonl"
CALIBRATION = "calibration.json"  # the temperature fitted on the eval split (run directory and model/)
UPLOADS = "_uploads"  # uploaded data files live in <runs_dir>/_uploads/<server-made name>

LOCK_FILE = ".registry.lock"  # flock target that serialises registry changes to one run

STATES = ("queued", "running", "finished", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
TERMINAL_STATES = ("finished", "failed", "cancelled")
RESUMABLE_STATES = ("failed", "cancelled")
_UMASK = os.umask(0)
os.umask(_UMASK)
RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


def default_runs_dir() -> Path:
    """``$LAB_RUNS_DIR`` when set, else ``./runs``."""
    return Path(os.environ.get("LAB_RUNS_DIR") or "runs").expanduser().resolve()


def new_run_id(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    return stamp.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def create_run_dir(runs_dir: str | os.PathLike) -> Path:
    """Create a fresh, empty run directory with a server-made id (exclusive mkdir)."""
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = root / new_run_id()
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"could not create a new run directory under {root}")


def is_run_id(text: str) -> bool:
    return isinstance(text, str) and bool(RUN_ID_RE.match(text))


def resolve_run_dir(runs_dir: str | os.PathLike, run_id: str) -> Path:
    """Turn a run id from outside (CLI, URL, form) into its directory, or refuse.

    Refuses anything that is not a server-made id, and a run directory that is a symlink or
    resolves outside the runs directory.
    """
    if not is_run_id(run_id):
        raise RunError(f"{run_id!r} is not a run id (expected something like 20260101-120000-a1b2c3)")
    root = Path(runs_dir).resolve()
    path = root / run_id
    if path.is_symlink():
        raise RunError(f"run {run_id} is a symbolic link; refusing to follow it out of the runs directory")
    if not path.is_dir():
        raise RunError(f"no run {run_id} in {root}")
    if path.resolve().parent != root:
        raise RunError(f"run {run_id} resolves outside the runs directory; refusing it")
    return path


def iter_run_dirs(runs_dir: str | os.PathLike) -> Iterator[Path]:
    """Run directories under ``runs_dir`` (real folders with a run id name; symlinks skipped)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return
    for entry in os.scandir(root):
        if is_run_id(entry.name) and entry.is_dir(follow_symlinks=False):
            yield root / entry.name


def open_nofollow(path: str | os.PathLike, mode: str = "rb", **kw):
    """Open a file of a run for reading, refusing a symbolic link (``O_NOFOLLOW``): nothing inside a run
    directory is ever read through a link planted there (``stdout.log -> /etc/shadow``)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        return os.fdopen(fd, mode, **kw)
    except BaseException:
        os.close(fd)
        raise


def _json_default(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _clean(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any, **kw) -> str:
    return json.dumps(_clean(obj), default=_json_default, ensure_ascii=False, **kw)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so a reader sees either the old or the new content, never half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # readable by the team like any other file, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read a JSON file; ``default`` when it is missing, empty or unparsable."""
    try:
        with open_nofollow(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def append_jsonl(path: str | os.PathLike, obj: dict) -> None:
    """Append one JSON line with a single write (readers skip a torn last line)."""
    line = dumps(obj) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All complete JSON lines of a file (a torn or corrupt line is skipped)."""
    rows: list[dict] = []
    try:
        with open_nofollow(path, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # torn last line: being written right now
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    rows.append(obj)
    except OSError:
        pass
    return rows


def update_status(run_dir: str | os.PathLike, **changes: Any) -> dict:
    """Merge ``changes`` into status.json (atomic). Returns the new status."""
    path = Path(run_dir) / STATUS
    status = read_json(path, default={}) or {}
    status.update(changes)
    status["updated_at"] = time.time()
    atomic_write_json(path, status)
    return status


def read_status(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / STATUS, default={}) or {}


def tail_text(path: str | os.PathLike, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a text file (for log tails)."""
    try:
        with open_nofollow(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes and "\n" in text:
        text = text.split("\n", 1)[1]
    return text


def checked_run_dir(run_dir: str | os.PathLike) -> Path:
    """A run directory given as a path, checked like an id from outside (no symlinks, inside its runs dir)."""
    path = Path(run_dir)
    return resolve_run_dir(path.parent, path.name)


def read_run_info(run_dir: str | os.PathLike) -> dict:
    data = read_json(Path(run_dir) / RUN, default={})
    return data if isinstance(data, dict) else {}


_CONFIG_CACHE: dict[str, tuple[int, int, dict]] = {}


def clear_cache() -> None:
    """Forget cached configs (tests and cold-start benchmarks)."""
    _CONFIG_CACHE.clear()


def read_config(run_dir: str | os.PathLike) -> dict:
    """config.json as a plain dict ({} when missing or damaged); cached by modification time, since
    refreshing a table of many runs reads every run's config each time."""
    path = Path(run_dir) / CONFIG
    try:
        st = os.stat(path)
    except OSError:
        return {}
    hit = _CONFIG_CACHE.get(str(path))
    if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    data = read_json(path, default={})
    data = data if isinstance(data, dict) else {}
    if len(_CONFIG_CACHE) > 4096:
        _CONFIG_CACHE.clear()
    _CONFIG_CACHE[str(path)] = (st.st_mtime_ns, st.st_size, data)
    return data


@contextlib.contextmanager
def run_lock(run_dir: Path, *, blocking: bool = True, timeout: float = 30.0,
              give_up: bool = False) -> Iterator[bool]:
    """Serialise registry changes to one run across processes and hosts (flock on a file in the run dir).

    Yields True when the lock is held; False when it could not be taken (read-only runs directory,
    busy and not ``blocking``, or still busy after ``timeout`` with ``give_up``). The job never takes this
    lock: the registry only writes status for a run whose process is gone.
    """
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    held = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except OSError:
                if not blocking:
                    break
                if time.monotonic() > deadline:
                    if give_up:
                        break
                    raise RunError(f"run {run_dir.name} is busy (another cancel, resume or delete is in progress); "
                                   "try again in a moment") from None
                time.sleep(0.05)
        yield held
    finally:
        if held:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

"""Where runs go: this machine's own queue (``local``) or a Slurm cluster (``slurm``).

``LAB_BACKEND`` is set by whoever runs the server: ``local`` (the default) runs each job as a
process on this machine, queued by device slots in the runs directory; ``slurm`` submits each job
with ``sbatch`` and lets Slurm queue it (see :mod:`lib.registry.slurm` for the Slurm settings).

Every run records the backend it was started with (``backend`` in run.json and status.json), and is
always read back with that backend, so switching the setting never confuses runs made before.
"""
from __future__ import annotations

import os

from lib.errors import RunError

LOCAL, SLURM = "local", "slurm"
BACKENDS = (LOCAL, SLURM)


def backend(environ=None) -> str:
    """``"local"`` or ``"slurm"`` from ``LAB_BACKEND`` (empty: local). Anything else is a RunError."""
    env = os.environ if environ is None else environ
    value = (env.get("LAB_BACKEND") or "").strip().lower() or LOCAL
    if value not in BACKENDS:
        raise RunError(f"LAB_BACKEND={env.get('LAB_BACKEND')!r} is not a backend the lab knows; set it to "
                       f"local (this machine's own queue) or slurm (submit runs to a Slurm cluster)")
    return value


def is_slurm(environ=None) -> bool:
    return backend(environ) == SLURM


def run_backend(run: dict | None, status: dict | None = None) -> str:
    """The backend a run was started with (from its run.json, else its status.json; older runs: local)."""
    for source in (run or {}, status or {}):
        value = source.get("backend") if isinstance(source, dict) else None
        if value in BACKENDS:
            return value
    return LOCAL


def describe(environ=None) -> str:
    """One line for the Train page and the CLI: where new runs go."""
    if not is_slurm(environ):
        return "Runs go to this machine's own queue"
    from lib.registry import slurm
    conf = slurm.settings(environ)
    where = f"partition {conf['partition']}" if conf["partition"] else "the cluster's default partition"
    account = f", account {conf['account']}" if conf["account"] else ""
    return f"Runs go to Slurm ({where}{account})"


_WARNED: dict[str, str | None] = {}


def startup_warning(runs_dir) -> str | None:
    """Under Slurm, a warning when the runs folder looks local to this machine (computed once per folder
    and process, for the app's start and ``lib.runs launch``); None otherwise."""
    try:
        if not is_slurm():
            return None
    except RunError as exc:
        return str(exc)
    key = str(runs_dir)
    if key not in _WARNED:
        from lib.registry import slurm
        _WARNED[key] = slurm.shared_dir_warning(runs_dir)
    return _WARNED[key]

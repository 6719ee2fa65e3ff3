"""Limits of a shared box, checked when a run is launched or resumed (``LAB_*`` settings).

- ``LAB_MAX_ACTIVE_RUNS_PER_USER`` (default 3): queued + running runs one owner may have at once.
- Multi-node training (``num_nodes > 1`` or a ``rdzv_endpoint``) from the browser only with an endpoint an
  admin listed in ``[lab] rendezvous_endpoints``: a rendezvous store runs code in the job (torch
  unpickles what it returns), so nobody may point a job at a host of their choosing. With
  ``LAB_BACKEND=slurm`` nobody types an endpoint at all: the job's batch script puts the rendezvous on the
  first node Slurm gave it, and a typed endpoint is refused.
"""
from __future__ import annotations

import os
from pathlib import Path

from lib.config import TrainConfig, on_slurm
from lib.registry.access import Actor, PermissionDenied, Policy
from lib.store import rundir

DEFAULT_MAX_ACTIVE_RUNS_PER_USER = 3


class QuotaExceeded(PermissionDenied):
    """A limit of the shared box would be exceeded; the message names the limit and what to do."""


def max_active_runs_per_user() -> int:
    try:
        return max(1, int(os.environ.get("LAB_MAX_ACTIVE_RUNS_PER_USER", DEFAULT_MAX_ACTIVE_RUNS_PER_USER)))
    except ValueError:
        return DEFAULT_MAX_ACTIVE_RUNS_PER_USER


def active_runs_of(runs_dir: str | os.PathLike, owner: str, *, exclude: str = "") -> list[str]:
    """Ids of the queued or running runs that ``owner`` has (from status.json: cheap, no process checks)."""
    key = owner.strip().casefold()
    found = []
    for run_dir in rundir.iter_run_dirs(Path(runs_dir)):
        if run_dir.name == exclude:
            continue
        status = rundir.read_status(run_dir)
        if status.get("state") not in rundir.ACTIVE_STATES:
            continue
        who = str(rundir.read_config(run_dir).get("owner") or status.get("owner") or "").strip().casefold()
        if who == key:
            found.append(run_dir.name)
    return sorted(found)


def check_launch_limits(config: TrainConfig, runs_dir: str | os.PathLike, actor: Actor, policy: Policy, *,
                        resuming: str = "") -> None:
    """Raise :class:`QuotaExceeded` (or PermissionDenied) when this launch would break a limit."""
    if on_slurm() and config.rdzv_endpoint.strip():
        raise PermissionDenied("Runs go to Slurm here, which sets up the rendezvous on the job's own first node: "
                               "leave rdzv_endpoint empty.")
    if actor.source != "cli" and not on_slurm() and (config.num_nodes > 1 or config.rdzv_endpoint.strip()):
        endpoint = config.rdzv_endpoint.strip()
        if not endpoint or endpoint not in policy.rendezvous_endpoints:
            allowed = ", ".join(policy.rendezvous_endpoints) or "none is configured"
            raise PermissionDenied(
                f"Multi-node training from the browser needs a rendezvous endpoint an admin allowed "
                f"([lab] rendezvous_endpoints; allowed: {allowed}). Set num_nodes=1, or ask an admin.")
    owner = config.owner.strip()
    if owner:
        limit = max_active_runs_per_user()
        active = active_runs_of(runs_dir, owner, exclude=resuming)
        if len(active) >= limit:
            raise QuotaExceeded(
                f"{owner} already has {len(active)} queued or running run(s) (limit {limit}, "
                "LAB_MAX_ACTIVE_RUNS_PER_USER): wait for one to finish or cancel one, then launch again.")

"""Create a run directory and start its job as a detached process; resume a failed or cancelled run.

The job runs as ``python -m lib.train --run-dir DIR``: an argv list (never a shell), in its own
session and process group, stdin closed, stdout and stderr appended to the run's ``stdout.log``.
A daemon thread per job reaps it, so no zombie is left and its exit status is known.

With ``LAB_BACKEND=slurm`` (see :mod:`lib.registry.backend`) the run is submitted with ``sbatch`` instead
(:mod:`lib.registry.slurm`): run.json records the backend, the sbatch command and then the job id; Slurm
queues the job and starts it on its nodes, and no local process or reaper thread is involved. A run is
always resumed with the backend it was created with.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from lib.config import TrainConfig
from lib.errors import ConfigError, RunError
from lib.registry import access
from lib.registry import backend as backends
from lib.registry.access import CLI_POLICY, Actor, Policy, cli_actor
from lib.registry.quotas import check_launch_limits
from lib.registry.reconcile import _CHILDREN, _EXITS, _EXITS_LOCK, _reconcile, get_status
from lib.store import rundir, uploads

REPO_ROOT = Path(__file__).resolve().parents[2]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid (containers)
        return str(os.getuid())


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The run's TrainConfig (for clone and resume)."""
    return TrainConfig.load(Path(run_dir) / rundir.CONFIG)


# ---------------------------------------------------------------------------------------------------
# Launch and resume
# ---------------------------------------------------------------------------------------------------
def job_command(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False) -> list[str]:
    """The exact argv the job runs with (one process, or torchrun for several)."""
    from lib.job.training import job_argv
    return job_argv(config, Path(run_dir), resume=resume)


def preview_command(config: TrainConfig, runs_dir: str | os.PathLike) -> tuple[str, list[str]]:
    """What a launch of ``config`` will run, for the Train page: ``("local", job argv)`` or, under Slurm,
    ``("slurm", the sbatch command)``, with ``<new-run-id>`` where the run's id will go."""
    placeholder = "<new-run-id>"
    if not backends.is_slurm():
        return backends.LOCAL, job_command(config, Path("<runs-dir>") / placeholder)
    from lib.registry import slurm
    sample = rundir.new_run_id()
    device = config.device if config.device in ("cpu", "cuda") else "auto"
    argv = slurm.run_sbatch_argv(Path(runs_dir).expanduser().resolve() / sample, num_nodes=config.num_nodes,
                                 num_processes=config.num_processes, device=device,
                                 python=(os.environ.get("LAB_SLURM_PYTHON") or "").strip() or None)
    return backends.SLURM, [a.replace(sample, placeholder) for a in argv]


def create_run(runs_dir: str | os.PathLike, config: TrainConfig, *, owner: str | None = None) -> Path:
    """A new run directory with ``config.json`` and a ``queued`` status, ready to launch."""
    if not isinstance(config, TrainConfig):
        raise ConfigError({"config": "expected a TrainConfig"})
    if owner is not None and owner != config.owner:
        config = config.replace(owner=str(owner))
    errors = config.validate()
    if errors:
        raise ConfigError(errors)
    run_dir = rundir.create_run_dir(Path(runs_dir).expanduser().resolve())
    now = time.time()
    rundir.atomic_write_text(run_dir / rundir.CONFIG, config.to_json())
    rundir.atomic_write_json(run_dir / rundir.STATUS, {
        "state": "queued", "step": 0, "total_steps": None, "created_at": now, "queued_at": now,
        "enqueued_at": now, "owner": config.owner, "queue_position": None, "error": None,
        "backend": backends.backend()})
    return run_dir


def _reap(proc: subprocess.Popen, create_time: float | None, run_dir: Path) -> None:
    """Wait for a job this process started, remember how it ended, and reconcile its status at once."""
    try:
        code = proc.wait()
    except Exception:  # noqa: BLE001 - nothing sensible to do in a daemon thread
        with _EXITS_LOCK:
            _CHILDREN.pop(proc.pid, None)
        return
    with _EXITS_LOCK:
        _EXITS[proc.pid] = (create_time, code)
        _CHILDREN.pop(proc.pid, None)
        while len(_EXITS) > 1000:
            _EXITS.pop(next(iter(_EXITS)))
    with contextlib.suppress(Exception):
        if run_dir.is_dir():
            get_status(run_dir)


def _start_job(run_dir: Path, config: TrainConfig, *, resume: bool, launched_by: str,
               status_changes: dict | None = None) -> dict:
    """Start the job detached and record it in run.json.

    Order matters for readers on other servers: run.json (no process yet, launch just started) is
    written first, then ``status_changes`` (resume: back to queued), then the process starts. A reader
    that sees a queued state therefore never pairs it with an old, dead pid.
    """
    if backends.run_backend(rundir.read_run_info(run_dir), rundir.read_status(run_dir)) == backends.SLURM:
        return _submit_job(run_dir, config, resume=resume, launched_by=launched_by, status_changes=status_changes)
    import psutil
    argv = job_command(config, run_dir, resume=resume)
    now = time.time()
    previous = rundir.read_run_info(run_dir)
    history = list(previous.get("history") or []) if isinstance(previous.get("history"), list) else []
    if previous.get("pid") or previous.get("launch_pid"):
        history.append({k: previous.get(k) for k in ("argv", "pid", "pgid", "create_time", "host", "user",
                                                     "created_at", "launched_by")})
    info = {"backend": backends.LOCAL, "argv": argv, "pid": None, "pgid": None, "create_time": None,
            "launch_pid": None, "launch_create_time": None, "host": socket.gethostname(), "user": _user(),
            "created_at": now, "launch_started_at": now, "launched_by": launched_by, "resume": resume,
            "history": history[-20:]}
    rundir.atomic_write_json(run_dir / rundir.RUN, info)
    if status_changes:
        rundir.update_status(run_dir, **status_changes)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    try:
        with open(run_dir / rundir.LOG, "ab") as log:
            if resume:
                log.write(f"\n[lab] resume requested by {launched_by} at {time.ctime(now)}\n".encode())
                log.flush()
            proc = subprocess.Popen(argv, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, env=env)
    except OSError as exc:
        rundir.update_status(run_dir, state="failed", finished_at=time.time(), exit_code=None,
                             error={"type": "LaunchError", "message": f"could not start the job: {exc}",
                                    "hint": "check that Python and the lab are installed on this machine"})
        raise RunError(f"could not start the training job: {exc}") from None
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = None
    with _EXITS_LOCK:
        _CHILDREN[proc.pid] = create_time
    threading.Thread(target=_reap, args=(proc, create_time, run_dir), name=f"reap-{run_dir.name}",
                     daemon=True).start()
    launched = {"pid": proc.pid, "pgid": proc.pid, "create_time": create_time, "launch_pid": proc.pid,
                "launch_create_time": create_time}
    # The job merges its own pid/pgid/create_time into run.json as it starts; keep whatever it wrote.
    current = rundir.read_run_info(run_dir)
    for key, value in launched.items():
        if current.get(key) is None or key.startswith("launch_"):
            current[key] = value
    for key, value in info.items():
        current.setdefault(key, value)
    rundir.atomic_write_json(run_dir / rundir.RUN, current)
    return current


def _submit_job(run_dir: Path, config: TrainConfig, *, resume: bool, launched_by: str,
                status_changes: dict | None = None) -> dict:
    """Submit the run to Slurm with ``sbatch`` and record the job id in run.json and status.json.

    run.json (backend, the sbatch command, no job id yet) is written first, then ``status_changes``,
    then the job is submitted; a refusal by Slurm ends the run ``failed`` with Slurm's message.
    """
    from lib.registry import slurm
    now = time.time()
    previous = rundir.read_run_info(run_dir)
    history = list(previous.get("history") or []) if isinstance(previous.get("history"), list) else []
    if previous.get("slurm_job_id"):
        history.append({k: previous.get(k) for k in ("slurm_job_id", "slurm_nodes", "submit_host", "user",
                                                     "submitted_at", "launched_by")})
    device = config.device if config.device in ("cpu", "cuda") else "auto"
    try:
        argv = slurm.run_sbatch_argv(run_dir, num_nodes=config.num_nodes, num_processes=config.num_processes,
                                     device=device, resume=resume,
                                     python=(os.environ.get("LAB_SLURM_PYTHON") or "").strip() or None)
    except RunError as exc:
        argv, refused = [], exc
    else:
        refused = None
    host = socket.gethostname()
    info = {"backend": backends.SLURM, "argv": argv, "sbatch_argv": argv, "slurm_job_id": None, "slurm_nodes": "",
            "host": host, "submit_host": host, "user": _user(), "created_at": now, "launch_started_at": now,
            "launched_by": launched_by, "resume": resume, "history": history[-20:]}
    rundir.atomic_write_json(run_dir / rundir.RUN, info)
    changes = dict(status_changes or {})
    changes.update(backend=backends.SLURM, slurm_job_id=None)
    rundir.update_status(run_dir, **changes)
    with open(run_dir / rundir.LOG, "ab") as log:
        if resume:
            log.write(f"\n[lab] resume requested by {launched_by} at {time.ctime(now)}\n".encode())
    try:
        if refused:
            raise refused
        job_id = slurm.submit(argv)
    except RunError as exc:
        rundir.update_status(run_dir, state="failed", finished_at=time.time(), exit_code=None, queue_position=None,
                             error={"type": "SlurmRefused", "message": str(exc),
                                    "hint": "check the Slurm settings (LAB_SLURM_*) with the cluster's administrator"})
        raise RunError(str(exc)) from None
    with open(run_dir / rundir.LOG, "ab") as log:
        log.write(f"[lab] submitted to Slurm as job {job_id} ({time.ctime()})\n".encode())
    # the job may already have merged its own keys (pid, node) into run.json: keep them
    current = rundir.read_run_info(run_dir)
    current.update(slurm_job_id=job_id, submitted_at=time.time())
    for key, value in info.items():
        current.setdefault(key, value)
    rundir.atomic_write_json(run_dir / rundir.RUN, current)
    rundir.update_status(run_dir, slurm_job_id=job_id)
    return current


def launch(config: TrainConfig, runs_dir: str | os.PathLike | None = None, *, owner: str | None = None,
           launched_by: str = "api", actor: Actor | None = None, policy: Policy | None = None) -> Path:
    """Create a run for ``config`` and start its job in the background. Returns the run directory.

    ``actor`` and ``policy`` say who acts under which settings (the app passes both; the command line
    acts as its operating-system user): permission, the run's owner, the rendezvous allowlist and the
    quotas are checked here, at the moment of acting, whatever a page showed before.
    """
    actor = actor or cli_actor()
    policy = policy or CLI_POLICY
    runs_dir = Path(runs_dir).expanduser().resolve() if runs_dir else rundir.default_runs_dir()
    access.require(access.why_not_launch(actor, policy))
    owner = access.owner_for_launch(actor, policy, owner if owner is not None else config.owner)
    config = config.replace(owner=owner)
    check_launch_limits(config, runs_dir, actor, policy)
    run_dir = create_run(runs_dir, config, owner=owner)
    _start_job(run_dir, load_config(run_dir), resume=False, launched_by=launched_by)
    uploads.prune_uploads(runs_dir)  # uploads no run uses, past LAB_UPLOAD_RETENTION_DAYS
    return run_dir


def resume(run_dir: str | os.PathLike, *, launched_by: str = "api", actor: Actor | None = None,
           policy: Policy | None = None) -> Path:
    """Relaunch a failed or cancelled run with ``--resume``: it continues from its newest complete checkpoint.

    Needs the right to manage the run *and* to launch (checked now), and counts against the owner's quota.
    """
    actor = actor or cli_actor()
    policy = policy or CLI_POLICY
    run_dir = rundir.checked_run_dir(run_dir)
    access.require(access.why_not_resume(run_dir, actor, policy))
    check_launch_limits(load_config(run_dir), run_dir.parent, actor, policy, resuming=run_dir.name)
    with rundir.run_lock(run_dir) as held:
        if not held:
            raise RunError(f"cannot lock run {run_dir.name} (is the runs directory read-only?)")
        status = _reconcile(run_dir, rundir.read_status(run_dir), locked=True)
        state = status.get("state")
        if state not in rundir.RESUMABLE_STATES:
            raise RunError(f"run {run_dir.name} is {state}; only a failed or cancelled run can be resumed")
        old_job = rundir.read_run_info(run_dir).get("slurm_job_id")
        if backends.run_backend(rundir.read_run_info(run_dir), status) == backends.SLURM and old_job:
            from lib.registry import slurm
            if slurm.is_active(old_job):
                raise RunError(f"Slurm still runs job {old_job} of run {run_dir.name}; wait until it has ended "
                               f"(squeue -j {old_job}), then resume")
        config = load_config(run_dir)
        now = time.time()
        _start_job(run_dir, config, resume=True, launched_by=launched_by, status_changes=dict(
            state="queued", queued_at=now, enqueued_at=now, queue_position=None, error=None, exit_code=None,
            finished_at=None, pid=None, resumed_at=now, resumes=int(status.get("resumes") or 0) + 1, heartbeat=None))
    return run_dir

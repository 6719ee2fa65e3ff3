"""Slurm: submit a run as a batch job, read what Slurm says about it, cancel it.

The registry's Slurm backend (``LAB_BACKEND=slurm``) uses these functions; they only talk to Slurm's
command-line tools (``sbatch``, ``squeue``, ``scontrol``, ``sacct``, ``scancel``, ``sinfo``), always
with an argument list and a timeout, never through a shell.

Submitting
    :func:`sbatch_argv` builds the ``sbatch`` command for a run: its options come only from values the
    server made (the run id, the run directory, numbers from the config, the admin's settings), and the
    program is the project's fixed batch script ``scripts/slurm-job.sh`` with its own arguments
    (:func:`job_script_argv`). ``sbatch`` stops reading options at the script, so the arguments after
    it reach the script untouched; no text is ever evaluated by a shell. A person's free-text run name
    is never part of the command: the run id is the job name. :func:`submit` runs the command and
    returns the job id.

Reading a job
    :func:`job_state` asks ``squeue`` first (queued and running jobs), then ``scontrol show job``
    (Slurm keeps a finished job in memory for ``MinJobAge`` seconds, 300 by default), then ``sacct``.
    ``sacct`` needs accounting storage (slurmdbd); without it (Slurm 22.05 answers "Slurm accounting
    storage is disabled") ``sacct --completion`` reads the job-completion file when the cluster writes
    one (``JobCompType=jobcomp/filetxt``, as ``scripts/slurm-up.sh`` sets up). Slurm's job states are
    mapped to the lab's (queued, running, finished, failed, cancelled) with a plain reason, such as
    "Slurm stopped the job: time limit reached". :func:`queue_position` says where a queued job stands
    among the queued jobs of its partition.

Ending
    :func:`cancel` is a plain ``scancel``: Slurm sends SIGTERM to every process of the job on every
    node (the job records ``cancelled`` itself), then SIGKILL after the cluster's KillWait. Slurm
    22.05 treats ``scancel --signal=KILL`` the same way (the job ends CANCELLED). Slurm may report a
    job as ended a second or two before its last process is gone. ``scancel --batch`` signals only
    the batch script: with ``ProctrackType=proctrack/linuxproc`` its children can outlive the job,
    so the lab never uses it (real clusters should use proctrack/cgroup).

Settings (set by whoever runs the server, never by a visitor)
    ``LAB_SLURM_PARTITION``   partition to submit to (default: the cluster's default partition)
    ``LAB_SLURM_ACCOUNT``     account to charge (default: the user's default account)
    ``LAB_SLURM_EXTRA_ARGS``  further ``sbatch`` options, e.g. ``--qos=normal --constraint=a100``;
                              each must be written as ``--name`` or ``--name=value``
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from lib.errors import RunError

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_SCRIPT = REPO_ROOT / "scripts" / "slurm-job.sh"
LOG_NAME = "stdout.log"          # the run directory's log file (the job's stdout and stderr)
COMMAND_TIMEOUT_S = 20.0         # how long a Slurm command may take before we say Slurm is not answering

JOB_ID_RE = re.compile(r"^\d+$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")         # partition / account names
TIME_RE = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2})$")
SIGNAL_RE = re.compile(r"^(SIG)?[A-Z][A-Z0-9]{1,10}$|^\d{1,2}$")

# options the backend sets itself; an admin's extra arguments may not change them
RESERVED_OPTIONS = ("--job-name", "--output", "--error", "--input", "--open-mode", "--chdir", "--parsable",
                    "--wrap", "--nodes", "--ntasks", "--ntasks-per-node", "--array", "--export-file", "--wait")

QUEUED, RUNNING, FINISHED, FAILED, CANCELLED = "queued", "running", "finished", "failed", "cancelled"

# Slurm job state -> (lab state, plain reason or None)
_STATES: dict[str, tuple[str, str | None]] = {
    "PENDING": (QUEUED, None),
    "CONFIGURING": (QUEUED, "Slurm is getting the job's nodes ready"),
    "REQUEUED": (QUEUED, "Slurm put the job back in the queue"),
    "REQUEUE_HOLD": (QUEUED, "Slurm put the job back in the queue and holds it"),
    "REQUEUE_FED": (QUEUED, "Slurm put the job back in the queue"),
    "RESV_DEL_HOLD": (QUEUED, "Slurm holds the job: its reservation was deleted"),
    "RUNNING": (RUNNING, None),
    "COMPLETING": (RUNNING, "Slurm is ending the job's processes"),
    "STAGE_OUT": (RUNNING, "Slurm is staging out the job's files"),
    "SIGNALING": (RUNNING, "Slurm is signalling the job"),
    "RESIZING": (RUNNING, "Slurm is resizing the job"),
    "SUSPENDED": (RUNNING, "Slurm suspended the job"),
    "STOPPED": (RUNNING, "Slurm stopped (paused) the job"),
    "COMPLETED": (FINISHED, None),
    "FAILED": (FAILED, None),   # reason from the exit code
    "CANCELLED": (FAILED, "Slurm cancelled the job (scancel)"),
    "TIMEOUT": (FAILED, "Slurm stopped the job: time limit reached"),
    "OUT_OF_MEMORY": (FAILED, "Slurm stopped the job: it ran out of memory"),
    "NODE_FAIL": (FAILED, "Slurm stopped the job: one of its nodes failed"),
    "PREEMPTED": (FAILED, "Slurm stopped the job: a higher-priority job preempted it"),
    "BOOT_FAIL": (FAILED, "Slurm could not start the job: a node failed to boot"),
    "DEADLINE": (FAILED, "Slurm stopped the job: its deadline passed"),
    "REVOKED": (FAILED, "Slurm revoked the job (it runs on another cluster of the federation)"),
    "SPECIAL_EXIT": (FAILED, "Slurm held the job after a special exit"),
}
ACTIVE_SLURM_STATES = frozenset(s for s, (lab, _) in _STATES.items() if lab in (QUEUED, RUNNING))

# squeue's reason for a waiting job -> plain words
_PENDING_REASONS = {
    "Priority": "waiting behind jobs with a higher priority",
    "Resources": "waiting for free CPUs, GPUs or memory",
    "Dependency": "waiting for another job to end",
    "DependencyNeverSatisfied": "will never start: the job it depends on failed",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held by its owner (scontrol release to let it start)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "waiting: the nodes it needs are not available",
    "PartitionDown": "waiting: the partition is down",
    "PartitionInactive": "waiting: the partition is inactive",
    "PartitionNodeLimit": "waiting: it asks for more nodes than the partition allows",
    "PartitionTimeLimit": "waiting: its time limit is above the partition's",
    "PartitionConfig": "cannot start as asked: it needs more nodes, CPUs or GPUs than the partition has",
    "QOSMaxJobsPerUserLimit": "waiting: the user's limit of running jobs is reached",
    "AssocGrpGRES": "waiting: the account's GPU limit is reached",
    "NodeDown": "waiting: a node it needs is down",
    "BadConstraints": "will never start: no node has what it asks for",
    "Reservation": "waiting for its reservation",
    "Licenses": "waiting for licenses",
    "launch failed requeued held": "held: launching it failed",
    "None": None,
}


# ---------------------------------------------------------------------------------------------------
# Running Slurm's commands

def _run(argv: list[str], *, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run one Slurm command (argument list, no shell); a missing tool or no answer is a RunError."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "SLURM_TIME_FORMAT": "standard"})
    except FileNotFoundError:
        raise RunError(f"{argv[0]} is not installed on this machine: LAB_BACKEND=slurm needs Slurm's "
                       f"commands (sbatch, squeue, scontrol, scancel) on the server's PATH") from None
    except subprocess.TimeoutExpired:
        raise RunError(f"Slurm did not answer within {timeout:.0f} s ({argv[0]}); is slurmctld running? "
                       f"Try again in a moment or ask the cluster's administrator") from None


def _stderr(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return text.splitlines()[-1] if text else f"exit code {proc.returncode}"


def _unknown_job(proc: subprocess.CompletedProcess) -> bool:
    return "invalid job id" in (proc.stderr or "").lower()


def _check_job_id(job_id) -> str:
    job_id = str(job_id).strip()
    if not JOB_ID_RE.match(job_id):
        raise RunError(f"{job_id!r} is not a Slurm job id (a number)")
    return job_id


def slurm_available(timeout: float = 5.0) -> bool:
    """Are Slurm's commands on PATH and does the controller answer within ``timeout`` seconds?"""
    if not all(shutil.which(tool) for tool in ("sbatch", "squeue", "sinfo")):
        return False
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


# ---------------------------------------------------------------------------------------------------
# Settings

def _check_extra(extra) -> list[str]:
    args = list(extra or [])
    for arg in args:
        if not isinstance(arg, str) or not arg.startswith("--") or len(arg) < 3 or "\n" in arg or "\0" in arg:
            raise RunError(f"LAB_SLURM_EXTRA_ARGS: {arg!r} is not an sbatch option; write each option as "
                           f"--name or --name=value (for example --qos=normal --constraint=a100)")
        name = arg.split("=", 1)[0]
        if name in RESERVED_OPTIONS:
            raise RunError(f"LAB_SLURM_EXTRA_ARGS: {name} is set by the lab for every run and cannot be "
                           f"changed there; remove it")
    return args


def _check_name(value, what: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if not NAME_RE.match(value):
        raise RunError(f"{what}={value!r} is not a valid Slurm name (letters, digits, . _ - : +)")
    return value


def _positive_int(env, name: str, default: int | None) -> int | None:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise RunError(f"{name}={text!r} must be a whole number of at least 1")
    return value


def settings(environ=None) -> dict:
    """The admin's Slurm settings from the environment.

    ``partition`` and ``account`` (None: the cluster's defaults), ``extra`` (``LAB_SLURM_EXTRA_ARGS``
    split like a shell would split it, quotes grouping words; each option must start with ``--``),
    ``cpus_per_process`` (``LAB_SLURM_CPUS_PER_PROCESS``, default 1: a job asks for this many CPUs for
    each of its processes on a node), ``mem_mb`` (``LAB_SLURM_MEM_MB``: memory per node, None: the
    cluster's default) and ``time_limit`` (``LAB_SLURM_TIME_LIMIT``, a Slurm time such as ``4:00:00``;
    None: the partition's limit). A RunError says which setting is wrong.
    """
    env = os.environ if environ is None else environ
    text = env.get("LAB_SLURM_EXTRA_ARGS", "") or ""
    try:
        extra = shlex.split(text)
    except ValueError as exc:
        raise RunError(f"LAB_SLURM_EXTRA_ARGS cannot be read ({exc}); check its quotes") from None
    try:
        time_limit = _time_limit((env.get("LAB_SLURM_TIME_LIMIT") or "").strip() or None)
    except RunError as exc:
        raise RunError(f"LAB_SLURM_TIME_LIMIT: {exc}") from None
    return {"partition": _check_name(env.get("LAB_SLURM_PARTITION"), "LAB_SLURM_PARTITION"),
            "account": _check_name(env.get("LAB_SLURM_ACCOUNT"), "LAB_SLURM_ACCOUNT"),
            "extra": _check_extra(extra),
            "cpus_per_process": _positive_int(env, "LAB_SLURM_CPUS_PER_PROCESS", 1),
            "mem_mb": _positive_int(env, "LAB_SLURM_MEM_MB", None),
            "time_limit": time_limit}


# ---------------------------------------------------------------------------------------------------
# Submitting

def _plain_path(path, what: str) -> Path:
    path = Path(path)
    if not path.is_absolute():
        raise RunError(f"{what} must be an absolute path, got {str(path)!r}")
    text = str(path)
    # sbatch expands %j, %u ... in --output, and a backslash switches that off; neither belongs in a path
    if any(ch in text for ch in "%\\\n\r\0"):
        raise RunError(f"{what} {text!r} contains %, a backslash or a line break, which Slurm would read as "
                       f"a pattern; use a runs folder whose path has none of them")
    return path


def job_script_argv(run_dir, *, num_processes: int = 1, resume: bool = False, python: str | None = None) -> list[str]:
    """The program part of the sbatch command: the project's batch script and its arguments.

    The script starts ``python -m lib.train --run-dir RUN_DIR`` (one process), torchrun (several
    processes on one node) or ``srun`` + torchrun on every node with the rendezvous on the first node
    of the job's node list. ``python`` defaults to the server's own interpreter.
    """
    run_dir = _plain_path(run_dir, "the run directory")
    if int(num_processes) < 1:
        raise RunError(f"num_processes must be at least 1, got {num_processes}")
    python = python or sys.executable
    argv = [str(JOB_SCRIPT), "--python", str(_plain_path(python, "the Python interpreter")),
            "--nproc-per-node", str(int(num_processes)), "--run-dir", str(run_dir)]
    return argv + (["--resume"] if resume else [])


def _time_limit(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RunError(f"time limit {value!r} is not a number of minutes")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise RunError(f"time limit must be positive minutes, got {value}")
        return str(max(1, int(round(value))))
    text = str(value).strip()
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return "UNLIMITED"
    if not TIME_RE.match(text):
        raise RunError(f"time limit {text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS)")
    return text


def sbatch_argv(run_id: str, run_dir, job_argv: list[str], *, num_nodes: int = 1, num_processes: int = 1,
                device: str = "auto", cpus_per_task: int = 1, mem_mb: int | None = None, time_limit=None,
                partition: str | None = None, account: str | None = None, extra=()) -> list[str]:
    """The ``sbatch`` command (argument list) that submits one run.

    ``run_id`` becomes the job name, the job's output is appended to the run's ``stdout.log``, the job
    starts in the project folder, one task per node (torchrun starts the processes of each node), with
    ``cpus_per_task`` CPUs on each node, ``num_processes`` GPUs per node when ``device`` is ``cuda``,
    ``mem_mb`` MB of memory per node when given and ``time_limit`` (minutes or a Slurm time) when given.
    ``job_argv`` is the program and its arguments (see :func:`job_script_argv`); it comes last.
    """
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise RunError(f"{run_id!r} is not a run id made by the lab")
    run_dir = _plain_path(run_dir, "the run directory")
    job_argv = [str(a) for a in job_argv]
    if not job_argv or not Path(job_argv[0]).is_absolute():
        raise RunError("the job's program must be given as an absolute path to a batch script")
    if any("\0" in a for a in job_argv):
        raise RunError("the job's arguments cannot contain a NUL character")
    num_nodes, num_processes, cpus_per_task = int(num_nodes), int(num_processes), int(cpus_per_task)
    for name, value in (("num_nodes", num_nodes), ("num_processes", num_processes), ("cpus_per_task", cpus_per_task)):
        if value < 1:
            raise RunError(f"{name} must be at least 1, got {value}")
    if device not in ("auto", "cpu", "cuda"):
        raise RunError(f"device must be auto, cpu or cuda, got {device!r}")
    argv = ["sbatch", "--parsable", f"--job-name={run_id}", f"--output={run_dir / LOG_NAME}", "--open-mode=append",
            f"--chdir={REPO_ROOT}", f"--nodes={num_nodes}", "--ntasks-per-node=1", f"--cpus-per-task={cpus_per_task}"]
    if device == "cuda":
        argv.append(f"--gres=gpu:{num_processes}")
    if mem_mb is not None:
        if int(mem_mb) < 1:
            raise RunError(f"memory must be at least 1 MB, got {mem_mb}")
        argv.append(f"--mem={int(mem_mb)}M")
    limit = _time_limit(time_limit)
    if limit:
        argv.append(f"--time={limit}")
    partition = _check_name(partition, "partition")
    account = _check_name(account, "account")
    if partition:
        argv.append(f"--partition={partition}")
    if account:
        argv.append(f"--account={account}")
    return argv + _check_extra(extra) + job_argv


def run_sbatch_argv(run_dir, *, num_nodes: int = 1, num_processes: int = 1, device: str = "auto",
                    resume: bool = False, environ=None, python: str | None = None) -> list[str]:
    """The whole ``sbatch`` command for the run in ``run_dir`` (its folder name is the run id), with the
    admin's :func:`settings`: CPUs per node = processes per node x ``LAB_SLURM_CPUS_PER_PROCESS``."""
    run_dir = _plain_path(run_dir, "the run directory")
    conf = settings(environ)
    return sbatch_argv(run_dir.name, run_dir,
                       job_script_argv(run_dir, num_processes=num_processes, resume=resume, python=python),
                       num_nodes=num_nodes, num_processes=num_processes, device=device,
                       cpus_per_task=int(num_processes) * conf["cpus_per_process"], mem_mb=conf["mem_mb"],
                       time_limit=conf["time_limit"], partition=conf["partition"], account=conf["account"],
                       extra=conf["extra"])


def submit(argv: list[str], *, timeout: float = 60.0) -> str:
    """Run an ``sbatch --parsable`` command; return the new job's id. Slurm's refusal is a RunError."""
    if not argv or Path(argv[0]).name != "sbatch" or "--parsable" not in argv:
        raise RunError("submit() takes an sbatch --parsable command made by sbatch_argv()")
    proc = _run(list(argv), timeout=timeout)
    if proc.returncode != 0:
        raise RunError(f"Slurm refused the job: {_stderr(proc)}")
    first = (proc.stdout or "").strip().splitlines()[-1:] or [""]
    job_id = first[0].split(";", 1)[0].strip()
    if not JOB_ID_RE.match(job_id):
        raise RunError(f"sbatch did not print a job id (it printed {proc.stdout.strip()[:200]!r})")
    return job_id


# ---------------------------------------------------------------------------------------------------
# Reading a job's state

def _exit_code(text: str | None) -> tuple[int | None, int | None]:
    """Slurm's ``EXIT:SIGNAL`` -> (exit code, signal), None where unknown."""
    m = re.match(r"^\s*(\d+):(\d+)\s*$", text or "")
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2))


def _scontrol_fields(line: str) -> dict[str, str]:
    """``Key=Value Key=Value ...`` (scontrol -o) into a dict; a value runs up to the next `` Key=``."""
    return {k: v for k, v in re.findall(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(.*?)(?=\s[A-Za-z][A-Za-z0-9_:/]*=|\s*$)",
                                           line.strip())}


def _describe(job_id: str, slurm_state: str, slurm_reason: str | None, exit_code: int | None, signal: int | None,
              nodes: str, partition: str, source: str, time_limit: str | None = None) -> dict:
    base = slurm_state.split()[0].upper().rstrip("+") if slurm_state else "UNKNOWN"
    lab, reason = _STATES.get(base, (RUNNING, f"Slurm reports the job as {base}"))
    raw_reason = None if slurm_reason in (None, "", "None", "(null)") else slurm_reason
    if base == "PENDING":
        words = _PENDING_REASONS.get(raw_reason or "None", f"waiting in the Slurm queue ({raw_reason})")
        reason = words or "waiting in the Slurm queue"
    elif base == "FAILED":
        if signal:
            reason = f"the job was killed by signal {signal}"
        elif exit_code:
            reason = f"the job exited with code {exit_code}"
        else:
            reason = "Slurm reports the job as failed" + (f" ({raw_reason})" if raw_reason else "")
    elif base == "TIMEOUT" and time_limit and time_limit not in ("UNLIMITED", "Partition_Limit"):
        reason = f"{reason} (limit {int(time_limit)} min)" if time_limit.isdigit() else f"{reason} (limit {time_limit})"
    return {"job_id": job_id, "state": lab, "reason": reason, "slurm_state": base, "slurm_reason": raw_reason,
            "exit_code": exit_code, "signal": signal, "nodes": nodes if nodes not in ("(null)", "None") else "",
            "partition": partition or "", "source": source,
            "queue_position": None}


def _from_squeue(job_id: str) -> dict | None:
    proc = _run(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%r|%N|%P|%l"])
    if proc.returncode != 0:
        if _unknown_job(proc):
            return None
        raise RunError(f"squeue could not read job {job_id}: {_stderr(proc)}")
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 6 and parts[0].strip() == job_id:
            return _describe(job_id, parts[1], parts[2], None, None, parts[3], parts[4], "squeue", parts[5])
    return None


def _from_scontrol(job_id: str) -> dict | None:
    proc = _run(["scontrol", "-o", "show", "job", job_id])
    if proc.returncode != 0:
        if _unknown_job(proc):
            return None
        raise RunError(f"scontrol could not read job {job_id}: {_stderr(proc)}")
    for line in proc.stdout.splitlines():
        f = _scontrol_fields(line)
        if f.get("JobId") == job_id:
            code, sig = _exit_code(f.get("ExitCode"))
            return _describe(job_id, f.get("JobState", ""), f.get("Reason"), code, sig, f.get("NodeList", ""),
                             f.get("Partition", ""), "scontrol", f.get("TimeLimit"))
    return None


_SACCT_MODE: list[str] = []   # [] not tried yet; ["db"] slurmdbd; ["completion"] the job-completion file; ["none"]
_SACCT_FIELDS = "JobID,State,ExitCode,NodeList,Partition,Reason,Timelimit"


def _sacct_lines(job_id: str, mode: str) -> subprocess.CompletedProcess:
    argv = ["sacct", "-j", job_id, "-X", "-P", "-n", "-o", _SACCT_FIELDS]
    if mode == "completion":
        argv.insert(1, "--completion")
    return _run(argv)


def sacct_mode() -> str:
    """How finished jobs can be read back: ``db`` (sacct with slurmdbd), ``completion`` (sacct
    --completion, the job-completion file) or ``none`` (only while slurmctld remembers the job)."""
    if not _SACCT_MODE:
        if not shutil.which("sacct"):
            _SACCT_MODE.append("none")
        else:
            mode = "none"
            for candidate in ("db", "completion"):
                try:
                    proc = _sacct_lines("0", candidate)
                except RunError:
                    continue
                if proc.returncode == 0:
                    mode = candidate
                    break
            _SACCT_MODE.append(mode)
    return _SACCT_MODE[0]


def _from_sacct(job_id: str) -> dict | None:
    mode = sacct_mode()
    if mode == "none":
        return None
    proc = _sacct_lines(job_id, mode)
    if proc.returncode != 0:
        return None
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.split("|")[0].strip() == job_id]
    if not rows:
        return None
    parts = rows[-1] + [""] * 7          # the newest record (a requeued job has several)
    code, sig = _exit_code(parts[2])
    return _describe(job_id, parts[1], parts[5], code, sig, parts[3], parts[4], "sacct", parts[6])


def job_state(job_id) -> dict | None:
    """What Slurm says about a job, or None when Slurm does not know it (any more).

    Returns ``{"job_id", "state", "reason", "slurm_state", "slurm_reason", "exit_code", "signal",
    "nodes", "partition", "source", "queue_position"}``: ``state`` is the lab's state (queued, running,
    finished or failed; a job cancelled in Slurm is ``failed``, reason "Slurm cancelled the job
    (scancel)", because the lab records its own cancels in the run directory), ``reason`` plain words
    or None, ``exit_code``/``signal`` when Slurm knows them, ``source`` the command that answered
    (squeue, scontrol or sacct) and ``queue_position`` (1 = next to start) for a queued job.
    Slurm not answering is a RunError.
    """
    job_id = _check_job_id(job_id)
    info = _from_squeue(job_id) or _from_scontrol(job_id) or _from_sacct(job_id)
    if info and info["state"] == QUEUED and info["slurm_state"] == "PENDING":
        info["queue_position"] = queue_position(job_id)
    return info


def is_active(job_id) -> bool:
    """Is the job still queued or running (its processes may still be alive)?"""
    info = job_state(job_id)
    return bool(info) and info["slurm_state"] in ACTIVE_SLURM_STATES


def known(job_id) -> bool:
    """Does Slurm's controller still hold the job (queued, running, or ended less than MinJobAge ago)?

    The accounting history (``sacct``) is not asked: it remembers jobs for good.
    """
    job_id = _check_job_id(job_id)
    return (_from_squeue(job_id) or _from_scontrol(job_id)) is not None


def job_states(job_ids) -> dict[str, dict | None]:
    """:func:`job_state` for several jobs at once (the run list): one ``squeue`` call for all of them,
    one queue listing for the queue positions, and ``scontrol``/``sacct`` only for jobs that left the
    queue. Maps each job id to its state dict, or None when Slurm does not know it."""
    ids = sorted({_check_job_id(j) for j in job_ids}, key=int)
    out: dict[str, dict | None] = {}
    if not ids:
        return out
    proc = _run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r|%N|%P|%l"])
    if proc.returncode != 0 and not _unknown_job(proc):
        raise RunError(f"squeue could not read jobs {','.join(ids)}: {_stderr(proc)}")
    if proc.returncode != 0:   # one unknown id fails the whole call: ask one by one
        for job_id in ids:
            out[job_id] = _from_squeue(job_id)
    else:
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 6 and parts[0].strip() in ids:
                job_id = parts[0].strip()
                out[job_id] = _describe(job_id, parts[1], parts[2], None, None, parts[3], parts[4], "squeue",
                                        parts[5])
    pending = None
    for job_id in ids:
        info = out.get(job_id)
        if info is None:
            out[job_id] = info = _from_scontrol(job_id) or _from_sacct(job_id)
        if info and info["state"] == QUEUED and info["slurm_state"] == "PENDING":
            pending = _pending_jobs() if pending is None else pending
            info["queue_position"] = _position_in(pending, job_id)
    return out


def _pending_jobs() -> list[tuple[str, set, int, str]]:
    """Every pending job: (id, partitions, priority, submit time)."""
    proc = _run(["squeue", "-h", "-t", "PENDING", "-o", "%i|%P|%Q|%V"])
    if proc.returncode != 0:
        raise RunError(f"squeue could not list the queue: {_stderr(proc)}")
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 4 or not JOB_ID_RE.match(parts[0].strip()):
            continue
        try:
            priority = int(parts[2])
        except ValueError:
            priority = 0
        rows.append((parts[0].strip(), set(parts[1].split(",")), priority, parts[3].strip()))
    return rows


def _position_in(rows: list[tuple[str, set, int, str]], job_id: str) -> int | None:
    mine = next((r for r in rows if r[0] == job_id), None)
    if mine is None:
        return None
    same = sorted((r for r in rows if r[1] & mine[1]), key=lambda r: (-r[2], r[3], int(r[0])))
    return [r[0] for r in same].index(job_id) + 1


def queue_position(job_id) -> int | None:
    """Where a queued job stands among the queued jobs of its partition: 1 = next to start.

    Jobs are ranked as Slurm's scheduler ranks them: higher priority first, then earlier submission.
    None when the job is not waiting in the queue.
    """
    return _position_in(_pending_jobs(), _check_job_id(job_id))


def lost_reason(job_id) -> str:
    """The reason shown for a run whose job Slurm no longer knows while its files say it is not done."""
    return (f"Slurm no longer knows job {job_id} and the run did not record an end: it was lost (a node "
            f"or the controller restarted, or it was removed before it could start)")


# ---------------------------------------------------------------------------------------------------
# Cancelling

def cancel(job_id, signal: str | int | None = None) -> bool:
    """Cancel a job with ``scancel``: every process of the job on every node gets SIGTERM, then SIGKILL
    after Slurm's KillWait. With ``signal`` that signal goes to every process of the job, batch script
    included (``scancel --full --signal=...``); Slurm 22.05 treats ``KILL`` like a plain cancel.
    Returns False when Slurm no longer has the job to cancel (unknown, or already ending).
    """
    job_id = _check_job_id(job_id)
    argv = ["scancel"]
    if signal is not None:
        sig = str(signal).upper()
        if not SIGNAL_RE.match(sig):
            raise RunError(f"{signal!r} is not a signal name or number")
        argv += ["--full", f"--signal={sig}"]
    # scancel exits 0 even when it could not cancel; with -v it says why on stderr
    proc = _run(["scancel", "-v", *argv[1:], job_id])
    errors = [line for line in (proc.stderr or "").splitlines() if "error" in line.lower()]
    text = " ".join(errors).lower()
    if "invalid job id" in text or "already completing or completed" in text:
        return False
    if proc.returncode != 0 or errors:
        raise RunError(f"Slurm could not cancel job {job_id}: {(errors or [_stderr(proc)])[-1].strip()}")
    return True


# ---------------------------------------------------------------------------------------------------
# The runs folder must be shared

SHARED_FS_TYPES = frozenset({"nfs", "nfs4", "lustre", "gpfs", "beegfs", "ceph", "cephfs", "fuse.ceph", "glusterfs",
                             "fuse.glusterfs", "cifs", "smb3", "smbfs", "panfs", "wekafs", "fuse.weka", "fuse.sshfs",
                             "afs", "ocfs2", "gfs2", "fuse.juicefs", "fuse.s3fs", "9p", "virtiofs", "orangefs",
                             "pvfs2", "quobyte", "fuse.quobyte", "fhgfs", "ibrix", "vboxsf"})


def _mount_of(path: Path) -> tuple[str, str] | None:
    """(mount point, file system type) of the mount that holds ``path``, from /proc/mounts."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best = None
    target = str(path)
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if target == point or target.startswith(point.rstrip("/") + "/") or point == "/":
            if best is None or len(point) > len(best[0]):
                best = (point, parts[2])
    return best


def _cluster_nodes() -> list[str]:
    try:
        proc = _run(["sinfo", "-h", "-N", "-o", "%N"], timeout=5.0)
    except RunError:
        return []
    return sorted({line.strip() for line in proc.stdout.splitlines() if line.strip()}) if proc.returncode == 0 else []


def shared_dir_warning(path) -> str | None:
    """A warning when ``path`` (the runs folder) looks local to this machine while the cluster has other
    nodes; None when it is on a shared file system, or when the cluster's only node is this machine."""
    path = Path(path).resolve()
    nodes = _cluster_nodes()
    here = {socket.gethostname().split(".")[0], socket.getfqdn().split(".")[0]}
    if nodes and all(n.split(".")[0] in here for n in nodes):
        return None
    mount = _mount_of(path)
    fs_type = mount[1] if mount else "unknown"
    if fs_type in SHARED_FS_TYPES:
        return None
    return (f"The runs folder {path} is on a {fs_type} file system, which looks local to this machine; "
            f"Slurm jobs on other nodes cannot see it there. Set LAB_RUNS_DIR to a folder on a file system "
            f"every node mounts (NFS, Lustre, GPFS, BeeGFS, CephFS...).")


def wait_for(job_id, states, *, timeout: float = 60.0, poll: float = 0.25) -> dict | None:
    """Poll :func:`job_state` until the lab state is one of ``states`` (or Slurm forgets the job, or
    ``timeout`` seconds pass); return the last answer."""
    want = {states} if isinstance(states, str) else set(states)
    deadline = time.monotonic() + timeout
    info = job_state(job_id)
    while (info is not None and info["state"] not in want) and time.monotonic() < deadline:
        time.sleep(poll)
        info = job_state(job_id)
    return info

"""The run registry: launch training jobs, list them, and cancel, resume or delete them.

The runs directory is the only source of truth (see :mod:`lib.store.rundir`): nothing is kept in memory,
so several app servers, on one host or several sharing a network file system, can use one runs
directory, and a job never depends on a browser tab or on the app server staying up.

Launch
    :func:`launch` makes a run directory with a server-made id, writes ``config.json`` and a
    ``queued`` ``status.json``, and starts ``python -m lib.train --run-dir DIR`` as a detached
    process: an argv list (never a shell), its own session and process group
    (``start_new_session``), stdin closed, stdout and stderr appended to the run's ``stdout.log``.
    ``run.json`` records the argv, pid, process group, process creation time, host and user.
    The job then waits for its turn on its device by itself (:mod:`lib.store.slots`).

No zombies
    The process that launches a job (the Streamlit server, which lives on) starts a small daemon
    thread per job that waits for it. That collects the exit status the moment the job ends, so
    no zombie is left behind, and it tells us *how* a job ended when it died without writing its
    own final state (for example ``killed by signal SIGKILL``). When the launcher exits first (the
    CLI, or a server restart) the job is re-parented to init, which reaps it. A double fork would
    also avoid zombies but would throw the exit status away.

Reconciliation
    :func:`get_status` and :func:`list_runs` check every ``queued``/``running`` run against its
    process (pid and creation time, so a recycled pid is noticed). A run whose process is gone
    becomes ``failed`` with "process ended unexpectedly", the signal or exit code when this process
    saw it end, and the tail of its log. A live run whose heartbeat is older than
    ``LAB_STALL_AFTER_S`` (default 120 s) is shown as ``stalled`` (derived, never written). A run
    started on another host is never judged by its pid, only by its heartbeat. Writes are atomic,
    happen only when the job's process is gone (so they never race with the job's own writes),
    re-read the status under a per-run lock first, and never replace a final state the job wrote.

Cancel, resume, delete
    :func:`cancel` sends SIGTERM to the job first (so it records ``cancelled`` and shuts its
    DataLoader workers down itself), then to its whole process group and descendants (DataLoader
    workers, torchrun ranks, which run in sessions of their own), then SIGKILL after a grace period
    (10 s). :func:`resume` relaunches a failed or cancelled run with
    ``--resume`` (the job continues from its newest complete checkpoint). :func:`delete` removes a
    run that is not queued or running.

Slurm
    With ``LAB_BACKEND=slurm`` (:mod:`.backend`) a launch submits the run with ``sbatch``
    (:mod:`.slurm`); reconciliation asks Slurm about queued and running runs (one batched ``squeue``
    per run list) instead of checking a pid, cancel uses ``scancel`` and waits until Slurm has ended
    every process of the job, and delete waits until Slurm no longer runs it.

Modules: :mod:`.launching` (create, launch, resume), :mod:`.reconcile` (status against the live
process, :class:`~lib.registry.reconcile.RunView`, the run list), :mod:`.control` (cancel, delete),
:mod:`.access` (who may do what), :mod:`.preflight` (problems a launch would hit at once).
The command line is :mod:`lib.runs`.
"""

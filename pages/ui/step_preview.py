"""What a run will do, before it is launched: reviews, batches, optimizer steps, logs, evaluations and
checkpoints (from :mod:`lib.job.steps`), and the exact command the job will run."""
from __future__ import annotations

import shlex

import streamlit as st

from lib.config import TrainConfig, field_info
from lib.errors import LabError
from lib.job import steps
from lib.registry import launching
from pages.ui import session
from pages.ui.text import plain

UNKNOWN_SIZE_GUESS = 25_000          # the size of IMDb's training split
DEFAULT_MAX_SAMPLES = 100_000_000    # when TrainConfig gives no upper bound


def max_samples() -> int:
    """The most training reviews a number box accepts: TrainConfig's bound for max_train_samples."""
    return int(field_info("max_train_samples").get("max") or DEFAULT_MAX_SAMPLES)


def _schedule_metrics(config: TrainConfig, n: int, row1, row2) -> None:
    schedule = steps.schedule_for_config(config, n)
    plan = schedule.plan
    row1[2].metric("Steps per epoch", f"{plan.steps_per_epoch:,}")
    row1[3].metric("Optimizer steps", f"{plan.total_steps:,}", help="in the whole run")
    row2[0].metric("Log events", f"{schedule.count('log'):,}")
    row2[1].metric("Evaluations", f"{schedule.count('eval'):,}",
                   help="during training; after training the job always evaluates the final model once more "
                        "(its predictions, calibration and the TF-IDF comparison)")
    row2[2].metric("Checkpoints saved", f"{schedule.count('save'):,}")
    row2[3].metric("Checkpoints kept", f"{len(schedule.surviving):,}",
                   help="checkpoints left on disk at the end (save_total_limit)")
    st.code(plan.formula, language=None)
    for note in schedule.notes:
        st.caption(plain(note))


def preview(config: TrainConfig, n_samples: int | None) -> None:
    """The preview of ``config``; ``n_samples`` is the number of training reviews when known cheaply."""
    st.subheader("What this run will do")
    n = n_samples
    if n is None:
        n = int(st.number_input("Training reviews (the size of this data set is not known before loading it)",
                                min_value=1, max_value=max_samples(), value=UNKNOWN_SIZE_GUESS, step=1000,
                                key="tr_preview_samples"))
    row1, row2 = st.columns(4), st.columns(4)
    row1[0].metric("Training reviews", f"{n:,}")
    row1[1].metric("Effective batch", f"{config.effective_batch_size:,}",
                   help="per-device batch × processes × machines × gradient accumulation")
    try:
        _schedule_metrics(config, n, row1, row2)
    except LabError as exc:
        st.warning(plain(exc))
    except Exception as exc:  # noqa: BLE001 - the preview must never break the form
        st.warning(plain(f"No step preview for these settings ({type(exc).__name__}: {exc})."))
    try:
        where, argv = launching.preview_command(config, session.runs_dir())
    except LabError as exc:
        st.warning(plain(exc))
        return
    if where == "slurm":
        st.caption("The command that submits the job to Slurm (the batch script then starts the training, "
                   "with the settings saved in the run's config.json):")
    else:
        st.caption("The command the job will run (in its own process, with the settings saved in the run's "
                   "config.json):")
    st.code(shlex.join(argv), language="bash")

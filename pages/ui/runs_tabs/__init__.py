"""The Runs page's tabs, one module each, every one exposing ``render(run: RunView, ctx: TabContext)``.

A tab gets the run it shows and a :class:`TabContext` with what the tabs share (where the runs live,
who is looking, the server's access policy, every run for comparisons); it keeps no state of its own
between page runs except the widgets' values in ``st.session_state``. To add a tab, write a module
with ``render(run, ctx)`` and list it in ``pages/runs.py``'s ``TABS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lib.registry.access import Actor, Policy
from lib.registry.reconcile import RunView

DEFAULT_LABELS = ("NEGATIVE", "POSITIVE")
STATE_COLORS = {"queued": "blue", "running": "orange", "finished": "green", "failed": "red", "cancelled": "gray"}
STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:", "finished": ":material/check:",
               "failed": ":material/error:", "cancelled": ":material/block:"}
FINAL_KEYS = (("eval_accuracy", "Accuracy"), ("eval_f1", "F1"), ("eval_loss", "Eval loss"),
              ("eval_roc_auc", "ROC-AUC"))


@dataclass(frozen=True)
class TabContext:
    """What every tab may use besides the run it shows."""

    runs_dir: Path
    actor: Actor
    policy: Policy
    runs: tuple[RunView, ...]       # every run, newest first (the page's filters do not apply here)

    def by_id(self) -> dict[str, RunView]:
        return {r.run_id: r for r in self.runs}


def label_names(run: RunView) -> list[str]:
    """The run's class names in id order: what its data turned into (data.json), else its export's
    id2label, else its config (NEGATIVE, POSITIVE when nothing says)."""
    from lib.readers.predictions import run_label_names
    return run_label_names(run.path, fallback=list(DEFAULT_LABELS))


def final_keys(run: RunView) -> tuple[tuple[str, str], ...]:
    """The headline metrics with their names; ``eval_f1`` is macro-F1 for a run with more than two classes."""
    if len(label_names(run)) <= 2:
        return FINAL_KEYS
    return tuple((k, "Macro-F1" if k == "eval_f1" else name) for k, name in FINAL_KEYS)


def run_title(run: RunView) -> str:
    """How a run appears in a menu: its label and id (menus show it as text)."""
    return f"{run.label} · {run.run_id}"

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
    """The run's class names as its config lists them (NEGATIVE, POSITIVE when it does not say)."""
    names = run.config.get("label_names")
    if isinstance(names, list) and names:
        return [str(x) for x in names]
    return list(DEFAULT_LABELS)


def run_title(run: RunView) -> str:
    """How a run appears in a menu: its label and id (menus show it as text)."""
    return f"{run.label} · {run.run_id}"

"""How many optimizer steps a training run takes, and when it logs, evaluates and saves.

This is the arithmetic of the pinned ``transformers`` Trainer (5.x), written out so a person can see
it before launching a run:

- Each device (process) gets ``⌈samples ÷ (batch × devices)⌉`` batches per epoch
  (``⌊…⌋`` with ``dataloader_drop_last``). With several devices, ``accelerate`` fills the last round
  with samples from the start of the epoch so every device gets the same number of full batches.
  (``Trainer.set_initial_training_values`` reads this as ``len(train_dataloader)``.)
- One optimizer step adds up ``gradient_accumulation_steps`` batches; a leftover at the end of an
  epoch still makes one (smaller) step: ``steps per epoch = max(⌈batches ÷ accumulation⌉, 1)``.
- ``total steps = ⌈epochs × steps per epoch⌉``, or ``max_steps`` when it is set (> 0), which then
  overrides the number of epochs.
- ``logging_steps`` / ``eval_steps`` / ``save_steps`` below 1 mean a share of the total steps
  (``⌈total × share⌉``, ``TrainerState.compute_steps``).
- ``DefaultFlowCallback`` logs/evaluates/saves at multiples of those numbers; with the "steps"
  strategies it also evaluates and saves at the very last step; with the "epoch" strategies it acts at
  the end of every epoch, including a last partial epoch that stops at ``max_steps``.
- After every save, ``rotate_checkpoints`` deletes the oldest checkpoints beyond
  ``save_total_limit``, never the newest one and never the best one (with
  ``load_best_model_at_end``); with ``save_total_limit=1`` and a best model, only the best survives
  the end of training.

``tests/test_steps.py`` checks these numbers against real (tiny) Trainer runs.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lib.errors import ConfigError

STRATEGIES = ("no", "steps", "epoch")
DEFAULT_SAVE_STEPS = 500  # TrainingArguments' default save_steps


# ---------------------------------------------------------------------------------------------------
# Steps per epoch and total steps
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepPlan:
    """The numbers the Trainer works out before its first step (all counted as it counts them)."""

    num_samples: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    num_devices: int
    num_train_epochs: float
    max_steps_arg: int
    drop_last: bool
    samples_per_step: int              # per-device batch × devices × accumulation
    batches_per_epoch_per_device: int  # len(train_dataloader) on each device
    batches_per_epoch: int             # over all devices together
    steps_per_epoch: int               # optimizer (update) steps per epoch
    total_steps: int                   # trainer.state.max_steps
    epochs_started: int                # epochs the training loop begins (the last may stop early)
    last_step_batches: int             # batches added up in the last optimizer step of each epoch
    last_batch_size: int               # samples in the last batch of an epoch (on one device)
    repeated_samples: int              # samples repeated to fill the last round (several devices)
    dropped_samples: int               # samples skipped each epoch (drop_last)
    formula_parts: tuple = ()          # (key, expression, value) for each line of the formula

    @property
    def uses_max_steps(self) -> bool:
        return self.max_steps_arg > 0

    @property
    def final_epoch(self) -> float:
        """The epoch counter when training ends (e.g. 1.5), as the Trainer reports it."""
        return epoch_at_step(self, self.total_steps)

    @property
    def formula(self) -> str:
        """The formula with the numbers filled in, one line per quantity (English)."""
        return "\n".join(f"{FORMULA_LABELS[key]} = {expr} = {value:,}" if expr else
                         f"{FORMULA_LABELS[key]} = {value:,}" for key, expr, value in self.formula_parts)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "formula_parts"}
        out["formula"] = self.formula
        out["final_epoch"] = self.final_epoch
        return out


FORMULA_LABELS = {
    "samples_per_step": "samples per optimizer step",
    "batches_per_device": "batches per epoch (each device)",
    "steps_per_epoch": "optimizer steps per epoch",
    "total_steps": "total optimizer steps",
    "epochs_started": "epochs started",
}


def _fmt_num(x: float) -> str:
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:g}"


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError({name: f"{name} must be a whole number, got {value!r}"})
    if value < minimum:
        raise ConfigError({name: f"{name} must be at least {minimum}, got {value}"})
    return value


def plan_steps(num_samples: int, per_device_batch_size: int, gradient_accumulation_steps: int = 1,
               num_devices: int = 1, num_train_epochs: float = 2, max_steps: int = -1,
               drop_last: bool = False) -> StepPlan:
    """Steps per epoch and total optimizer steps, exactly as the pinned Trainer computes them.

    ``num_devices`` is the number of training processes (``num_processes × num_nodes``).
    Raises ConfigError for settings the Trainer would refuse (no batch at all, zero epochs...).
    """
    n = _check_positive_int("num_samples", num_samples, 0)
    b = _check_positive_int("per_device_batch_size", per_device_batch_size)
    ga = _check_positive_int("gradient_accumulation_steps", gradient_accumulation_steps)
    w = _check_positive_int("num_devices", num_devices)
    if isinstance(max_steps, float) and max_steps.is_integer():
        max_steps = int(max_steps)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps == 0 or max_steps < -1:
        raise ConfigError({"max_steps": f"max_steps must be -1 (use epochs) or a positive number, got {max_steps!r}"})
    epochs = float(num_train_epochs)
    if max_steps < 0 and not (math.isfinite(epochs) and epochs > 0):
        raise ConfigError({"num_train_epochs": f"num_train_epochs must be above 0, got {num_train_epochs!r}"})

    # len(train_dataloader) on each device: torch's BatchSampler, then accelerate's BatchSamplerShard
    # (⌈⌈n/b⌉/w⌉ = ⌈n/(b·w)⌉ for whole numbers; floors with drop_last).
    per_round = b * w
    batches_dev = n // per_round if drop_last else -(-n // per_round)
    if batches_dev == 0:
        why = (f"with drop_last, {n:,} samples do not fill one round of {b} × {w} device(s)" if drop_last
               else "there are no training samples")
        raise ConfigError({"num_samples": f"no training batch: {why}. Use more samples or a smaller batch."})

    steps_per_epoch = max(batches_dev // ga + int(batches_dev % ga > 0), 1)
    if max_steps > 0:
        total = max_steps
        epochs_started = total // steps_per_epoch + int(total % steps_per_epoch > 0)
    else:
        total = math.ceil(epochs * steps_per_epoch)
        epochs_started = math.ceil(epochs)
    remainder = batches_dev % ga or ga

    if w == 1:
        last_batch = n - (batches_dev - 1) * b if not drop_last else b
        repeated = 0
    else:
        last_batch = b  # the last round is filled up to full batches
        repeated = max(batches_dev * per_round - n, 0) if not drop_last else 0
    dropped = n - batches_dev * per_round if drop_last else 0

    dev = f" × {w}" if w > 1 else ""
    parts = [
        ("samples_per_step", f"{b} × {w} × {ga}", b * w * ga),
        ("batches_per_device",
         (f"⌊{n:,} ÷ ({b}{dev})⌋" if drop_last else f"⌈{n:,} ÷ ({b}{dev})⌉") if w > 1 else
         (f"⌊{n:,} ÷ {b}⌋" if drop_last else f"⌈{n:,} ÷ {b}⌉"), batches_dev),
        ("steps_per_epoch", f"⌈{batches_dev:,} ÷ {ga}⌉" if ga > 1 else "", steps_per_epoch),
    ]
    if max_steps > 0:
        parts.append(("total_steps", "max_steps", total))
        parts.append(("epochs_started", f"⌈{total:,} ÷ {steps_per_epoch:,}⌉", epochs_started))
    else:
        parts.append(("total_steps", f"⌈{_fmt_num(epochs)} × {steps_per_epoch:,}⌉", total))
    return StepPlan(
        num_samples=n, per_device_batch_size=b, gradient_accumulation_steps=ga, num_devices=w,
        num_train_epochs=epochs, max_steps_arg=max_steps, drop_last=bool(drop_last),
        samples_per_step=b * w * ga, batches_per_epoch_per_device=batches_dev,
        batches_per_epoch=batches_dev * w, steps_per_epoch=steps_per_epoch, total_steps=total,
        epochs_started=epochs_started, last_step_batches=remainder, last_batch_size=last_batch,
        repeated_samples=repeated, dropped_samples=dropped, formula_parts=tuple(parts),
    )


def epoch_at_step(plan: StepPlan, step: int) -> float:
    """The Trainer's ``state.epoch`` right after optimizer step ``step`` (1-based)."""
    if step <= 0:
        return 0.0
    epoch, within = divmod(step - 1, plan.steps_per_epoch)
    batches = min((within + 1) * plan.gradient_accumulation_steps, plan.batches_per_epoch_per_device)
    # same float expression as Trainer._run_epoch: epoch + (step + 1) / steps_in_epoch
    return epoch + batches / plan.batches_per_epoch_per_device


def plan_for_config(config, num_train_samples: int) -> StepPlan:
    """The StepPlan of a TrainConfig when the training split has ``num_train_samples`` reviews.

    ``max_train_samples`` (when set) caps the number, as the data loader does.
    """
    n = int(num_train_samples)
    if config.max_train_samples is not None:
        n = min(n, int(config.max_train_samples))
    return plan_steps(n, config.per_device_train_batch_size, config.gradient_accumulation_steps,
                      config.num_processes * config.num_nodes, config.num_train_epochs, config.max_steps,
                      drop_last=False)


# ---------------------------------------------------------------------------------------------------
# Logging / evaluation / checkpoint schedule
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    step: int
    epoch: float
    kinds: tuple[str, ...]  # some of "log", "eval", "save"

    def to_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "kinds": list(self.kinds)}


MAX_LISTED_EVENTS = 400   # events listed in full up to this many; beyond, the first and last halves


@dataclass(frozen=True)
class Schedule:
    """When the Trainer logs, evaluates and saves, computed arithmetically: constant time and memory for
    any number of steps. ``counts`` are exact; ``events`` and ``checkpoints`` list every one when there
    are at most :data:`MAX_LISTED_EVENTS`, else the first and the last ones (``truncated`` says so)."""

    plan: StepPlan
    events: list[Event]
    logging_every: int | None            # absolute steps (after turning a share into steps)
    eval_every: int | None
    save_every: int | None
    save_total_limit: int | None
    load_best_model_at_end: bool
    checkpoints: list[int]               # steps of the checkpoints saved, in order (bounded; see truncated)
    surviving: list[int]                 # checkpoints left at the end, ignoring the best model
    deleted: list[int]                   # listed deletions (bounded); deleted_count is exact
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)   # exact: "log", "eval", "save", "events"
    truncated: bool = False

    @property
    def checkpoint_count(self) -> int:
        return self.counts.get("save", len(self.checkpoints))

    @property
    def deleted_count(self) -> int:
        return self.checkpoint_count - len(self.surviving)

    def steps_of(self, kind: str) -> list[int]:
        """The listed steps with an event of ``kind`` (all of them unless ``truncated``)."""
        return [e.step for e in self.events if kind in e.kinds]

    def count(self, kind: str) -> int:
        """Exact number of steps with an event of ``kind`` ("log", "eval", "save")."""
        return self.counts.get(kind, len(self.steps_of(kind)))

    def surviving_with_best(self, best_step: int) -> list[int]:
        """The checkpoints left when ``best_step`` turns out to be the best one (see surviving_checkpoints)."""
        return surviving_checkpoints(self.checkpoints, self.save_total_limit, best=best_step)


def _union_count(total: int, periods: Sequence[int], extra: Sequence[int] = ()) -> int:
    """How many steps in 1..total are a multiple of one of ``periods`` or one of ``extra`` (inclusion-exclusion)."""
    periods = sorted({p for p in periods if p})
    n = 0
    for mask in range(1, 1 << len(periods)):
        chosen = [periods[i] for i in range(len(periods)) if mask >> i & 1]
        lcm = 1
        for q in chosen:
            lcm = lcm * q // math.gcd(lcm, q)
            if lcm > total:
                break
        n += (-1) ** (len(chosen) + 1) * (total // lcm)
    extras = {e for e in extra if 1 <= e <= total and not any(e % q == 0 for q in periods)}
    return n + len(extras)


def _steps_ascending(total: int, periods: Sequence[int], extra: Sequence[int], limit: int) -> list[int]:
    """The first ``limit`` steps (ascending) that are a multiple of a period or in ``extra``."""
    heap = [(p, p) for p in sorted({p for p in periods if p}) if p <= total]
    heap += [(e, 0) for e in sorted(set(extra)) if 1 <= e <= total]
    heapq.heapify(heap)
    out: list[int] = []
    while heap and len(out) < limit:
        step, period = heapq.heappop(heap)
        if not out or out[-1] != step:
            out.append(step)
        if period and step + period <= total:
            heapq.heappush(heap, (step + period, period))
    return out


def _steps_descending(total: int, periods: Sequence[int], extra: Sequence[int], limit: int) -> list[int]:
    """The last ``limit`` steps (descending) that are a multiple of a period or in ``extra``."""
    heap = [(-(total // p) * p, p) for p in sorted({p for p in periods if p}) if p <= total]
    heap += [(-e, 0) for e in sorted(set(extra)) if 1 <= e <= total]
    heapq.heapify(heap)
    out: list[int] = []
    while heap and len(out) < limit:
        neg, period = heapq.heappop(heap)
        step = -neg
        if not out or out[-1] != step:
            out.append(step)
        if period and step - period >= 1:
            heapq.heappush(heap, (-(step - period), period))
    return out


def _interval(name: str, value, total: int) -> int:
    """TrainingArguments + TrainerState.compute_steps: a share (< 1) of the total, or whole steps."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError({name: f"{name} must be a number above 0, got {value!r}"})
    if value < 1:
        return math.ceil(total * value)
    if float(value) != int(value):
        raise ConfigError({name: f"{name} must be a whole number when it is 1 or more, got {value!r}"})
    return int(value)


def _check_best_model_settings(eval_strategy: str, eval_steps, save_strategy: str, save_steps) -> None:
    """What TrainingArguments refuses when load_best_model_at_end is on (same tests, same order)."""
    key = "load_best_model_at_end"
    if eval_strategy != save_strategy:
        raise ConfigError({key: "load_best_model_at_end needs save_strategy equal to eval_strategy "
                                f"(got save '{save_strategy}', eval '{eval_strategy}')"})
    if eval_strategy == "steps" and eval_steps and save_steps and save_steps % eval_steps != 0:
        if (eval_steps < 1) != (save_steps < 1):
            raise ConfigError({key: "load_best_model_at_end needs save_steps to be a multiple of eval_steps, which "
                                    "cannot be checked when one is a share (< 1) and the other a number of steps"})
        big = 1_000_000
        if (save_steps * big) % (eval_steps * big) != 0:
            raise ConfigError({key: f"load_best_model_at_end needs save_steps ({save_steps:g}) to be a multiple of "
                                    f"eval_steps ({eval_steps:g})"})


def event_schedule(plan: StepPlan, logging_steps: float = 500, eval_strategy: str = "no",
                   eval_steps: float | None = None, save_strategy: str = "steps",
                   save_steps: float | None = DEFAULT_SAVE_STEPS, save_total_limit: int | None = None,
                   load_best_model_at_end: bool = False, logging_first_step: bool = False) -> Schedule:
    """Every step at which the Trainer logs, evaluates or saves, and the checkpoints still on disk at the end.

    ``eval_steps`` None means "same as logging_steps" (as TrainingArguments does); ``save_steps`` None
    means 500. With ``load_best_model_at_end`` the best checkpoint is also kept, but which one is best
    is only known after training: ``surviving`` shows the newest ones, and
    :meth:`Schedule.surviving_with_best` answers for a chosen best checkpoint.
    """
    for name, value in (("eval_strategy", eval_strategy), ("save_strategy", save_strategy)):
        if value not in STRATEGIES:
            raise ConfigError({name: f"{name} must be one of {', '.join(STRATEGIES)}, got {value!r}"})
    if save_total_limit is not None and (isinstance(save_total_limit, bool)
                                         or int(save_total_limit) != save_total_limit):
        raise ConfigError({"save_total_limit": f"save_total_limit must be a whole number, got {save_total_limit!r}"})
    if load_best_model_at_end:
        _check_best_model_settings(eval_strategy, logging_steps if eval_steps is None else eval_steps,
                                   save_strategy, DEFAULT_SAVE_STEPS if save_steps is None else save_steps)
    total = plan.total_steps
    log_every = _interval("logging_steps", logging_steps, total)
    eval_every = (_interval("eval_steps", logging_steps if eval_steps is None else eval_steps, total)
                  if eval_strategy == "steps" else None)
    save_every = (_interval("save_steps", DEFAULT_SAVE_STEPS if save_steps is None else save_steps, total)
                  if save_strategy == "steps" else None)

    spe = plan.steps_per_epoch
    first = [1] if logging_first_step else []
    rules = {  # kind -> (periods, extra steps)
        "log": ([log_every], first),
        "eval": ([eval_every], [total]) if eval_every is not None else (([spe], [total]) if eval_strategy == "epoch"
                                                                        else ([], [])),
        "save": ([save_every], [total]) if save_every is not None else (([spe], [total]) if save_strategy == "epoch"
                                                                        else ([], [])),
    }
    counts = {kind: _union_count(total, per, ext) if (per or ext) else 0 for kind, (per, ext) in rules.items()}
    all_periods = [q for per, _ in rules.values() for q in per]
    all_extra = [e for _, ext in rules.values() for e in ext]
    counts["events"] = _union_count(total, all_periods, all_extra)
    half = MAX_LISTED_EVENTS // 2
    if counts["events"] <= MAX_LISTED_EVENTS:
        steps = _steps_ascending(total, all_periods, all_extra, MAX_LISTED_EVENTS)
    else:
        steps = _steps_ascending(total, all_periods, all_extra, half) + sorted(
            _steps_descending(total, all_periods, all_extra, half))

    def kinds_at(step: int) -> tuple[str, ...]:
        return tuple(kind for kind in ("log", "eval", "save")
                     if any(q and step % q == 0 for q in rules[kind][0]) or step in rules[kind][1])

    events = [Event(st, epoch_at_step(plan, st), kinds_at(st)) for st in steps]
    truncated = counts["events"] > len(events)
    checkpoints = [e.step for e in events if "save" in e.kinds]
    if save_total_limit and save_total_limit > 0 and counts["save"] > save_total_limit:
        surviving = surviving_checkpoints(checkpoints[-(save_total_limit + 1):], save_total_limit)
    else:
        surviving = surviving_checkpoints(checkpoints, save_total_limit)
    deleted = [st for st in checkpoints if st not in set(surviving)]

    notes = []
    if log_every > total and not logging_first_step:
        notes.append(f"logging_steps ({log_every}) is more than the {total} steps of training: "
                     "no loss is logged during training (only the final summary).")
    if save_strategy != "no" and save_total_limit and load_best_model_at_end:
        notes.append("load_best_model_at_end also keeps the best checkpoint, which is only known after "
                     "training; the list shows the newest ones.")
    return Schedule(plan=plan, events=events, logging_every=log_every, eval_every=eval_every,
                    save_every=save_every, save_total_limit=save_total_limit,
                    load_best_model_at_end=bool(load_best_model_at_end), checkpoints=checkpoints,
                    surviving=surviving, deleted=deleted, notes=notes, counts=counts, truncated=truncated)


def rotate_checkpoints(on_disk: Sequence[int], save_total_limit: int | None, best: int | None = None) -> list[int]:
    """What transformers' ``rotate_checkpoints`` keeps of the checkpoints on disk (by step) right after a
    save: the newest, the best (when known), then the newest others up to ``save_total_limit``."""
    steps = sorted(on_disk)
    if save_total_limit is None or save_total_limit <= 0 or len(steps) <= save_total_limit:
        return steps
    protected = {steps[-1]} | ({best} if best in steps else set())
    keep = max(save_total_limit, len(protected))
    remaining, kept = len(steps), []
    for s in steps:
        if remaining > keep and s not in protected:
            remaining -= 1
            continue
        kept.append(s)
    return kept


def surviving_checkpoints(saves: Sequence[int], save_total_limit: int | None,
                          best: int | Sequence[int | None] | None = None) -> list[int]:
    """The checkpoints (by step) still on disk after training, following ``rotate_checkpoints``.

    ``best`` is the best checkpoint when ``load_best_model_at_end`` is on: either one step (taken as
    the best from the moment it is saved; before that the newest checkpoint is assumed the best so
    far), or a list giving, for each save, the best checkpoint known right after it (None: no best).
    """
    if best is None or isinstance(best, int):
        if best is not None and best not in saves:
            raise ValueError(f"checkpoint-{best} is not one of the saved checkpoints")
        best_list: list[int | None] = [None if best is None else (s if s < best else best) for s in saves]
    else:
        best_list = list(best)
        if len(best_list) != len(saves):
            raise ValueError("best must give one entry per save")
    on_disk: list[int] = []
    for step, best_now in zip(saves, best_list):
        on_disk = rotate_checkpoints(sorted(set(on_disk) | {step}), save_total_limit, best_now)
    final_best = best_list[-1] if best_list else None
    if save_total_limit == 1 and final_best is not None and final_best in on_disk:
        on_disk = [final_best]  # _finalize_training deletes everything but the best
    return on_disk


def schedule_for_config(config, num_train_samples: int) -> Schedule:
    """The event schedule of a TrainConfig (same defaults as lib.train's TrainingArguments)."""
    plan = plan_for_config(config, num_train_samples)
    return event_schedule(
        plan, logging_steps=config.logging_steps, eval_strategy=config.eval_strategy,
        eval_steps=config.eval_steps, save_strategy=config.save_strategy,
        save_steps=config.save_steps if config.save_steps is not None else DEFAULT_SAVE_STEPS,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=config.load_best_model_at_end or getattr(config, "early_stopping_patience", None)
        is not None)

"""The job's voice: a TrainerCallback that writes metrics.jsonl and keeps status.json current.

Every log and evaluation event becomes one JSON line in ``metrics.jsonl`` (the Runs page charts it
while training runs: ``trainer_state.json`` only exists inside checkpoints). ``status.json`` carries
the step, the total and a heartbeat, rewritten atomically at most once a second. Only the main
process (rank 0) writes anything, so a multi-process run still has one set of files.
"""
from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from lib.store import rundir

HEARTBEAT_EVERY_S = 1.0


class RunDirCallback(TrainerCallback):
    def __init__(self, run_dir: str | Path, *, elapsed_before: float = 0.0):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / rundir.METRICS
        self.elapsed_before = float(elapsed_before)
        self.t0 = time.time()
        self._last_beat = 0.0
        self._last_log_time = None
        self._last_log_step = None

    # ------------------------------------------------------------------ helpers
    def elapsed(self) -> float:
        return self.elapsed_before + (time.time() - self.t0)

    def _base(self, state, event: str) -> dict:
        return {"event": event, "time": round(time.time(), 3), "step": int(state.global_step),
                "epoch": round(float(state.epoch or 0.0), 4), "elapsed_s": round(self.elapsed(), 3),
                "total_steps": int(state.max_steps or 0)}

    def _beat(self, tstate, *, force: bool = False, **extra) -> None:
        now = time.time()
        if not force and now - self._last_beat < HEARTBEAT_EVERY_S:
            return
        self._last_beat = now
        rundir.update_status(self.run_dir, step=int(tstate.global_step), total_steps=int(tstate.max_steps or 0),
                             epoch=round(float(tstate.epoch or 0.0), 4), heartbeat=now,
                             elapsed_s=round(self.elapsed(), 3), **extra)

    # ------------------------------------------------------------------ events
    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.t0 = time.time()
            self._last_log_time, self._last_log_step = self.t0, int(state.global_step)
            self._beat(state, force=True, state="running")

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._beat(state)

    def on_prediction_step(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # a long evaluation must not look stalled
            self._beat(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        is_eval = any(k.startswith("eval_") for k in logs)
        is_end = "train_runtime" in logs
        event = "eval" if is_eval else ("end" if is_end else "log")
        row = self._base(state, event)
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = value
        if event == "log":
            now, step = time.time(), int(state.global_step)
            if self._last_log_time is not None and step > (self._last_log_step or 0) and now > self._last_log_time:
                samples = (step - self._last_log_step) * args.per_device_train_batch_size \
                    * args.gradient_accumulation_steps * max(1, args.world_size)
                row["samples_per_s"] = round(samples / (now - self._last_log_time), 3)
            self._last_log_time, self._last_log_step = now, step
        rundir.append_jsonl(self.metrics_path, row)
        self._beat(state, force=True)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            row = self._base(state, "save")
            row["checkpoint"] = f"checkpoint-{state.global_step}"
            rundir.append_jsonl(self.metrics_path, row)
            self._beat(state, force=True)

"""Progress of one run from its files: step, epoch, speed, elapsed time and a remaining-time estimate."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from lib.readers.metrics import metric_series
from lib.store import rundir
from lib.util.fmt import num


@dataclass
class Progress:
    state: str
    phase: str | None
    step: int
    total_steps: int | None
    fraction: float | None
    epoch: float | None
    num_epochs: float | None
    elapsed_s: float | None
    eta_s: float | None
    steps_per_s: float | None
    samples_per_s: float | None
    heartbeat_age_s: float | None
    queue_position: int | None
    error: dict | None
    exit_code: int | None
    stalled: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in rundir.TERMINAL_STATES

    @property
    def active(self) -> bool:
        return self.state in rundir.ACTIVE_STATES


def recent_rate(log_rows: list[dict], window: int = 20) -> float | None:
    """Optimizer steps per second over the last ``window`` logged steps (training time)."""
    pts = [(num(r.get("step")), num(r.get("elapsed_s"))) for r in log_rows[-(window + 1):]]
    pts = [(s, t) for s, t in pts if s is not None and t is not None]
    if len(pts) < 2:
        return None
    (s0, t0), (s1, t1) = pts[0], pts[-1]
    if s1 <= s0 or t1 <= t0:
        return None
    return (s1 - s0) / (t1 - t0)


def progress(run_dir: str | os.PathLike, status: dict | None = None, now: float | None = None) -> Progress:
    """Where a run stands: state, step/total, epoch, elapsed, ETA from the recent step rate, samples/s."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = status if isinstance(status, dict) else rundir.read_status(run_dir)
    series = metric_series(run_dir)
    state = str(status.get("state") or "unknown")
    last_any = max((r for r in (series.log[-1:] + series.eval[-1:] + series.save[-1:])),
                   key=lambda r: num(r.get("step")) or 0, default=None)
    step = int(num(status.get("step")) or 0)
    if last_any is not None:
        step = max(step, int(num(last_any.get("step")) or 0))
    total = num(status.get("total_steps")) or (num(last_any.get("total_steps")) if last_any else None)
    total = int(total) if total else None
    epoch = num(status.get("epoch"))
    if last_any is not None and num(last_any.get("epoch")) is not None:
        epoch = max(epoch or 0.0, float(last_any["epoch"]))
    heartbeat = num(status.get("heartbeat"))
    elapsed = num(status.get("elapsed_s"))
    if elapsed is None and last_any is not None:
        elapsed = num(last_any.get("elapsed_s"))
    if state == "running":
        if elapsed is not None and heartbeat is not None:
            elapsed += max(0.0, now - heartbeat)
        elif num(status.get("started_at")) is not None:
            elapsed = max(0.0, now - float(status["started_at"]))
    elif state == "queued":
        since = num(status.get("queued_at")) or num(status.get("created_at"))
        elapsed = max(0.0, now - since) if since else None
    rate = recent_rate(series.log)
    if rate is None and state == "running" and step and elapsed:
        rate = step / elapsed
    eta = None
    if state == "running" and total and rate:
        eta = max(0.0, (total - step) / rate)
    samples = [v for v in (num(r.get("samples_per_s")) for r in series.log[-5:]) if v is not None]
    config = rundir.read_config(run_dir)
    num_epochs = num(config.get("num_train_epochs"))
    if total and step >= total and state == "finished":
        fraction = 1.0
    else:
        fraction = min(1.0, step / total) if total else (1.0 if state == "finished" else None)
    qp = num(status.get("queue_position"))
    ec = num(status.get("exit_code"))
    return Progress(
        state=state, phase=status.get("phase") if isinstance(status.get("phase"), str) else None,
        step=step, total_steps=total, fraction=fraction, epoch=epoch, num_epochs=num_epochs,
        elapsed_s=elapsed, eta_s=eta, steps_per_s=rate,
        samples_per_s=sum(samples) / len(samples) if samples else None,
        heartbeat_age_s=max(0.0, now - heartbeat) if heartbeat else None,
        queue_position=int(qp) if qp is not None else None,
        error=status.get("error") if isinstance(status.get("error"), dict) else None,
        exit_code=int(ec) if ec is not None else None, stalled=bool(status.get("stalled")))

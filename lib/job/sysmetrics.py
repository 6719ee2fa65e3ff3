"""What a training job costs the machine while it runs: CPU, memory and GPU rows in ``metrics.jsonl``.

:class:`SystemMetricsCallback` starts a small background thread on the main process (rank 0) when
training begins. Every ``every_s`` seconds it appends one row::

    {"event": "system", "time": ..., "step": ..., "epoch": ..., "elapsed_s": ..., "total_steps": ...,
     "cpu_percent": 187.5, "rss_mb": 912.4,
     "gpu0_util": 97.0, "gpu0_mem_mb": 10240.0, "gpu0_mem_total_mb": 143771.0}

``cpu_percent`` is the job's own CPU use (100 = one core busy), counting its DataLoader workers;
``rss_mb`` is the resident memory of the job and its workers. GPU keys appear per device when CUDA
is present: utilisation from NVML (when the driver offers it) and the memory the job's tensors hold.
A reading that is not available is left out of the row; nothing here ever fails the job.
"""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from lib.store import rundir

MIN_EVERY_S = 0.2


def _process_tree(proc) -> list:
    with contextlib.suppress(Exception):
        return [proc, *proc.children(recursive=True)]
    return [proc]


class SystemSampler:
    """Readings of this process (and its children): call :meth:`sample` now and then."""

    def __init__(self) -> None:
        import psutil
        self._psutil = psutil
        self._proc = psutil.Process()
        self._cpu_seen: dict[int, object] = {}
        self._prime()

    def _prime(self) -> None:
        for p in _process_tree(self._proc):
            with contextlib.suppress(Exception):
                p.cpu_percent(None)  # the first call only starts the measurement
                self._cpu_seen[p.pid] = p

    def sample(self) -> dict:
        row: dict = {}
        cpu, rss, counted = 0.0, 0, False
        for p in _process_tree(self._proc):
            known = self._cpu_seen.get(p.pid)
            try:
                if known is None:
                    p.cpu_percent(None)
                    self._cpu_seen[p.pid] = p
                else:
                    cpu += known.cpu_percent(None)
                rss += p.memory_info().rss
                counted = True
            except Exception:  # noqa: BLE001 - a worker that just ended
                continue
        if counted:
            row["cpu_percent"] = round(cpu, 1)
            row["rss_mb"] = round(rss / 2**20, 1)
        row.update(gpu_readings())
        return row


def gpu_readings() -> dict:
    """Per-device GPU utilisation and memory, when CUDA is initialised in this process (else {})."""
    out: dict = {}
    try:
        import torch
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return out
        for i in range(torch.cuda.device_count()):
            with contextlib.suppress(Exception):
                out[f"gpu{i}_mem_mb"] = round(torch.cuda.memory_reserved(i) / 2**20, 1)
            with contextlib.suppress(Exception):
                free, total = torch.cuda.mem_get_info(i)
                out[f"gpu{i}_mem_total_mb"] = round(total / 2**20, 1)
                out[f"gpu{i}_mem_used_mb"] = round((total - free) / 2**20, 1)
            with contextlib.suppress(Exception):  # needs NVML (pynvml); absent on many machines
                out[f"gpu{i}_util"] = float(torch.cuda.utilization(i))
    except Exception:  # noqa: BLE001 - never fail the job for a reading
        return out
    return out


class SystemMetricsCallback(TrainerCallback):
    """Append a ``system`` row to the run's metrics.jsonl every ``every_s`` seconds while training runs."""

    def __init__(self, run_dir: str | Path, *, every_s: float = 10.0, elapsed_before: float = 0.0):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / rundir.METRICS
        self.every_s = max(MIN_EVERY_S, float(every_s))
        self.elapsed_before = float(elapsed_before)
        self.t0 = time.time()
        self.step = 0
        self.epoch = 0.0
        self.total_steps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler: SystemSampler | None = None

    def _write(self) -> None:
        try:
            if self._sampler is None:
                self._sampler = SystemSampler()
            row = {"event": "system", "time": round(time.time(), 3), "step": int(self.step),
                   "epoch": round(self.epoch, 4), "elapsed_s": round(self.elapsed_before + time.time() - self.t0, 3),
                   "total_steps": int(self.total_steps), **self._sampler.sample()}
            rundir.append_jsonl(self.path, row)
        except Exception:  # noqa: BLE001 - a missing reading or a full disk must not stop training
            pass

    def _loop(self) -> None:
        self._write()
        while not self._stop.wait(self.every_s):
            self._write()

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self._thread is not None:
            return
        self.t0 = time.time()
        self._track(state)
        try:
            self._sampler = SystemSampler()
        except Exception:  # noqa: BLE001 - psutil missing or refused: no system rows, training goes on
            return
        self._thread = threading.Thread(target=self._loop, name="lab-system-metrics", daemon=True)
        self._thread.start()

    def _track(self, state) -> None:
        self.step = int(state.global_step)
        self.epoch = float(state.epoch or 0.0)
        self.total_steps = int(state.max_steps or 0)

    def on_step_end(self, args, state, control, **kwargs):
        self._track(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._track(state)
        self.stop()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        self._write()  # one last reading at the end of training

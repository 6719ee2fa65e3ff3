"""How busy *other* processes keep the CPU: the predictor's thread choice and the benchmarks' records."""
from __future__ import annotations

import os
import threading
import time
from typing import Any


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores, all processes)."""
    import psutil
    t = psutil.cpu_times()
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))


def process_tree_cpu_seconds() -> float:
    """CPU seconds used by this process, its live children and the children that already exited."""
    import psutil
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
            if p is me:
                total += t.children_user + t.children_system  # children that already exited
        except psutil.Error:
            continue
    return total


class OtherLoad:
    """How many CPU cores *other* processes keep busy: the kernel's busy time for the whole machine minus
    this process's own CPU time, over the last ``interval`` seconds, sampled by a daemon thread.

    The load average would not do: a batch of predictions keeps this process's own threads running,
    raises the load average and would then throttle itself. Hysteresis keeps the decision steady: busy
    from ``cores - 0.5`` other cores on, idle again below ``cores / 2``.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.cores = os.cpu_count() or 1
        self.other: float | None = None   # None until the first interval has passed
        self.busy = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        own = os.times()
        return time.monotonic(), machine_busy_seconds(), own.user + own.system

    def update(self, before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
        elapsed = after[0] - before[0]
        other = max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / max(elapsed, 1e-6))
        with self._lock:
            self.other = other
            if self.busy:
                self.busy = other >= self.cores / 2
            else:
                self.busy = other >= self.cores - 0.5
        return other

    def _run(self) -> None:
        before = self._sample()
        while True:
            time.sleep(self.interval)
            after = self._sample()
            self.update(before, after)
            before = after

    def start(self) -> OtherLoad:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lab-other-load", daemon=True)
                self._thread.start()
        return self

    def is_busy(self) -> bool:
        """Whether other processes keep (nearly) every core busy. Before the first sample: the load
        average, taken before this process has done any work of its own."""
        self.start()
        with self._lock:
            if self.other is not None:
                return self.busy
        try:
            return os.getloadavg()[0] >= self.cores - 0.5
        except OSError:
            return False


OTHER_LOAD = OtherLoad()


class Contention:
    """Cores kept busy by *other* processes while a block ran (machine busy time minus this process tree's),
    for benchmarks that must say how quiet the machine was.

    ``with Contention() as c: ...`` then ``c.other_cores`` (0 on an idle machine, up to the CPU count).
    """

    def __init__(self) -> None:
        import psutil
        self._psutil = psutil
        self.other_cores: float | None = None
        self.own_cores: float | None = None
        self.seconds: float | None = None

    def _own(self) -> float:
        return process_tree_cpu_seconds()

    def __enter__(self) -> Contention:
        self._t0 = time.perf_counter()
        self._sys0 = machine_busy_seconds()
        self._own0 = self._own()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t0
        sys_busy = machine_busy_seconds() - self._sys0
        own = max(0.0, self._own() - self._own0)
        self.seconds = wall
        if wall > 0:
            self.own_cores = round(own / wall, 3)
            self.other_cores = round(max(0.0, sys_busy - own) / wall, 3)

    def as_dict(self) -> dict[str, Any]:
        return {"other_cores": self.other_cores, "own_cores": self.own_cores,
                "seconds": None if self.seconds is None else round(self.seconds, 3)}

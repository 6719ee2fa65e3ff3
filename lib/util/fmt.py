"""Numbers and times as people read them, and the one tolerant number check used by every reader."""
from __future__ import annotations

import math
import time
from typing import Any


def num(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (strings, booleans, NaN, missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def format_duration(seconds: float | None, *, missing: str = "–") -> str:
    """``75`` -> ``1m 15s``; ``3725`` -> ``1h 02m 05s``; None or NaN -> ``missing``."""
    if seconds is None or not math.isfinite(seconds):
        return missing
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def format_time(t: float | None, *, missing: str = "–") -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else missing

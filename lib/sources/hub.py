"""Fast answers about the Hugging Face Hub.

Without a network, ``from_pretrained`` / ``load_dataset`` retry for about 45 seconds before failing.
Here we first look in the local cache, then probe the Hub once with a short timeout (cached for a
minute), and fail at once with a message that names the offline alternatives.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlparse

from lib.errors import HubUnavailableError

PROBE_TIMEOUT_S = 3.0
_CACHE_TTL_S = 60.0
_probe_cache: dict[str, tuple[float, bool, str]] = {}
_lock = threading.Lock()


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _connect(host: str, port: int, timeout: float, result: list) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            result.append((True, "reachable"))
    except OSError as exc:
        result.append((False, f"{type(exc).__name__}: {exc}"))


def hub_reachable(timeout: float = PROBE_TIMEOUT_S, *, refresh: bool = False) -> tuple[bool, str]:
    """(reachable, reason). Never blocks longer than ``timeout`` (DNS included); cached for 60 s."""
    if offline_mode():
        return False, "HF_HUB_OFFLINE is set"
    url = urlparse(hub_endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    key = f"{host}:{port}"
    with _lock:
        cached = _probe_cache.get(key)
        if cached and not refresh and time.monotonic() - cached[0] < _CACHE_TTL_S:
            return cached[1], cached[2]
    result: list = []
    thread = threading.Thread(target=_connect, args=(host, port, timeout, result), daemon=True)
    thread.start()
    thread.join(timeout)
    ok, reason = result[0] if result else (False, f"no answer from {host} within {timeout:.0f} s")
    with _lock:
        _probe_cache[key] = (time.monotonic(), ok, reason)
    return ok, reason


def unavailable_message(kind: str, name: str, reason: str) -> str:
    if kind == "model":
        alternatives = ("use the bundled model 'bundled-minilm' (works offline), or a local folder saved with "
                        "save_pretrained (for example a finished run's model/ folder)")
    else:
        alternatives = ("use the built-in reviews 'demo', a local CSV/TSV/JSONL/Parquet file, or an "
                        "aclImdb folder on disk")
    return (f"The Hugging Face Hub {kind} {name!r} cannot be loaded: the Hub is not reachable from this "
            f"machine ({reason}) and {name!r} is not in the local cache. Offline, {alternatives}.")


def require_hub(kind: str, name: str) -> None:
    """Raise HubUnavailableError at once when the Hub cannot be reached."""
    ok, reason = hub_reachable()
    if not ok:
        raise HubUnavailableError(unavailable_message(kind, name, reason))

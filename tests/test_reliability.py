"""Faults a shared, unattended training box meets, each tried for real where it is about processes:
out of memory, a full disk, planted pickles, paths outside the allowed roots, server settings."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lib.readers import checkpoints, metrics, predictions
from lib.registry import reconcile
from lib.store import rundir

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "model=tiny-bert", "--set", "max_train_samples=32", "--set", "max_eval_samples=16",
        "--set", "logging_steps=1", "--set", "per_device_train_batch_size=8", "--set", "frozen_layers=0",
        "--set", "freeze_embeddings=false"]


def run_job_with_fault(tmp_path: Path, runs: Path, patch: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the real job in its own process with one fault patched in (the production code is untouched)."""
    script = tmp_path / "faulty_job.py"
    script.write_text(f"import sys\n{patch}\nimport lib.train\n"
                      "sys.exit(lib.train.main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, str(script), "--preset", "demo", "--runs-dir", str(runs), *TINY, *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("run directory: ")]
    run_dir = Path(line[-1].split(": ", 1)[1]) if line else Path(proc.stdout.strip().splitlines()[-1])
    return proc, run_dir


def test_out_of_memory_says_so_and_suggests_the_same_effective_batch(tmp_path):
    patch = ("import torch, transformers\n"
             "def boom(self, *a, **k):\n"
             "    raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')\n"
             "transformers.Trainer.training_step = boom\n")
    proc, run_dir = run_job_with_fault(tmp_path, tmp_path / "runs", patch)
    assert proc.returncode == 1
    assert "out of memory" in proc.stderr and "Traceback" not in proc.stderr
    status = rundir.read_status(run_dir)
    assert status["state"] == "failed"
    assert "out of memory" in status["error"]["message"].lower()
    hint = status["error"]["hint"]
    assert "per_device_train_batch_size=4" in hint and "gradient_accumulation_steps=2" in hint
    assert "same effective batch of 8" in hint


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_disk_full_fails_with_no_space_left_and_keeps_earlier_checkpoints(tmp_path):
    """A size-limited file system (tmpfs) when this machine allows mounting one, else a simulated ENOSPC."""
    runs = tmp_path / "small_fs"
    mounted = _tmpfs(runs, "30m")
    try:
        if mounted:
            # The tiny BERT's checkpoint is ~12 MB (weights + optimizer): the first fits, the rest do not.
            patch = ""
        else:
            patch = ("import errno, transformers\n"
                     "orig = transformers.Trainer._save_checkpoint\n"
                     "def save(self, *a, **k):\n"
                     "    if self.state.global_step > 4:\n"
                     "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
                     "    return orig(self, *a, **k)\n"
                     "transformers.Trainer._save_checkpoint = save\n")
        proc, run_dir = run_job_with_fault(tmp_path, runs, patch, "--set", "num_train_epochs=6",
                                           "--set", "save_total_limit=5")
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "no space left" in proc.stderr.lower() and "Traceback" not in proc.stderr
        status = rundir.read_status(run_dir)
        assert status["state"] == "failed" and "no space left" in status["error"]["message"].lower()
        assert "free space" in status["error"]["hint"]
        # Earlier checkpoints are complete, no half-written one is left, the logs are intact.
        from lib.store.checkpoint_folders import checkpoint_is_complete, list_checkpoints
        kept = list_checkpoints(run_dir)
        assert kept and all(checkpoint_is_complete(p) for p in kept)
        assert kept[0].name == "checkpoint-4"
        rows = rundir.read_jsonl(run_dir / rundir.METRICS)
        assert any(r["event"] == "save" and r["checkpoint"] == "checkpoint-4" for r in rows)
        assert rundir.read_json(run_dir / rundir.CONFIG)["model"] == "tiny-bert"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(runs)], capture_output=True)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump(_Payload(marker), fh)


def test_planted_pickles_never_run_when_listed_charted_or_resumed(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "lib.train", "--preset", "demo", "--runs-dir", str(runs), *TINY,
                           "--set", "num_train_epochs=2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    marker = tmp_path / "PWNED"
    # The payload really runs when unpickled (so the test would notice).
    probe = tmp_path / "probe.pkl"
    _plant(probe, tmp_path / "probe-ran")
    with open(probe, "rb") as fh:
        pickle.load(fh)  # noqa: S301 - proving the payload works
    assert (tmp_path / "probe-ran").exists()
    newest = run_dir / rundir.CHECKPOINTS / "checkpoint-8"
    for target in (newest / "optimizer.pt", newest / "training_args.bin", newest / "rng_state.pth",
                   newest / "scheduler.pt", run_dir / rundir.MODEL / "pytorch_model.bin",
                   run_dir / rundir.MODEL / "training_args.bin"):
        _plant(target, marker)
    # Listed, charted, checkpoints and error analysis: everything the Runs page reads.
    assert reconcile.list_runs(runs)[0].state == "finished"
    assert metrics.metric_series(run_dir) is not None and metrics.read_metrics(run_dir)
    assert [c.step for c in checkpoints.list_checkpoints(run_dir)] == [4, 8]
    assert len(predictions.predictions_frame(run_dir)) == 16
    assert not marker.exists()
    # Resume: the job loads optimizer/scheduler/rng state with weights_only=True, which refuses the pickle.
    rundir.update_status(run_dir, state="failed")
    resumed = subprocess.run([sys.executable, "-m", "lib.train", "--run-dir", str(run_dir), "--resume"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert not marker.exists()
    assert resumed.returncode != 0 and "Traceback" not in resumed.stderr
    assert rundir.read_status(run_dir)["state"] == "failed"


def test_local_paths_can_be_restricted_to_allowed_roots(tmp_path, monkeypatch):
    from lib.config import preset
    from lib.errors import DataError, ModelError
    from lib.sources.data import load_data
    from lib.sources.models import resolve_model_source
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "reviews.csv").write_text("text,label\ngood,1\nbad,0\n")
    monkeypatch.setenv("LAB_ALLOWED_ROOTS", str(allowed))
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(DataError, match="outside the folders this server allows"):
        load_data(preset("demo", dataset=str(outside / "reviews.csv")))
    with pytest.raises(ModelError, match="outside the folders this server allows"):
        resolve_model_source(str(outside))
    with pytest.raises(DataError, match="outside the folders this server allows"):
        load_data(preset("demo", dataset=str(allowed / ".." / "outside" / "reviews.csv")))
    (allowed / "reviews.csv").write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(20)))
    assert load_data(preset("demo", dataset=str(allowed / "reviews.csv"))).info["source"] == "local"
    # A symlink inside an allowed root that points outside it is judged by where it points.
    (allowed / "sneaky.csv").symlink_to(outside / "reviews.csv")
    with pytest.raises(DataError, match="outside the folders this server allows"):
        load_data(preset("demo", dataset=str(allowed / "sneaky.csv")))


def test_server_settings_keep_xsrf_on_cors_closed_and_uploads_limited():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True  # true = cross-origin requests are NOT allowed
    assert 1 <= server["maxUploadSize"] <= 200
    assert config["browser"]["gatherUsageStats"] is False
    assert "runs" in server["folderWatchBlacklist"]

"""lib.logs on synthetic run folders: torn and corrupt lines, missing files, growth between reads,
progress and ETA, checkpoint retention, error analysis numbers."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from lib.readers import checkpoints, compare, metrics, predictions, progress
from lib.registry import reconcile
from lib.store import (
    jsonl,
    rundir,
)
from lib.util.fmt import format_duration

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_cache():
    jsonl.clear_cache()
    yield
    jsonl.clear_cache()


def make_run(runs: Path, run_id: str, *, status: dict | None = None, config: dict | None = None) -> Path:
    run = runs / run_id
    run.mkdir(parents=True)
    if status is not None:
        rundir.atomic_write_json(run / rundir.STATUS, status)
    if config is not None:
        rundir.atomic_write_json(run / rundir.CONFIG, config)
    return run


def line(**row) -> str:
    return json.dumps(row) + "\n"


# ------------------------------------------------------------------------------------------ jsonl reader
def test_missing_file_and_empty_run(tmp_path):
    run = make_run(tmp_path, "20260101-000000-aaaaaa")
    assert metrics.read_metrics(run) == []
    series = metrics.metric_series(run)
    assert series.log == series.eval == series.save == []
    prog = progress.progress(run, status={})
    assert prog.state == "unknown" and prog.step == 0 and prog.eta_s is None
    assert checkpoints.list_checkpoints(run, status={}) == []
    assert predictions.predictions_frame(run).empty
    assert metrics.final_metrics(run, status={}) == {}
    assert metrics.read_baseline(run) is None
    assert metrics.log_tail(run) == ""


def test_torn_last_line_is_left_for_later(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(line(event="log", step=1, loss=0.9) + line(event="log", step=2, loss=0.8)
                    + '{"event": "log", "step": 3, "lo')
    rows = jsonl.read_jsonl(path)
    assert [r["step"] for r in rows] == [1, 2]
    with open(path, "a") as fh:  # the writer finishes the line and appends another
        fh.write('ss": 0.7}\n' + line(event="log", step=4, loss=0.6))
    rows2 = jsonl.read_jsonl(path)
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]
    assert rows2[2]["loss"] == 0.7


def test_corrupt_lines_are_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with open(path, "wb") as fh:
        fh.write(line(event="log", step=1, loss=1.0).encode())
        fh.write(b"not json at all\n")
        fh.write(b"[1, 2, 3]\n")                      # valid JSON, not an object
        fh.write(b"\x00\x00\xff\xfe garbage\n")       # binary junk from a crash
        fh.write(b"\n   \n")                          # blank lines
        fh.write(b'{"event": "log", "step": 2, "loss": NaN}\n')  # NaN: Python's json reads it
        fh.write(line(event="eval", step=2, eval_accuracy=0.5).encode())
    rows = jsonl.read_jsonl(path)
    assert [(r["event"], r["step"]) for r in rows] == [("log", 1), ("log", 2), ("eval", 2)]
    # a NaN loss is not charted
    series = metrics._build_series(rows)
    assert series.column("log", "loss")[1] == [1.0]


def test_growth_reads_only_new_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(line(event="log", step=i, loss=1.0 / i) for i in range(1, 101)))
    first = jsonl.read_jsonl(path)
    version = jsonl.jsonl_version(path)
    assert len(first) == 100
    # unchanged file: the very same cached list, same version
    assert jsonl.read_jsonl(path) is first
    assert jsonl.jsonl_version(path) == version
    with open(path, "a") as fh:
        fh.write("".join(line(event="log", step=i, loss=1.0 / i) for i in range(101, 151)))
    grown = jsonl.read_jsonl(path)
    assert len(grown) == 150
    assert jsonl.jsonl_version(path) != version
    # the first 100 rows were not parsed again: they are the same objects
    assert all(a is b for a, b in zip(first, grown[:100]))
    assert [r["step"] for r in grown[100:]] == list(range(101, 151))


def test_replaced_or_truncated_file_is_read_again(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(line(event="log", step=i) for i in range(1, 11)))
    assert len(jsonl.read_jsonl(path)) == 10
    # replaced by a shorter file (another inode)
    tmp = tmp_path / "new.jsonl"
    tmp.write_text(line(event="log", step=99))
    os.replace(tmp, path)
    assert [r["step"] for r in jsonl.read_jsonl(path)] == [99]
    # truncated in place and rewritten longer: first bytes differ, so start over
    with open(path, "w") as fh:
        fh.write("".join(line(event="log", step=i, note="x") for i in range(200, 205)))
    assert [r["step"] for r in jsonl.read_jsonl(path)] == list(range(200, 205))
    # rewritten in place with the same size but other content
    before = path.stat().st_size
    text = path.read_text().replace('"x"', '"y"')
    assert len(text) == before
    time.sleep(0.01)
    path.write_text(text)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    assert {r["note"] for r in jsonl.read_jsonl(path)} == {"y"}
    # deleted: empty again
    path.unlink()
    assert jsonl.read_jsonl(path) == []


def test_ten_thousand_lines(tmp_path):
    run = make_run(tmp_path, "20260101-000000-bbbbbb")
    rows = []
    for i in range(1, 10_001):
        rows.append(line(event="log", step=i, epoch=i / 1000, elapsed_s=i * 0.1, total_steps=10_000, loss=1 / i,
                         learning_rate=5e-5, grad_norm=1.0, samples_per_s=80.0))
        if i % 1000 == 0:
            rows.append(line(event="eval", step=i, epoch=i / 1000, elapsed_s=i * 0.1, eval_accuracy=i / 10_000))
            rows.append(line(event="save", step=i, epoch=i / 1000, elapsed_s=i * 0.1, checkpoint=f"checkpoint-{i}"))
    (run / rundir.METRICS).write_text("".join(rows))
    series = metrics.metric_series(run)
    assert len(series.log) == 10_000 and len(series.eval) == 10 and len(series.save) == 10
    assert metrics.metric_series(run) is series  # derived data is cached with the rows
    xs, ys = series.xy("log", "loss", "time")
    assert xs[:2] == pytest.approx([0.1 / 60, 0.2 / 60]) and ys[:2] == [1.0, 0.5]  # minutes of training
    assert series.xy("log", "loss", "time") is series.xy("log", "loss", "time")  # memoized
    assert series.xy("eval", "eval_accuracy", "epoch")[0] == pytest.approx([float(e) for e in range(1, 11)])
    with open(run / rundir.METRICS, "a") as fh:  # growth: a new series, never a stale memo
        fh.write(line(event="log", step=10_001, epoch=10.001, elapsed_s=1000.1, loss=0.0))
    assert len(metrics.metric_series(run).xy("log", "loss", "time")[0]) == 10_001
    assert metrics.final_metrics(run, status={})["eval_accuracy"] == 1.0


def test_resumed_run_relogs_steps_and_last_row_wins(tmp_path):
    run = make_run(tmp_path, "20260101-000000-cccccc")
    text = "".join(line(event="log", step=s, loss=1.0) for s in (1, 2, 3, 4))
    text += "".join(line(event="log", step=s, loss=0.5) for s in (3, 4, 5))  # resumed from checkpoint-2
    (run / rundir.METRICS).write_text(text)
    series = metrics.metric_series(run)
    assert [(r["step"], r["loss"]) for r in series.log] == [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.5), (5, 0.5)]


# ------------------------------------------------------------------------------------------ progress
def test_progress_eta_from_recent_step_rate(tmp_path):
    run = make_run(tmp_path, "20260101-000000-dddddd", config={"num_train_epochs": 2})
    # the first steps were slow (1 step / 10 s), the recent ones take 2 s per step
    rows = [line(event="log", step=s, epoch=s / 50, elapsed_s=10.0 * s, total_steps=100, samples_per_s=8.0)
            for s in range(1, 6)]
    rows += [line(event="log", step=s, epoch=s / 50, elapsed_s=50.0 + 2.0 * (s - 5), total_steps=100,
                  samples_per_s=40.0) for s in range(6, 41)]
    (run / rundir.METRICS).write_text("".join(rows))
    now = 1_000_000.0
    status = {"state": "running", "step": 40, "total_steps": 100, "epoch": 0.8, "elapsed_s": 120.0,
              "heartbeat": now - 3.0}
    prog = progress.progress(run, status=status, now=now)
    assert prog.state == "running" and prog.active and not prog.terminal
    assert prog.step == 40 and prog.total_steps == 100
    assert prog.fraction == pytest.approx(0.4)
    assert prog.steps_per_s == pytest.approx(0.5)           # last 20 logged steps: 2 s each
    assert prog.eta_s == pytest.approx(60 / 0.5)             # 60 steps left
    assert prog.elapsed_s == pytest.approx(123.0)            # elapsed at the heartbeat + 3 s since
    assert prog.samples_per_s == pytest.approx(40.0)
    assert prog.num_epochs == 2 and prog.epoch == pytest.approx(0.8)
    assert prog.heartbeat_age_s == pytest.approx(3.0)


def test_progress_of_failed_and_finished_runs(tmp_path):
    run = make_run(tmp_path, "20260101-000000-eeeeee")
    err = {"type": "OutOfMemoryError", "message": "out of memory: CUDA", "hint": "try a smaller batch"}
    prog = progress.progress(run, status={"state": "failed", "step": 7, "total_steps": 20, "error": err,
                                      "exit_code": 1})
    assert prog.terminal and prog.eta_s is None and prog.error == err and prog.exit_code == 1
    assert prog.fraction == pytest.approx(7 / 20)
    done = progress.progress(run, status={"state": "finished", "step": 20, "total_steps": 20, "elapsed_s": 42.0})
    assert done.fraction == 1.0 and done.eta_s is None and done.elapsed_s == 42.0
    assert format_duration(3725) == "1h 02m 05s" and format_duration(None) == "–"


def test_ema():
    assert metrics.ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    assert metrics.ema([5.0] * 4, 0.9) == pytest.approx([5.0] * 4)  # start-up corrected: no drift from 0
    smoothed = metrics.ema([0.0, 10.0], 0.5)
    assert smoothed[0] == 0.0 and 0.0 < smoothed[1] < 10.0


# ------------------------------------------------------------------------------------------ run list
def test_list_runs_newest_first_and_tolerant(tmp_path):
    old = make_run(tmp_path, "20260101-000000-aaaaaa", status={"state": "finished", "step": 5},
                   config={"run_name": "old one", "owner": "ann", "model": "tiny-bert", "dataset": "demo"})
    make_run(tmp_path, "20260102-000000-bbbbbb", status={"state": "failed", "error": {"message": "boom"}},
             config={"owner": "bob", "model": "m", "dataset": "d"})
    broken = make_run(tmp_path, "20260103-000000-cccccc")  # no status, no config yet
    (broken / rundir.STATUS).write_text("{ not json")
    (tmp_path / "not-a-run").mkdir()
    os.symlink(old, tmp_path / "20260104-000000-dddddd")  # symlinked run: skipped
    runs = reconcile.list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["20260103-000000-cccccc", "20260102-000000-bbbbbb",
                                        "20260101-000000-aaaaaa"]
    by = {r.run_id: r for r in runs}
    assert by["20260101-000000-aaaaaa"].label == "old one" and by["20260101-000000-aaaaaa"].owner == "ann"
    assert by["20260102-000000-bbbbbb"].label == "m on d"
    assert by["20260102-000000-bbbbbb"].error == {"message": "boom"}
    assert by["20260103-000000-cccccc"].state == "unknown"
    assert reconcile.list_runs(tmp_path / "missing") == []


# ------------------------------------------------------------------------------------------ checkpoints
def make_checkpoint(run: Path, step: int, *, best: str | None = None, weights: bytes = b"w" * 1000,
                    compact: bool = False) -> Path:
    ck = run / rundir.CHECKPOINTS / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "model.safetensors").write_bytes(weights)
    (ck / "config.json").write_text("{}")
    state = {"global_step": step, "epoch": step / 10, "best_model_checkpoint": best, "best_metric": None,
             "log_history": [{"step": s, "loss": 0.5} for s in range(1, step)]
             + [{"step": step, "eval_accuracy": 0.1, "eval_loss": 9.0}]}
    # as transformers writes it (indent 2, sorted keys), or compact (another writer)
    text = json.dumps(state) if compact else json.dumps(state, indent=2, sort_keys=True) + "\n"
    (ck / "trainer_state.json").write_text(text)
    return ck


def test_trainer_state_summary_reads_only_the_ends(tmp_path):
    run = make_run(tmp_path, "20260101-000000-999999")
    best = str(run / rundir.CHECKPOINTS / "checkpoint-300")
    ck = make_checkpoint(run, 300, best=best)
    assert (ck / "trainer_state.json").stat().st_size > 8192  # the summary cannot have parsed it all
    assert checkpoints.trainer_state_summary(ck) == {"complete": True, "global_step": 300, "epoch": 30.0,
                                              "best_model_checkpoint": best}
    text = (ck / "trainer_state.json").read_text()
    (ck / "trainer_state.json").write_text(text[:len(text) // 2])  # torn inside the log history
    assert checkpoints.trainer_state_summary(ck)["complete"] is False
    compact = make_checkpoint(run, 400, compact=True)
    assert checkpoints.trainer_state_summary(compact) == {"complete": True, "global_step": 400, "epoch": 40.0,
                                                   "best_model_checkpoint": None}
    assert checkpoints.trainer_state_summary(run / "missing") is None


def checkpoint_run(tmp_path: Path, **config) -> Path:
    cfg = {"save_total_limit": 2, "metric_for_best_model": "accuracy", "load_best_model_at_end": False, **config}
    run = make_run(tmp_path, "20260101-000000-ffffff", config=cfg)
    rows = []
    for step, acc in ((10, 0.70), (20, 0.90), (30, 0.80)):
        rows.append(line(event="eval", step=step, epoch=step / 10, eval_accuracy=acc, eval_loss=1 - acc))
        rows.append(line(event="save", step=step, epoch=step / 10, checkpoint=f"checkpoint-{step}"))
    (run / rundir.METRICS).write_text("".join(rows))
    return run


def test_checkpoints_finished_run(tmp_path):
    run = checkpoint_run(tmp_path)
    make_checkpoint(run, 20, weights=b"x" * 3000)
    make_checkpoint(run, 30)
    cks = checkpoints.list_checkpoints(run, status={"state": "finished"})
    assert [c.step for c in cks] == [10, 20, 30]
    c10, c20, c30 = cks
    assert not c10.on_disk and not c10.kept and "save_total_limit" in c10.note
    assert c10.metrics["eval_accuracy"] == 0.70  # from metrics.jsonl even though the folder is gone
    assert c20.on_disk and c20.complete and c20.kept and c20.epoch == 2.0
    assert c20.size_bytes == sum(f.stat().st_size for f in c20.path.iterdir())
    assert c20.size_bytes > c30.size_bytes
    assert c20.metrics["eval_accuracy"] == 0.90  # metrics.jsonl wins over trainer_state's entry
    assert [c.best for c in cks] == [False, True, False]  # best accuracy among those on disk


def test_checkpoints_next_save_rotation_for_live_run(tmp_path):
    run = checkpoint_run(tmp_path)
    make_checkpoint(run, 20)
    make_checkpoint(run, 30)
    cks = {c.step: c for c in checkpoints.list_checkpoints(run, status={"state": "running"})}
    # with save_total_limit=2 the next save removes the oldest one on disk (even though it is the best)
    assert not cks[20].kept and "next save" in cks[20].note
    assert cks[30].kept


def test_checkpoints_load_best_keeps_the_best(tmp_path):
    run = checkpoint_run(tmp_path, load_best_model_at_end=True)
    best = str(run / rundir.CHECKPOINTS / "checkpoint-20")
    make_checkpoint(run, 20, best=best)
    make_checkpoint(run, 30, best=best)
    cks = {c.step: c for c in checkpoints.list_checkpoints(run, status={"state": "running"})}
    assert cks[20].best and cks[20].kept and "load_best_model_at_end" in cks[20].note
    # the trainer protects the newest and the best: with a limit of 2, the next save pushes out step 30
    assert not cks[30].kept and "next save" in cks[30].note


def test_checkpoints_lower_is_better_and_incomplete(tmp_path):
    run = checkpoint_run(tmp_path, metric_for_best_model="loss", save_total_limit=None)
    make_checkpoint(run, 20)
    torn = make_checkpoint(run, 30)
    (torn / "trainer_state.json").write_text('{"global_st')  # killed while writing
    cks = {c.step: c for c in checkpoints.list_checkpoints(run, status={"state": "failed"})}
    assert not cks[30].complete and "incomplete" in cks[30].note
    # eval_loss is 0.1 at step 20 and 0.2 at step 30: lower wins
    assert cks[20].best and not cks[30].best
    assert checkpoints.best_metric_key({"metric_for_best_model": "loss"}) == ("eval_loss", False)


# ------------------------------------------------------------------------------------------ predictions
def write_predictions(run: Path, preds: list[tuple[str, int, int, list[float]]], torn: bool = False) -> None:
    text = "".join(json.dumps({"index": i, "text": t, "label": y, "pred": p, "probs": pr}) + "\n"
                   for i, (t, y, p, pr) in enumerate(preds))
    (run / rundir.PREDICTIONS).write_text(text + ('{"index": 99, "te' if torn else ""))


def test_error_analysis_numbers(tmp_path):
    run = make_run(tmp_path, "20260101-000000-abcdef")
    write_predictions(run, [
        ("great fun", 1, 1, [0.1, 0.9]),                  # right, confidence 0.9
        ("a dull slog of a film", 0, 1, [0.1, 0.9]),      # wrong, confidence 0.9
        ("fine", 0, 0, [0.6, 0.4]),                       # right, confidence 0.6
        ("not bad at all really", 1, 0, [0.62, 0.38]),    # wrong, confidence 0.62
        ("lovely", 1, 1, [0.35, 0.65]),                   # right, confidence 0.65
    ], torn=True)
    df = predictions.predictions_frame(run)
    assert len(df) == 5  # the torn last line is not read
    assert predictions.confusion_matrix(df) == [[1, 1], [1, 2]]
    worst = predictions.confidently_wrong(df, 10)
    assert worst["text"].tolist() == ["a dull slog of a film", "not bad at all really"]
    positives = predictions.filter_predictions(df, true_label=1)["text"].tolist()
    assert positives == ["great fun", "not bad at all really", "lovely"]
    wrong_negatives = predictions.filter_predictions(df, pred_label=0, only_wrong=True)["text"].tolist()
    assert wrong_negatives == ["not bad at all really"]
    assert predictions.filter_predictions(df, min_words=2, max_words=5)["text"].tolist() == [
        "great fun", "not bad at all really"]  # "a dull slog of a film" has 6 words
    bins, ece = predictions.reliability(df, n_bins=5)
    counts = {(round(b["lo"], 2), round(b["hi"], 2)): b["count"] for b in bins}
    assert counts == {(0.5, 0.6): 0, (0.6, 0.7): 3, (0.7, 0.8): 0, (0.8, 0.9): 0, (0.9, 1.0): 2}
    b60 = bins[1]
    assert b60["confidence"] == pytest.approx((0.6 + 0.62 + 0.65) / 3) and b60["accuracy"] == pytest.approx(2 / 3)
    # ECE by hand: 3/5 * |2/3 - 0.6233| + 2/5 * |0.5 - 0.9|
    assert ece == pytest.approx(3 / 5 * abs(2 / 3 - 1.87 / 3) + 2 / 5 * 0.4)


def test_predictions_with_bad_rows(tmp_path):
    run = make_run(tmp_path, "20260101-000000-fedcba")
    (run / rundir.PREDICTIONS).write_text(
        line(index=0, text="ok", label=1, pred=1, probs=[0.2, 0.8])
        + line(index=1, text="no probs", label=1, pred=1)
        + line(index=2, text="bad label", label="x", pred=1, probs=[0.2, 0.8])
        + "garbage\n")
    df = predictions.predictions_frame(run)
    assert df["text"].tolist() == ["ok"]


def test_compare_configs():
    rows, differing = compare.compare_configs({"a": {"lr": 1e-4, "model": "x", "labels": ["n", "p"]},
                                            "b": {"lr": 5e-5, "model": "x", "labels": ["n", "p"], "extra": 1}})
    assert differing == {"lr", "extra"}
    assert [r["field"] for r in rows] == ["lr", "model", "labels", "extra"]
    assert rows[0]["a"] == 1e-4 and rows[0]["b"] == 5e-5

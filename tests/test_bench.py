"""Smoke tests of the benchmark scripts: each one runs end to end on tiny settings (tiny random BERT,
a handful of built-in reviews) as ``python -m bench.<name>``, prints one JSON object as its last line
with the keys it promises, writes its JSON file and its section of a markdown file (a temporary one:
BENCHMARKS.md is never touched here). No timing is asserted: the numbers depend on the machine."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")


def run_bench(name: str, args: list[str], tmp_path: Path, timeout: int = 600) -> dict:
    out_dir, md = tmp_path / "out", tmp_path / "BENCH.md"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *args, "--out-dir", str(out_dir), "--md", str(md)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert isinstance(result, dict)
    text = md.read_text(encoding="utf-8")
    assert f"<!-- bench:{name} -->" in text and f"<!-- /bench:{name} -->" in text
    assert f"python -m bench.{name}" in text  # the exact command is recorded
    saved = json.loads((out_dir / f"{name}.json").read_text(encoding="utf-8"))
    assert saved["benchmark"] == name and saved["environment"]["versions"]["torch"]
    return {"stdout": result, "saved": saved, "md": text}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny random BERT classifier with the bundled tokenizer (what Predictor loads)."""
    from lib.sources.models import load_tokenizer, tiny_bert
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_bert(["NEGATIVE", "POSITIVE"], seed=0).save_pretrained(folder)
    load_tokenizer("tiny-bert").save_pretrained(folder)
    return folder


def test_train_throughput(tmp_path):
    res = run_bench("train_throughput", ["--model", "tiny-bert", "--data", "demo", "--samples", "24",
                                         "--max-length", "48", "--variants", "tutorial,dynamic,project"], tmp_path)
    out = res["stdout"]
    for key in ("tutorial_samples_per_s", "project_samples_per_s", "ratio", "tutorial_padding_efficiency",
                "project_padding_efficiency"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["data"] == "demo" and out["samples"] == 24
    assert out["ratio"] == pytest.approx(out["project_samples_per_s"] / out["tutorial_samples_per_s"], rel=0.01)
    variants = res["saved"]["variants"]
    for v in variants.values():
        assert 0 < v["padding_efficiency"] <= 1 and v["real_tokens"] <= v["tokens_processed"]
        assert v["samples"] == 24 and v["steps"] == 3  # 24 reviews / batch 8
    # every variant saw the same reviews, so the same real tokens; the tutorial pads at least as much
    assert len({v["real_tokens"] for v in variants.values()}) == 1
    assert variants["tutorial"]["tokens_processed"] >= variants["dynamic"]["tokens_processed"]
    assert "dynamic padding alone" in res["md"]


def test_tokenization(tmp_path):
    res = run_bench("tokenization", ["--data", "demo", "--repeats", "1"], tmp_path)
    out = res["stdout"]
    assert out["data"] == "demo" and out["reviews"] > 100 and out["reviews_per_s"] > 0
    assert out["measured"] == "length_stats"
    assert all(m["same_lengths_as_first"] for m in res["saved"]["methods"].values())


def test_inference(tmp_path, tiny_model_dir):
    assert (tiny_model_dir / "tokenizer.json").is_file()  # the export and the CLI tokenize with it
    res = run_bench("inference", ["--model", str(tiny_model_dir), "--data", "demo", "--max-length", "64",
                                  "--latency-samples", "6", "--latency-block", "3", "--csv-samples", "12",
                                  "--csv-rounds", "1", "--lab-batch-sizes", "1,4", "--agreement-samples", "16",
                                  "--process-samples", "10", "--process-rounds", "1"], tmp_path)
    out, saved = res["stdout"], res["saved"]
    variants = {"pipeline", "torch_fp32", "torch_int8", "torch_bf16", "onnx_fp32", "onnx_int8", "lab"}
    assert saved["data"] == "demo" and out["lab_runtime"] == "onnx" and out["lab_precision"] == "int8"
    # the batch mode's predictor: bf16 on PyTorch where the CPU has AMX matrix units, else the lab's own
    amx = "amx_bf16" in saved["environment"]["cpu"]["flags"]
    assert (out["lab_table_precision"], out["lab_table_runtime"]) == (("bf16", "torch") if amx else ("int8", "onnx"))
    dumped = json.dumps(saved)
    for absolute in (str(ROOT), str(tiny_model_dir), str(tmp_path)):  # paths are recorded relative to the repo
        assert not re.search(r"(?<!\.\.)" + re.escape(absolute), dumped), absolute
    assert (tiny_model_dir / "onnx" / "onnx.json").is_file()  # exported where the predictor looks
    lat = saved["latency"]["variants"]
    assert set(lat) == variants and all(lat[v]["p50_ms"] > 0 for v in variants)
    csv = saved["csv"]["variants"]
    assert set(csv) == variants - {"lab"} | {"pipeline_b16", "lab_b1", "lab_b4", "lab_b16"}
    assert all(s["reviews_per_s"] > 0 for s in csv.values()) and saved["csv"]["lab"] == "lab_b16"
    assert set(saved["csv"]["lab_reviews_per_s_by_batch"]) == {"1", "4", "16"}  # JSON keys
    agreement = saved["agreement"]["variants"]
    assert set(agreement) == variants - {"pipeline"} | {"lab_table"}
    assert agreement["torch_fp32"]["agreement_with_fp32"] == 1.0
    assert all(0.0 <= a["agreement_with_fp32"] <= 1.0 for a in agreement.values())
    proc = saved["process"]
    assert proc["commands"]["lab"].startswith("python -m lib.predict --model ")
    assert proc["rows_with_label"] == {"pipeline": 10, "lab": 10, "lab_fp32": 10}  # one label per row
    assert proc["labels_agree_with_pipeline"]["lab_fp32"] == 1.0  # the CLI at full precision = pipeline()
    assert proc["max_abs_prob_diff_vs_pipeline"]["lab_fp32"] < 1e-4
    assert all(proc["median_s"][k] > 0 for k in ("pipeline", "lab", "lab_fp32"))
    ratios = out["ratios"]
    for key in ("single_p50_x_vs_pipeline", "single_p50_x_fp32_floor", "csv_x_vs_pipeline", "csv_x_vs_pipeline_b16",
                "csv_share_of_fp32_floor_rate", "whole_process_x_vs_pipeline"):
        assert ratios[key] > 0, key
    assert ratios["agreement_with_fp32"] == min(agreement[v]["agreement_with_fp32"] for v in ("lab", "lab_table"))
    assert set(out["targets"]) == {"single_p50", "csv_in_process", "whole_process", "agreement"}
    assert all(isinstance(met, bool) for met in out["targets"].values())
    assert all(isinstance(t["met"], bool) and t["value"] is not None for t in saved["targets"].values())
    assert saved["environment"]["cpu"]["logical_cpus"] and saved["other_processes"]
    assert "NOT met" in res["md"] or " met)" in res["md"]


def test_dashboard(tmp_path):
    res = run_bench("dashboard", ["--runs", "3", "--lines", "400", "--running", "1", "--eval-rows", "30",
                                  "--repeats", "1"], tmp_path)
    out = res["stdout"]
    for key in ("cold_s", "warm_s", "live_s", "all_checkpoints_s", "warm_table_only_s",
                "warm_recomputed_chart_series_s"):
        assert out[key] >= 0, key
    loaded = res["saved"]["loaded"]
    assert loaded["runs"] == 3 and loaded["prediction_rows"] == 30 and loaded["checkpoints"] == 0
    assert loaded["chart_points"] > 3 * 300  # loss points of every run were built
    assert res["saved"]["live_loaded"]["chart_points"] > loaded["chart_points"]  # the appended lines were read


def test_summary_lists_the_measured_targets(tmp_path):
    run_bench("dashboard", ["--runs", "2", "--lines", "200", "--running", "1", "--eval-rows", "10",
                            "--repeats", "1"], tmp_path)
    md = tmp_path / "BENCH.md"
    proc = subprocess.run([sys.executable, "-m", "bench.summary", "--out-dir", str(tmp_path / "out"), "--md", str(md)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rows": 1}
    text = md.read_text(encoding="utf-8")
    saved = json.loads((tmp_path / "out" / "dashboard.json").read_text(encoding="utf-8"))
    assert "<!-- bench:summary -->" in text and "Runs page load" in text
    assert f"cold {saved['cold_s']:.2f} s" in text  # the number comes from the dashboard's JSON
    assert "<!-- bench:dashboard -->" in text  # the other sections are left in place


def test_fastpath(tmp_path):
    res = run_bench("fastpath", ["--model", "tiny-bert", "--data", "demo", "--max-length", "48",
                                 "--cache-train-samples", "40", "--cache-eval-samples", "20",
                                 "--attention-lengths", "16", "--attention-repeats", "1", "--eval-samples", "16",
                                 "--parts", "cache,attention,eval_order,threads", "--thread-lengths", "16",
                                 "--thread-repeats", "2"], tmp_path)
    saved = res["saved"]
    assert saved["cache"]["same_tokens"] is True and saved["cache"]["reviews"] == {"train": 40, "test": 20}
    assert set(saved["attention"]["by_length"]["16"]["train_step_s"]) == {"sdpa", "eager"}
    order = saved["eval_order"]
    assert order["same_predictions"] is True and order["max_logit_difference"] < 1e-4
    assert order["length_sorted"]["padding_efficiency"] >= order["dataset_order"]["padding_efficiency"]
    assert set(saved["threads"]["by_length"]["16"]) >= {"1_threads_p50_ms"}


@pytest.mark.slow
def test_accuracy_runs_both_pipelines_and_reuses_results(tmp_path):
    args = ["--model", "tiny-bert", "--data", "demo", "--train-samples", "24", "--eval-samples", "16",
            "--epochs", "1", "--max-length", "48", "--seeds", "1,2"]
    res = run_bench("accuracy", args, tmp_path)
    out, saved = res["stdout"], res["saved"]
    assert set(saved["seeds"]) == {"1", "2"}
    for seed, row in saved["seeds"].items():
        for name in ("project", "tutorial"):
            for key in ("accuracy", "f1", "wall_s", "train_s", "eval_s"):
                assert row[name][key] is not None, (seed, name, key)
        assert 0 <= row["baseline"]["accuracy"] <= 1
    for name in ("project", "tutorial"):  # the summary is the mean over seeds
        mean = sum(saved["seeds"][s][name]["accuracy"] for s in ("1", "2")) / 2
        assert out[name]["accuracy"] == pytest.approx(mean, abs=1e-4) and out[name]["runs"] == 2
    assert len(out["accuracy_delta_points_per_seed"]) == 2
    assert out["accuracy_delta_points"] == pytest.approx(
        sum(out["accuracy_delta_points_per_seed"]) / 2, abs=0.02)
    assert {"within_1_point", "all_beat_baseline"} <= set(out)
    assert "Mean over 2 seed(s)" in res["md"]
    # a second invocation reuses the saved pipelines instead of training again
    again = run_bench("accuracy", args + ["--pipeline", "project"], tmp_path)
    assert again["stdout"]["project"] == out["project"] and again["stdout"]["tutorial"] == out["tutorial"]
    assert again["saved"]["seeds"] == saved["seeds"]


@pytest.mark.slow
def test_distill(tmp_path):
    res = run_bench("distill", ["--model", "tiny-bert", "--data", "demo", "--train-samples", "32",
                                "--eval-samples", "16", "--max-length", "48", "--student-layers", "1",
                                "--student-epochs", "1", "--speed-samples", "16", "--latency-samples", "3",
                                "--rounds", "1"], tmp_path)
    out = res["stdout"]
    for key in ("teacher_accuracy", "student_accuracy", "accuracy_kept", "throughput_ratio",
                "teacher_reviews_per_s", "student_reviews_per_s"):
        assert out[key] is not None and out[key] >= 0, key
    saved = res["saved"]
    assert saved["teacher"]["layers"] == 2 and saved["student"]["layers"] == 1
    assert saved["student"]["params"] < saved["teacher"]["params"]


@pytest.mark.slow
def test_memory_job(tmp_path):
    res = run_bench("memory", ["--skip-app", "--job-set", "model=tiny-bert", "--job-set", "max_train_samples=16",
                               "--job-set", "max_eval_samples=8", "--job-set", "num_train_epochs=1"], tmp_path)
    assert res["stdout"]["job_peak_rss_mib"] > 50  # python + torch alone take more than that
    job = res["saved"]["job"]
    assert job["exit_code"] == 0 and job["samples"] > 0
    assert job["peak_rss_mib"] >= job["peak_rss_main_process_mib"]


@pytest.mark.slow
@pytest.mark.e2e
def test_memory_app_in_a_real_browser(tmp_path):
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}")
    res = run_bench("memory", ["--skip-job", "--cycles", "2", "--predictions", "0", "--switches", "2"], tmp_path)
    app = res["saved"]["app"]
    assert [c["cycle"] for c in app["cycles"]] == [1, 2]
    assert all(c["rss_mib"] > 0 for c in app["cycles"])
    assert res["stdout"]["app_rss_mib_per_cycle"] == [c["rss_mib"] for c in app["cycles"]]

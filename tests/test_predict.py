"""python -m lib.predict as a real process: on a tiny run's export, on a checkpoint, on a copied
save_pretrained folder, batch CSV mode with formula injection neutralised, and bad input."""
from __future__ import annotations

import csv
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

from lib import predict  # noqa: E402


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.predict", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


class Boom:
    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir) -> Path:
    return tiny_run_dir


def check_lines(stdout: str, n: int) -> list[dict]:
    lines = [json.loads(x) for x in stdout.strip().splitlines()]
    assert len(lines) == n
    for row in lines:
        assert row["label"] in ("NEGATIVE", "POSITIVE")
        assert set(row["scores"]) == {"NEGATIVE", "POSITIVE"}
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(row["scores"], key=row["scores"].get)
    return lines


def test_texts_on_the_export(run_dir):
    texts = ["A warm, funny film.", "Dull <b>and</b> far too long 😴", "ok"]
    proc = cli("--model", str(run_dir / "model"), *texts)
    assert proc.returncode == 0, proc.stderr
    check_lines(proc.stdout, 3)
    assert proc.stderr.strip() == ""  # no progress bars or load reports: just the answers


def test_texts_on_a_checkpoint(run_dir):
    ck = sorted((run_dir / "checkpoints").iterdir())[0]
    proc = cli("--model", str(ck), "Loved every minute.", "great film " * 5000)
    assert proc.returncode == 0, proc.stderr
    lines = check_lines(proc.stdout, 2)
    assert lines[1].get("truncated") is True and "truncated" not in lines[0]


def test_csv_batch_mode_neutralises_formulas(run_dir, tmp_path):
    src = tmp_path / "reviews.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "review"])
        w.writerows([[1, '=HYPERLINK("http://evil","click")'], [2, "+1 great"], [3, "-terrible"],
                     [4, "@SUM(A1:A9)"], [5, "A lovely, gentle film."], [6, ""]])
    out = tmp_path / "pred.csv"
    copy = tmp_path / "any_save_pretrained_folder"  # not inside a run: any compatible folder works
    shutil.copytree(run_dir / "model", copy)
    proc = cli("--model", str(copy), "--csv", str(src), "--text-column", "review", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert [r["review"] for r in rows[:5]] == ["'=HYPERLINK(\"http://evil\",\"click\")", "'+1 great", "'-terrible",
                                               "'@SUM(A1:A9)", "A lovely, gentle film."]
    for r in rows[:5]:
        assert r["predicted_label"] in ("NEGATIVE", "POSITIVE")
        assert float(r["p_NEGATIVE"]) + float(r["p_POSITIVE"]) == pytest.approx(1.0, abs=1e-5)
        assert r["confidence"] == max(r["p_NEGATIVE"], r["p_POSITIVE"], key=float)
    assert rows[5]["predicted_label"] == "" and rows[5]["note"] == "empty text"
    for r in rows:  # no cell anywhere starts like a formula
        assert not any(v.startswith(("=", "+", "-", "@")) for v in r.values())


def test_bad_input_exits_2_with_a_short_message(run_dir, tmp_path):
    marker = tmp_path / "pwned"
    pickle_only = tmp_path / "pickle_only"
    pickle_only.mkdir()
    shutil.copy(run_dir / "model" / "config.json", pickle_only / "config.json")
    (pickle_only / "pytorch_model.bin").write_bytes(pickle.dumps(Boom(marker)))
    proc = cli("--model", str(pickle_only), "some text")
    assert proc.returncode == 2
    assert "pickle" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    proc = cli("--model", str(tmp_path / "missing"), "text")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to predict"),
    (["   "], "empty"),
    (["--csv", "in.csv"], "--out"),
    (["--out", "x.csv", "t"], "--csv"),
    (["--batch-size", "0", "t"], "batch-size"),
    (["--max-length", "4096", "t"], "max-length"),
])
def test_argument_checks(argv, message, tmp_path, capsys):
    assert predict.main(["--model", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_csv_errors(run_dir, tmp_path, capsys):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,review\n1,good,extra\n")
    assert predict.main(["--model", str(run_dir / "model"), "--csv", str(ragged), "--text-column", "review",
                         "--out", str(tmp_path / "o.csv")]) == 2
    assert "line 2" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text("id,review\n1,good\n")
    assert predict.main(["--model", str(run_dir / "model"), "--csv", str(good), "--text-column", "text",
                         "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "review" in err and "text" in err
    assert not (tmp_path / "o.csv").exists()


def test_precision_flag(run_dir):
    """--precision fp32 gives exactly the library's full-precision scores; int8 (the default) answers too."""
    from lib.serving.predictor import Predictor
    texts = ["A warm, funny film.", "Dull and far too long."]
    exact = Predictor(run_dir / "model").predict(texts)
    proc = cli("--model", str(run_dir / "model"), "--precision", "fp32", *texts)
    assert proc.returncode == 0, proc.stderr
    for row, ref in zip(check_lines(proc.stdout, 2), exact):
        assert row["scores"] == pytest.approx({k: round(v, 6) for k, v in ref["scores"].items()}, abs=2e-6)
    proc = cli("--model", str(run_dir / "model"), "--precision", "int8", *texts)
    assert proc.returncode == 0, proc.stderr
    check_lines(proc.stdout, 2)
    proc = cli("--model", str(run_dir / "model"), "--precision", "fp16", "x")
    assert proc.returncode == 2 and "invalid choice: 'fp16'" in proc.stderr


@pytest.mark.parametrize("amx", [True, False])
def test_a_big_table_runs_bf16_on_an_amx_cpu_and_a_small_one_int8(run_dir, tmp_path, capsys, monkeypatch, amx):
    """The CLI's fast mode: int8 on onnxruntime (no torch to import) unless the table has BF16_MIN_ROWS
    reviews and the CPU has AMX matrix units; --precision chooses for itself. The stderr line says which."""
    from lib.util import sysinfo
    monkeypatch.setattr(sysinfo, "_CPU_FLAGS", frozenset({"amx_bf16"} if amx else {"avx2"}))
    monkeypatch.delenv("LAB_PREDICT_PRECISION", raising=False)
    monkeypatch.setattr(predict, "BF16_MIN_ROWS", 3)
    model = str(run_dir / "model")

    def table(rows: int) -> str:
        path = tmp_path / f"t{rows}.csv"
        path.write_text("text\n" + "".join(f"review number {i} was fine\n" for i in range(rows)))
        out = tmp_path / f"o{rows}.csv"
        assert predict.main(["--model", model, "--csv", str(path), "--out", str(out)]) == 0
        with open(out, newline="") as fh:
            assert sum(1 for r in csv.DictReader(fh) if r["predicted_label"]) == rows
        return capsys.readouterr().err

    assert "(2 predicted, int8 on onnxruntime)" in table(2)
    assert ("(3 predicted, bf16 on PyTorch)" if amx else "(3 predicted, int8 on onnxruntime)") in table(3)
    out = tmp_path / "chosen.csv"
    assert predict.main(["--model", model, "--csv", str(tmp_path / "t3.csv"), "--out", str(out),
                         "--precision", "fp32"]) == 0
    assert "fp32 on PyTorch" in capsys.readouterr().err

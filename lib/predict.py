"""Predict sentiment from the command line with a trained model.

    python -m lib.predict --model runs/<id>/model "A warm, funny film." "Dull and far too long."
    python -m lib.predict --model runs/<id>/checkpoints/checkpoint-500 --csv reviews.csv \\
        --text-column review --out predictions.csv

``--model`` is a run's ``model/`` folder, one of its checkpoints, any folder saved with
``save_pretrained`` (safetensors weights), or ``bundled-minilm`` (the base model before fine-tuning).
With texts, one JSON object per text is printed: ``{"label": ..., "scores": {label: probability}}``.
With ``--csv`` (CSV, TSV, JSON Lines or Parquet) the predictions are added as columns and written to
``--out`` as CSV; text cells that a spreadsheet would run as a formula are prefixed with ``'``.
On the CPU predictions run in the fast mode unless ``--precision fp32`` asks for the exact
full-precision numbers the training job evaluated with. The fast mode is int8: a model with a current
ONNX export (``<run>/onnx``, written by the training job, or ``python -m lib.export --format onnx
--int8``) runs on onnxruntime without loading torch; ``--runtime torch`` keeps PyTorch. On a CPU with AMX
matrix units a table of at least ``BF16_MIN_ROWS`` reviews runs in bf16 on PyTorch instead (faster
there once the table pays for loading torch); ``--precision`` chooses for itself.

Text is prepared as the model was trained: a run's export records its ``max_length``, truncation side
and ``<br />`` cleaning (``lab_preprocessing.json``), a checkpoint uses its run's ``config.json``, and
``--max-length`` overrides the length. Probabilities are calibrated with the temperature the job
fitted on the eval split (``calibration.json``) unless ``--no-calibration`` asks for the raw ones; the
label is the same either way.

Exit codes: 0 done, 2 bad input (a short message on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lib.errors import DataError, LabError, os_error_message

EXIT_OK, EXIT_BAD_INPUT = 0, 2

# On an AMX CPU, bf16 on PyTorch predicts a table faster than int8 on onnxruntime, but a process must first
# import torch and transformers (about 2 s on 2 cores) where onnxruntime needs 0.2 s. Measured on 2 cores,
# the whole bf16 process caught up with the int8 one at about BF16_MIN_ROWS reviews (BENCHMARKS.md,
# "Predictions"); below that the CLI's fast mode stays int8.
BF16_MIN_ROWS = 4000


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own exit code is 2 as well; keep the message short
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m lib.predict", description="Predict the sentiment of reviews with a trained model.")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a run's model/ folder, a checkpoint-N folder, a save_pretrained folder, or bundled-minilm")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="reviews to classify (one JSON line is printed per text)")
    p.add_argument("--csv", metavar="IN", help="a CSV/TSV/JSONL/Parquet file of reviews (batch mode)")
    p.add_argument("--text-column", default="text", metavar="COL", help="column with the reviews (default: text)")
    p.add_argument("--out", metavar="OUT", help="where to write the predictions CSV (batch mode)")
    p.add_argument("--batch-size", type=int, default=16, help="reviews per forward pass (default 16)")
    p.add_argument("--max-length", type=int, default=None, help="longest input in tokens (default: the max_length "
                   "the model was trained with; for other models their own limit, at most 512)")
    p.add_argument("--no-calibration", action="store_true",
                   help="raw probabilities instead of the calibrated ones (the label is the same)")
    p.add_argument("--runtime", choices=["auto", "onnx", "torch"], default=None,
                   help="auto: onnxruntime for int8 when the model has a current ONNX export (the training job "
                        "writes one into <run>/onnx), else PyTorch; onnx: require the export; torch: PyTorch "
                        "(default: auto, or $LAB_PREDICT_RUNTIME)")
    p.add_argument("--precision", choices=["int8", "bf16", "fp32"], default=None,
                   help="int8: fast CPU mode (dynamic quantization, about 2x faster, agrees with full precision on "
                        "~99%% of reviews); bf16: bfloat16 on PyTorch, fast on CPUs with AMX matrix units only; "
                        "fp32: exactly the training job's numbers (default: $LAB_PREDICT_PRECISION, else int8, "
                        f"or bf16 for a table of {BF16_MIN_ROWS:,}+ reviews on an AMX CPU)")
    return p


def _check_args(args) -> None:
    if args.csv and args.texts:
        raise DataError("give either texts or --csv, not both")
    if not args.csv and not args.texts:
        raise DataError("nothing to predict: give one or more texts, or --csv FILE --out FILE")
    if args.csv and not args.out:
        raise DataError("--csv needs --out (where to write the predictions CSV)")
    if args.out and not args.csv:
        raise DataError("--out is for batch mode: add --csv FILE")
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.max_length is not None and not 8 <= args.max_length <= 512:
        raise DataError(f"--max-length must be between 8 and 512, got {args.max_length}")
    for i, text in enumerate(args.texts, 1):
        if not text.strip():
            raise DataError(f"text {i} is empty: give the review's words")
    if args.out:
        out = Path(args.out)
        if out.exists() and out.is_dir():
            raise DataError(f"--out {args.out} is a folder; give a file name such as predictions.csv")
        if not out.resolve().parent.is_dir():
            raise DataError(f"the folder for --out {args.out} does not exist")
        if args.csv and out.resolve() == Path(args.csv).resolve():
            raise DataError("--out must not be the input file")


def _quiet_transformers() -> None:
    """No weight-loading progress bars or load reports on the terminal: only the predictions. Set through
    the environment, which transformers reads when (and only if) it is imported: with an ONNX export
    neither transformers nor torch is loaded at all."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        _check_args(args)
        _quiet_transformers()
        from lib.serving.batch import predict_frame, read_table_file, safe_csv_bytes
        from lib.serving.predictor import (
            BASE_MODEL,
            Predictor,
            check_model_folder,
            default_precision,
            default_runtime,
        )
        model = args.model if args.model == BASE_MODEL else str(check_model_folder(args.model))
        table = read_table_file(args.csv, args.text_column) if args.csv else None
        precision = args.precision or default_precision(batch=table is not None and len(table) >= BF16_MIN_ROWS)
        predictor = Predictor(model, max_length=args.max_length, precision=precision,
                              calibrated=not args.no_calibration, runtime=args.runtime or default_runtime())
        if predictor.runtime_note:
            print(f"note: {predictor.runtime_note}", file=sys.stderr)
        if table is not None:
            result = predict_frame(predictor, table, args.text_column, batch_size=args.batch_size)
            tmp = Path(args.out).with_name(f".{Path(args.out).name}.tmp{os.getpid()}")
            tmp.write_bytes(safe_csv_bytes(result))
            os.replace(tmp, args.out)
            done = sum(1 for v in result["predicted_label"] if v)
            engine = "onnxruntime" if predictor.runtime == "onnx" else "PyTorch"
            print(f"wrote {len(result)} rows ({done} predicted, {predictor.precision} on {engine}) to {args.out}",
                  file=sys.stderr)
        else:
            for r in predictor.predict(args.texts, batch_size=args.batch_size):
                row = {"label": r["label"], "scores": {k: round(v, 6) for k, v in r["scores"].items()}}
                if r["truncated"]:
                    row["truncated"] = True
                print(json.dumps(row, ensure_ascii=False), flush=True)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

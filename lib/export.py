"""Export a trained model: to ONNX for fast CPU predictions, or to the Hugging Face Hub.

    python -m lib.export --model runs/<id>/model --format onnx --int8     # into runs/<id>/onnx
    python -m lib.export --model runs/<id>/model --format onnx --out model-onnx --int8
    python -m lib.export --model runs/<id>/model --format hub --repo-id your-name/imdb-sentiment

``--model`` is a folder saved with ``save_pretrained`` (a run's ``model/``, a ``checkpoint-N`` folder);
weights load from safetensors only.

``--format onnx`` writes ``model.onnx`` (plus ``model.int8.onnx`` with ``--int8``: 8-bit weights, faster
on the CPU, nearly always the same label), the tokenizer and ``onnx.json`` into ``--out`` (default: where
the app and ``python -m lib.predict`` look for it, ``<run>/onnx`` for a run's ``model/`` and
``<folder>/onnx`` for other folders; they use it while it matches the weights), then checks
the export against the PyTorch model on a few sample reviews and prints the largest logit difference.
It needs onnxruntime and onnx (both in requirements.txt).

``--format hub`` uploads the model, its tokenizer and its model card with ``push_to_hub``; it needs a
token in ``HF_TOKEN`` and a network that reaches the Hub. Without either it stops at once and says so.

Exit codes: 0 done, 2 bad input (a short message on stderr), 3 not possible here (a missing package,
no token, the Hub out of reach).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lib.errors import HubUnavailableError, LabError, ModelError, os_error_message

EXIT_OK, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 2, 3
FORMATS = ("onnx", "hub")
HUB_PROBE_TIMEOUT_S = 3.0


class Unavailable(LabError):
    """What the export needs is not here (a package, a token, the network)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m lib.export", description="Export a trained sentiment model to ONNX or the Hub.")
    p.add_argument("--model", required=True, metavar="DIR", help="a folder saved with save_pretrained (a run's model/)")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx: a folder onnxruntime runs; hub: upload")
    p.add_argument("--out", metavar="OUT", help="(onnx) the folder to write; replaced when it holds an earlier "
                   "export (default: <run>/onnx for a run's model/, else DIR/onnx: where predictions look for it)")
    p.add_argument("--int8", action="store_true", help="(onnx) also write model.int8.onnx, with 8-bit weights")
    p.add_argument("--opset", type=int, default=None, help="(onnx) ONNX opset (default 17)")
    p.add_argument("--repo-id", metavar="NAME", help="(hub) the repository, e.g. your-name/imdb-sentiment")
    p.add_argument("--private", action="store_true", help="(hub) create the repository as private")
    return p


def _check_model(path: str) -> Path:
    from lib.sources.models import check_safe_folder
    p = Path(path).expanduser()
    if "\x00" in path:
        raise ModelError("the model path contains a NUL byte; remove it")
    if not p.exists():
        raise ModelError(f"the model folder {path} does not exist: give a run's model/ folder or another folder "
                         "saved with save_pretrained")
    if not p.is_dir():
        raise ModelError(f"{path} is not a folder: give a folder saved with save_pretrained")
    check_safe_folder(p)
    return p


def _quiet_transformers() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def export_to_onnx(args) -> int:
    from lib.job import onnx_export
    if args.repo_id:
        raise ModelError("--repo-id is for --format hub")
    model = _check_model(args.model)
    args.out = args.out or str(onnx_export.export_dir_for(model))
    if not onnx_export.onnxruntime_available():
        raise Unavailable(f"ONNX export needs onnxruntime, which is not installed: {onnx_export.INSTALL_HINT}")
    if args.opset is not None and not 14 <= args.opset <= 21:
        raise ModelError(f"--opset must be between 14 and 21, got {args.opset}")
    _quiet_transformers()
    out = onnx_export.export_onnx(model, args.out, quantize=args.int8,
                                  opset=args.opset or onnx_export.DEFAULT_OPSET)
    meta = onnx_export.read_meta(out)
    checks = meta.get("check") or {}
    for precision, name in (meta.get("files") or {}).items():
        c = checks.get(precision) or {}
        print(f"{precision}: {out / name} ({(out / name).stat().st_size / 2**20:.1f} MiB); max abs logit difference "
              f"vs PyTorch {c.get('max_abs_logit_diff', float('nan')):.2e}, same label on {c.get('labels_agree')}/"
              f"{c.get('texts')} sample reviews", file=sys.stderr)
    fused = (meta.get("optimizer") or {}).get("fused")
    if fused:
        print("fused operators: " + ", ".join(f"{k} {v}" for k, v in fused.items()), file=sys.stderr)
    print(json.dumps({"out": str(out), "files": meta.get("files"),
                      "max_abs_logit_diff": {k: v.get("max_abs_logit_diff") for k, v in checks.items()}}))
    return EXIT_OK


def export_to_hub(args) -> int:
    from lib.sources import hub
    from lib.sources.paths import looks_like_hub_id
    if not args.repo_id:
        raise ModelError("--format hub needs --repo-id NAME (for example your-name/imdb-sentiment)")
    if args.out or args.int8:
        raise ModelError("--out and --int8 are for --format onnx")
    if not looks_like_hub_id(args.repo_id) or "/" not in args.repo_id:
        raise ModelError(f"--repo-id {args.repo_id!r} is not a Hub repository name like your-name/imdb-sentiment")
    model_dir = _check_model(args.model)
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise Unavailable("uploading to the Hub needs a token: set HF_TOKEN to a write token from your Hugging Face "
                          "account settings")
    ok, reason = hub.hub_reachable(HUB_PROBE_TIMEOUT_S)
    if not ok:
        raise HubUnavailableError(f"the Hugging Face Hub is not reachable from this machine ({reason}), so nothing "
                                  "was uploaded. The model folder can be copied and uploaded from a machine with a "
                                  "network.")
    _quiet_transformers()
    from lib.sources.models import load_model, load_tokenizer
    model = load_model(str(model_dir), None)
    tokenizer = load_tokenizer(str(model_dir))
    message = "Upload from BERT Sentiment Lab"
    try:
        model.push_to_hub(args.repo_id, token=token, private=args.private, commit_message=message)
        tokenizer.push_to_hub(args.repo_id, token=token, private=args.private, commit_message=message)
        card = model_dir / "README.md"
        if card.is_file():
            from huggingface_hub import HfApi
            HfApi(token=token).upload_file(path_or_fileobj=str(card), path_in_repo="README.md", repo_id=args.repo_id,
                                           commit_message=message)
    except Exception as exc:  # noqa: BLE001 - network, permissions, a taken name: a message, not a traceback
        raise Unavailable(f"the upload to {args.repo_id} failed: {str(exc)[:300]}") from None
    print(f"uploaded {model_dir} to https://huggingface.co/{args.repo_id}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return export_to_onnx(args) if args.format == "onnx" else export_to_hub(args)
    except (Unavailable, HubUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

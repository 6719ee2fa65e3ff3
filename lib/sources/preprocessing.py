"""How a review's text is prepared before the model reads it: the same steps in training and in every
prediction.

The training job cleans each review with :func:`clean_text` (``<br />`` tags become line breaks when
``strip_html`` is on) and tokenizes it at the run's ``max_length``, cutting long reviews on the
tokenizer's truncation side. The export (a run's ``model/``) records exactly that in
``lab_preprocessing.json`` beside the weights, and :func:`preprocessing_for` reads it back for a model
folder, so the command line, the tryout, the batch mode and the teacher/student view predict on text
prepared the way the model was trained on. A checkpoint folder of a run (``checkpoints/checkpoint-N``)
uses the run's ``config.json``. A folder with neither (an older run's export, the bundled base model,
any ``save_pretrained`` folder) gets ``None``: predictions then read the raw text at the model's own
token limit, as before.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

PREPROCESSING_FILE = "lab_preprocessing.json"
FORMAT_VERSION = 1

_BR_RE = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)


def strip_html_breaks(text: str) -> str:
    """``<br />`` (also ``<br>``, ``<BR/>``) tags become line breaks; other text is left as it is."""
    return _BR_RE.sub("\n", text) if "<" in text else text


def clean_text(text: str, strip_html: bool = True) -> str:
    """A review as the training job feeds it to the tokenizer: with ``strip_html``, ``<br />`` tags
    become line breaks (the one cleaning rule of the lab, shared by training and prediction)."""
    return strip_html_breaks(text) if strip_html else text


def contract(*, max_length: int, strip_html: bool, label_names: list[str], truncation_side: str = "right",
             padding: str | None = None, source: str = "export") -> dict:
    """The record of how text was prepared for training (what ``lab_preprocessing.json`` holds)."""
    return {"format": FORMAT_VERSION, "max_length": int(max_length), "truncation": True,
            "truncation_side": str(truncation_side or "right"), "strip_html": bool(strip_html),
            "cleaning": (["<br /> tags become line breaks"] if strip_html else []),
            "label_names": [str(n) for n in label_names], "padding_in_training": padding, "source": source}


def write_preprocessing(folder: str | os.PathLike, record: dict) -> Path:
    path = Path(folder) / PREPROCESSING_FILE
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _read_json(path: Path) -> Any:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1_000_000:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _valid(record: Any) -> dict | None:
    if not isinstance(record, dict):
        return None
    ml = record.get("max_length")
    if isinstance(ml, bool) or not isinstance(ml, int) or not 8 <= ml <= 100_000:
        return None
    side = record.get("truncation_side") if record.get("truncation_side") in ("left", "right") else "right"
    names = record.get("label_names")
    names = [str(n) for n in names] if isinstance(names, list) and len(names) >= 2 else None
    return {**record, "max_length": ml, "strip_html": bool(record.get("strip_html", False)),
            "truncation_side": side, "label_names": names}


def preprocessing_for(folder: str | os.PathLike) -> dict | None:
    """How text was prepared for the model in ``folder``: its ``lab_preprocessing.json``; for a run's
    checkpoint folder (``<run>/checkpoints/checkpoint-N``) the run's ``config.json``; else ``None``
    (keep the raw text and the model's own limit)."""
    p = Path(folder)
    record = _valid(_read_json(p / PREPROCESSING_FILE))
    if record is not None:
        return record
    if p.name.startswith("checkpoint-") and p.parent.name == "checkpoints":
        cfg = _read_json(p.parent.parent / "config.json")
        if isinstance(cfg, dict) and isinstance(cfg.get("max_length"), int):
            tok = _read_json(p / "tokenizer_config.json")
            side = tok.get("truncation_side") if isinstance(tok, dict) else None
            names = cfg.get("label_names") if isinstance(cfg.get("label_names"), list) else []
            return _valid(contract(max_length=cfg["max_length"], strip_html=bool(cfg.get("strip_html", True)),
                                   label_names=names, truncation_side=side or "right",
                                   padding=cfg.get("padding"), source="run config.json"))
    return None


def card_lines(record: dict) -> list[str]:
    """The model card's section on preparing text, for ``pipeline()`` users."""
    clean = ("replace every `<br />` tag (also `<br>`, `<BR/>`) with a line break (`\\n`)"
             if record.get("strip_html") else "no cleaning: the raw text")
    return [
        "## Preparing text (as in training)", "",
        f"- cleaning: {clean}",
        f"- max_length {record['max_length']} tokens, longer reviews cut on the {record['truncation_side']}",
        f"- recorded in `{PREPROCESSING_FILE}` beside the weights; `python -m lib.predict` and the app apply it",
        "",
        "With `pipeline()`, do the same:", "", "```python", "import re",
        "from transformers import pipeline",
        "clf = pipeline(\"text-classification\", model=\"path/to/this/folder\")",
        ("clean = lambda t: re.sub(r\"<\\s*br\\s*/?\\s*>\", \"\\n\", t, flags=re.I)" if record.get("strip_html")
         else "clean = lambda t: t"),
        f"clf(clean(\"A warm, funny and beautifully acted film.<br /><br />Loved it.\"), truncation=True, "
        f"max_length={record['max_length']})",
        "```", ""]

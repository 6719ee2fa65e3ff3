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


def head_for(max_length: int, head_tokens: int | None) -> int:
    """The head of head+tail truncation that fits ``max_length`` (at least one end token stays)."""
    return max(0, min(int(head_tokens or 0), int(max_length) - 3))


def cut_head_tail(values: list, max_length: int, head_tokens: int) -> list:
    """One tokenized review (ids, mask, offsets...: one entry per token, the special tokens first and
    last) cut to ``max_length`` by head+tail truncation: the first special token, the next
    ``head_tokens`` tokens, and the last ``max_length - 1 - head_tokens`` (ending with the closing special
    token). Shorter reviews are returned as they are."""
    n = len(values)
    if n <= max_length:
        return list(values)
    head = head_for(max_length, head_tokens)
    return list(values[:1 + head]) + list(values[n - (max_length - 1 - head):])


def contract(*, max_length: int, strip_html: bool, label_names: list[str], truncation_side: str = "right",
             padding: str | None = None, source: str = "export", head_tokens: int = 0) -> dict:
    """The record of how text was prepared for training (what ``lab_preprocessing.json`` holds).
    ``head_tokens`` > 0: head+tail truncation (the first ``head_tokens`` tokens and the end of long reviews)."""
    head = head_for(max_length, head_tokens)
    return {"format": FORMAT_VERSION, "max_length": int(max_length), "truncation": True,
            "truncation_side": str(truncation_side or "right"), "head_tokens": head,
            "strip_html": bool(strip_html),
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
    head = record.get("head_tokens")
    head = head_for(ml, head) if isinstance(head, int) and not isinstance(head, bool) and head > 0 else 0
    return {**record, "max_length": ml, "strip_html": bool(record.get("strip_html", False)),
            "truncation_side": side, "label_names": names, "head_tokens": head}


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
                                   padding=cfg.get("padding"), source="run config.json",
                                   head_tokens=cfg.get("head_tokens") if isinstance(cfg.get("head_tokens"), int)
                                   else 0))
    return None


def card_lines(record: dict) -> list[str]:
    """The model card's section on preparing text, for ``pipeline()`` users."""
    clean = ("replace every `<br />` tag (also `<br>`, `<BR/>`) with a line break (`\\n`)"
             if record.get("strip_html") else "no cleaning: the raw text")
    ml, head = record["max_length"], int(record.get("head_tokens") or 0)
    clean_line = ("clean = lambda t: re.sub(r\"<\\s*br\\s*/?\\s*>\", \"\\n\", t, flags=re.I)"
                  if record.get("strip_html") else "clean = lambda t: t")
    if head:
        cut = (f"- max_length {ml} tokens; a longer review keeps its first {head} tokens and its last "
               f"{ml - 2 - head} (head+tail truncation: the verdict usually comes at the end)")
    else:
        cut = f"- max_length {ml} tokens, longer reviews cut on the {record['truncation_side']}"
    lines = ["## Preparing text (as in training)", "", f"- cleaning: {clean}", cut,
             f"- recorded in `{PREPROCESSING_FILE}` beside the weights; `python -m lib.predict` and the app apply it",
             ""]
    if not head:
        return lines + [
            "With `pipeline()`, do the same:", "", "```python", "import re",
            "from transformers import pipeline",
            "clf = pipeline(\"text-classification\", model=\"path/to/this/folder\")", clean_line,
            f"clf(clean(\"A warm, funny and beautifully acted film.<br /><br />Loved it.\"), truncation=True, "
            f"max_length={ml})",
            "```", ""]
    return lines + [
        f"`pipeline()` can only keep a review's beginning (`truncation=True, max_length={ml}`), which reads long "
        "reviews differently from training and scores lower on them. To do what training did:", "",
        "```python", "import re", "import torch",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "folder = \"path/to/this/folder\"",
        "tok = AutoTokenizer.from_pretrained(folder)",
        "model = AutoModelForSequenceClassification.from_pretrained(folder).eval()", clean_line,
        "ids = tok(clean(\"A warm, funny and beautifully acted film.<br /><br />Loved it.\"))[\"input_ids\"]",
        f"if len(ids) > {ml}:",
        f"    ids = ids[:{1 + head}] + ids[len(ids) - {ml - 1 - head}:]   # [CLS] + first {head} ... last "
        f"{ml - 2 - head} + [SEP]",
        "with torch.no_grad():",
        "    probs = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0]",
        "print({model.config.id2label[i]: float(p) for i, p in enumerate(probs)})",
        "```", ""]

"""The built-in movie reviews (``data/demo_reviews/*.jsonl``): reading the files, and what is known about
them, without importing ``datasets`` (the Home page shows these facts).

Every line is ``{"text": ..., "label": 0 or 1, "split": "train" or "test"}``. All reviews were written
for this project; none is taken from a corpus. The eval split holds reviews of other films, in other
words and styles than the training reviews, plus a minimally revised copy of each with the opposite
verdict (``*_revised.jsonl``: counterfactual revisions, Kaushik et al. 2020), which a model that counts
words rather than reads gets wrong.
"""
from __future__ import annotations

import json
from pathlib import Path

from lib.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / "data" / "demo_reviews"
DEMO_SPLITS = ("train", "test")
REVISED_SUFFIX = "_revised.jsonl"

# What `python -m bench.demo --seeds 42,43,44` measured for the demo preset (BENCHMARKS.md, "The demo
# preset"): its model, served by `python -m lib.predict`, on a seeded 1,000 of the real IMDb test
# reviews (never trained on), against a TF-IDF baseline trained on the same built-in reviews.
DEMO_MEASURED = {"imdb_accuracy": 0.809, "imdb_tfidf_accuracy": 0.702, "imdb_reviews": 1000, "seeds": 3,
                 "train_minutes": 2.9}


def _demo_files() -> list[Path]:
    return sorted(DEMO_DIR.glob("*.jsonl"), key=lambda p: p.name)


def _read_demo() -> tuple[dict[str, dict[str, list]], list[Path], int]:
    files = _demo_files()
    if not files:
        raise DataError(f"The built-in demo reviews are missing: no *.jsonl files in {DEMO_DIR}. Reinstall the "
                        "app, or choose a local file or Hub data set.")
    splits: dict[str, dict[str, list]] = {s: {"text": [], "label": []} for s in DEMO_SPLITS}
    skipped = 0
    for path in files:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"The built-in demo file {path.name} is not UTF-8 text; reinstall the app.") from None
        lines = text.split("\n")
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            torn_tail = lineno == len(lines)  # last piece with no newline yet: a writer may still be busy
            try:
                rec = json.loads(line)
                ok = (isinstance(rec, dict) and isinstance(rec.get("text"), str)
                      and rec.get("label") in (0, 1) and not isinstance(rec.get("label"), bool)
                      and rec.get("split") in DEMO_SPLITS)
            except ValueError:
                rec, ok = None, False
            if not ok:
                if torn_tail:
                    skipped += 1
                    continue
                raise DataError(f"The built-in demo file {path.name}, line {lineno}, is not a review record "
                                '{"text": ..., "label": 0 or 1, "split": "train" or "test"}; reinstall the app.')
            splits[rec["split"]]["text"].append(rec["text"])
            splits[rec["split"]]["label"].append(int(rec["label"]))
    return splits, files, skipped


def demo_texts(split: str = "train") -> list[str]:
    """The built-in reviews of one split, in file order (DataError when the files are missing or damaged)."""
    if split not in DEMO_SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(DEMO_SPLITS)}")
    return list(_read_demo()[0][split]["text"])


def demo_facts() -> dict:
    """How many built-in reviews there are per split (and how many eval reviews are revisions), with
    the measured accuracy on real reviews (:data:`DEMO_MEASURED`)."""
    splits, files, _ = _read_demo()
    revised = {"train": 0, "test": 0}
    for path in files:
        if path.name.endswith(REVISED_SUFFIX):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    split = json.loads(line).get("split")
                    revised[split] = revised.get(split, 0) + 1
    return {"train": len(splits["train"]["text"]), "test": len(splits["test"]["text"]),
            "train_revised": revised["train"], "test_revised": revised["test"], "files": len(files), **DEMO_MEASURED}


def demo_statement(facts: dict | None = None) -> str:
    """What the demo model is trained on and how it does on real reviews (Markdown, for the Home page
    and the model card of a run on the built-in reviews)."""
    f = facts or demo_facts()
    text = (f"The built-in data is {f['train'] + f['test']:,} movie reviews written for this project — long "
            "and short, plot retellings with the verdict at the end, praise with complaints, faint praise, "
            f"sarcasm, ratings in words and numbers — {f['train']:,} for training"
            + (f" (among them {f['train_revised']} minimal revisions of others with the opposite verdict, so "
               "that the model learns to read the verdict rather than count words)" if f.get("train_revised") else "")
            + f" and {f['test']:,} for evaluation. The evaluation reviews are of other films, in other words and "
            "styles")
    if f.get("test_revised"):
        text += (f", and {f['test_revised']} of them are minimal revisions of the others with the opposite "
                 "verdict (a model that counts words instead of reading gets those wrong)")
    text += "."
    if f.get("imdb_accuracy") is not None:
        from lib.config import PRESETS
        n = PRESETS["demo"].get("max_train_samples")
        part = f"a seeded {n:,} of the training reviews" if n and n < f["train"] else "the training reviews"
        text += (f" The demo preset trains the bundled MiniLM on {part} in about "
                 f"{f['train_minutes']:.0f} minutes on 2 CPU cores; its model gets **{f['imdb_accuracy']:.1%}** of "
                 f"{f['imdb_reviews']:,} real IMDb test reviews right (mean of {f['seeds']} training seeds; it "
                 "never sees IMDb in training)")
        if f.get("imdb_tfidf_accuracy") is not None:
            text += (f", where a TF-IDF baseline trained on the built-in training reviews gets "
                     f"{f['imdb_tfidf_accuracy']:.1%}")
        text += f". Expect a wrong answer on about {1 - f['imdb_accuracy']:.0%} of real reviews."
    return text

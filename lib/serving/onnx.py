"""The fast CPU runtime for ONNX exports (onnxruntime): what the predictor runs when a model has one.

An export (:mod:`lib.job.onnx_export`: ``model.onnx``, ``model.int8.onnx``, ``onnx.json``, the
tokenizer) is found with :func:`serving_export`. :class:`OnnxClassifier` runs it on the CPU and returns
logits for already tokenized reviews: int64 ``input_ids`` / ``attention_mask`` (/ ``token_type_ids``)
of shape (batch, sequence). :class:`FastTokenizer` tokenizes with the export's ``tokenizer.json``
through the ``tokenizers`` library alone (the same ids as the transformers tokenizer), so a prediction
process needs neither torch nor transformers.

Safety: graphs whose weights point outside their own folder are refused.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import ModelError
from lib.job.onnx_export import (
    META_FILE,
    ONNX_FILE,
    UNFUSED_OPTIMIZERS,
    _require_runtime,
    export_dir_for,
    is_current,
    onnxruntime_available,
    read_meta,
)


def serving_export(model_dir: str | os.PathLike, precision: str) -> Path | None:
    """The ONNX export to serve ``model_dir`` with at ``precision`` (``int8``/``fp32``), or None: it must
    exist where :func:`export_dir_for` says, hold a graph of that precision, have been made from the
    weights now in ``model_dir`` (:func:`is_current`), and onnxruntime must be installed."""
    folder = export_dir_for(model_dir)
    try:
        meta = read_meta(folder)
        name = (meta.get("files") or {}).get(precision)
        if not isinstance(name, str) or not (folder / Path(name).name).is_file():
            return None
        if not (folder / "tokenizer.json").is_file() or not is_current(folder, model_dir):
            return None
    except OSError:
        return None
    return folder if onnxruntime_available() else None


def _check_external_data(path: Path) -> None:
    """Refuse a graph whose weights live in files outside its own folder."""
    # A tensor stored outside the graph names its file under the key "location": a graph without those
    # bytes has none, and is not parsed here (importing the onnx package alone took 0.7 s, a sixth of a
    # whole 500-review lib.predict process).
    import mmap
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data.find(b"location") < 0:
                return
    except (OSError, ValueError):   # unreadable or empty: onnxruntime's own error says so
        return
    try:
        import onnx
    except Exception:  # noqa: BLE001 - without the onnx package the check is skipped; onnxruntime still loads
        return
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path} is not a readable ONNX model: {str(exc)[:200]}") from None
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (path.parent / location).resolve()
            if os.path.isabs(location) or path.parent.resolve() not in target.parents:
                raise ModelError(f"{path} reads weights from {location!r}, outside its own folder: refused")


class OnnxClassifier:
    """An exported sentiment model on onnxruntime's CPU provider.

    ``OnnxClassifier(folder)`` runs ``model.onnx``; ``precision="int8"`` runs ``model.int8.onnx``; a path
    to a ``.onnx`` file runs that file. ``threads``: intra-op threads (default: one per CPU core); a call
    may ask for another count (``logits(..., threads=1)``), which gets its own session, created once.
    ``spin``: whether idle worker threads busy-wait for the next operator. Off by default: on a machine
    shared with a training job (or other people's work) spinning threads take cores from it and, when
    every core is busy, made a forward pass several times slower. With idle cores it pays: without it two
    threads were no faster than one for a single review (8.8 vs 8.9 ms here), with it 6.7 ms. The
    predictor turns it on and asks for several threads only while no other process keeps the cores
    busy (one thread otherwise, where there is nothing to spin). ``logits`` is safe to call from several
    threads at once.
    """

    def __init__(self, onnx_dir_or_file: str | os.PathLike, threads: int | None = None, *,
                 precision: str | None = None, spin: bool = False):
        self._ort = _require_runtime()
        p = Path(onnx_dir_or_file)
        if not p.exists():
            raise ModelError(f"the ONNX model {p} does not exist: export one with python -m lib.export --model DIR "
                             "--format onnx --out OUT")
        if p.is_dir():
            self.meta = read_meta(p)
            files = self.meta.get("files") or {"fp32": ONNX_FILE}
            want = precision or "fp32"
            name = files.get(want)
            if name is None:
                hint = " (export with --int8)" if want == "int8" else ""
                raise ModelError(f"the ONNX export in {p} has no {want} model{hint}; it has: {', '.join(files)}")
            path = p / Path(name).name
        else:
            self.meta = read_meta(p.parent) if p.parent.joinpath(META_FILE).is_file() else {}
            path = p
            want = precision or next((k for k, v in (self.meta.get("files") or {}).items() if v == p.name),
                                     "int8" if p.name.endswith(".int8.onnx") else "fp32")
        if not path.is_file() or path.suffix != ".onnx":
            raise ModelError(f"{path} is not an ONNX model file (.onnx): export one with python -m lib.export")
        _check_external_data(path)
        self.path = path
        self.precision = want
        self.spin = bool(spin)
        self.threads = (os.cpu_count() or 1) if threads is None else self._valid_threads(threads)
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        session = self._session(self.threads)
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_name = session.get_outputs()[0].name
        self.label_names: list[str] = list(self.meta.get("label_names") or [])
        self.max_length: int | None = self.meta.get("max_length")

    @staticmethod
    def _valid_threads(threads: Any) -> int:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ModelError(f"threads must be a positive integer, got {threads!r}")
        return threads

    def _session(self, threads: int):
        with self._lock:
            session = self._sessions.get(threads)
            if session is not None:
                return session
            ort = self._ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.log_severity_level = 3
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
            try:
                session = ort.InferenceSession(str(self.path), sess_options=so, providers=["CPUExecutionProvider"],
                                               disabled_optimizers=UNFUSED_OPTIMIZERS)
            except Exception as exc:  # noqa: BLE001 - a corrupt or foreign graph: a message
                raise ModelError(f"onnxruntime could not load {self.path}: {str(exc)[:300]}") from None
            self._sessions[threads] = session
            return session

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
               token_type_ids: np.ndarray | None = None, *, threads: int | None = None) -> np.ndarray:
        """Logits (float32, shape (batch, labels)) for token ids of shape (batch, sequence). Integer
        arrays of any width are accepted (sent as int64); ``attention_mask`` defaults to all ones and
        ``token_type_ids`` to zeros when the graph takes them; inputs the graph does not take are ignored."""
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ModelError(f"input_ids must be a (batch, sequence) array of token ids, got shape {ids.shape}")
        given = {"input_ids": ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feeds = {}
        for name in self.input_names:
            value = given.get(name)
            if value is None:
                if name == "attention_mask":
                    value = np.ones(ids.shape, dtype=np.int64)
                elif name == "token_type_ids":
                    value = np.zeros(ids.shape, dtype=np.int64)
                else:
                    raise ModelError(f"the ONNX model needs the input {name!r}, which was not given")
            value = np.asarray(value)
            if value.ndim == 1:
                value = value[None, :]
            if value.shape != ids.shape:
                raise ModelError(f"{name} has shape {value.shape} but input_ids has {ids.shape}: they must match")
            if not np.issubdtype(value.dtype, np.integer) and value.dtype != np.bool_:
                raise ModelError(f"{name} must hold integers, got {value.dtype}")
            feeds[name] = np.ascontiguousarray(value, dtype=np.int64)
        session = self._session(self.threads if threads is None else self._valid_threads(threads))
        try:
            out = session.run([self.output_name], feeds)[0]
        except Exception as exc:  # noqa: BLE001 - e.g. token ids beyond the vocabulary
            raise ModelError(f"the ONNX model could not run on these inputs: {str(exc)[:300]}") from None
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r}, precision={self.precision!r}, threads={self.threads})"


class FastTokenizer:
    """The export's ``tokenizer.json`` through the ``tokenizers`` library alone: the same token ids as the
    model's transformers tokenizer (same file, same rules), without importing torch or transformers, which
    is most of a short command's start-up time.

    ``encode(texts)`` returns, per text, ``(ids, type_ids, truncated)`` cut to ``max_length`` tokens;
    ``batch(encoded)`` pads a group of them into int64 arrays for :meth:`OnnxClassifier.logits`.
    """

    def __init__(self, folder: str | os.PathLike, max_length: int):
        try:
            from tokenizers import Tokenizer
        except Exception:  # noqa: BLE001
            raise ModelError("the fast tokenizer needs the tokenizers package: pip install tokenizers") from None
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ModelError(f"{folder} has no tokenizer.json: export the model again with python -m lib.export")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
            raise ModelError(f"max_length must be an integer of at least 8, got {max_length!r}")
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"could not read {path}: {str(exc)[:200]}") from None
        try:
            cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        cfg = cfg if isinstance(cfg, dict) else {}
        side = cfg.get("truncation_side") if cfg.get("truncation_side") in ("left", "right") else "right"
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, direction=side)
        self.max_length = max_length
        self.model_max_length = max_length
        self.truncation_side = side
        self._special = cfg
        self.pad_id = self._pad_id(cfg)

    def _pad_id(self, cfg: dict) -> int:
        token = cfg.get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
        for candidate in (token, "[PAD]", "<pad>"):
            if isinstance(candidate, str):
                found = self.tokenizer.token_to_id(candidate)
                if found is not None:
                    return int(found)
        return 0

    # -- the part of the transformers tokenizer API that lib.serving.predictor uses -----------------------
    is_fast = True

    def token_id(self, name: str) -> int | None:
        """The id of a special token (``"mask"``, ``"unk"``, ``"pad"``, ``"cls"``, ``"sep"``) or None."""
        token = self._special.get(f"{name}_token")
        if isinstance(token, dict):
            token = token.get("content")
        found = self.tokenizer.token_to_id(token) if isinstance(token, str) else None
        return int(found) if found is not None else None

    @property
    def mask_token_id(self) -> int | None:
        return self.token_id("mask")

    @property
    def unk_token_id(self) -> int | None:
        return self.token_id("unk")

    @property
    def pad_token_id(self) -> int:
        return self.pad_id

    def __call__(self, texts: str | Sequence[str], *, truncation: bool = True, max_length: int | None = None,
                 return_offsets_mapping: bool = False, verbose: bool = False) -> _Encoded:
        """Token ids (and offsets) for one text or a list, cut to ``max_length`` tokens on the tokenizer's
        truncation side, unpadded: what ``transformers`` returns for the same call."""
        limit = int(max_length or self.max_length)
        if truncation:
            self.tokenizer.enable_truncation(limit, direction=self.truncation_side)
        else:
            self.tokenizer.no_truncation()
        single = isinstance(texts, str)
        encodings = self.tokenizer.encode_batch([texts] if single else list(texts))
        return _Encoded(encodings, single, return_offsets_mapping)

    def pad(self, items: Sequence[dict], return_tensors: str = "np") -> dict[str, np.ndarray]:
        """Pad token-id dicts (``input_ids``, ``token_type_ids``) into int64 arrays with an attention mask."""
        return self.batch([(list(i["input_ids"]), list(i.get("token_type_ids") or []), False) for i in items])

    def encode(self, texts: Sequence[str]) -> list[tuple[list[int], list[int], bool]]:
        self.tokenizer.enable_truncation(self.max_length, direction=self.truncation_side)
        encodings = self.tokenizer.encode_batch(list(texts))
        return [(e.ids, e.type_ids, bool(e.overflowing)) for e in encodings]

    def batch(self, encoded: Sequence[tuple[list[int], list[int], bool]]) -> dict[str, np.ndarray]:
        width = max(len(e[0]) for e in encoded)
        ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(encoded), width), dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for i, (tok_ids, type_ids, _) in enumerate(encoded):
            ids[i, :len(tok_ids)] = tok_ids
            types[i, :len(type_ids)] = type_ids
            mask[i, :len(tok_ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class _Encoded(dict):
    """What :meth:`FastTokenizer.__call__` returns: ``input_ids``, ``token_type_ids``, ``attention_mask``
    (and ``offset_mapping``) as lists (one per text, or the one text's own), plus ``word_ids()`` and
    ``tokens()`` of a single text, like a transformers ``BatchEncoding``."""

    def __init__(self, encodings, single: bool, offsets: bool):
        pick = (lambda values: values[0]) if single else (lambda values: values)
        data = {"input_ids": pick([list(e.ids) for e in encodings]),
                "token_type_ids": pick([list(e.type_ids) for e in encodings]),
                "attention_mask": pick([list(e.attention_mask) for e in encodings])}
        if offsets:
            data["offset_mapping"] = pick([list(e.offsets) for e in encodings])
        super().__init__(data)
        self._encodings = encodings

    def word_ids(self, index: int = 0) -> list[int | None]:
        return list(self._encodings[index].word_ids)

    def tokens(self, index: int = 0) -> list[str]:
        return list(self._encodings[index].tokens)

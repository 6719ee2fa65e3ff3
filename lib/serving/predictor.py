"""Try a trained model: load it safely, predict sentiment, explain a prediction word by word.

A model can be a run's final export (``model/``), one of its checkpoints (``checkpoints/checkpoint-N``),
any folder written by ``save_pretrained``, or the bundled MiniLM before fine-tuning (its classifier
head is untrained: useful only for contrast).

Text is prepared as in training: a run's export records how (``lab_preprocessing.json``: ``<br />``
cleaning, ``max_length``, truncation side; :mod:`lib.sources.preprocessing`), a run's checkpoint uses
the run's ``config.json``, and the predictor applies that unless told otherwise. Probabilities are
calibrated with the temperature the job fitted on the eval split (``calibration.json`` in ``model/``)
unless ``calibrated=False``; the predicted label is the same either way. Folders without these files
(older runs, the bundled base model) read the raw text at the model's own limit, uncalibrated.

Safety: weights load from ``*.safetensors`` only (:func:`lib.sources.models.check_safe_folder` refuses pickle-only
folders) and ``trust_remote_code`` stays off. Pickle files that sit in a checkpoint next to the
weights (``optimizer.pt``, ``training_args.bin``, ``rng_state.pth``, a planted ``pytorch_model.bin``)
are never opened.

:class:`Predictor` is safe to share between threads (several people predicting at once on one
server): one lock guards the tokenizer and the PyTorch model; onnxruntime sessions run concurrently.

In the fast int8 mode a model with a current ONNX export (``<run>/onnx``, :mod:`lib.job.onnx_export`)
runs on onnxruntime (:mod:`lib.serving.onnx`) without torch; otherwise, or with ``runtime="torch"``,
on PyTorch.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.config import BUNDLED_MODEL
from lib.errors import DataError, LabError, ModelError
from lib.sources.models import check_safe_folder
from lib.store import rundir
from lib.store.checkpoint_folders import checkpoint_folders
from lib.util.contention import OTHER_LOAD

BASE_MODEL = BUNDLED_MODEL            # the bundled MiniLM before fine-tuning


BASE_LABELS = ["NEGATIVE", "POSITIVE"]


CHARS_PER_TOKEN_CAP = 48               # text beyond max_length * this many characters is cut before tokenizing


# onnxruntime's int8 kernels ran fastest per review in small batches on the CPUs measured (batches of 16
# were about a third slower per review than batches of 1-4; BENCHMARKS.md, "Predictions"): larger
# requested batches are served four reviews at a time.
ONNX_MAX_BATCH = 4


# int8 answers a review alone when it is sure; when the gap between its top two logits (uncalibrated) is
# below this, the export's full-precision graph reads the review again and its answer is the one given.
# Dynamic int8 moves some reviews' logit gap by up to 1.8-2.6 (most by under 0.05), so labels near the
# boundary could flip. On the demo model and two samples of 1,500 IMDb reviews, the smoothed int8 graph
# (lib.job.onnx_export.SMOOTH_GROUPS) alone gave full precision's label on 98.3-98.5 %, and with the
# re-read of the ~3 % within 0.5 on 99.5-99.7 %; the unsmoothed graph of older exports needed 0.75 (4.2-4.5 %
# re-read) for 99.3-99.4 % (BENCHMARKS.md, "Predictions").
INT8_RECHECK_GAP = 0.5
INT8_RECHECK_GAP_UNSMOOTHED = 0.75     # for int8 graphs exported before smoothing (onnx.json says which)


EXPLAIN_MAX_TOKENS = 256               # occlusion needs one forward pass per unit: keep it bounded


EXPLAIN_MAX_UNITS = 40


# ---------------------------------------------------------------------------------------------------
# Which model
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    kind: str          # final | checkpoint | base
    label: str         # what a menu shows
    path: str          # folder, or BASE_MODEL for the bundled base model


def model_choices(run_dir: str | os.PathLike | None) -> list[ModelChoice]:
    """The run's final model (when exported), its checkpoints on disk (newest first), the base model."""
    out: list[ModelChoice] = []
    if run_dir is not None:
        run_dir = Path(run_dir)
        if (run_dir / rundir.MODEL / "config.json").is_file():
            out.append(ModelChoice("final", "final model (model/)", str(run_dir / rundir.MODEL)))
        for step, path in reversed(checkpoint_folders(run_dir)):
            out.append(ModelChoice("checkpoint", f"checkpoint at step {step}", str(path)))
    out.append(ModelChoice("base", "bundled MiniLM before fine-tuning (untrained head)", BASE_MODEL))
    return out


def _missing_message(path: Path) -> str:
    if path.name.startswith("checkpoint-"):
        return (f"The checkpoint {path.name} no longer exists: it was probably removed by save_total_limit "
                "or the run was deleted. Pick another checkpoint or the final model.")
    return (f"The model folder {path} does not exist (any more). Pick another model, or train the run to the "
            "end so it exports model/.")


def check_model_folder(path: str | os.PathLike) -> Path:
    """A folder we can load: exists, has config.json, safetensors weights and tokenizer files."""
    p = Path(path)
    if "\x00" in str(path):
        raise ModelError("the model path contains a NUL byte; remove it")
    if not p.exists():
        raise ModelError(_missing_message(p))
    if not p.is_dir():
        raise ModelError(f"{p} is not a folder: give a folder saved with save_pretrained (a run's model/ or a "
                         "checkpoint-N folder)")
    check_safe_folder(p)
    if not ((p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()
            or (p / "vocab.txt").is_file()):
        raise ModelError(f"{p} has no tokenizer files (tokenizer.json / tokenizer_config.json): save the "
                         "tokenizer next to the model with tokenizer.save_pretrained")
    return p


def model_signature(source: str | os.PathLike) -> tuple[str, int]:
    """(resolved location, modification time of its weights and of its ONNX export's onnx.json): a cache
    key that changes when the model is re-exported or its fast runtime appears. Raises ModelError when
    the folder has gone."""
    if str(source) == BASE_MODEL:
        return BASE_MODEL, 0
    p = Path(source)
    try:
        resolved = p.resolve()
        weights = sorted(resolved.glob("*.safetensors"))
        mtime = max((w.stat().st_mtime_ns for w in weights), default=resolved.stat().st_mtime_ns)
        from lib.job.onnx_export import META_FILE, export_dir_for
        meta = export_dir_for(resolved) / META_FILE
        if meta.is_file():
            mtime = max(mtime, meta.stat().st_mtime_ns)
    except OSError:
        raise ModelError(_missing_message(p)) from None
    return str(resolved), mtime


# ---------------------------------------------------------------------------------------------------
# Text checks
# ---------------------------------------------------------------------------------------------------
def check_text(text: Any) -> str:
    """A review to predict on: text that is not empty or only white space."""
    if not isinstance(text, str):
        raise DataError(f"a review must be text, got {type(text).__name__}")
    if not text.strip():
        raise DataError("The review is empty: type or paste some text first.")
    return text


# ---------------------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------------------
def _softmax(row) -> list[float]:
    m = max(row)
    exps = [math.exp(x - m) for x in row]
    s = sum(exps)
    return [e / s for e in exps]


# How the weights run on the CPU (the "fast CPU mode" is one of the first two, see fast_precision).
# - bf16: weights and activations in bfloat16 on PyTorch (oneDNN's kernels for Intel AMX matrix units).
#   On a 2-core AMX CPU a table of reviews ran at about 3x full precision's rate, and the labels were full
#   precision's on 99.5-99.8 % of IMDb reviews (BENCHMARKS.md, "Predictions"). A single review gains less
#   (PyTorch's per-operator overhead; int8 on onnxruntime answers it faster), and a CPU without AMX only
#   emulates bf16, slower than fp32: so bf16 is the fast mode only for tables of reviews on AMX CPUs.
# - int8: dynamic quantization of the encoder's linear layers (weights stored as 8-bit integers per
#   output channel, activations quantized on the fly); the classifier head and pooler stay in float.
#   On onnxruntime the reviews near the decision boundary are re-read in full precision.
PRECISIONS = {
    "bf16": "fast CPU mode for tables of reviews on CPUs with AMX matrix units: bfloat16 on PyTorch, about "
            "3x full precision's rate there, the same label on ~99.5% of reviews",
    "int8": "fast CPU mode: int8 weights (dynamic quantization; on onnxruntime, reviews near the decision "
            "boundary are re-read in full precision); about 2x faster, the same label as full precision on "
            "~99% of reviews",
    "fp32": "full precision: exactly the numbers the training job evaluated with",
}
FAST_PRECISIONS = ("bf16", "int8")


def bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (the ``amx_bf16`` flag of Intel AMX)."""
    from lib.util.sysinfo import cpu_flags
    return "amx_bf16" in cpu_flags()


def fast_precision(batch: bool = False) -> str:
    """The fast CPU mode's precision: ``bf16`` for a table of reviews (``batch``) on a CPU with AMX
    matrix units, else ``int8`` (on onnxruntime when the model has an export: the fastest for one review)."""
    return "bf16" if batch and bf16_matrix_units() else "int8"


def default_precision(batch: bool = False) -> str:
    """The precision the app and the CLI predict with unless told otherwise: ``LAB_PREDICT_PRECISION``
    (``bf16``, ``int8`` or ``fp32``) when set, else the fast CPU mode (:func:`fast_precision`)."""
    value = os.environ.get("LAB_PREDICT_PRECISION", "").strip().lower()
    return value if value in PRECISIONS else fast_precision(batch)


def quantize_int8(model):
    """The model with its encoder's ``nn.Linear`` layers dynamically quantized to int8 (per-channel
    weights); the classifier and pooler keep float weights (they decide the answer and cost nothing)."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not {"classifier", "pooler"} & set(name.split("."))}
    if not spec:
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice: still the CPU int8 path
        return quantize_dynamic(model, spec, dtype=torch.qint8)


_DEFAULT_THREADS: int | None = None


def inference_threads() -> int:
    """Torch threads for the next prediction: all of them on an idle machine, one while other processes
    keep every core busy.

    OpenMP threads spin while they wait; when a training job already keeps every core busy, two
    spinning inference threads fight it and a single review went from ~30 ms to 500-900 ms on two
    cores (BENCHMARKS.md, fast path). One thread keeps the tryout responsive next to a job. Only
    *other* processes count (``OtherLoad``): a long batch of predictions must not throttle itself.
    """
    global _DEFAULT_THREADS
    import torch
    if _DEFAULT_THREADS is None:
        _DEFAULT_THREADS = torch.get_num_threads()
    return 1 if OTHER_LOAD.is_busy() else _DEFAULT_THREADS


# Which engine runs the forward pass. auto: onnxruntime when the model has a current ONNX export of the
# chosen precision (the training job writes one into <run>/onnx; lib.export makes one for any folder) and
# onnxruntime is installed, else PyTorch. The int8 ONNX graph is the fast CPU mode (BENCHMARKS.md,
# inference); fp32 stays on PyTorch unless asked, so "full precision" means the job's own numbers.
RUNTIMES = {
    "auto": "onnxruntime for int8 when the model has a current ONNX export, else PyTorch",
    "onnx": "onnxruntime (needs an ONNX export: python -m lib.export --model DIR --format onnx --int8)",
    "torch": "PyTorch",
}


def default_runtime() -> str:
    """``LAB_PREDICT_RUNTIME`` (``auto``, ``onnx`` or ``torch``) when set, else ``auto``."""
    value = os.environ.get("LAB_PREDICT_RUNTIME", "").strip().lower()
    return value if value in RUNTIMES else "auto"


def _onnx_export(folder: Path, precision: str, runtime: str) -> Path | None:
    """The ONNX export to serve ``folder`` with, or None for PyTorch (see RUNTIMES)."""
    if runtime == "torch" or (runtime == "auto" and precision != "int8"):
        return None
    from lib.serving.onnx import export_dir_for, onnxruntime_available, serving_export
    found = serving_export(folder, precision)
    if found is None and runtime == "onnx":
        if not onnxruntime_available():
            raise ModelError("the ONNX runtime is not installed: pip install onnxruntime, or predict with "
                             "--runtime torch")
        flag = " --int8" if precision == "int8" else ""
        raise ModelError(f"{folder} has no current {precision} ONNX export in {export_dir_for(folder)}: make one "
                         f"with python -m lib.export --model {folder} --format onnx{flag}, or predict with "
                         "--runtime torch")
    return found


def onnx_threads() -> int:
    """onnxruntime threads for the next prediction: one per core, one while other processes keep every
    core busy (the same rule as :func:`inference_threads`, without importing torch)."""
    from lib.util.sysinfo import cpu_cores
    return 1 if OTHER_LOAD.is_busy() else max(1, cpu_cores())


def read_calibration(folder: str | os.PathLike) -> dict | None:
    """The temperature fitted for the model in ``folder`` (its ``calibration.json``), or None when the
    folder has none or it is damaged (then probabilities stay uncalibrated)."""
    data = rundir.read_json(Path(folder) / rundir.CALIBRATION)
    if not isinstance(data, dict):
        return None
    t = data.get("temperature")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= 100:
        return None
    return data


class Predictor:
    """A loaded sentiment model. ``predict(texts)`` and ``explain(text)``; thread-safe."""

    def __init__(self, source: str | os.PathLike, *, max_length: int | None = None, precision: str = "fp32",
                 calibrated: bool = True, runtime: str = "auto", recheck: bool = True):
        from lib.sources.preprocessing import preprocessing_for
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if runtime not in RUNTIMES:
            raise ModelError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        self.source = str(source)
        self.precision = precision
        self._lock = threading.Lock()
        self._recheck_lock = threading.Lock()
        self.preprocessing: dict | None = None     # how text was prepared for training (None: raw text)
        self.calibration: dict | None = None       # calibration.json of the model folder, when there is one
        self._onnx = None                          # the OnnxClassifier when onnxruntime runs the model
        self._recheck_dir: Path | None = None      # int8 on onnxruntime: the export holding the fp32 graph
        self._recheck = None                       # its OnnxClassifier, loaded when first needed
        self._recheck_gap = INT8_RECHECK_GAP       # logit gap below which int8 hands a review to fp32
        self.recheck = bool(recheck)               # re-read int8's near-boundary reviews in full precision
        self.rechecked = 0                         # how many reviews the fp32 graph re-read so far
        self.runtime = "torch"                     # which engine runs the forward pass: torch | onnx
        self.runtime_note = ""                     # why an ONNX export was not used, when that happened
        if self.source == BASE_MODEL and runtime == "onnx":
            raise ModelError("the bundled base model runs on PyTorch only: predict with --runtime torch")
        if precision == "bf16" and runtime == "onnx":
            raise ModelError("bf16 runs on PyTorch only: predict with --runtime torch, or with --precision int8 "
                             "on onnxruntime")
        if self.source != BASE_MODEL:
            try:
                folder = check_model_folder(self.source).resolve()
            except LabError as exc:
                raise ModelError(str(exc)) from None
            onnx_dir = _onnx_export(folder, precision, runtime)
            if onnx_dir is not None:
                try:
                    self._load_onnx(folder, onnx_dir, precision, preprocessing_for(folder))
                    self._finish(max_length, calibrated)
                    return
                except ModelError as exc:
                    if runtime == "onnx":
                        raise
                    self._onnx, self.runtime = None, "torch"   # a damaged export: PyTorch instead
                    self.runtime_note = f"the ONNX export could not be used ({exc}); running on PyTorch"
        import torch

        from lib.sources.models import load_model, load_tokenizer
        try:
            if self.source == BASE_MODEL:
                torch.manual_seed(0)  # the untrained head is random: make it the same every time
                self.model = load_model(BASE_MODEL, BASE_LABELS)
                self.tokenizer = load_tokenizer(BASE_MODEL)
                self.description = "bundled MiniLM before fine-tuning (untrained classifier head)"
            else:
                folder = check_model_folder(self.source).resolve()
                self.model = load_model(str(folder), None)
                self.tokenizer = load_tokenizer(str(folder))
                self.description = str(folder)
                self.preprocessing = preprocessing_for(folder)
                self.calibration = read_calibration(folder)
        except LabError as exc:
            if self.source != BASE_MODEL and not Path(self.source).exists():
                raise ModelError(_missing_message(Path(self.source))) from None
            raise ModelError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - corrupt weights, odd configs: a message, not a crash
            if self.source != BASE_MODEL and not Path(self.source).exists():
                raise ModelError(_missing_message(Path(self.source))) from None
            raise ModelError(f"could not load a sentiment model from {self.source}: {exc}") from None
        self.model.eval()
        if precision == "int8":
            self.model = quantize_int8(self.model)
            self.description += " (int8)"
        elif precision == "bf16":
            self.model = self.model.to(torch.bfloat16)
            self.description += " (bf16)"
        cfg = self.model.config
        id2label = getattr(cfg, "id2label", None) or {}
        n = int(getattr(cfg, "num_labels", 0) or len(id2label) or 2)
        self.label_names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]
        self._limits = [512]
        pos = getattr(cfg, "max_position_embeddings", None)
        if isinstance(pos, int) and pos > 8:
            self._limits.append(pos - (2 if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta") else 0))
        import inspect
        self._accepts = set(inspect.signature(self.model.forward).parameters)
        self._finish(max_length, calibrated)

    def _load_onnx(self, folder: Path, onnx_dir: Path, precision: str, preprocessing: dict | None) -> None:
        """onnxruntime runs the export's graph; the export's tokenizer.json (the tokenizers library, no
        torch) gives the same token ids as the model's tokenizer."""
        from lib.serving.onnx import FastTokenizer, OnnxClassifier
        from lib.util.sysinfo import cpu_cores
        # spinning workers: several threads are asked for only while other processes leave the cores idle
        self._onnx = OnnxClassifier(onnx_dir, threads=cpu_cores(), precision=precision, spin=True)
        meta = self._onnx.meta
        fp32 = (meta.get("files") or {}).get("fp32")
        if precision == "int8" and self.recheck and isinstance(fp32, str) and (onnx_dir / Path(fp32).name).is_file():
            self._recheck_dir = onnx_dir
        smoothed = isinstance(meta.get("quantization"), dict) and bool(meta["quantization"].get("smoothing"))
        self._recheck_gap = INT8_RECHECK_GAP if smoothed else INT8_RECHECK_GAP_UNSMOOTHED
        limit = meta.get("model_max_length")
        limit = limit if isinstance(limit, int) and 8 <= limit <= 100_000 else 512
        self.tokenizer = FastTokenizer(onnx_dir, max_length=limit)
        self.model = None
        self.runtime = "onnx"
        self.description = f"{folder} ({precision}, onnxruntime)"
        if self._recheck_dir is not None:
            self.description = f"{folder} (int8, near-boundary reviews re-read in fp32; onnxruntime)"
        self.preprocessing = preprocessing
        self.calibration = read_calibration(folder)
        names = self._onnx.label_names or BASE_LABELS
        self.label_names = [str(n) for n in names]
        self._limits = [512, limit]
        self._accepts = set(self._onnx.input_names)

    def _finish(self, max_length: int | None, calibrated: bool) -> None:
        """The token limit, the cleaning, the truncation side and the temperature, for either runtime."""
        limits = list(self._limits)
        tmax = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tmax, int) and 8 <= tmax < 100_000:
            limits.append(tmax)
        if max_length:
            limits.append(int(max_length))
        elif self.preprocessing:
            limits.append(int(self.preprocessing["max_length"]))
        self.max_length = max(8, min(limits))
        from lib.sources.preprocessing import head_for
        self.head_tokens = head_for(self.max_length, (self.preprocessing or {}).get("head_tokens"))
        self.strip_html = bool(self.preprocessing and self.preprocessing.get("strip_html"))
        if self.preprocessing:
            self.tokenizer.truncation_side = self.preprocessing.get("truncation_side", "right")
        self.truncation_side = getattr(self.tokenizer, "truncation_side", "right")
        self.temperature = float(self.calibration["temperature"]) if calibrated and self.calibration else 1.0
        self.calibrated = self.temperature != 1.0

    # ------------------------------------------------------------------ helpers
    def prepare(self, text: str) -> str:
        """The text as the model was trained to read it (``<br />`` to line breaks when training did so)."""
        from lib.sources.preprocessing import clean_text
        return clean_text(text, self.strip_html)

    def _head_chars(self, max_tokens: int) -> int:
        """With head+tail truncation and a text cut before tokenizing: characters kept from the start."""
        from lib.sources.preprocessing import head_for
        return (head_for(max_tokens, self.head_tokens) + 2) * CHARS_PER_TOKEN_CAP

    def _cut(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """The text cut to at most ``max_tokens * CHARS_PER_TOKEN_CAP`` characters before tokenizing (a
        bound on the work; no token the model reads is lost): from the cut side, or for head+tail
        truncation from the middle (the start for the head, the end for the tail)."""
        cap = max_tokens * CHARS_PER_TOKEN_CAP
        if len(text) <= cap:
            return text, False
        if self.head_tokens:
            head = self._head_chars(max_tokens)
            return text[:head] + text[len(text) - (cap - head):], True
        return (text[-cap:], True) if self.truncation_side == "left" else (text[:cap], True)

    def _tokenize(self, texts: list[str], max_tokens: int, offsets: bool):
        """The tokenizer's output for ``texts`` cut to ``max_tokens`` as training did (the tokenizer's
        truncation, or head+tail), plus each text's token count before the cut."""
        if not self.head_tokens:
            enc = self.tokenizer(texts, truncation=True, max_length=max_tokens, return_offsets_mapping=offsets)
            return enc, None
        from lib.sources.preprocessing import cut_head_tail
        enc = self.tokenizer(texts, truncation=False, return_offsets_mapping=offsets, verbose=False)
        full = [len(ids) for ids in enc["input_ids"]]
        cut = {k: [cut_head_tail(v, max_tokens, self.head_tokens) for v in enc[k]] for k in enc.keys()}
        return cut, full

    def _encode(self, texts: list[str], max_tokens: int) -> tuple[list[dict], list[bool]]:
        """Token ids per text (no padding) and whether each text was cut to fit ``max_tokens``."""
        cut = [self._cut(t, max_tokens) for t in texts]
        fast = getattr(self.tokenizer, "is_fast", False)
        enc, full = self._tokenize([c[0] for c in cut], max_tokens, fast and not self.head_tokens)
        items, truncated = [], []
        for i, (text, was_cut) in enumerate(cut):
            item = {k: enc[k][i] for k in enc.keys() if k != "offset_mapping"}
            trunc = was_cut
            if full is not None:  # head+tail: cut when the review had more tokens than fit
                items.append(item)
                truncated.append(was_cut or full[i] > max_tokens)
                continue
            if not trunc:
                if fast:
                    ends = [e for (s, e) in enc["offset_mapping"][i] if e > s]
                    if self.truncation_side == "left":
                        starts = [s for (s, e) in enc["offset_mapping"][i] if e > s]
                        rest = text[:min(starts)] if starts else ""
                    else:
                        rest = text[max(ends):] if ends else ""
                    trunc = bool(ends) and bool(rest.strip()) and len(item["input_ids"]) >= max_tokens
                else:
                    trunc = len(item["input_ids"]) >= max_tokens
            items.append(item)
            truncated.append(trunc)
        return items, truncated

    def _forward_chunks(self, items: list[dict], chunks: list[list[int]]):
        """Probabilities per chunk of ``items``, in order. PyTorch: one chunk at a time under the lock (a big
        batch job does not starve a quick tryout). onnxruntime: its sessions run concurrently, so with
        several idle cores the chunks run side by side, one single-threaded call per core, which beat one
        call using every core (BENCHMARKS.md, "Predictions")."""
        workers = onnx_threads() if self._onnx is not None else 1
        if workers > 1 and len(chunks) > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=workers) as pool:
                yield from pool.map(lambda c: self._forward([items[k] for k in c], threads=1), chunks)
            return
        for chunk in chunks:
            if self._onnx is not None:
                yield self._forward([items[k] for k in chunk])
                continue
            with self._lock:
                yield self._forward([items[k] for k in chunk])

    def _forward(self, items: list[dict], threads: int | None = None) -> list[list[float]]:
        t = self.temperature
        if self._onnx is not None:
            batch = self.tokenizer.pad(items)
            feeds = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            threads = threads or onnx_threads()
            logits = self._onnx.logits(*feeds, threads=threads)
            unsure = self._unsure(logits) if self._recheck_dir is not None else []
            graph = self._fp32_graph() if unsure else None
            if graph is not None:
                logits[unsure] = graph.logits(*(f[unsure] for f in feeds), threads=threads)
                with self._recheck_lock:
                    self.rechecked += len(unsure)
            return [_softmax([x / t for x in row]) for row in logits.tolist()]
        import torch
        batch = self.tokenizer.pad(items, return_tensors="pt")
        inputs = {k: v for k, v in batch.items() if k in self._accepts}
        torch.set_num_threads(inference_threads())
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float().tolist()
        return [_softmax([x / t for x in row]) for row in logits]

    def _unsure(self, logits) -> list[int]:
        """Rows whose top two logits lie within the re-read gap of each other (INT8_RECHECK_GAP, or
        INT8_RECHECK_GAP_UNSMOOTHED for an older int8 graph)."""
        if logits.shape[1] < 2:
            return []
        import numpy as np
        top2 = np.sort(logits, axis=1)[:, -2:]
        return [int(i) for i in np.flatnonzero(top2[:, 1] - top2[:, 0] < self._recheck_gap)]

    def _fp32_graph(self):
        """The export's full-precision graph, loaded on first use (most batches never need it); None, with
        a note, when it cannot be loaded (int8's own answers are given then)."""
        with self._recheck_lock:
            if self._recheck is None and self._recheck_dir is not None:
                from lib.serving.onnx import OnnxClassifier
                from lib.util.sysinfo import cpu_cores
                try:
                    self._recheck = OnnxClassifier(self._recheck_dir, threads=cpu_cores(), precision="fp32",
                                                   spin=True)
                except ModelError as exc:
                    self._recheck_dir = None
                    self.runtime_note = f"near-boundary reviews are not re-read in full precision ({exc})"
            return self._recheck

    # ------------------------------------------------------------------ predict
    def predict(self, texts: Iterable[str], batch_size: int = 16) -> list[dict]:
        """One result per text, in the given order: ``{label, label_id, scores{name: p}, confidence,
        truncated, tokens}``. Empty texts get ``label None`` and a note instead of a guess."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise DataError(f"a review must be text, got {type(t).__name__}")
        texts = [self.prepare(t) for t in texts]
        results: list[dict | None] = [None] * len(texts)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        for i, t in enumerate(texts):
            if not t.strip():
                results[i] = {"label": None, "label_id": None, "scores": {}, "confidence": None,
                              "truncated": False, "tokens": 0, "note": "empty text"}
        batch_size = max(1, int(batch_size))
        if self._onnx is not None:
            batch_size = min(batch_size, ONNX_MAX_BATCH)
        with self._lock:  # the tokenizer and the model are shared between threads: one user at a time
            items, truncated = self._encode([texts[i] for i in todo], self.max_length) if todo else ([], [])
        order = sorted(range(len(todo)), key=lambda k: len(items[k]["input_ids"]))  # similar lengths: less padding
        chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        for chunk, probs in zip(chunks, self._forward_chunks(items, chunks)):
            for k, p in zip(chunk, probs):
                best = max(range(len(p)), key=p.__getitem__)
                results[todo[k]] = {
                    "label": self.label_names[best], "label_id": best,
                    "scores": {self.label_names[j]: p[j] for j in range(len(p))},
                    "confidence": p[best], "truncated": truncated[k],
                    "tokens": len(items[k]["input_ids"])}
        return results  # type: ignore[return-value]

    def predict_one(self, text: str) -> dict:
        """Predict one review (DataError when it is empty) and time it: adds ``latency_ms``."""
        check_text(text)
        t0 = time.perf_counter()
        result = self.predict([text])[0]
        result["latency_ms"] = (time.perf_counter() - t0) * 1000.0
        if result["truncated"]:
            result["note"] = self.truncation_note()
        return result

    def truncation_note(self, max_tokens: int | None = None) -> str:
        """What the model read of a review longer than its limit."""
        limit = max_tokens or self.max_length
        if self.head_tokens:
            from lib.sources.preprocessing import head_for
            head = head_for(limit, self.head_tokens)
            return (f"The review is longer than the model's limit of {limit} tokens: as in training, it read the "
                    f"first {head} and the last {limit - 2 - head} tokens and skipped the middle.")
        part = "end" if self.truncation_side == "left" else "beginning"
        return f"The review is longer than the model's limit of {limit} tokens: only its {part} was read."

    # ------------------------------------------------------------------ explain
    def explain(self, text: str, max_tokens: int = EXPLAIN_MAX_TOKENS, max_units: int = EXPLAIN_MAX_UNITS,
                batch_size: int = 16) -> dict:
        """Which words pushed the decision, by occlusion: each word (all its word pieces) is replaced
        by the mask token and the drop in the predicted label's probability is its score (positive:
        the word supports the prediction; negative: it speaks against it).

        Occlusion costs one forward pass per unit, so a review with more than ``max_units`` words is
        occluded in runs of neighbouring words (each word of a run gets the run's score), and only the
        first ``max_tokens`` tokens are explained.

        Returns ``{label, label_id, confidence, scores, spans: [{start, end, text, score, pieces, unit}],
        words_per_unit, analysed_chars, truncated, note, method, text}``; ``start``/``end`` are character
        offsets in the returned ``text``: the review as the model read it (``<br />`` turned into line
        breaks when training did so).
        """
        check_text(text)
        text = self.prepare(text)
        check_text(text)
        max_tokens = max(8, min(int(max_tokens), self.max_length))
        fast = getattr(self.tokenizer, "is_fast", False)
        if not fast:
            raise ModelError("explanations need a fast tokenizer (tokenizer.json) to map tokens to the text")
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            mask_id = self.tokenizer.unk_token_id if self.tokenizer.unk_token_id is not None \
                else self.tokenizer.pad_token_id
        t0 = time.perf_counter()
        with self._lock:
            cut_text, was_cut = self._cut(text, max_tokens)
            if self.head_tokens:
                from lib.sources.preprocessing import cut_head_tail
                enc = self.tokenizer(cut_text, truncation=False, return_offsets_mapping=True, verbose=False)
                full_tokens = len(enc["input_ids"])
                keep = [cut_head_tail(list(v), max_tokens, self.head_tokens)
                        for v in (enc["input_ids"], enc["offset_mapping"], enc.word_ids(), enc.tokens())]
                item = {k: cut_head_tail(list(enc[k]), max_tokens, self.head_tokens)
                        for k in enc.keys() if k != "offset_mapping"}
                ids, offsets, word_ids, tokens = keep
                if was_cut:  # offsets of the kept end point into the cut text: move them to the whole text
                    head, shift = self._head_chars(max_tokens), len(text) - len(cut_text)
                    offsets = [(s + shift, e + shift) if s >= head else (s, e) for (s, e) in offsets]
                    cut_text = text
            else:
                enc = self.tokenizer(cut_text, truncation=True, max_length=max_tokens, return_offsets_mapping=True)
                full_tokens = None
                ids = list(enc["input_ids"])
                item = {k: list(enc[k]) for k in enc.keys() if k != "offset_mapping"}
                offsets = enc["offset_mapping"]
                word_ids = enc.word_ids()
                tokens = enc.tokens()
            base = self._forward([item])[0]
            pred = max(range(len(base)), key=base.__getitem__)
            groups: dict[int, list[int]] = {}
            for pos, w in enumerate(word_ids):
                if w is not None and offsets[pos][1] > offsets[pos][0]:
                    groups.setdefault(w, []).append(pos)
            words = [positions for _, positions in sorted(groups.items(), key=lambda kv: kv[1][0])]
            per_unit = max(1, math.ceil(len(words) / max(1, int(max_units))))
            units = [words[i:i + per_unit] for i in range(0, len(words), per_unit)]
            variants = []
            for unit in units:
                v = {k: list(val) for k, val in item.items()}
                for positions in unit:
                    for pos in positions:
                        v["input_ids"][pos] = mask_id
                variants.append(v)
        drops: list[float] = []
        for start in range(0, len(variants), batch_size):
            with self._lock:  # one batch at a time: other people's predictions get their turn in between
                probs = self._forward(variants[start:start + batch_size])
            drops.extend(base[pred] - p[pred] for p in probs)
        spans = []
        for u, (unit, score) in enumerate(zip(units, drops)):
            for positions in unit:
                start, end = offsets[positions[0]][0], offsets[positions[-1]][1]
                spans.append({"start": int(start), "end": int(end), "text": cut_text[start:end],
                              "score": float(score), "pieces": [tokens[p] for p in positions], "unit": u})
        ends = [e for (s, e) in offsets if e > s]
        analysed = max(ends) if ends else 0
        if full_tokens is not None:
            truncated = was_cut or full_tokens > max_tokens
        else:
            truncated = was_cut or (len(ids) >= max_tokens and bool(text[analysed:].strip()))
        note = ""
        if truncated and full_tokens is not None:
            note = (self.truncation_note(max_tokens) + " The middle of the review is not scored here.")
        elif truncated:
            note = (f"Only the first {max_tokens} tokens (the first {analysed:,} characters) were explained; "
                    "the rest of the review is not shown here.")
        if per_unit > 1:
            note = (note + " " if note else "") + (f"Long review: words were hidden {per_unit} at a time, so "
                                                   f"neighbouring words share a score.")
        if not spans:
            note = (note + " " if note else "") + "The text has no words the model could weigh."
        return {"label": self.label_names[pred], "label_id": pred, "confidence": base[pred],
                "scores": {self.label_names[j]: base[j] for j in range(len(base))}, "spans": spans,
                "words_per_unit": per_unit, "analysed_chars": analysed, "truncated": truncated, "note": note,
                "method": "occlusion", "text": text,
                "seconds": time.perf_counter() - t0}

"""ONNX export of a sentiment model (the training job's last step, and ``python -m lib.export``).

:func:`export_onnx` turns a folder saved with ``save_pretrained`` (a run's ``model/``, a checkpoint,
any BERT-style sequence classifier with safetensors weights) into a folder that onnxruntime runs:

    model.onnx         the full-precision graph; attention, layer norms and GELU fused into
                       onnxruntime's own operators when its transformer optimizer recognises them
                       (left out with ``keep_fp32=False``; the predictor's int8 mode re-reads
                       near-boundary reviews with it)
    model.int8.onnx    (``quantize=True``) the same model with the encoder's weights stored as 8-bit
                       integers, one scale per output channel (dynamic quantization: activations are
                       quantized on the fly); the pooler and the classifier head stay in float, as in the
                       app's PyTorch int8 mode. For BERT-style encoders the activations' per-channel
                       ranges are first moved into the weights (:func:`_smooth_for_int8`, measured on
                       built-in reviews), which halves int8's error
    onnx.json          inputs, outputs, opset, which files hold what, the label names, how text must be
                       prepared (``preprocessing``: the source folder's lab_preprocessing.json when training
                       wrote one; ``max_length``: the token limit to predict with), a signature of the
                       source model, and how closely the export agreed with PyTorch on a few sample reviews
    tokenizer files    the source model's tokenizer, saved next to the graph (tokenize with it)
    config.json        the source model's config (label names), plus its lab_preprocessing.json,
                       calibration.json and README.md when it has them

Where an export lives (:func:`export_dir_for`): ``<run>/onnx`` for a run's ``model/``, ``<folder>/onnx``
for any other folder. :func:`is_current` tells whether it was made from the weights now in the folder.
The runtime that serves it is :mod:`lib.serving.onnx`.

Safety: the source model is loaded from safetensors only (never pickle files) and without
``trust_remote_code``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.errors import LabError, ModelError
from lib.sources.preprocessing import PREPROCESSING_FILE

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
META_FILE = "onnx.json"
META_FORMAT = 1
DEFAULT_OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
FP32_TOLERANCE = 1e-3          # max |logit difference| allowed between the fp32 graph and PyTorch

# Residual additions and layer norms stay two operators (Add, LayerNormalization) instead of onnxruntime's
# fused SkipLayerNormalization: on the CPUs measured (onnxruntime 1.32) the fused kernel took about 5 ns
# per value, a third of the int8 forward pass; unfused, one review at 128 tokens ran about 27 % faster
# in int8 and 6 % in fp32, with the same numbers (BENCHMARKS.md, "Predictions"). Sessions must then also
# keep onnxruntime from fusing them again while it loads the graph.
UNFUSED_OPTIMIZERS = ["SkipLayerNormFusion"]
CARRIED_FILES = ("config.json", PREPROCESSING_FILE, "calibration.json", "README.md")
KEEP_FLOAT = ("pooler", "classifier", "pre_classifier")   # module names whose weights int8 leaves in float

# Before int8 quantization the activations' channel ranges move into the weights (SmoothQuant, Xiao et
# al. 2023, with migration strength SMOOTH_ALPHA): one activation channel with a range ten times the
# others' otherwise costs every other channel most of its 8 bits. SMOOTH_GROUPS says whose inputs: the
# attention output's (folded into value's rows, free) and the feed-forward block's two (one elementwise
# multiply each). The query/key/value input is left alone: the multiply there keeps onnxruntime from
# fusing attention, and a single review took 24 % longer. Measured on the demo model, two samples of
# 1,500 IMDb reviews: the median error of int8's logit gap went from 0.087 to 0.051, the largest from
# 2.7-3.2 to 1.8-2.6, and int8 alone gave full precision's label on 98.3-98.5 % of reviews instead of
# 97.4-98.1 %, for about 4 % more time per review (BENCHMARKS.md, "Predictions"). The ranges come from
# SMOOTH_REVIEWS built-in reviews (an export takes a few seconds longer).
SMOOTH_ALPHA = 1.0
SMOOTH_REVIEWS = 256
SMOOTH_GROUPS = ("out", "up", "down")   # of "qkv", "out", "up", "down"
INSTALL_HINT = "pip install onnxruntime (or pip install -r requirements.txt)"

# Reviews written for the agreement check (short, long, mixed, negated): the export is compared with
# PyTorch on these, one at a time and as one padded batch.
CHECK_TEXTS = (
    "A warm, funny and beautifully acted film. I would happily watch it again.",
    "Two hours of my life I will never get back.",
    "The first half drags and the dialogue is clumsy, but the ending is genuinely moving.",
    "Not bad at all.",
    "I expected nothing and still came away disappointed: flat characters, a plot that goes nowhere, and "
    "a soundtrack that tries far too hard to tell you what to feel. " * 6,
    "Great cast.\n\nTerrible script.",
)


# ---------------------------------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------------------------------
def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported (the fast CPU runtime is optional)."""
    try:
        import onnxruntime  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as missing
        return False
    return True


def _require_runtime():
    try:
        import onnxruntime as ort
    except Exception:  # noqa: BLE001
        raise ModelError(f"ONNX models need onnxruntime, which is not installed: {INSTALL_HINT}") from None
    return ort


def _require_export_tools():
    ort = _require_runtime()
    try:
        import onnx  # noqa: F401
    except Exception:  # noqa: BLE001
        raise ModelError("exporting to ONNX needs the onnx package, which is not installed: pip install onnx "
                         "(or pip install -r requirements.txt)") from None
    return ort


# ---------------------------------------------------------------------------------------------------
# Source model signature
# ---------------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_signature(model_dir: str | os.PathLike, *, with_hash: bool = True) -> dict:
    """What identifies the weights an export was made from: config.json's hash and, per
    ``*.safetensors`` file, its size, modification time and (``with_hash``) SHA-256."""
    folder = Path(model_dir)
    weights = []
    for w in sorted(folder.glob("*.safetensors")):
        st = w.stat()
        entry = {"name": w.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if with_hash:
            entry["sha256"] = _sha256(w)
        weights.append(entry)
    config = folder / "config.json"
    return {"path": str(folder.resolve()), "config_sha256": _sha256(config) if config.is_file() else None,
            "weights": weights}


def read_meta(onnx_dir: str | os.PathLike) -> dict:
    """The export's ``onnx.json`` ({} when the folder has none or it cannot be read)."""
    try:
        data = json.loads((Path(onnx_dir) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_current(onnx_dir: str | os.PathLike, model_dir: str | os.PathLike) -> bool:
    """Whether the export in ``onnx_dir`` was made from the weights and the config.json (label names)
    now in ``model_dir``: same config hash, and for the weights the same sizes and modification times
    (fast), or else the same SHA-256 (a copied folder)."""
    source = read_meta(onnx_dir).get("source") or {}
    recorded = source.get("weights") or []
    if not recorded:
        return False
    config = Path(model_dir) / "config.json"
    if source.get("config_sha256") != (_sha256(config) if config.is_file() else None):
        return False
    now = source_signature(model_dir, with_hash=False)["weights"]
    if [w["name"] for w in now] != [w.get("name") for w in recorded]:
        return False
    if all(a["size"] == b.get("size") and a["mtime_ns"] == b.get("mtime_ns") for a, b in zip(now, recorded)):
        return True
    hashed = source_signature(model_dir, with_hash=True)["weights"]
    return all(a["sha256"] == b.get("sha256") for a, b in zip(hashed, recorded))


def export_dir_for(model_dir: str | os.PathLike) -> Path:
    """Where the ONNX export of a model folder lives: ``<run>/onnx`` for a run's ``model/`` (the training
    job writes it there), ``<folder>/onnx`` for any other folder (a checkpoint, a ``save_pretrained``
    folder: ``python -m lib.export --format onnx`` writes there unless ``--out`` says otherwise)."""
    from lib.store import rundir
    folder = Path(model_dir)
    if folder.name == rundir.MODEL and (folder.parent / rundir.CONFIG).is_file() \
            and (folder.parent / rundir.STATUS).is_file():
        return folder.parent / rundir.ONNX
    return folder / rundir.ONNX


# ---------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------
def _check_source(model_dir: str | os.PathLike) -> Path:
    from lib.sources.models import check_safe_folder
    if "\x00" in str(model_dir):
        raise ModelError("the model path contains a NUL byte; remove it")
    src = Path(model_dir).expanduser()
    if not src.exists():
        raise ModelError(f"the model folder {src} does not exist: give a run's model/ folder, a checkpoint-N "
                         "folder or another folder saved with save_pretrained")
    if not src.is_dir():
        raise ModelError(f"{src} is not a folder: give a folder saved with save_pretrained")
    check_safe_folder(src)
    if not any((src / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        raise ModelError(f"{src} has no tokenizer files (tokenizer.json / tokenizer_config.json): save the "
                         "tokenizer next to the model with tokenizer.save_pretrained")
    return src.resolve()


def _check_out(out: Path, src: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ModelError(f"--out {out} is a file: give a folder for the ONNX export")
    resolved = out.resolve()
    if resolved == src or resolved in src.parents:
        raise ModelError(f"the export folder {out} must not be the model folder {src} or contain it: give a new "
                         "folder, for example next to the model")
    if out.is_dir() and any(out.iterdir()) and not (out / META_FILE).is_file():
        raise ModelError(f"the folder {out} is not empty and holds no earlier ONNX export: give a new or empty "
                         "folder")
    if not resolved.parent.is_dir():
        raise ModelError(f"the folder {resolved.parent} (where the export would go) does not exist")


def _logits_only(model, names: Sequence[str]):
    """The classifier as a module with positional tensor inputs (in ``names`` order) and one output."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, *tensors):
            return self.m(**dict(zip(names, tensors))).logits

    return LogitsOnly()


def _input_names(model, tokenizer) -> list[str]:
    import inspect
    accepted = set(inspect.signature(model.forward).parameters)
    produced = set(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
    names = [n for n in INPUT_NAMES if n in accepted and (n != "token_type_ids" or n in produced)]
    if "input_ids" not in names:
        raise ModelError("this model does not take input_ids: only text classifiers can be exported")
    return names


def _encode(tokenizer, texts: Sequence[str], names: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    out = {}
    for n in names:
        if n in enc:
            out[n] = np.ascontiguousarray(enc[n], dtype=np.int64)
        elif n == "token_type_ids":
            out[n] = np.zeros_like(np.asarray(enc["input_ids"]), dtype=np.int64)
        else:
            out[n] = np.ones_like(np.asarray(enc["input_ids"]), dtype=np.int64)
    return out


def _quiet():
    """Exporters print progress and deprecation notices: keep the terminal for the results."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)                # onnxruntime's quantizer logs advice on the root logger
    stack.callback(logging.disable, previous)
    return stack


def _torch_export(model, names: list[str], sample: dict[str, np.ndarray], path: Path, opset: int) -> dict:
    """The graph from ``torch.onnx.export``: the TorchScript exporter first (its attention pattern is the
    one onnxruntime's optimizer fuses), torch.export (dynamo) when that one is unavailable or fails."""
    import torch
    wrapper = _logits_only(model, names).eval()
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    errors = []
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        try:
            torch.onnx.export(wrapper, args, str(path), dynamo=False, input_names=names, output_names=[OUTPUT_NAME],
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                            OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True)
            return {"exporter": "torch.onnx.export (TorchScript)", "opset": opset}
        except Exception as exc:  # noqa: BLE001 - try the other exporter
            errors.append(f"TorchScript exporter: {type(exc).__name__}: {exc}")
        try:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            opset = max(opset, 18)
            torch.onnx.export(wrapper, args, str(path), dynamo=True, external_data=False, input_names=names,
                              output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),))  # one *tensors group
            return {"exporter": "torch.onnx.export (torch.export)", "opset": opset}
        except Exception as exc:  # noqa: BLE001
            errors.append(f"torch.export exporter: {type(exc).__name__}: {exc}")
    raise ModelError("could not export the model to ONNX: " + "; ".join(e[:300] for e in errors))


def _fuse(path: Path, config, out: Path) -> dict:
    """onnxruntime's transformer optimizer (attention, layer norm, GELU fusions) on the CPU graph.
    Returns which operators it fused; on failure the graph is left as exported."""
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model
        options = FusionOptions("bert")
        options.enable_skip_layer_norm = False          # see UNFUSED_OPTIMIZERS
        heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0) or 0)
        hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or 0)
        with _quiet():
            opt = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                                 use_gpu=False, optimization_options=options)
            stats = {k: int(v) for k, v in (opt.get_fused_operator_statistics() or {}).items() if v}
            opt.save_model_to_file(str(out), use_external_data_format=False)
        return {"tool": "onnxruntime.transformers.optimizer (model_type bert, CPU)", "fused": stats,
                "unfused": list(UNFUSED_OPTIMIZERS)}
    except Exception as exc:  # noqa: BLE001 - an unfused graph still runs, only slower
        return {"tool": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def _float_nodes(path: Path) -> list[str]:
    """Nodes int8 leaves in float: the pooler and the head, and products of two activations (attention's
    query·key and weights·value when the optimizer left attention unfused): only weights are quantized."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    constant = {t.name for t in graph.initializer}
    constant |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    keep = []
    for node in graph.node:
        parts = set(node.name.replace(".", "/").split("/"))
        if parts & set(KEEP_FLOAT) or (node.op_type == "MatMul" and not set(node.input) & constant):
            keep.append(node.name)
    return keep


def _bert_layers(model) -> list:
    """The encoder layers shaped like BERT's (attention.self.query/key/value, attention.output.dense,
    intermediate.dense, output.dense), or [] for other architectures."""
    layers = []
    for _, module in model.named_modules():
        try:
            attn = module.attention
            parts = (attn.self.query, attn.self.key, attn.self.value, attn.output.dense,
                     module.intermediate.dense, module.output.dense)
        except AttributeError:
            continue
        import torch
        if all(isinstance(x, torch.nn.Linear) for x in parts):
            layers.append(module)
    return layers


def _smooth_for_int8(model, tokenizer, max_length: int):
    """A copy of ``model`` computing the same function whose linear layers' inputs (those of
    SMOOTH_GROUPS) have equal channel ranges (SmoothQuant). For each input channel j with activation
    range a_j (measured on built-in reviews) and weight range w_j, s_j = a_j^alpha / w_j^(1-alpha); the
    input is divided by s and the weight's column j multiplied by s_j. Where the division can be folded
    into the layer before, it is: the attention output's input is softmax-weighted values, so value's
    rows absorb it. Elsewhere it is one elementwise multiply in the graph (the FFN's two inputs, and
    query/key/value's when asked). Returns (model, facts), or (None, why) when the architecture is not
    BERT-style or no calibration reviews exist."""
    import copy

    import torch
    layers = _bert_layers(model)
    if not layers:
        return None, {"smoothing": None, "why": "not a BERT-style encoder"}
    try:
        from lib.sources.demo_data import demo_texts
        texts = demo_texts("train")[::7][:SMOOTH_REVIEWS]
    except LabError as exc:
        return None, {"smoothing": None, "why": str(exc)}
    smoothed = copy.deepcopy(model).eval()
    layers = _bert_layers(smoothed)
    taps = {}
    for i, layer in enumerate(layers):
        for key, lin in (("qkv", layer.attention.self.query), ("out", layer.attention.output.dense),
                         ("up", layer.intermediate.dense), ("down", layer.output.dense)):
            taps[(i, key)] = lin
    ranges: dict = {}

    def tap(name):
        def hook(module, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
            ranges[name] = torch.maximum(ranges[name], x) if name in ranges else x
        return hook

    handles = [lin.register_forward_pre_hook(tap(name)) for name, lin in taps.items()]
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), 16):
                enc = tokenizer(texts[start:start + 16], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
                smoothed(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    finally:
        for h in handles:
            h.remove()

    def scales(a, linears):
        w = torch.stack([lin.weight.detach().abs().amax(0) for lin in linears]).amax(0).float()
        return (a.clamp(min=1e-5).pow(SMOOTH_ALPHA) / w.clamp(min=1e-5).pow(1 - SMOOTH_ALPHA)).clamp(1e-3, 1e3)

    with torch.no_grad():
        for i, layer in enumerate(layers):
            sa = layer.attention.self
            if "qkv" in SMOOTH_GROUPS:
                qkv = [sa.query, sa.key, sa.value]
                s = scales(ranges[(i, "qkv")], qkv)
                for lin in qkv:
                    lin.weight.mul_(s)
                sa.register_forward_pre_hook(_divide_first(1.0 / s), with_kwargs=True)
            out = layer.attention.output.dense
            if "out" in SMOOTH_GROUPS:
                s = scales(ranges[(i, "out")], [out])
                sa.value.weight.div_(s[:, None])
                if sa.value.bias is not None:
                    sa.value.bias.div_(s)
                out.weight.mul_(s)
            for key, lin in (("up", layer.intermediate.dense), ("down", layer.output.dense)):
                if key not in SMOOTH_GROUPS:
                    continue
                s = scales(ranges[(i, key)], [lin])
                lin.weight.mul_(s)
                lin.register_forward_pre_hook(_divide_first(1.0 / s), with_kwargs=True)
    return smoothed, {"smoothing": "SmoothQuant", "alpha": SMOOTH_ALPHA, "calibration_reviews": len(texts),
                      "layers": len(layers)}


def _int8_source(model, tokenizer, names, sample, texts, tmp: Path, opset: int, calibration_length: int,
                 max_length: int, facts: dict) -> Path:
    """The fp32 graph to quantize: the smoothed model's (checked to compute what the model computes), or
    the plain export's when smoothing does not apply or fails its check. ``facts`` gets what was done."""
    plain = tmp / ONNX_FILE
    smoothed, why = _smooth_for_int8(model, tokenizer, calibration_length)
    facts.update(why)
    if smoothed is None:
        return plain
    try:
        raw = tmp / "smoothed.raw.onnx"
        _torch_export(smoothed, names, sample, raw, opset)
        graph = tmp / "smoothed.onnx"
        if not _fuse(raw, model.config, graph).get("tool"):
            graph = raw
        check = _agreement(model, tokenizer, names, graph, texts, max_length)
    except ModelError as exc:
        facts.update({"smoothing": None, "why": f"the smoothed model did not export: {str(exc)[:200]}"})
        return plain
    if check["max_abs_logit_diff"] > FP32_TOLERANCE:
        facts.update({"smoothing": None, "why": f"the smoothed graph differed from the model by "
                                                f"{check['max_abs_logit_diff']:.2e}; int8 made without it"})
        return plain
    return graph


def _divide_first(inv):
    """A forward pre-hook multiplying a module's first input by ``inv`` (traced into the graph as one Mul)."""
    def hook(module, args, kwargs):
        if args:
            return (args[0] * inv, *args[1:]), kwargs
        name = next(iter(kwargs))
        return args, {**kwargs, name: kwargs[name] * inv}
    return hook


def _quantize(src: Path, out: Path) -> dict:
    """Dynamic int8 quantization: weights as signed 8-bit integers with one scale per output channel,
    activations quantized on the fly. Per-channel scales matter: with one scale per tensor a fine-tuned
    MiniLM gave another label than full precision on 8 % of IMDb reviews, per channel on 1 %, at the same
    speed (unsigned weights and reduced range were slower and no closer)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    keep = _float_nodes(src)
    with _quiet():
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=keep, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": True,
            "kept_in_float": keep}


def _torch_logits(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.float().numpy()


def _agreement(model, tokenizer, names, graph: Path, texts: Sequence[str], max_length: int) -> dict:
    """Max |logit difference| and label agreement with PyTorch: each text alone and all in one padded batch."""
    ort = _require_runtime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=UNFUSED_OPTIMIZERS)
    wanted = {i.name for i in session.get_inputs()}
    diffs, agree, total = [], 0, 0
    cases = [[t] for t in texts] + [list(texts)]
    for case in cases:
        feeds = _encode(tokenizer, case, names, max_length)
        ref = _torch_logits(model, feeds)
        got = np.asarray(session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0], dtype=np.float32)
        diffs.append(float(np.max(np.abs(ref - got))))
        if len(case) == 1:
            agree += int(ref.argmax(-1)[0] == got.argmax(-1)[0])
            total += 1
    return {"max_abs_logit_diff": max(diffs), "labels_agree": agree, "texts": total,
            "batched_too": True}


def _preprocessing(src: Path, tokenizer, config, max_length: int) -> dict:
    """How text must be prepared for this model: the source folder's lab_preprocessing.json when the training
    job wrote one, else what the tokenizer itself says (marked as not recorded by training)."""
    recorded = src / PREPROCESSING_FILE
    if recorded.is_file():
        try:
            data = json.loads(recorded.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return {**data, "recorded_by_training": True}
        except ValueError:
            pass
    return {"recorded_by_training": False, "max_length": max_length,
            "truncation_side": getattr(tokenizer, "truncation_side", "right"),
            "padding_side": getattr(tokenizer, "padding_side", "right"),
            "lowercase": getattr(tokenizer, "do_lower_case", None),
            "model_input_names": list(getattr(tokenizer, "model_input_names", []) or [])}


def _serving_length(preprocessing: dict, limit: int) -> int:
    """The token limit predictions should use: the one training used when it was recorded, else the model's."""
    value = preprocessing.get("max_length")
    if isinstance(value, int) and not isinstance(value, bool) and 8 <= value <= limit:
        return value
    return limit


def _model_max_length(model, tokenizer) -> int:
    limits = [512]
    pos = getattr(model.config, "max_position_embeddings", None)
    if isinstance(pos, int) and pos > 8:
        limits.append(pos - (2 if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta") else 0))
    tmax = getattr(tokenizer, "model_max_length", None)
    if isinstance(tmax, int) and 8 <= tmax < 100_000:
        limits.append(tmax)
    return max(8, min(limits))


def _versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "onnx", "onnxruntime"):
        try:
            out[name] = str(__import__(name).__version__)
        except Exception:  # noqa: BLE001
            out[name] = None
    return out


def export_onnx(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, quantize: bool = False,
                opset: int = DEFAULT_OPSET, check_texts: Sequence[str] | None = None,
                keep_fp32: bool = True) -> Path:
    """Export the sequence classifier in ``model_dir`` to ``out_dir`` (see the module docstring for the
    files) and return ``out_dir``. The fp32 graph must agree with PyTorch on ``check_texts`` (a few
    built-in reviews by default) within 1e-3 in every logit, else nothing is written and ModelError says
    why. ``out_dir`` may be new, empty, or an earlier export (replaced as a whole). With ``quantize`` and
    ``keep_fp32=False`` only the int8 graph is kept (a quarter of the size)."""
    _require_export_tools()
    from lib.sources.models import load_model, load_tokenizer
    src = _check_source(model_dir)
    out = Path(out_dir).expanduser()
    _check_out(out, src)
    t0 = time.perf_counter()
    try:
        model = load_model(str(src), None)
        tokenizer = load_tokenizer(str(src))
    except LabError as exc:
        raise ModelError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - odd configs, corrupt weights: a message
        raise ModelError(f"could not load a sequence classifier from {src}: {exc}") from None
    model.eval()
    try:  # the eager attention graph is the one onnxruntime fuses into its Attention operator
        model.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001 - keep the model's own attention
        pass
    names = _input_names(model, tokenizer)
    max_length = _model_max_length(model, tokenizer)
    texts = list(check_texts or CHECK_TEXTS)
    sample = _encode(tokenizer, texts[:2], names, max_length)

    tmp = out.resolve().parent / f".{out.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        raw = tmp / "raw.onnx"
        export = _torch_export(model, names, sample, raw, opset)
        fused = _fuse(raw, model.config, tmp / ONNX_FILE)
        check = None
        if fused.get("tool"):
            check = _agreement(model, tokenizer, names, tmp / ONNX_FILE, texts, max_length)
            if check["max_abs_logit_diff"] > FP32_TOLERANCE:  # the fusion changed the numbers: keep it unfused
                fused = {"tool": None, "error": f"fused graph differed from PyTorch by "
                                                f"{check['max_abs_logit_diff']:.2e}; kept unfused"}
                check = None
        if not fused.get("tool"):
            os.replace(raw, tmp / ONNX_FILE)
        raw.unlink(missing_ok=True)
        if check is None:
            check = _agreement(model, tokenizer, names, tmp / ONNX_FILE, texts, max_length)
        if check["max_abs_logit_diff"] > FP32_TOLERANCE:
            raise ModelError(f"the ONNX export does not agree with the PyTorch model (logits differ by up to "
                             f"{check['max_abs_logit_diff']:.2e}, more than {FP32_TOLERANCE}): it was not written")
        files = {"fp32": ONNX_FILE}
        checks = {"fp32": check}
        quant = None
        if quantize:
            calibration_length = _serving_length(_preprocessing(src, tokenizer, model.config, max_length),
                                                 max_length)
            smooth_facts: dict = {}
            source = _int8_source(model, tokenizer, names, sample, texts, tmp, opset, calibration_length,
                                  max_length, smooth_facts)
            quant = {**_quantize(source, tmp / INT8_FILE), **smooth_facts}
            for name in ("smoothed.raw.onnx", "smoothed.onnx"):
                (tmp / name).unlink(missing_ok=True)
            files["int8"] = INT8_FILE
            checks["int8"] = _agreement(model, tokenizer, names, tmp / INT8_FILE, texts, max_length)
            if not keep_fp32:
                (tmp / ONNX_FILE).unlink()
                del files["fp32"]
        tokenizer.save_pretrained(str(tmp))
        for name in CARRIED_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        cfg = model.config
        preprocessing = _preprocessing(src, tokenizer, cfg, max_length)
        id2label = getattr(cfg, "id2label", None) or {}
        n_labels = int(getattr(cfg, "num_labels", 0) or len(id2label) or 2)
        meta = {
            "format": META_FORMAT,
            "files": files,
            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in names],
            "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", n_labels]}],
            "opset": export["opset"],
            "exporter": export["exporter"],
            "optimizer": fused,
            "quantization": quant,
            "label_names": [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n_labels)],
            "model_type": getattr(cfg, "model_type", None),
            "max_length": _serving_length(preprocessing, max_length),
            "model_max_length": max_length,
            "preprocessing": preprocessing,
            "source": {**source_signature(src), "architectures": list(getattr(cfg, "architectures", None) or [])},
            "check": checks,
            "versions": _versions(),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------------------------------

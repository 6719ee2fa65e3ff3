"""TrainConfig: one description of a training run, shared by the CLI, the job and the Train form.

Fields that exist in ``transformers.TrainingArguments`` keep their names there. Every field has help
text and a group (for the form) in its metadata. Validation happens in one place,
:meth:`TrainConfig.validate`, and reports every bad field at once with a message a person
understands; :meth:`TrainConfig.from_dict` also turns strings (from ``--set key=value`` or a form)
into the field's type.
"""
from __future__ import annotations

import ast
import codecs
import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lib.errors import ConfigError

BUNDLED_MODEL = "bundled-minilm"
TINY_MODEL = "tiny-bert"
DEMO_DATASET = "demo"

PADDING_CHOICES = ("dynamic", "longest_in_map_batch", "max_length")
STRATEGY_CHOICES = ("no", "steps", "epoch")
SCHEDULER_CHOICES = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt",
)
AUTO_BOOL_CHOICES = ("auto", True, False)
METRIC_CHOICES = ("accuracy", "f1", "precision", "recall", "roc_auc", "loss")
TASK_CHOICES = ("finetune", "distill")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
# Upper bounds a visitor cannot exceed (every amount of work a form can ask for is bounded).
MAX_STEPS = 10_000_000
MAX_SAMPLES = 10_000_000
MAX_CHECKPOINTS = 50
MAX_LABELS = 50          # classes a run may have (label_names and the distinct values of the label column)
DEFAULT_LABEL_NAMES = ["NEGATIVE", "POSITIVE"]
_ENDPOINT_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(\d{1,5})$")


def valid_endpoint(text: str) -> bool:
    """``host:port`` with a plain host name, IPv4 address or ``[IPv6]`` and a port 1-65535."""
    m = _ENDPOINT_RE.match(text.strip())
    return bool(m) and 1 <= int(m.group(1)) <= 65535
GROUPS = ("Run", "Data", "Model", "Schedule", "Optimisation", "Checkpoints", "Hardware", "Distillation")


def _f(default: Any, group: str, help: str, **meta: Any):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)),
                     metadata={"group": group, "help": help, **meta})
    return field(default=default, metadata={"group": group, "help": help, **meta})


@dataclass
class TrainConfig:
    # --- Run ---
    run_name: str = _f("", "Run", "A free-text label for the run, shown in tables. Never used as a path.")
    owner: str = _f("", "Run", "Who launched the run (filled in by the app).")
    task: str = _f("finetune", "Run", "finetune: train a classifier on labelled data; distill: train a smaller "
                   "student from a teacher run.", choices=TASK_CHOICES)
    sweep_id: str = _f("", "Run", "The sweep this run belongs to (filled in when a sweep launches it).")
    sweep_point: dict = _f({}, "Run", "This run's grid values in its sweep, as {field: value} (filled in by the "
                           "sweep).")
    # --- Data ---
    dataset: str = _f(DEMO_DATASET, "Data", "'demo' (built-in movie reviews), a Hugging Face Hub id such as "
                      "'imdb', a local CSV/TSV/JSONL/Parquet file, or an aclImdb folder.")
    test_file: str = _f("", "Data", "Optional separate evaluation file for a local training file.")
    text_column: str = _f("text", "Data", "Column that holds the review text.")
    label_column: str = _f("label", "Data", "Column that holds the label: 0/1, pos/neg, positive/negative for "
                           "sentiment, or 2 to 50 classes of your own (text or whole numbers).")
    label_names: list = _f(list(DEFAULT_LABEL_NAMES), "Data", "Names of the classes in order, label 0 first, as "
                           "the exported model will answer them. Two names for sentiment (0/1, neg/pos and "
                           "negative/positive are understood); up to 50 names for more classes. With the "
                           "default, data with three or more different labels keeps its own label names.")
    encoding: str = _f("auto", "Data", "Text encoding of a CSV/TSV/JSON file: auto (UTF-8 with or without BOM, "
                       "else Windows-1252, as spreadsheets save it), or a codec name such as utf-8, cp1252, "
                       "latin-1 or utf-16.")
    eval_fraction: float = _f(0.2, "Data", "Share held out for evaluation when the data has only one split "
                              "(seeded and stratified).", min=0.01, max=0.9)
    max_train_samples: int | None = _f(None, "Data", "Train on a seeded random subset of this many reviews "
                                       "(empty = all).", min=1, max=MAX_SAMPLES)
    max_eval_samples: int | None = _f(None, "Data", "Evaluate on a seeded subset of this many reviews, kept in "
                                      "dataset order (empty = all).", min=1, max=MAX_SAMPLES)
    strip_html: bool = _f(True, "Data", "Turn '<br />' tags into line breaks before tokenizing.")
    # --- Model ---
    model: str = _f(BUNDLED_MODEL, "Model", "'bundled-minilm' (offline default), a Hub id such as "
                    "'bert-base-uncased', a local save_pretrained folder, or 'tiny-bert' (random, for tests).")
    max_length: int = _f(512, "Model", "Longest input in tokens; longer reviews are truncated.", min=8, max=512)
    head_tokens: int = _f(0, "Model", "Head+tail truncation: a review longer than max_length keeps its first this "
                          "many tokens and its end (where the verdict usually is; Sun et al. 2019 found it best on "
                          "IMDb). 0: keep the beginning and cut the end, as the tutorial does.", min=0, max=509)
    padding: str = _f("dynamic", "Model", "dynamic: pad each batch to its longest review (fast); "
                      "longest_in_map_batch: the tutorial's padding=True inside map; max_length: pad everything "
                      "to max_length.", choices=PADDING_CHOICES)
    group_by_length: bool = _f(True, "Model", "Batch reviews of similar length together (less padding).")
    shuffle_length_groups: bool = _f(True, "Model", "With group_by_length: serve the length-grouped batches in "
                                     "random order instead of upstream's long-to-short runs (the same batches, so "
                                     "the same padding; on IMDb it keeps the tutorial's accuracy, BENCHMARKS.md).")
    sort_eval_by_length: bool = _f(True, "Model", "Evaluate in length-sorted batches (less padding, about "
                                   "1.8x faster with dynamic padding); predictions are put back in dataset "
                                   "order.")
    freeze_embeddings: bool = _f(False, "Model", "Keep the pre-trained word embeddings fixed: faster steps, and on "
                                 "small data sets less forgetting of words the training reviews never use.")
    frozen_layers: int = _f(0, "Model", "Keep the first this many transformer layers fixed as well (0: train all "
                            "layers; all of them: only the classifier head trains).", min=0, max=48)
    onnx_export: bool = _f(True, "Model", "After training, also export the model to ONNX with int8 weights "
                           "(<run>/onnx) so the app and python -m lib.predict answer about twice as fast on a CPU; "
                           "skipped with a note when onnxruntime is not installed.")
    tokenization_cache: bool = _f(True, "Data", "Tokenize each data set once per tokenizer, max_length and "
                                  "padding, and reuse it from the runs directory's _cache/ folder.")
    # --- Schedule ---
    num_train_epochs: float = _f(2.0, "Schedule", "Passes over the training set.", min=0.01, max=1000)
    max_steps: int = _f(-1, "Schedule", "Stop after this many optimizer steps (-1 = use epochs).", min=-1,
                        max=MAX_STEPS)
    per_device_train_batch_size: int = _f(8, "Schedule", "Reviews per training batch on each device.", min=1,
                                          max=4096)
    per_device_eval_batch_size: int = _f(8, "Schedule", "Reviews per evaluation batch on each device.", min=1,
                                         max=4096)
    gradient_accumulation_steps: int = _f(1, "Schedule", "Batches added up before each optimizer step.", min=1,
                                          max=1024)
    logging_steps: float = _f(500, "Schedule", "Log loss/learning rate every N optimizer steps (a fraction "
                              "< 1 means that share of the total).", min=0, exclusive_min=True,
                              max=MAX_STEPS)
    eval_strategy: str = _f("epoch", "Schedule", "When to evaluate: each epoch, every eval_steps, or never.",
                            choices=STRATEGY_CHOICES)
    eval_steps: float | None = _f(None, "Schedule", "Evaluate every N steps (eval_strategy 'steps'; empty = "
                                  "logging_steps).", min=0, exclusive_min=True, max=MAX_STEPS)
    # --- Optimisation ---
    learning_rate: float = _f(5e-5, "Optimisation", "Peak learning rate of AdamW.", min=0, max=1,
                              exclusive_min=True)
    weight_decay: float = _f(0.0, "Optimisation", "AdamW weight decay.", min=0, max=1)
    warmup_steps: float = _f(0, "Optimisation", "Warm-up: a number of steps (>= 1) or a fraction of all "
                             "steps (< 1).", min=0, max=MAX_STEPS)
    lr_scheduler_type: str = _f("linear", "Optimisation", "Learning-rate schedule after warm-up.",
                                choices=SCHEDULER_CHOICES)
    seed: int = _f(42, "Optimisation", "Random seed for shuffling, subsets and initialisation.", min=0,
                   max=2**32 - 1)
    # --- Checkpoints ---
    save_strategy: str = _f("epoch", "Checkpoints", "When to save a checkpoint.", choices=STRATEGY_CHOICES)
    save_steps: float | None = _f(None, "Checkpoints", "Save every N steps (save_strategy 'steps'; empty = "
                                  "500).", min=0, exclusive_min=True, max=MAX_STEPS)
    save_total_limit: int | None = _f(2, "Checkpoints", "Keep at most this many checkpoints (empty = all; "
                                      "needed when saving every N steps).", min=1, max=MAX_CHECKPOINTS)
    load_best_model_at_end: bool = _f(False, "Checkpoints", "Export the best checkpoint instead of the last.")
    metric_for_best_model: str = _f("accuracy", "Checkpoints", "Metric that decides the best checkpoint.",
                                    choices=METRIC_CHOICES)
    early_stopping_patience: int | None = _f(None, "Checkpoints", "Stop after this many evaluations in a row "
                                             "without improvement of metric_for_best_model, and export the best "
                                             "checkpoint (empty = off).", min=1, max=1000)
    early_stopping_threshold: float = _f(0.0, "Checkpoints", "With early stopping: how much the metric must "
                                         "improve to count as better.", min=0, max=1000)
    # --- Hardware ---
    fp16: Any = _f("auto", "Hardware", "Half precision: auto = on when a CUDA GPU supports it (as in the "
                   "tutorial).", choices=AUTO_BOOL_CHOICES)
    bf16: Any = _f(False, "Hardware", "bfloat16 mixed precision: auto = on when the GPU supports it and fp16 "
                   "is off.", choices=AUTO_BOOL_CHOICES)
    device: str = _f("auto", "Hardware", "Where to train: auto (GPU when there is one), cpu, or cuda.",
                     choices=DEVICE_CHOICES)
    dataloader_num_workers: int = _f(0, "Hardware", "Background processes that prepare batches (at most this "
                                    "machine's cores).", min=0, max=64)
    num_processes: int = _f(1, "Hardware", "Processes per machine (torchrun --nproc_per_node); > 1 for several "
                            "GPUs, or CPU processes with the gloo backend.", min=1, max=64)
    num_nodes: int = _f(1, "Hardware", "Machines taking part (torchrun --nnodes).", min=1, max=1024)
    node_rank: int = _f(0, "Hardware", "This machine's rank among the nodes.", min=0, max=1023)
    rdzv_endpoint: str = _f("", "Hardware", "host:port every node can reach, for several machines.")
    report_tensorboard: Any = _f("auto", "Hardware", "Also write TensorBoard event files (auto = when "
                                 "tensorboard is installed).", choices=AUTO_BOOL_CHOICES)
    system_metrics_every_s: float = _f(10, "Hardware", "Record CPU, memory and GPU use every N seconds while "
                                       "training (0 = off).", min=0, max=3600)
    # --- Distillation ---
    teacher: str = _f("", "Distillation", "A finished run id or a saved model folder to distil from.")
    student_layers: int = _f(3, "Distillation", "Student depth: the bundled MiniLM (or the teacher) cut to "
                             "this many layers.", min=1, max=48)
    student_hidden_size: int | None = _f(None, "Distillation", "A narrower student: a new BERT of this width "
                                         "(empty = the model's own width, cut to student_layers), initialised "
                                         "from the teacher where weight shapes match.", min=8, max=4096)
    student_attention_heads: int | None = _f(None, "Distillation", "Attention heads of a narrower student "
                                             "(empty = the teacher's; must divide student_hidden_size).", min=1,
                                             max=64)
    student_intermediate_size: int | None = _f(None, "Distillation", "Feed-forward width of a narrower student "
                                               "(empty = 4 x student_hidden_size).", min=8, max=16384)
    temperature: float = _f(2.0, "Distillation", "Softmax temperature for the teacher's soft labels.", min=0,
                            max=100, exclusive_min=True)
    alpha: float = _f(0.5, "Distillation", "Weight of the hard-label loss (1 - alpha goes to the teacher).",
                      min=0, max=1)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        errors = self.validate()
        if errors:
            raise ConfigError(errors)

    def validate(self) -> dict[str, str]:
        """Every problem, as {field: message}. Empty when the config is valid."""
        errs: dict[str, str] = {}
        for f in fields(self):
            msg = _check_field(f, getattr(self, f.name))
            if msg:
                errs[f.name] = msg
        if errs:
            return errs
        errs.update(_check_label_names(self.label_names))
        if self.encoding.strip().lower() != "auto" and text_codec(self.encoding) is None:
            errs["encoding"] = (f"encoding {_describe(self.encoding)} is not a text encoding Python knows; use "
                                "auto, utf-8, cp1252 (Windows-1252), latin-1, utf-16 or another codec name")
        if self.head_tokens and self.head_tokens > self.max_length - 3:
            errs["head_tokens"] = (f"head_tokens must leave room for the end of the review: at most max_length - 3 "
                                   f"= {self.max_length - 3}, got {self.head_tokens} (0 keeps the beginning only)")
        if not self.dataset.strip():
            errs["dataset"] = "dataset must not be empty: use 'demo' for the built-in reviews"
        if not self.model.strip():
            errs["model"] = f"model must not be empty: use '{BUNDLED_MODEL}' for the bundled MiniLM"
        if self.fp16 is True and self.bf16 is True:
            errs["bf16"] = "fp16 and bf16 cannot both be on; pick one"
        if self.eval_strategy != self.save_strategy and self.load_best_model_at_end:
            errs["load_best_model_at_end"] = ("load_best_model_at_end needs save_strategy equal to eval_strategy "
                                              f"(got save '{self.save_strategy}', eval '{self.eval_strategy}')")
        if self.load_best_model_at_end and self.eval_strategy == "no":
            errs["load_best_model_at_end"] = "load_best_model_at_end needs evaluation (eval_strategy is 'no')"
        errs.update(_early_stopping_errors(self))
        errs.update(_sweep_errors(self))
        if self.max_steps == 0:
            errs["max_steps"] = "max_steps must be -1 (use epochs) or a positive number of steps, got 0"
        if self.task == "distill" and not self.teacher.strip():
            errs["teacher"] = "a distillation run needs a teacher: a finished run id or a saved model folder"
        if self.student_hidden_size is None and (self.student_attention_heads is not None
                                                  or self.student_intermediate_size is not None):
            errs["student_hidden_size"] = ("student_attention_heads and student_intermediate_size shape a narrower "
                                           "student: set student_hidden_size too (or clear them)")
        if self.student_hidden_size is not None and self.student_attention_heads is not None \
                and self.student_hidden_size % self.student_attention_heads:
            errs["student_attention_heads"] = (f"student_hidden_size ({self.student_hidden_size}) must be a multiple "
                                               f"of student_attention_heads ({self.student_attention_heads})")
        if on_slurm() and self.rdzv_endpoint.strip():
            errs["rdzv_endpoint"] = ("runs go to Slurm here, which finds the rendezvous on the job's own first "
                                     "node: leave rdzv_endpoint empty")
        elif self.num_nodes > 1 and not self.rdzv_endpoint.strip() and not on_slurm():
            errs["rdzv_endpoint"] = "training on several machines needs rdzv_endpoint (host:port of node 0)"
        elif self.rdzv_endpoint.strip() and not valid_endpoint(self.rdzv_endpoint):
            errs["rdzv_endpoint"] = (f"rdzv_endpoint must be host:port (a host name or IP address and a port "
                                     f"1-65535), got {self.rdzv_endpoint[:80]!r}")
        if self.save_strategy == "steps" and self.save_total_limit is None:
            errs["save_total_limit"] = ("saving every N steps needs a checkpoint budget: set save_total_limit "
                                        f"(1 to {MAX_CHECKPOINTS}); each checkpoint of a BERT model with its "
                                        "optimizer state is hundreds of MB")
        if not on_slurm():  # on Slurm the job gets the CPUs and GPUs it asks for on its own nodes
            errs.update(machine_fit(self))
        if self.node_rank >= self.num_nodes:
            errs["node_rank"] = f"node_rank must be below num_nodes ({self.num_nodes}), got {self.node_rank}"
        for name in ("run_name", "owner", "dataset", "test_file", "model", "text_column", "label_column",
                     "teacher", "rdzv_endpoint", "encoding"):
            value = getattr(self, name)
            if "\x00" in value:
                errs[name] = f"{name} contains a NUL byte; remove it"
            elif len(value) > 500:
                errs[name] = f"{name} is {len(value)} characters long; keep it under 500"
        return errs

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, coerce_strings: bool = False) -> TrainConfig:
        """Build a config from a dict; unknown keys and bad values raise ConfigError (all at once).

        With ``coerce_strings`` string values (from a CLI or a text box) are parsed into the field's
        type: "8" → 8, "true" → True, "" → None for optional fields, "a,b" → ["a", "b"] for lists.
        """
        if not isinstance(data, dict):
            raise ConfigError({"config": f"a config must be a JSON object, got {type(data).__name__}"})
        known = {f.name: f for f in fields(cls)}
        errs: dict[str, str] = {}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                errs[str(key)] = f"unknown field {str(key)!r} (known fields: see TrainConfig)"
                continue
            if coerce_strings and isinstance(value, str):
                try:
                    value = _parse_string(known[key], value)
                except ValueError as exc:
                    errs[key] = str(exc)
                    continue
            values[key] = value
        if errs:
            raise ConfigError(errs)
        obj = cls.__new__(cls)
        for name, f in known.items():
            if name in values:
                setattr(obj, name, values[name])
            elif f.default is not dataclasses.MISSING:
                setattr(obj, name, f.default)
            else:
                setattr(obj, name, f.default_factory())  # type: ignore[misc]
        obj.__post_init__()
        return obj

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError({"config": f"the config is not valid JSON: {exc}"}) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError({"config": f"cannot read config file {path}: {exc.strerror or exc}"}) from None
        except UnicodeDecodeError:
            raise ConfigError({"config": f"config file {path} is not UTF-8 text"}) from None
        return cls.from_json(text)

    def replace(self, **changes: Any) -> TrainConfig:
        data = self.to_dict()
        data.update(changes)
        return TrainConfig.from_dict(data)

    def with_overrides(self, assignments: list[str]) -> TrainConfig:
        """Apply ``key=value`` strings (``--set``)."""
        return TrainConfig.from_dict(apply_overrides(self.to_dict(), assignments))


    # ------------------------------------------------------------------ derived
    @property
    def effective_batch_size(self) -> int:
        """Samples per optimizer step: per-device batch × processes × nodes × gradient accumulation."""
        return (self.per_device_train_batch_size * self.num_processes * self.num_nodes
                * self.gradient_accumulation_steps)

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_nodes

    @property
    def label(self) -> str:
        """The run's name, or "<model> on <dataset>" when it has none."""
        return run_label(dataclasses.asdict(self))


# ---------------------------------------------------------------------- field checks
SWEEP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_SWEEP_FIELDS = 8


def _early_stopping_errors(config: TrainConfig) -> dict[str, str]:
    """What early stopping needs from the other settings (the job turns load_best_model_at_end on itself)."""
    if config.early_stopping_patience is None:
        return {}
    key = "early_stopping_patience"
    if config.eval_strategy == "no":
        return {key: "early stopping needs evaluations: set eval_strategy to 'epoch' or 'steps' (it is 'no')"}
    if config.save_strategy != config.eval_strategy:
        return {key: f"early stopping keeps the best checkpoint, so save_strategy must equal eval_strategy (got "
                     f"save '{config.save_strategy}', eval '{config.eval_strategy}'): set save_strategy to "
                     f"'{config.eval_strategy}'"}
    if config.eval_strategy == "steps":
        every_eval = config.eval_steps if config.eval_steps is not None else config.logging_steps
        every_save = config.save_steps if config.save_steps is not None else 500
        big = 1_000_000
        if (every_eval < 1) != (every_save < 1) or round(every_save * big) % round(every_eval * big):
            return {key: f"early stopping needs save_steps ({every_save:g}) to be a multiple of eval_steps "
                         f"({every_eval:g}), both numbers of steps or both shares: set save_steps to "
                         f"{every_eval:g}"}
    return {}


def _sweep_errors(config: TrainConfig) -> dict[str, str]:
    errs: dict[str, str] = {}
    if config.sweep_id and not SWEEP_ID_RE.match(config.sweep_id):
        errs["sweep_id"] = ("sweep_id must be up to 64 letters, digits, '.', '_' or '-' (it is made by the sweep), "
                            f"got {_describe(config.sweep_id)}")
    point = config.sweep_point
    if len(point) > MAX_SWEEP_FIELDS:
        errs["sweep_point"] = f"sweep_point holds {len(point)} fields; at most {MAX_SWEEP_FIELDS}"
    names = set(field_names())
    for key, value in point.items():
        if key not in names:
            errs["sweep_point"] = f"sweep_point names an unknown field {str(key)[:60]!r}"
        elif not (value is None or isinstance(value, (str, int, float, bool))) or (
                isinstance(value, str) and len(value) > 500):
            errs["sweep_point"] = f"sweep_point value of {key} must be a short number, text or true/false"
    return errs


def text_codec(name: str) -> str | None:
    """The canonical Python name of a text encoding (``"Latin-1"`` -> ``"latin-1"``), or None when
    ``name`` is not a codec or not one that turns bytes into text (such as ``base64``)."""
    try:
        info = codecs.lookup(str(name).strip())
    except (LookupError, TypeError, ValueError):
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _check_label_names(names: list) -> dict[str, str]:
    if not 2 <= len(names) <= MAX_LABELS:
        return {"label_names": f"label_names must name 2 to {MAX_LABELS} labels (label 0 first), got {len(names)}"}
    if any(not str(x).strip() for x in names):
        return {"label_names": f"label_names must not contain an empty name, got {names}"}
    folded = [str(x).strip().lower() for x in names]
    repeated = sorted({n for n in folded if folded.count(n) > 1})
    if repeated:
        return {"label_names": f"label_names must be different names (letter case aside); {', '.join(repeated)} "
                               f"appears more than once in {names}"}
    long = [n for n in names if len(str(n)) > 100]
    if long:
        return {"label_names": f"label names must be under 100 characters; {str(long[0])[:40]!r}... is longer"}
    return {}


def on_slurm() -> bool:
    """Do runs go to a Slurm cluster (``LAB_BACKEND=slurm`` on the server, ``LAB_SCHEDULER=slurm`` in a job)?"""
    backend = (os.environ.get("LAB_BACKEND") or "").strip().lower()
    return backend == "slurm" or os.environ.get("LAB_SCHEDULER") == "slurm"


def machine_fit(config: TrainConfig) -> dict[str, str]:
    """Processes and DataLoader workers tied to this machine: at most one training process per GPU (or
    per CPU core on a CPU), at most one DataLoader worker per core."""
    from lib.util.sysinfo import cpu_cores, gpu_count
    errs: dict[str, str] = {}
    cores = cpu_cores()
    gpus = gpu_count() if config.device != "cpu" else 0
    devices, what = (gpus, "GPU") if gpus else (cores, "CPU core")
    if config.num_processes > devices:
        errs["num_processes"] = (f"num_processes is {config.num_processes} but this machine has {devices} {what}"
                                 f"{'s' if devices != 1 else ''}; use at most {devices} (one process per {what})")
    if config.dataloader_num_workers > cores:
        errs["dataloader_num_workers"] = (f"dataloader_num_workers is {config.dataloader_num_workers} but this "
                                          f"machine has {cores} CPU cores; use at most {cores}")
    return errs


def run_label(config: dict, fallback: str = "") -> str:
    """The label a run is shown with: its free-text name, else "<model> on <dataset>" (one rule for
    every table, the CLI and the Runs page). ``config`` is a config.json dict; ``fallback`` is used when
    the run has no readable config at all."""
    if not config:
        return fallback
    return str(config.get("run_name") or "").strip() or f"{config.get('model', '?')} on {config.get('dataset', '?')}"


def field_info(name: str) -> dict[str, Any]:
    """Metadata (group, help, choices, min, max), default and whether it may be left empty, for forms."""
    for f in fields(TrainConfig):
        if f.name == name:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore
            return {"name": f.name, "type": _kind(f), "default": default, "optional": _optional(f), **f.metadata}
    raise KeyError(name)


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _kind(f: dataclasses.Field) -> str:
    t = str(f.type)
    if "choices" in f.metadata:
        return "choice"
    if t.startswith("bool"):
        return "bool"
    if t.startswith("int"):
        return "int"
    if t.startswith("float"):
        return "float"
    if t.startswith("list"):
        return "list"
    if t.startswith("dict"):
        return "dict"
    return "str"


def _optional(f: dataclasses.Field) -> bool:
    return "None" in str(f.type)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) < 60 else repr(value[:57] + "...")
    return repr(value)


def _check_field(f: dataclasses.Field, value: Any) -> str | None:
    name, kind, meta = f.name, _kind(f), f.metadata
    if value is None:
        return None if _optional(f) else f"{name} is required"
    if kind == "choice":
        choices = meta["choices"]
        if any(value == c and type(value) is type(c) for c in choices):
            return None
        shown = ", ".join("true" if c is True else "false" if c is False else c for c in choices)
        return f"{name} must be one of {shown}; got {_describe(value)}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"{name} must be true or false, got {_describe(value)}"
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            return f"{name} must be a list of text values, got {_describe(value)}"
        return None
    if kind == "str":
        return None if isinstance(value, str) else f"{name} must be text, got {_describe(value)}"
    if kind == "dict":
        return None if isinstance(value, dict) else f"{name} must be a JSON object, got {_describe(value)}"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
                return f"{name} must be a whole number, got {value!r} (write {int(value)})"
            adjective = "positive " if meta.get("min") == 1 else ""
            return f"{name} must be a {adjective}integer, got {_describe(value)}"
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number, got {_describe(value)}"
        if not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r}"
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        if meta.get("exclusive_min") and value <= lo:
            return f"{name} must be greater than {lo}, got {value!r}"
        if value < lo:
            if kind == "int" and lo == 1:
                return f"{name} must be a positive integer, got {value!r}"
            return f"{name} must be at least {lo}, got {value!r}"
    if hi is not None and value > hi:
        return f"{name} must be at most {hi}, got {value!r}"
    return None


def _parse_string(f: dataclasses.Field, text: str) -> Any:
    kind, raw = _kind(f), text.strip()
    if raw == "" and _optional(f):
        return None
    if kind == "choice":
        choices = f.metadata["choices"]
        low = raw.lower()
        if True in choices and low in ("true", "yes", "on", "1"):
            return True
        if False in choices and low in ("false", "no", "off", "0"):
            return False
        return raw
    if kind == "bool":
        low = raw.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{f.name} must be true or false, got {text!r}")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            try:
                as_float = float(raw)
            except ValueError:
                raise ValueError(f"{f.name} must be an integer, got {text!r}") from None
            if as_float.is_integer():
                return int(as_float)
            raise ValueError(f"{f.name} must be a whole number, got {text!r}") from None
    if kind == "float":
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{f.name} must be a number, got {text!r}") from None
        return int(value) if value.is_integer() and "." not in raw and "e" not in raw.lower() else value
    if kind == "list":
        if raw.startswith("["):
            try:
                value = json.loads(raw)
            except ValueError:
                raise ValueError(f"{f.name} must be a JSON list or comma-separated text, got {text!r}") from None
            return value
        return [part.strip() for part in raw.split(",")]
    if kind == "dict":
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            try:
                value = ast.literal_eval(raw)  # a dict as Python prints it (a form holding str(dict))
            except (ValueError, SyntaxError):
                raise ValueError(f"{f.name} must be a JSON object, got {text[:80]!r}") from None
        if not isinstance(value, dict):
            raise ValueError(f"{f.name} must be a JSON object, got {text[:80]!r}")
        return value
    return text


def apply_overrides(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``data`` with ``key=value`` strings applied (parsed by field type); ConfigError lists bad ones."""
    data = dict(data)
    errs: dict[str, str] = {}
    known = {f.name: f for f in fields(TrainConfig)}
    for item in assignments or []:
        if "=" not in item:
            errs[item] = f"--set expects key=value, got {item!r}"
            continue
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in known:
            errs[key] = f"unknown field {key!r} in --set {item!r}"
            continue
        try:
            data[key] = _parse_string(known[key], value)
        except ValueError as exc:
            errs[key] = str(exc)
    if errs:
        raise ConfigError(errs)
    return data


def build_config(preset_name: str | None = None, config_path: str | Path | None = None,
                 overrides: list[str] | None = None) -> TrainConfig:
    """The CLIs' config: a preset (default demo) or a saved JSON file, then ``--set`` overrides,
    validated once at the end (so a preset that needs a field, like distill's teacher, can get it)."""
    if config_path is not None:
        try:
            data = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError({"config": f"cannot read config file {config_path}: {exc.strerror or exc}"}) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError({"config": f"config file {config_path} is not valid UTF-8 JSON: {exc}"}) from None
        if not isinstance(data, dict):
            raise ConfigError({"config": "a config must be a JSON object"})
    else:
        name = preset_name or "demo"
        table = {**PRESETS, "distill": DISTILL_PRESET}
        if name not in table:
            raise ConfigError({"preset": f"unknown preset {name!r}; choose one of {', '.join(table)}"})
        data = dict(table[name])
    return TrainConfig.from_dict(apply_overrides(data, overrides or []))



# ---------------------------------------------------------------------- presets
PRESETS: dict[str, dict[str, Any]] = {
    # Exactly the tutorial: bert-base-uncased on IMDb (2,000 training reviews -> 250 steps per epoch).
    "seed": dict(
        run_name="tutorial: bert-base-uncased on IMDb",
        model="bert-base-uncased", dataset="imdb", num_train_epochs=2.0,
        per_device_train_batch_size=8, per_device_eval_batch_size=8,
        eval_strategy="epoch", save_strategy="epoch", logging_steps=500, save_total_limit=2,
        fp16="auto", padding="longest_in_map_batch", group_by_length=False, shuffle_length_groups=False,
        sort_eval_by_length=False,
        tokenization_cache=False, strip_html=False,
        max_length=512, max_train_samples=2000, max_eval_samples=500, learning_rate=5e-5,
    ),
    # Offline demo: bundled MiniLM on the built-in reviews; a few minutes on 2 CPU cores.
}

# Teacher -> student: needs teacher (a finished run id); the student is the teacher cut to 3 layers.
DISTILL_PRESET: dict[str, Any] = dict(
        run_name="student: 3-layer distillation", task="distill", model="teacher", teacher="",
        dataset=DEMO_DATASET, student_layers=3, temperature=2.0, alpha=0.5, num_train_epochs=2.0,
        per_device_train_batch_size=16, per_device_eval_batch_size=32, eval_strategy="epoch",
        save_strategy="epoch", logging_steps=5, save_total_limit=2, learning_rate=1e-4, warmup_steps=0.1,
        max_length=128, padding="dynamic", group_by_length=True,
)

PRESETS.update({
    # Chosen by measurement (BENCHMARKS.md, "The demo preset"): one pass over all the built-in training
    # reviews (about three minutes on 2 CPU cores), each read as its first 32 and last 94 tokens (verdicts
    # come last), with the embeddings and the first two layers kept as pre-trained (faster steps and
    # better on real reviews than training everything). Evaluated once, at the end (an epoch-end
    # evaluation would repeat the final one).
    "demo": dict(
        run_name="demo: MiniLM on built-in reviews",
        model=BUNDLED_MODEL, dataset=DEMO_DATASET, num_train_epochs=1.0,
        per_device_train_batch_size=8, per_device_eval_batch_size=32,
        eval_strategy="no", save_strategy="epoch", logging_steps=10, save_total_limit=2,
        learning_rate=1e-4, warmup_steps=0.1, max_length=128, head_tokens=32, freeze_embeddings=True,
        frozen_layers=2, padding="dynamic", group_by_length=True,
    ),
})

PRESET_HELP = {
    "distill": "Distil a finished run (the teacher) into a smaller, faster student; pick the teacher run first.",
    "seed": "The tutorial exactly: bert-base-uncased on IMDb, 2 epochs, batch 8, needs the Hugging Face Hub.",
    "demo": "Bundled MiniLM on the built-in movie reviews: works offline, a few minutes on a laptop CPU.",
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset config: 'seed' (the tutorial), 'demo' (offline), or 'distill' (give teacher=...)."""
    table = {**PRESETS, "distill": DISTILL_PRESET}
    if name not in table:
        raise ConfigError({"preset": f"unknown preset {name!r}; choose one of {', '.join(table)}"})
    data = dict(table[name])
    data.update(overrides)
    return TrainConfig.from_dict(data)

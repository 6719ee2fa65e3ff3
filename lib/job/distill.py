"""Teacher → student: train a smaller, faster model to imitate a fine-tuned one.

The teacher is a finished run (its ``model/`` export) or any saved classifier folder. The student
is a BERT cut to ``student_layers`` layers: either the teacher itself (``model="teacher"``: the
student starts from the teacher's embeddings, evenly spaced layers and head) or another model such
as the bundled MiniLM. The loss mixes the true labels with the teacher's softened opinion::

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The teacher's logits on the training set are computed once and cached in the run directory
(``teacher_logits.npy``), so a resumed run does not pay for them again.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from lib.errors import ConfigError, ModelError
from lib.sources.paths import check_local_path
from lib.store import rundir

TEACHER_LOGITS = "teacher_logits.npy"
TEACHER_INFO = "teacher.json"


def distillation_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * CE + (1 - alpha) * T² * KL(teacher_T || student_T), averaged over the batch."""
    import torch.nn.functional as F
    ce = F.cross_entropy(student_logits, labels)
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    p_teacher = F.softmax(teacher_logits / t, dim=-1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    return alpha * ce + (1.0 - alpha) * (t * t) * kl


def resolve_teacher(teacher: str, runs_dir: Path) -> Path:
    """A finished run id (its model/ folder) or a model folder path."""
    teacher = (teacher or "").strip()
    if rundir.is_run_id(teacher):
        run_dir = rundir.resolve_run_dir(runs_dir, teacher)
        model_dir = run_dir / rundir.MODEL
        state = rundir.read_status(run_dir).get("state")
        if state != "finished" or not model_dir.is_dir():
            raise ConfigError({"teacher": f"teacher run {teacher} has not finished (state {state!r}); pick a "
                               "finished run"})
        return model_dir
    path = check_local_path(teacher, "teacher model")
    if not path.is_dir():
        raise ConfigError({"teacher": f"teacher {teacher!r} is neither a run id nor a model folder"})
    return path


def layers_to_keep(total: int, keep: int) -> list[int]:
    """Evenly spaced layer indices, always ending with the last layer (6 → 3 keeps 1, 3, 5)."""
    if keep >= total:
        return list(range(total))
    step = total / keep
    return sorted({min(total - 1, int(round(step * (i + 1))) - 1) for i in range(keep)})


def cut_layers(model, keep: int):
    """A copy of a BERT classifier with only ``keep`` of its encoder layers."""
    encoder = getattr(getattr(model, "bert", None), "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        raise ModelError("the student must be a BERT model (it has no bert.encoder.layer to cut)")
    total = len(encoder.layer)
    if keep > total:
        raise ConfigError({"student_layers": f"student_layers ({keep}) must not exceed the model's {total} layers"})
    student = copy.deepcopy(model)
    import torch
    idx = layers_to_keep(total, keep)
    student.bert.encoder.layer = torch.nn.ModuleList([student.bert.encoder.layer[i] for i in idx])
    student.config.num_hidden_layers = len(idx)
    return student


def narrow_student(teacher, layers: int, hidden: int, heads: int | None, intermediate: int | None,
                   seed: int = 42):
    """A new, smaller BERT classifier (``layers`` x ``hidden``), randomly initialised (seeded), then given
    the teacher's weights wherever a tensor has the same shape (student layer i takes the teacher's
    evenly spaced layer, as ``cut_layers`` picks them). Returns (student, {copied, total, skipped})."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    encoder = getattr(getattr(teacher, "bert", None), "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        raise ModelError("a narrower student needs a BERT teacher (it has no bert.encoder.layer)")
    total_layers = len(encoder.layer)
    if layers > total_layers:
        raise ConfigError({"student_layers": f"student_layers ({layers}) must not exceed the teacher's "
                                             f"{total_layers} layers"})
    t_cfg = teacher.config
    heads = heads or t_cfg.num_attention_heads
    if hidden % heads:
        raise ConfigError({"student_attention_heads": f"student_hidden_size ({hidden}) must be a multiple of the "
                                                      f"number of attention heads ({heads}); set "
                                                      "student_attention_heads"})
    cfg_dict = t_cfg.to_dict()
    cfg_dict.update(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                    intermediate_size=intermediate or 4 * hidden)
    cfg_dict.pop("_name_or_path", None)
    torch.manual_seed(seed)
    student = BertForSequenceClassification(BertConfig.from_dict(cfg_dict))
    picked = layers_to_keep(total_layers, layers)
    source = teacher.state_dict()

    def teacher_name(name: str) -> str:
        parts = name.split(".")
        if len(parts) > 3 and parts[:3] == ["bert", "encoder", "layer"]:
            parts[3] = str(picked[int(parts[3])])
        return ".".join(parts)

    state = student.state_dict()
    copied, skipped = 0, []
    for name, tensor in state.items():
        src = source.get(teacher_name(name))
        if src is not None and tuple(src.shape) == tuple(tensor.shape):
            state[name] = src.clone()
            copied += 1
        else:
            skipped.append(name)
    student.load_state_dict(state)
    return student, {"copied": copied, "total": len(state), "skipped": skipped[:50]}


def check_teacher_labels(teacher_dir: Path, label_names: list[str]) -> None:
    """The teacher must answer the same classes as the data (same number; names in the same order)."""
    cfg = rundir.read_json(Path(teacher_dir) / "config.json") or {}
    id2label = cfg.get("id2label") or {}
    n = int(cfg.get("num_labels") or len(id2label) or 2)
    if n != len(label_names):
        teacher_names = [str(id2label.get(str(i), i)) for i in range(n)]
        raise ConfigError({"teacher": f"the teacher answers {n} classes ({', '.join(teacher_names)}) but this data "
                                      f"has {len(label_names)} ({', '.join(map(str, label_names))}); distil on data "
                                      "with the teacher's classes"})


def build_student(config, teacher_dir: Path, label_names: list[str]):
    """The student the config asks for: the teacher (``model='teacher'``) or another BERT cut to
    ``student_layers`` layers, or, with ``student_hidden_size``, a new narrower BERT initialised from the
    teacher where shapes match. Returns (student, note for the log)."""
    from lib.sources.models import load_model
    teacher_spec = f"{teacher_dir}" if str(teacher_dir).startswith("/") else f"./{teacher_dir}"
    if config.student_hidden_size:
        teacher = load_model(teacher_spec, label_names)
        student, report = narrow_student(teacher, config.student_layers, config.student_hidden_size,
                                         config.student_attention_heads, config.student_intermediate_size,
                                         seed=config.seed)
        student.config.id2label, student.config.label2id = teacher.config.id2label, teacher.config.label2id
        return student, (f"a new {config.student_layers}-layer BERT of width {config.student_hidden_size}; "
                         f"{report['copied']} of {report['total']} weight tensors copied from the teacher "
                         "(the rest had other shapes and start random)")
    if config.model == "teacher":
        base = load_model(teacher_spec, label_names)
        what = "the teacher"
    else:
        base = load_model(config.model, label_names, seed=config.seed)
        what = config.model
    return cut_layers(base, config.student_layers), f"{what} cut to {config.student_layers} layers"


def teacher_logits(run_dir: Path, teacher_dir: Path, texts: list[str], max_length: int, batch_size: int = 32,
                   head_tokens: int = 0):
    """The teacher's logits on ``texts`` cut as the student reads them (``max_length``, head+tail with
    ``head_tokens``), cached in the run directory and recomputed if the size differs."""
    cache = Path(run_dir) / TEACHER_LOGITS
    if cache.exists():
        cached = np.load(cache, allow_pickle=False)
        if cached.shape[0] == len(texts):
            return cached
    import torch

    from lib.sources.models import load_model, load_tokenizer
    spec = str(teacher_dir)
    tokenizer = load_tokenizer(spec)
    model = load_model(spec).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if head_tokens:
                from lib.sources.preprocessing import cut_head_tail
                raw = tokenizer([texts[i] for i in idx], truncation=False, verbose=False)
                cut = {k: [cut_head_tail(v, max_length, head_tokens) for v in raw[k]] for k in raw.keys()}
                enc = tokenizer.pad(cut, padding=True, return_tensors="pt")
            else:
                enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
            out[idx] = model(**enc).logits.float().numpy()
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, out, allow_pickle=False)
    tmp.replace(cache)
    rundir.atomic_write_json(Path(run_dir) / TEACHER_INFO, {"teacher_dir": str(teacher_dir), "rows": len(texts)})
    return out


def make_distill_trainer_class(base_cls, temperature: float, alpha: float):
    class DistillTrainer(base_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            teacher = inputs.pop("teacher_logits", None)
            labels = inputs.pop("labels", None)
            if labels is None:
                labels = inputs.pop("label")
            outputs = model(**inputs)
            if teacher is None:  # evaluation batches have no teacher logits: plain cross-entropy
                import torch.nn.functional as F
                loss = F.cross_entropy(outputs.logits, labels)
            else:
                loss = distillation_loss(outputs.logits, teacher.to(outputs.logits.dtype), labels, temperature,
                                         alpha)
            return (loss, outputs) if return_outputs else loss
    return DistillTrainer

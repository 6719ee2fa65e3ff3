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

from lib import rundir
from lib.errors import ConfigError, ModelError

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
    from lib.paths import check_local_path
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


def build_student(config, teacher_dir: Path, label_names: list[str]):
    from lib.models import load_model
    if config.model == "teacher":
        base = load_model(f"{teacher_dir}" if str(teacher_dir).startswith("/") else f"./{teacher_dir}", label_names)
    else:
        base = load_model(config.model, label_names, seed=config.seed)
    return cut_layers(base, config.student_layers)


def teacher_logits(run_dir: Path, teacher_dir: Path, texts: list[str], max_length: int, batch_size: int = 32):
    """The teacher's logits on ``texts`` (cached in the run directory, recomputed if the size differs)."""
    cache = Path(run_dir) / TEACHER_LOGITS
    if cache.exists():
        cached = np.load(cache, allow_pickle=False)
        if cached.shape[0] == len(texts):
            return cached
    import torch
    from lib.models import load_model, load_tokenizer
    spec = str(teacher_dir)
    tokenizer = load_tokenizer(spec)
    model = load_model(spec).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
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

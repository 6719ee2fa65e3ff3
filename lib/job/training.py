"""The training job: the tutorial's fine-tuning recipe, run inside one run directory.

The flow is the tutorial's: load the data, ``dataset.map(tokenize, batched=True)`` (``label`` kept
beside the new ``input_ids``/``attention_mask``), ``set_format("torch")``, ``TrainingArguments``,
``Trainer`` with a shuffled (seeded) train set and the eval set in its own order, then
``save_pretrained`` of model and tokenizer. Around it the job keeps the run directory current
(status.json, metrics.jsonl, stdout.log), waits its turn for a device slot, scores a TF-IDF
baseline, writes the eval predictions in dataset order and a model card.

:func:`run_job` is the whole job; :func:`job_argv` is the command line that runs it (one process or
torchrun). The command-line entry point is :mod:`lib.train`.
"""
from __future__ import annotations

import errno
import getpass
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lib.config import TrainConfig
from lib.errors import ConfigError, LabError
from lib.job import tokcache
from lib.job.baseline import classification_metrics, tfidf_baseline
from lib.store import rundir, slots
from lib.store.checkpoint_folders import newest_complete_checkpoint
from lib.util.sysinfo import gpu_count


class JobCancelled(BaseException):
    """Raised inside the job when it receives SIGTERM (cancel from the registry)."""


# ---------------------------------------------------------------------------------------------------
# Arguments and precision
# ---------------------------------------------------------------------------------------------------
def resolve_device(config: TrainConfig) -> str:
    """cpu or cuda, decided without importing torch (a job waiting in the queue stays small)."""
    if config.device == "cpu":
        return "cpu"
    if config.device == "cuda":
        if not gpu_count():
            raise ConfigError({"device": "device is 'cuda' but no CUDA GPU is available here; use 'auto' or 'cpu'"})
        return "cuda"
    return "cuda" if gpu_count() else "cpu"


def resolve_precision(config: TrainConfig, device: str) -> tuple[bool, bool]:
    """(fp16, bf16) after resolving 'auto': fp16 on a CUDA GPU, as in the tutorial."""
    import torch
    cuda = device == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    fp16 = cuda if config.fp16 == "auto" else bool(config.fp16)
    if config.bf16 == "auto":
        bf16 = bf16_ok and not fp16
    else:
        bf16 = bool(config.bf16)
    if (fp16 or bf16) and not cuda:
        raise ConfigError({"fp16" if fp16 else "bf16": "mixed precision needs a CUDA GPU; set it to 'auto' or false "
                           "on this machine"})
    return fp16, bf16


def tensorboard_enabled(config: TrainConfig) -> bool:
    if config.report_tensorboard is False:
        return False
    try:
        import tensorboard  # noqa: F401
        return True
    except ImportError:
        if config.report_tensorboard is True:
            raise ConfigError({"report_tensorboard": "report_tensorboard is on but tensorboard is not installed "
                               "(pip install tensorboard), or set it to 'auto'"}) from None
        return False


def keeps_best(config: TrainConfig) -> bool:
    """Whether the Trainer tracks the best checkpoint and loads it at the end (asked for, or early stopping)."""
    return bool(config.load_best_model_at_end or config.early_stopping_patience is not None)


def training_arguments_kwargs(config: TrainConfig, output_dir: str | Path, *, device: str = "cpu",
                              tensorboard: bool = False) -> dict[str, Any]:
    """The TrainingArguments for a config (transformers 5 names: eval_strategy, warmup_steps float...)."""
    fp16, bf16 = resolve_precision(config, device)
    kw: dict[str, Any] = dict(
        output_dir=str(output_dir),
        # A classifier's loss is a mean over reviews, not a sum over tokens: averaging "tokens" across
        # processes would multiply each process's loss by the world size (eval_loss doubled on 2 processes).
        average_tokens_across_devices=False,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        seed=config.seed,
        eval_strategy=config.eval_strategy,
        save_strategy=config.save_strategy,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=keeps_best(config),
        metric_for_best_model=config.metric_for_best_model if keeps_best(config) else None,
        greater_is_better=(config.metric_for_best_model != "loss") if keeps_best(config) else None,
        fp16=fp16,
        bf16=bf16,
        use_cpu=device == "cpu",
        dataloader_num_workers=config.dataloader_num_workers,
        report_to=["tensorboard"] if tensorboard else "none",
        disable_tqdm=True,
        save_only_model=False,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )
    if config.eval_strategy == "steps":
        kw["eval_steps"] = config.eval_steps if config.eval_steps is not None else config.logging_steps
    if config.save_strategy == "steps":
        kw["save_steps"] = config.save_steps if config.save_steps is not None else 500
    if config.dataloader_num_workers > 0:
        kw["dataloader_persistent_workers"] = False
    return kw


_WRITE_FAILURE_SIGNS = ("no space left", "unexpected pos", "iostream error", "file write failed", "disk quota")


def is_disk_full(exc: BaseException, run_dir: Path | None = None) -> bool:
    """ENOSPC anywhere in the exception chain, or a failed write while the runs disk is (nearly) full.

    torch.save reports a full disk as "[enforce fail at inline_container.cc] unexpected pos", without
    errno, so a write failure is also judged by the free space left on the run directory's disk.
    """
    seen, write_failed = set(), False
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "no space left" in text:
            return True
        write_failed = write_failed or any(sign in text for sign in _WRITE_FAILURE_SIGNS)
        exc = exc.__cause__ or exc.__context__
    if write_failed and run_dir is not None:
        try:
            return shutil.disk_usage(run_dir).free < 64 * 2**20
        except OSError:
            return True
    return False


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------
def describe_failure(exc: BaseException, config: TrainConfig | None = None,
                     run_dir: Path | None = None) -> dict[str, str]:
    """{type, message, hint} for status.json, with a hint for the failures people can act on."""
    text = str(exc) or type(exc).__name__
    hint = ""
    oom = ("out of memory" in text.lower() or "can't allocate memory" in text.lower()
           or type(exc).__name__ in ("OutOfMemoryError", "MemoryError"))
    if oom:
        if config is not None and config.per_device_train_batch_size > 1:
            smaller = max(1, config.per_device_train_batch_size // 2)
            accum = config.gradient_accumulation_steps * (config.per_device_train_batch_size // smaller)
            hint = (f"Out of memory: try per_device_train_batch_size={smaller} with gradient_accumulation_steps="
                    f"{accum} (same effective batch of {config.effective_batch_size}), or a smaller max_length.")
        else:
            hint = "Out of memory: use a smaller max_length or a smaller model."
        text = "out of memory: " + text if "out of memory" not in text.lower() else text
    elif is_disk_full(exc, run_dir):
        hint = "No space left on the device that holds the runs directory: free space, then resume the run."
        text = text if "no space left" in text.lower() else "no space left on device while writing: " + text
    elif isinstance(exc, LabError):
        hint = ""
    return {"type": type(exc).__name__, "message": text[:2000], "hint": hint}


class Tee:
    """Write to the terminal and to the run's log (direct CLI use)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, data):
        for s in self.streams:
            try:
                s.write(data)
                s.flush()
            except (OSError, ValueError):
                pass
        return len(data)

    def flush(self):
        for s in self.streams:
            try:
                s.flush()
            except (OSError, ValueError):
                pass

    def isatty(self):
        return False


def same_file(stream, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except (OSError, ValueError, AttributeError):
        return False


# ---------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------
def write_run_json(run_dir: Path, argv: list[str], **extra: Any) -> dict:
    import psutil
    me = psutil.Process()
    existing = rundir.read_json(run_dir / rundir.RUN) or {}
    if "LOCAL_RANK" in os.environ and existing.get("pid"):
        # Under torchrun the launcher recorded the torchrun agent (the process group leader that
        # cancel signals); each rank runs in a session of its own, so only note rank 0 here.
        existing.update({"rank0_pid": os.getpid(), "rank0_create_time": me.create_time()})
        rundir.atomic_write_json(run_dir / rundir.RUN, existing)
        return existing
    info = {"argv": argv, "pid": os.getpid(), "pgid": os.getpgid(0), "create_time": me.create_time(),
            "host": socket.gethostname(), "user": getpass.getuser(), "created_at": time.time(), **extra}
    if os.environ.get("SLURM_JOB_ID"):  # a Slurm job: which job and which nodes
        info.update(slurm_job_id=os.environ["SLURM_JOB_ID"], slurm_nodes=os.environ.get("SLURM_JOB_NODELIST", ""))
    existing.update(info)
    rundir.atomic_write_json(run_dir / rundir.RUN, existing)
    return existing


def compute_metrics_fn(label_names: list[str] | None = None):
    """The Trainer's compute_metrics: today's binary metrics for two classes; for more, accuracy, macro
    precision/recall/F1 (``eval_f1`` is macro-F1), one-vs-rest ROC-AUC and per-class metrics."""
    import numpy as np


    def compute(eval_pred):
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        logits = np.asarray(logits, dtype=np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        if probs.shape[1] <= 2:
            return classification_metrics(labels, probs.argmax(axis=1), probs[:, 1])
        return classification_metrics(labels, probs.argmax(axis=1), probs=probs, label_names=label_names)
    return compute


def make_trainer_class():
    """Trainer that keeps the eval set in dataset order and uses precomputed lengths for grouping."""
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class ShuffledLengthGroupedSampler(LengthGroupedSampler):
        """Upstream's length-grouped batches (random mega-batches of 50 batches, sorted by length inside),
        served in random order: the first (longest) batch stays first so memory problems show at once."""

        def __iter__(self):
            from transformers.trainer_pt_utils import get_length_grouped_indices
            indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
            batches = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
            if len(batches) > 2:
                rest = torch.randperm(len(batches) - 1, generator=self.generator).tolist()
                batches = [batches[0]] + [batches[1 + k] for k in rest]
            return iter([i for b in batches for i in b])

    class LabTrainer(Trainer):
        lab_train_lengths: list[int] | None = None

        lab_shuffle_groups: bool = False
        lab_sampler_cls = ShuffledLengthGroupedSampler

        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy == "group_by_length" and self.lab_train_lengths is not None:
                cls = self.lab_sampler_cls if self.lab_shuffle_groups else LengthGroupedSampler
                return cls(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                           lengths=self.lab_train_lengths)
            return super()._get_train_sampler(train_dataset)

        def _get_eval_sampler(self, eval_dataset):
            # Upstream uses a LengthGroupedSampler for eval too when grouping by length, which would
            # scramble the order of predictions. Error analysis needs dataset order. (With several
            # processes, accelerate shards this sequential order and gathers it back in order.)
            if eval_dataset is None:
                return None
            return torch.utils.data.SequentialSampler(eval_dataset)

    return LabTrainer


def tokenize_dataset(dataset, tokenizer, config: TrainConfig, *, cache_dir: Path | None = None):
    """The tutorial's map step (``map(batched=True)`` keeps text and label beside the new columns), with
    the padding the config asks for, plus a ``length`` column. With ``cache_dir`` (and
    ``config.tokenization_cache``) each split is tokenized once and reused by later runs."""
    import datasets

    use_cache = cache_dir is not None and config.tokenization_cache
    out, hits = {}, []
    tokenizer_id = tokcache.tokenizer_identity(tokenizer) if use_cache else None
    for split, ds in dataset.items():
        out[split], hit = tokcache.map_tokenize(ds, tokenizer, config.max_length, config.padding,
                                                head_tokens=config.head_tokens,
                                                cache_dir=cache_dir if use_cache else None, tokenizer_id=tokenizer_id)
        if hit:
            hits.append(split)
    tokenized = datasets.DatasetDict(out)
    columns = ["input_ids", "attention_mask", "label"]
    for split in tokenized:
        extra = [c for c in ("teacher_logits",) if c in tokenized[split].column_names]
        tokenized[split].set_format("torch", columns=columns + extra)
    tokenized.lab_cache_hits = hits  # type: ignore[attr-defined]
    return tokenized


def eval_order(tokenized_eval, config: TrainConfig):
    """The order to evaluate in: longest reviews first when the config sorts evaluation by length (with
    dynamic padding each batch then holds reviews of about the same length), else None (dataset order).
    Predictions made in this order go back to dataset order with ``restore_order``."""
    import numpy as np
    if not (config.sort_eval_by_length and config.padding == "dynamic") or len(tokenized_eval) < 2:
        return None
    lengths = np.asarray(tokenized_eval.with_format(None)["length"])
    return np.argsort(-lengths, kind="stable")


def restore_order(values, order):
    """Rows computed in ``order`` (row i belongs to dataset row order[i]) back in dataset order."""
    import numpy as np
    values = np.asarray(values)
    if order is None:
        return values
    out = np.empty_like(values)
    out[order] = values
    return out


def wait_for_turn(config: TrainConfig, run_dir: Path, device: str):
    """Block until this run may use its device (FIFO queue shared through the runs directory).

    Under Slurm (``LAB_SCHEDULER=slurm``, set by the batch script) Slurm has queued the job already and
    given it its CPUs and GPUs: it starts at once."""
    if os.environ.get("LAB_SCHEDULER") == "slurm":
        return None
    return slots.acquire_slot(run_dir.parent, run_dir, device=device)


def run_job(config: TrainConfig, run_dir: Path, *, resume: bool = False) -> dict:
    """Train one run in ``run_dir`` (which holds config.json). Returns the final metrics."""
    import numpy as np

    device = resolve_device(config)
    main_process = process_rank() == 0
    prior = rundir.read_status(run_dir)
    elapsed_before = float(prior.get("elapsed_s") or 0.0) if resume else 0.0
    if main_process:
        attempt = int(prior.get("attempt") or 0) + 1
        rundir.update_status(run_dir, state="queued", queued_at=time.time(), pid=os.getpid(), device=device,
                             attempt=attempt, error=None, exit_code=None, finished_at=None, heartbeat=time.time(),
                             world_size=config.world_size, **({"slurm_job_id": os.environ["SLURM_JOB_ID"],
                                                               "slurm_nodes": os.environ.get("SLURM_JOB_NODELIST", "")}
                                                              if os.environ.get("SLURM_JOB_ID") else {}))
        slot = wait_for_turn(config, run_dir, device)  # noqa: F841 - held for the life of the process
        rundir.update_status(run_dir, state="running", started_at=time.time(), heartbeat=time.time(),
                             queue_position=None)
        print(f"[lab] run {run_dir.name} on {device} x{config.world_size}: {config.label}", flush=True)
    else:  # other ranks wait until rank 0 has its turn, before joining the process group
        import psutil
        launched_at = psutil.Process().parent().create_time()  # the torchrun agent of this attempt
        while True:
            status = rundir.read_status(run_dir)
            if status.get("state") == "running" and float(status.get("started_at") or 0) >= launched_at:
                break
            time.sleep(0.5)

    import datasets
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

    from lib.job.callbacks import RunDirCallback
    from lib.sources.data import load_data
    from lib.sources.models import load_model, load_tokenizer
    datasets.disable_progress_bars()
    set_seed(config.seed)
    tensorboard = tensorboard_enabled(config)
    fp16, bf16 = resolve_precision(config, device)

    # 1. Data: DatasetDict with train (seeded shuffle when subset) and test (dataset order).
    loaded = load_data(config)
    train_ds, eval_ds = loaded.dataset["train"], loaded.dataset["test"]
    label_names = list(loaded.info.get("label_names") or config.label_names)  # the data's classes, in id order
    if main_process:
        rundir.atomic_write_json(run_dir / rundir.DATA_INFO, loaded.info)
        print(f"[lab] data: {loaded.info.get('description', '')} — train {len(train_ds)}, eval {len(eval_ds)}",
              flush=True)

    # 2. Baseline on the same split.
    if main_process and not (run_dir / rundir.BASELINE).exists():
        base = tfidf_baseline(train_ds["text"], train_ds["label"], eval_ds["text"], eval_ds["label"],
                              seed=config.seed, label_names=label_names)
        rundir.atomic_write_json(run_dir / rundir.BASELINE, base)
        print(f"[lab] TF-IDF baseline accuracy {base['accuracy']:.4f} ({base['seconds']} s)", flush=True)

    # 3. Model and tokenizer (for distillation: a student cut from the teacher or another BERT).
    trainer_extra: dict[str, Any] = {}
    if config.task == "distill":
        from lib.job import distill
        teacher_dir = distill.resolve_teacher(config.teacher, run_dir.parent)
        tokenizer = load_tokenizer(str(teacher_dir) if config.model == "teacher" or config.student_hidden_size
                                   else config.model)
        distill.check_teacher_labels(teacher_dir, label_names)
        model, student_note = distill.build_student(config, teacher_dir, label_names)
        logits = distill.teacher_logits(run_dir, teacher_dir, train_ds["text"], config.max_length,
                                        head_tokens=config.head_tokens)
        loaded.dataset["train"] = train_ds.add_column("teacher_logits", [row.tolist() for row in logits])
        print(f"[lab] distilling {teacher_dir} into {student_note} (T={config.temperature}, alpha={config.alpha})",
              flush=True)
        trainer_extra["remove_unused_columns"] = False
    else:
        tokenizer = load_tokenizer(config.model)
        model = load_model(config.model, label_names, seed=config.seed)
    if config.freeze_embeddings or config.frozen_layers:
        note = freeze_parameters(model, config.freeze_embeddings, config.frozen_layers)
        if main_process:
            print(f"[lab] {note}", flush=True)

    # 4. Tokenize: map(batched=True) keeps text and label beside input_ids/attention_mask.
    tokenized = tokenize_dataset(loaded.dataset, tokenizer, config,
                                 cache_dir=tokcache.cache_folder(run_dir.parent))
    if main_process and tokenized.lab_cache_hits:
        print(f"[lab] tokenized {' and '.join(tokenized.lab_cache_hits)} reused from the runs directory's cache",
              flush=True)
    order = eval_order(tokenized["test"], config)
    eval_tokenized = tokenized["test"].select(order) if order is not None else tokenized["test"]

    # 5. TrainingArguments and Trainer.
    if tensorboard:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    args = TrainingArguments(**training_arguments_kwargs(config, run_dir / rundir.CHECKPOINTS, device=device,
                                                         tensorboard=tensorboard), **trainer_extra)
    collator = DataCollatorWithPadding(tokenizer) if config.padding == "dynamic" else None
    LabTrainer = make_trainer_class()
    if config.task == "distill":
        LabTrainer = distill.make_distill_trainer_class(LabTrainer, config.temperature, config.alpha)
    callbacks = [RunDirCallback(run_dir, elapsed_before=elapsed_before)]
    if main_process and config.system_metrics_every_s > 0:
        from lib.job.sysmetrics import SystemMetricsCallback
        callbacks.append(SystemMetricsCallback(run_dir, every_s=config.system_metrics_every_s,
                                               elapsed_before=elapsed_before))
    stopper = None
    if config.early_stopping_patience is not None:
        from transformers import EarlyStoppingCallback
        stopper = EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience,
                                        early_stopping_threshold=config.early_stopping_threshold)
        callbacks.append(stopper)
    trainer = LabTrainer(model=model, args=args, train_dataset=tokenized["train"],
                         eval_dataset=eval_tokenized if config.eval_strategy != "no" else None,
                         processing_class=tokenizer, data_collator=collator,
                         compute_metrics=compute_metrics_fn(label_names),
                         callbacks=callbacks)
    trainer.lab_train_lengths = (list(tokenized["train"].with_format(None)["length"]) if config.group_by_length
                                 else None)
    trainer.lab_shuffle_groups = config.shuffle_length_groups

    checkpoint = None
    if resume:
        checkpoint = newest_complete_checkpoint(run_dir)
        if checkpoint is not None:
            print(f"[lab] resuming from {checkpoint.name}", flush=True)
        else:
            print("[lab] no complete checkpoint to resume from: starting from the beginning", flush=True)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if main_process and keeps_best(config):
        rundir.update_status(run_dir, **best_checkpoint_status(trainer, stopper))

    # 6. Predictions on the eval split, in dataset order.
    if main_process:
        rundir.update_status(run_dir, phase="evaluating", heartbeat=time.time())
    pred = trainer.predict(eval_tokenized, metric_key_prefix="eval")  # metrics do not depend on the order
    final = {k: float(v) for k, v in pred.metrics.items() if isinstance(v, (int, float))}
    if config.eval_strategy == "no":  # no evaluation during training: the final one is the run's eval row
        trainer.log({k: v for k, v in final.items() if k.startswith("eval_")})
    if main_process:
        logits = restore_order(np.asarray(pred.predictions[0] if isinstance(pred.predictions, tuple)
                                          else pred.predictions, dtype=np.float64), order)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        calibration = fit_calibration(logits, eval_ds["label"])
        write_predictions(run_dir, eval_ds, probs, logits=logits,
                          temperature=calibration["temperature"] if calibration else None)
        if calibration:
            rundir.atomic_write_json(run_dir / rundir.CALIBRATION, calibration)
            print(f"[lab] calibration: temperature {calibration['temperature']:.3f} fitted on the eval split, "
                  f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}", flush=True)
        export_model(trainer, tokenizer, config, run_dir, loaded.info, final, calibration=calibration)
        if config.onnx_export:
            rundir.update_status(run_dir, phase="exporting to ONNX", heartbeat=time.time())
            export_fast_runtime(run_dir)
        rundir.update_status(run_dir, final_metrics=final, phase=None)
    return final


def best_checkpoint_status(trainer, stopper=None) -> dict:
    """status.json keys after training that kept the best checkpoint: which one, its metric, and whether
    early stopping ended the run before its planned last step (and at which step)."""
    state = trainer.state
    best = state.best_model_checkpoint
    out = {"best_checkpoint": Path(best).name if best else None,
           "best_metric": float(state.best_metric) if state.best_metric is not None else None,
           "best_step": state.best_global_step, "metric_for_best_model": trainer.args.metric_for_best_model}
    if stopper is not None:
        stopped = (stopper.early_stopping_patience_counter >= stopper.early_stopping_patience
                   and state.global_step < state.max_steps)
        out.update(stopped_early=bool(stopped), stopped_at_step=int(state.global_step) if stopped else None,
                   planned_steps=int(state.max_steps))
        if stopped:
            print(f"[lab] stopped early at step {state.global_step} of {state.max_steps}: "
                  f"{stopper.early_stopping_patience} evaluation(s) without improvement; exporting the best "
                  f"checkpoint {out['best_checkpoint']}", flush=True)
    return out




def fit_calibration(logits, labels) -> dict | None:
    """One temperature fitted on the eval split's logits (temperature scaling): what calibration.json
    holds. The eval metrics stay those of the uncalibrated model; the temperature changes no predicted
    label, only the confidence. None when there is nothing to fit on."""
    from lib.errors import DataError
    from lib.util.calibration import calibration_report
    try:
        report = calibration_report(logits, [int(v) for v in labels])
    except DataError as exc:
        print(f"[lab] no calibration: {exc}", flush=True)
        return None
    return {**report, "fitted_on": "eval split",
            "note": "Temperature scaling: probabilities are softmax(logits / temperature). Fitted on the eval "
                    "split, so ece_after is measured on the reviews it was fitted on; the eval metrics are "
                    "those of the uncalibrated model (the predicted labels are the same)."}


def write_predictions(run_dir: Path, eval_ds, probs, *, logits=None, temperature: float | None = None) -> None:
    """eval_predictions.jsonl: per review ``index, text, label, pred, probs`` (raw probabilities), and
    with ``logits``: ``logits`` and ``probs_calibrated`` (softmax(logits / temperature))."""
    from lib.util.calibration import softmax
    calibrated = softmax(logits, temperature) if logits is not None and temperature else None
    path = run_dir / rundir.PREDICTIONS
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i, (text, label, p) in enumerate(zip(eval_ds["text"], eval_ds["label"], probs)):
            row = {"index": i, "text": text, "label": int(label), "pred": int(p.argmax()),
                   "probs": [round(float(x), 6) for x in p]}
            if logits is not None:
                row["logits"] = [round(float(x), 7) for x in logits[i]]
            if calibrated is not None:
                row["probs_calibrated"] = [round(float(x), 6) for x in calibrated[i]]
            fh.write(rundir.dumps(row) + "\n")
    os.replace(tmp, path)


def model_card(config: TrainConfig, info: dict, final: dict, baseline: dict | None, *,
               preprocessing: dict | None = None, calibration: dict | None = None) -> str:
    from lib.config import DEMO_DATASET
    from lib.job.baseline import class_keys
    from lib.sources.demo_data import demo_statement
    names = [str(n) for n in (info.get("label_names") or config.label_names)]
    what = ("A binary sentiment classifier" if len(names) == 2
            else f"A text classifier with {len(names)} classes")
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-classification", "---", "",
        f"# {config.label}", "",
        f"{what} fine-tuned with BERT Sentiment Lab.", "",
        "## Data", "", f"- {info.get('description', config.dataset)}",
        *([f"- {demo_statement()}"] if config.dataset == DEMO_DATASET else []),
        f"- train rows: {info.get('rows', {}).get('train', '?')}, eval rows: {info.get('rows', {}).get('test', '?')}",
        f"- labels: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}", "",
        "## Settings", "", f"- base model: `{config.model}`",
        f"- epochs {config.num_train_epochs}, batch {config.per_device_train_batch_size} per device, gradient "
        f"accumulation {config.gradient_accumulation_steps}, learning rate {config.learning_rate}",
        f"- max_length {config.max_length}"
        + (f" (head+tail: the first {config.head_tokens} tokens and the end)" if config.head_tokens else "")
        + f", padding `{config.padding}`, group_by_length {config.group_by_length}",
        *([f"- frozen: {'the embeddings' if config.freeze_embeddings else ''}"
           f"{' and ' if config.freeze_embeddings and config.frozen_layers else ''}"
           f"{f'the first {config.frozen_layers} layers' if config.frozen_layers else ''}"]
          if config.freeze_embeddings or config.frozen_layers else []),
        f"- seed {config.seed}", "", "## Results on the eval split", "", "| metric | model | TF-IDF baseline |",
        "| --- | --- | --- |",
    ]
    shown = {"f1": "macro-F1", "precision": "macro precision", "recall": "macro recall",
             "roc_auc": "ROC-AUC (one-vs-rest, macro)"} if len(names) > 2 else {}
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc"):
        value = final.get(f"eval_{key}")
        base = (baseline or {}).get(key)
        if value is not None:
            name = shown.get(key, key)
            base_text = f" {base:.4f} " if base is not None else " "
            lines.append(f"| {name} | {value:.4f} |{base_text}|")
    if len(names) > 2:
        counts = {c.get("id"): c.get("test") for c in info.get("classes") or [] if isinstance(c, dict)}
        lines += ["", "## Per class (eval split)", "", "| class | precision | recall | F1 | eval reviews |",
                  "| --- | --- | --- | --- | --- |"]
        for i, (name, key) in enumerate(zip(names, class_keys(names))):
            cells = [final.get(f"eval_{m}_{key}") for m in ("precision", "recall", "f1")]
            text = " | ".join(f"{v:.4f}" if isinstance(v, (int, float)) else "" for v in cells)
            lines.append(f"| {name} | {text} | {counts.get(i, '')} |")
    lines += ["", "## Use", "", "```python", "from transformers import pipeline",
              "clf = pipeline(\"text-classification\", model=\"path/to/this/folder\")",
              "clf(\"A warm, funny and beautifully acted film.\")", "```", ""]
    if calibration:
        lines += ["## Calibration", "",
                  f"- temperature {calibration['temperature']:.4f}, fitted on the eval split ({calibration['n']} "
                  "reviews) after the final evaluation: calibrated probabilities are softmax(logits / temperature)",
                  f"- expected calibration error {calibration['ece_before']:.4f} before, "
                  f"{calibration['ece_after']:.4f} after; negative log-likelihood {calibration['nll_before']:.4f} "
                  f"before, {calibration['nll_after']:.4f} after (on the same reviews)",
                  "- the metrics above are those of the uncalibrated model: the temperature changes no label, "
                  "only the confidence; `pipeline()` gives the uncalibrated probabilities, the lab's predictions "
                  "use the calibrated ones unless told not to (`--no-calibration`)",
                  f"- recorded in `{rundir.CALIBRATION}` beside the weights", ""]
    if preprocessing:
        from lib.sources.preprocessing import card_lines
        lines += card_lines(preprocessing)
    return "\n".join(lines)


def freeze_parameters(model, embeddings: bool, layers: int) -> str:
    """Stop training the embeddings and/or the first ``layers`` transformer layers (their weights keep the
    pre-trained values; the optimizer never sees them). Returns what was frozen, for the log."""
    base = getattr(model, "base_model", model)
    blocks = getattr(getattr(base, "encoder", None), "layer", None)
    if blocks is None:
        blocks = getattr(getattr(base, "transformer", None), "layer", None)  # DistilBERT
    total = len(blocks) if blocks is not None else 0
    if layers > total:
        raise ConfigError({"frozen_layers": f"frozen_layers is {layers} but the model has {total} transformer "
                                            f"layers: use at most {total} (all of them: only the classifier head "
                                            "trains)"})
    frozen = 0
    parts = ([base.embeddings] if embeddings and getattr(base, "embeddings", None) is not None else [])
    parts += list(blocks[:layers]) if layers else []
    for part in parts:
        for p in part.parameters():
            if p.requires_grad:
                p.requires_grad = False
                frozen += p.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    what = " and ".join(x for x in (["the embeddings"] if embeddings else [])
                        + ([f"the first {layers} of {total} layers"] if layers else []))
    return f"frozen: {what} ({frozen / 1e6:.1f}M weights); training {trainable / 1e6:.1f}M"


def export_fast_runtime(run_dir: Path) -> Path | None:
    """The ONNX export of ``model/`` into ``<run>/onnx``, which CPU predictions run on (the app and
    ``python -m lib.predict``): the int8 graph answers, the fp32 graph re-reads the reviews int8 is unsure
    of (``Predictor``'s re-check). Without onnxruntime/onnx, or when the export fails its agreement check,
    the log says so and predictions stay on PyTorch: the run itself never fails here."""
    from lib.job import onnx_export
    t0 = time.time()
    try:
        out = onnx_export.export_onnx(run_dir / rundir.MODEL, run_dir / rundir.ONNX, quantize=True)
    except LabError as exc:
        print(f"[lab] no ONNX export ({exc}); predictions run on PyTorch", flush=True)
        return None
    except Exception as exc:  # noqa: BLE001 - an exporter bug must not lose a finished training
        print(f"[lab] the ONNX export failed ({type(exc).__name__}: {str(exc)[:300]}); predictions run on "
              "PyTorch", flush=True)
        return None
    print(f"[lab] ONNX export (int8, with fp32 for near-boundary reviews) for fast CPU predictions in "
          f"{time.time() - t0:.1f} s: {rundir.ONNX}/{onnx_export.INT8_FILE}", flush=True)
    return out


def export_model(trainer, tokenizer, config: TrainConfig, run_dir: Path, info: dict, final: dict, *,
                 calibration: dict | None = None) -> Path:
    """save_pretrained model + tokenizer + model card into model/, swapped in atomically, with how text was
    prepared for training (lab_preprocessing.json) and the fitted temperature (calibration.json)."""
    from lib.sources.preprocessing import contract, write_preprocessing
    target = run_dir / rundir.MODEL
    tmp = run_dir / ".model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    prep = contract(max_length=config.max_length, strip_html=config.strip_html,
                    label_names=[str(n) for n in (info.get("label_names") or config.label_names)],
                    truncation_side=getattr(tokenizer, "truncation_side", "right"), padding=config.padding,
                    head_tokens=config.head_tokens)
    write_preprocessing(tmp, prep)
    if calibration:
        rundir.atomic_write_json(tmp / rundir.CALIBRATION, calibration)
    (tmp / "README.md").write_text(model_card(config, info, final, rundir.read_json(run_dir / rundir.BASELINE),
                                              preprocessing=prep, calibration=calibration), encoding="utf-8")
    for junk in ("training_args.bin",):
        (tmp / junk).unlink(missing_ok=True)
    for f in tmp.iterdir():  # transformers writes some files 0600: the team must be able to read them
        os.chmod(f, 0o666 & ~rundir._UMASK)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def job_argv(config: TrainConfig, run_dir: str | Path, *, resume: bool = False) -> list[str]:
    """The exact command that trains ``run_dir``: one process, or torchrun for several."""
    job = ["-m", "lib.train", "--run-dir", str(run_dir)] + (["--resume"] if resume else [])
    if config.world_size <= 1:
        return [sys.executable, *job]
    argv = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={config.num_processes}",
            f"--nnodes={config.num_nodes}"]
    if config.num_nodes > 1:
        argv += [f"--node_rank={config.node_rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint={config.rdzv_endpoint}",
                 f"--rdzv_id={Path(run_dir).name}"]
    else:
        argv += ["--standalone"]
    return argv + job


def process_rank() -> int:
    """This process's global rank under torchrun (0 when run alone)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0

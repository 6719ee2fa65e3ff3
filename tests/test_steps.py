"""lib.steps against the real transformers Trainer (tiny random BERT, random token ids).

The grid test stops each Trainer right after it has worked out its plan (on_train_begin raises), so
no training happens there; a few short real runs check the log/eval/save schedule and which
checkpoints are still on disk at the end. Several devices cannot run here as real processes: the
sharded dataloader that accelerate gives each process is built with accelerate's own
``prepare_data_loader`` and fed to the Trainer's own ``set_initial_training_values``.
"""
from __future__ import annotations

import itertools
import logging
import re
import types
from pathlib import Path

import pytest
import torch

from lib.config import TrainConfig, preset
from lib.errors import ConfigError
from lib.job.steps import (
    epoch_at_step,
    event_schedule,
    plan_for_config,
    plan_steps,
    schedule_for_config,
    surviving_checkpoints,
)

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

SEQ = 6
VOCAB = 64


@pytest.fixture(autouse=True)
def _quiet_and_single_threaded():
    # a model this small trains fastest on one thread (two OpenMP threads spin on a busy machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(cfg)


def random_data(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, SEQ), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": labels[i]}
            for i in range(n)]


class _Stop(Exception):
    pass


class StopAtBegin(TrainerCallback):
    """Record what the Trainer planned, then stop before the first step."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.max_steps = state.max_steps
        self.num_train_epochs = state.num_train_epochs
        raise _Stop


class ProbeTrainer(Trainer):
    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self.probe = dict(zip(("num_train_epochs", "num_update_steps_per_epoch", "num_examples",
                               "num_train_samples", "total_train_batch_size", "steps_in_epoch", "max_steps"),
                              values))
        return values


def skip_gc(trainer) -> None:
    """train() starts with accelerator.free_memory(), a full gc.collect() (~0.3 s here) that does not
    touch the step arithmetic: skip it so the grid stays fast."""
    trainer.accelerator.free_memory = lambda *objects: objects


def common_args(tmp_path, **kw) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", disable_tqdm=True, seed=0,
                save_strategy="no", eval_strategy="no", logging_steps=500, learning_rate=1e-3)
    base.update(kw)
    return TrainingArguments(**base)


def trainer_plan(tmp_path, n, batch, accum, epochs, max_steps=-1, drop_last=False):
    args = common_args(tmp_path, per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
                       num_train_epochs=epochs, max_steps=max_steps, dataloader_drop_last=drop_last)
    stop = StopAtBegin()
    trainer = ProbeTrainer(model=tiny_model(), args=args, train_dataset=random_data(n), callbacks=[stop])
    skip_gc(trainer)
    with pytest.raises(_Stop):
        trainer.train()
    assert trainer.state.max_steps == stop.max_steps
    return trainer.state, trainer.probe


# ---------------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------------
def test_tutorial_numbers():
    plan = plan_steps(2000, 8, num_train_epochs=2)
    assert (plan.samples_per_step, plan.batches_per_epoch_per_device, plan.steps_per_epoch, plan.total_steps) == \
        (8, 250, 250, 500)
    assert plan.final_epoch == 2.0
    assert "⌈2,000 ÷ 8⌉ = 250" in plan.formula and "⌈2 × 250⌉ = 500" in plan.formula
    assert plan.last_batch_size == 8 and plan.dropped_samples == 0


GRID = list(itertools.product((7, 16, 33), (2, 4, 5), (1, 3), (1, 2, 1.5)))


def test_plan_matches_real_trainer_over_grid(tmp_path):
    mismatches = []
    for n, batch, accum, epochs in GRID:
        state, probe = trainer_plan(tmp_path, n, batch, accum, epochs)
        plan = plan_steps(n, batch, accum, 1, epochs)
        got = (plan.total_steps, plan.steps_per_epoch, plan.batches_per_epoch_per_device, plan.epochs_started,
               plan.samples_per_step)
        want = (state.max_steps, probe["num_update_steps_per_epoch"], probe["steps_in_epoch"],
                probe["num_train_epochs"], probe["total_train_batch_size"])
        if got != want:
            mismatches.append(((n, batch, accum, epochs), got, want))
    assert not mismatches


@pytest.mark.parametrize("n,batch,accum,epochs,max_steps,drop_last", [
    (33, 4, 3, 2, 7, False),      # max_steps beyond one epoch (3 steps per epoch)
    (33, 4, 1, 1, 4, False),      # max_steps shorter than an epoch
    (16, 5, 1, 2, -1, True),      # drop_last drops the 1 sample left over
    (33, 4, 3, 1.5, -1, True),    # drop_last + accumulation remainder
    (7, 2, 3, 0.4, -1, False),    # a fraction of an epoch
])
def test_plan_matches_real_trainer_edge_cases(tmp_path, n, batch, accum, epochs, max_steps, drop_last):
    state, probe = trainer_plan(tmp_path, n, batch, accum, epochs, max_steps, drop_last)
    plan = plan_steps(n, batch, accum, 1, epochs, max_steps, drop_last)
    assert plan.total_steps == state.max_steps
    assert plan.steps_per_epoch == probe["num_update_steps_per_epoch"]
    assert plan.batches_per_epoch_per_device == probe["steps_in_epoch"]
    assert plan.epochs_started == probe["num_train_epochs"]


def test_partial_batch_and_accumulation_remainder():
    plan = plan_steps(33, 4, 3)
    assert plan.batches_per_epoch_per_device == 9 and plan.last_batch_size == 1
    assert plan.steps_per_epoch == 3 and plan.last_step_batches == 3
    plan = plan_steps(33, 5, 3)   # 7 batches: steps of 3, 3, 1 batches
    assert plan.steps_per_epoch == 3 and plan.last_step_batches == 1 and plan.last_batch_size == 3
    plan = plan_steps(33, 5, 3, drop_last=True)
    assert plan.batches_per_epoch_per_device == 6 and plan.dropped_samples == 3 and plan.steps_per_epoch == 2


def test_several_devices_through_accelerate_and_trainer_code(tmp_path):
    """len(dataloader) per process comes from accelerate's BatchSamplerShard; the rest from the Trainer."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    args = common_args(tmp_path, per_device_train_batch_size=2)
    trainer = Trainer(model=tiny_model(), args=args, train_dataset=random_data(4))
    for n, batch, accum, world, epochs, drop_last in itertools.product(
            (7, 16, 33), (2, 5), (1, 3), (2, 3, 4), (1, 1.5), (False, True)):
        expected = None
        for rank in range(world):
            loader = prepare_data_loader(DataLoader(list(range(n)), batch_size=batch, drop_last=drop_last),
                                         num_processes=world, process_index=rank, put_on_device=False)
            length = len(loader)
            assert expected in (None, length)  # every process gets the same number of batches
            expected = length
            # count what the shard really yields
            assert sum(1 for _ in loader) == length
        if expected == 0:
            with pytest.raises(ConfigError):
                plan_steps(n, batch, accum, world, epochs, drop_last=drop_last)
            continue
        fake_args = types.SimpleNamespace(max_steps=-1, num_train_epochs=epochs, gradient_accumulation_steps=accum,
                                          world_size=world)
        trainer._train_batch_size = batch
        values = Trainer.set_initial_training_values(trainer, fake_args, loader)
        _, steps_per_epoch, _, _, total_batch, steps_in_epoch, max_steps = values
        plan = plan_steps(n, batch, accum, world, epochs, drop_last=drop_last)
        assert (plan.batches_per_epoch_per_device, plan.steps_per_epoch, plan.total_steps, plan.samples_per_step) \
            == (steps_in_epoch, steps_per_epoch, max_steps, total_batch), (n, batch, accum, world, epochs)


def test_several_devices_formula():
    plan = plan_steps(2000, 8, 1, 4, 2)
    assert plan.batches_per_epoch_per_device == 63 and plan.steps_per_epoch == 63 and plan.total_steps == 126
    assert plan.samples_per_step == 32 and plan.repeated_samples == 4 * 63 * 8 - 2000
    assert "⌈2,000 ÷ (8 × 4)⌉ = 63" in plan.formula


def test_plan_refuses_impossible_settings():
    with pytest.raises(ConfigError, match="no training batch"):
        plan_steps(3, 4, drop_last=True)
    with pytest.raises(ConfigError):
        plan_steps(0, 4)
    with pytest.raises(ConfigError):
        plan_steps(10, 0)
    with pytest.raises(ConfigError):
        plan_steps(10, 2, max_steps=0)


def test_plan_for_config_uses_world_size_and_cap():
    cfg = preset("seed")
    plan = plan_for_config(cfg, 25_000)  # max_train_samples=2000 caps it
    assert plan.total_steps == 500 and plan.num_samples == 2000
    cfg = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=2, num_processes=2, num_nodes=2,
                      rdzv_endpoint="h:1", num_train_epochs=1)
    plan = plan_for_config(cfg, 100)
    assert plan.num_devices == 4 and plan.samples_per_step == 32
    assert plan.batches_per_epoch_per_device == 7 and plan.steps_per_epoch == 4 and plan.total_steps == 4


# ---------------------------------------------------------------------------------------------------
# the schedule
# ---------------------------------------------------------------------------------------------------
def test_schedule_tutorial():
    sched = event_schedule(plan_steps(2000, 8), logging_steps=500, eval_strategy="epoch", save_strategy="epoch",
                           save_total_limit=2)
    assert [(e.step, e.epoch, e.kinds) for e in sched.events] == [
        (250, 1.0, ("eval", "save")), (500, 2.0, ("log", "eval", "save"))]
    assert sched.surviving == [250, 500] and sched.deleted == []


def test_schedule_fractions_and_rotation():
    plan = plan_steps(100, 10, num_train_epochs=3)  # 10 steps per epoch, 30 steps
    sched = event_schedule(plan, logging_steps=0.1, eval_strategy="steps", eval_steps=0.25,
                           save_strategy="steps", save_steps=7, save_total_limit=2)
    assert sched.logging_every == 3 and sched.eval_every == 8 and sched.save_every == 7
    assert sched.steps_of("log") == list(range(3, 31, 3))
    assert sched.steps_of("eval") == [8, 16, 24, 30]          # plus the last step
    assert sched.checkpoints == [7, 14, 21, 28, 30]           # plus the last step
    assert sched.surviving == [28, 30] and sched.deleted == [7, 14, 21]


def test_best_model_needs_matching_strategies(tmp_path):
    plan = plan_steps(100, 10)
    bad = [dict(eval_strategy="epoch", save_strategy="steps", save_steps=5),
           dict(eval_strategy="no", save_strategy="epoch"),
           dict(eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=5),
           dict(eval_strategy="steps", eval_steps=0.1, save_strategy="steps", save_steps=5)]
    for kw in bad:
        with pytest.raises(ConfigError):
            event_schedule(plan, load_best_model_at_end=True, **kw)
        with pytest.raises(ValueError):  # the real TrainingArguments refuses the same settings
            common_args(tmp_path, load_best_model_at_end=True, **kw)
    good = dict(eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=6)
    for kw in (good, dict(eval_strategy="steps", eval_steps=0.5, save_strategy="steps", save_steps=1),
               dict(eval_strategy="epoch", save_strategy="epoch")):
        common_args(tmp_path, load_best_model_at_end=True, **kw)   # accepted by both
        event_schedule(plan, load_best_model_at_end=True, **kw)
    assert event_schedule(plan, load_best_model_at_end=True, **good).checkpoints == [6, 12, 18, 20]


def test_surviving_with_best():
    saves = [10, 20, 30, 40]
    assert surviving_checkpoints(saves, 2) == [30, 40]
    assert surviving_checkpoints(saves, 2, best=20) == [20, 40]
    assert surviving_checkpoints(saves, 1, best=20) == [20]
    assert surviving_checkpoints(saves, 1, best=40) == [40]
    assert surviving_checkpoints(saves, None) == saves
    with pytest.raises(ValueError):
        surviving_checkpoints(saves, 2, best=15)


class Recorder(TrainerCallback):
    def __init__(self):
        self.logs, self.evals, self.saves, self.best_after_save = [], [], [], []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logs.append((state.global_step, state.epoch))

    def on_evaluate(self, args, state, control, **kwargs):
        self.evals.append((state.global_step, state.epoch))

    def on_save(self, args, state, control, **kwargs):
        self.saves.append((state.global_step, state.epoch))
        best = state.best_model_checkpoint
        self.best_after_save.append(int(best.rsplit("-", 1)[1]) if best else None)


def on_disk(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))


RUNS = [
    # n, batch, accum, epochs, max_steps, logging, eval strategy/steps, save strategy/steps, limit, best
    (33, 4, 3, 1.5, -1, 2, "steps", 3, "steps", 2, 2, False),
    (21, 4, 1, 2.5, -1, 0.25, "epoch", None, "epoch", None, 1, False),
    (16, 4, 1, 1, 7, 3, "steps", None, "steps", 0.3, 2, False),
    (20, 4, 1, 3, -1, 1, "epoch", None, "epoch", None, 1, True),
    (24, 4, 1, 2, -1, 1, "steps", 2, "steps", 2, 2, True),
    (24, 4, 1, 2, -1, 1, "steps", 2, "steps", 2, 1, True),
]


@pytest.mark.parametrize("run", RUNS)
def test_schedule_matches_real_run(tmp_path, run):
    n, batch, accum, epochs, max_steps, logging_steps, eval_s, eval_steps, save_s, save_steps, limit, best = run
    kw = {}
    if eval_steps is not None:
        kw["eval_steps"] = eval_steps
    if save_steps is not None:
        kw["save_steps"] = save_steps
    if best:
        kw.update(load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False)
    out = tmp_path / "out"
    args = common_args(out, per_device_train_batch_size=batch, per_device_eval_batch_size=8,
                       gradient_accumulation_steps=accum, num_train_epochs=epochs, max_steps=max_steps,
                       logging_steps=logging_steps, eval_strategy=eval_s, save_strategy=save_s,
                       save_total_limit=limit, save_only_model=True, **kw)
    rec = Recorder()
    trainer = Trainer(model=tiny_model(), args=args, train_dataset=random_data(n),
                      eval_dataset=random_data(6, seed=1), callbacks=[rec])
    skip_gc(trainer)
    trainer.train()

    plan = plan_steps(n, batch, accum, 1, epochs, max_steps)
    sched = event_schedule(plan, logging_steps=logging_steps, eval_strategy=eval_s, eval_steps=eval_steps,
                           save_strategy=save_s, save_steps=save_steps, save_total_limit=limit,
                           load_best_model_at_end=best)
    assert plan.total_steps == trainer.state.max_steps == trainer.state.global_step
    assert plan.final_epoch == pytest.approx(trainer.state.epoch, abs=0)
    assert [(e.step, e.epoch) for e in sched.events if "log" in e.kinds] == rec.logs
    assert [(e.step, e.epoch) for e in sched.events if "eval" in e.kinds] == rec.evals
    assert [(e.step, e.epoch) for e in sched.events if "save" in e.kinds] == rec.saves
    if best:
        assert surviving_checkpoints(sched.checkpoints, limit, best=rec.best_after_save) == on_disk(out)
        final_best = rec.best_after_save[-1]
        assert final_best in on_disk(out)
    else:
        assert sched.surviving == on_disk(out)


def test_schedule_for_config_defaults():
    sched = schedule_for_config(preset("seed"), 25_000)
    assert sched.plan.total_steps == 500
    assert sched.steps_of("eval") == [250, 500] and sched.checkpoints == [250, 500]
    assert sched.steps_of("log") == [500]
    cfg = TrainConfig(eval_strategy="steps", logging_steps=0.5, save_strategy="steps", num_train_epochs=1)
    sched = schedule_for_config(cfg, 80)  # 10 steps; eval_steps empty = logging_steps; save_steps empty = 500
    assert sched.eval_every == 5 and sched.steps_of("eval") == [5, 10] and sched.checkpoints == [10]


def test_epoch_at_step_with_accumulation():
    plan = plan_steps(33, 4, 3)  # 9 batches: steps cover 3, 3, 3 batches
    assert [epoch_at_step(plan, s) for s in (1, 2, 3, 4)] == [3 / 9, 6 / 9, 1.0, 1 + 3 / 9]


# ------------------------------------------------------------------ arithmetic schedule (bounded work)
def _brute_force(plan, log_every, eval_every, save_every, eval_strategy, save_strategy, first):
    """The Trainer's flow step by step (what event_schedule computed before it became arithmetic)."""
    total, kinds = plan.total_steps, {}
    for s in range(1, total + 1):
        if (s == 1 and first) or s % log_every == 0:
            kinds.setdefault(s, set()).add("log")
        if eval_every and (s % eval_every == 0 or s == total):
            kinds.setdefault(s, set()).add("eval")
        if save_every and (s % save_every == 0 or s == total):
            kinds.setdefault(s, set()).add("save")
    for e in range(plan.epochs_started):
        s = min((e + 1) * plan.steps_per_epoch, total)
        if eval_strategy == "epoch":
            kinds.setdefault(s, set()).add("eval")
        if save_strategy == "epoch":
            kinds.setdefault(s, set()).add("save")
    return kinds


@pytest.mark.parametrize("seed", range(40))
def test_arithmetic_schedule_equals_the_step_by_step_flow(seed):
    import random
    rng = random.Random(seed)
    plan = plan_steps(rng.randint(1, 300), rng.randint(1, 9), rng.randint(1, 3), 1, rng.choice([1, 2, 3.5]),
                      max_steps=rng.choice([-1, -1, rng.randint(1, 700)]))
    eval_strategy, save_strategy = rng.choice(["no", "steps", "epoch"]), rng.choice(["no", "steps", "epoch"])
    log, ev, sv = rng.randint(1, 40), rng.randint(1, 40), rng.randint(1, 40)
    first = rng.random() < 0.3
    limit = rng.choice([None, 1, 2, 3])
    sched = event_schedule(plan, logging_steps=log, eval_strategy=eval_strategy, eval_steps=ev,
                           save_strategy=save_strategy, save_steps=sv, save_total_limit=limit, logging_first_step=first)
    expected = _brute_force(plan, log, ev if eval_strategy == "steps" else None,
                            sv if save_strategy == "steps" else None, eval_strategy, save_strategy, first)
    assert sched.counts["events"] == len(expected)
    for kind in ("log", "eval", "save"):
        assert sched.count(kind) == sum(kind in k for k in expected.values())
    if not sched.truncated:
        assert [(e.step, set(e.kinds)) for e in sched.events] == sorted(expected.items())
    saves = sorted(s for s, k in expected.items() if "save" in k)
    from lib.job.steps import surviving_checkpoints
    assert sched.surviving == surviving_checkpoints(saves, limit)


def test_a_billion_steps_is_counted_not_walked():
    """Any value a visitor can type is answered arithmetically: a billion optimizer steps with logging,
    evaluation and saving at every step gives exact counts and a bounded list (no per-step loop)."""
    import tracemalloc

    from lib.job.steps import MAX_LISTED_EVENTS
    plan = plan_steps(8, 8, max_steps=1_000_000_000)
    tracemalloc.start()
    sched = event_schedule(plan, logging_steps=1, eval_strategy="steps", eval_steps=1, save_strategy="steps",
                           save_steps=1, save_total_limit=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sched.count("log") == sched.count("eval") == sched.count("save") == 1_000_000_000
    assert sched.truncated and len(sched.events) <= MAX_LISTED_EVENTS
    assert sched.events[0].step == 1 and sched.events[-1].step == 1_000_000_000
    assert sched.surviving == [999_999_999, 1_000_000_000] and sched.deleted_count == 999_999_998
    assert peak < 5 * 2**20  # a few hundred events, not a billion

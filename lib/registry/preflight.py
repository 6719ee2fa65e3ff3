"""Problems a launch would hit at once (unreachable Hub ids, paths that do not exist or are not allowed),
and how many training reviews a config will see (for the step preview), both in a few seconds at most."""
from __future__ import annotations

from pathlib import Path

from lib.config import BUNDLED_MODEL, DEMO_DATASET, TINY_MODEL, TrainConfig
from lib.errors import LabError
from lib.sources import data, hub, paths
from lib.sources.paths import check_local_path


# ---------------------------------------------------------------------------------------------------
# Checks before launch (the Train page calls these; nothing here starts a process)
# ---------------------------------------------------------------------------------------------------
def _hub_model_cached(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(model_id, "config.json")
        return isinstance(found, str)
    except Exception:  # noqa: BLE001
        return False


def _hub_dataset_cached(dataset_id: str) -> bool:
    try:
        return bool(data.hub_cache_candidates(dataset_id))
    except OSError:
        return False


def preflight(config: TrainConfig, *, timeout: float = 4.0) -> dict[str, str]:
    """Problems a launch would hit at once, as {field: message}: unreachable Hub ids, missing local paths.

    Takes at most about ``timeout`` seconds (one Hub probe, cached for a minute).
    """
    errors: dict[str, str] = {}

    def hub_problem(kind: str, name: str) -> str | None:
        ok, reason = hub.hub_reachable(timeout=timeout)
        return None if ok else hub.unavailable_message(kind, name, reason)

    model = config.model.strip()
    if model not in (BUNDLED_MODEL, "minilm", TINY_MODEL):
        if paths.source_kind(model) == "path":
            try:
                path = check_local_path(model, "model")
                if not path.is_dir():
                    errors["model"] = (f"the model path {model!r} is not a folder; give a folder saved "
                                       "with save_pretrained")
            except LabError as exc:
                errors["model"] = str(exc)
        elif paths.looks_like_hub_id(model):
            if not _hub_model_cached(model):
                problem = hub_problem("model", model)
                if problem:
                    errors["model"] = problem
        else:
            errors["model"] = (f"model {model!r} is neither '{BUNDLED_MODEL}', a Hub id like 'bert-base-uncased', "
                               "nor a local folder path (start local paths with / or ./)")
    dataset = config.dataset.strip()
    if dataset != DEMO_DATASET:
        if paths.source_kind(dataset) == "path":
            try:
                check_local_path(dataset, "data")
            except LabError as exc:
                errors["dataset"] = str(exc)
        elif paths.looks_like_hub_id(dataset):
            if not _hub_dataset_cached(dataset):
                problem = hub_problem("dataset", dataset)
                if problem:
                    errors["dataset"] = problem
        else:
            errors["dataset"] = (f"the data set {dataset!r} is neither 'demo', a Hub id like 'imdb', nor a local "
                                 "path (start local paths with /, ./ or ~)")
    if config.test_file.strip():
        try:
            check_local_path(config.test_file.strip(), "test file")
        except LabError as exc:
            errors["test_file"] = str(exc)
    return errors


KNOWN_TRAIN_SIZES = {"imdb": 25000, "stanfordnlp/imdb": 25000}


def estimate_train_samples(config: TrainConfig) -> int | None:
    """Training reviews the job will see (for the step preview), or None when it cannot be known cheaply."""
    dataset = config.dataset.strip()
    n: int | None = None
    if dataset == DEMO_DATASET:
        try:
            from lib.sources.data import demo_reviews
            n = demo_reviews()["train"].num_rows
        except Exception:  # noqa: BLE001
            n = None
    elif dataset in KNOWN_TRAIN_SIZES:
        n = KNOWN_TRAIN_SIZES[dataset]
    elif paths.source_kind(dataset) == "path":
        try:
            from lib.sources.tables import read_table
            path = Path(dataset).expanduser()
            if path.is_file():
                rows = len(read_table(path, text_column=config.text_column, encoding=config.encoding))
                n = rows if config.test_file.strip() else rows - max(1, round(rows * config.eval_fraction))
        except Exception:  # noqa: BLE001
            n = None
    if n is not None and config.max_train_samples is not None:
        n = min(n, config.max_train_samples)
    elif n is None and config.max_train_samples is not None:
        n = config.max_train_samples  # an upper bound; exact when the data has at least that many
    return n

"""Errors a person can act on.

Every error raised for bad input derives from :class:`LabError`; its message says what was wrong and
what to do. The CLIs print ``str(error)`` as a short plain message (never a traceback) and the pages
show it next to the field or at the top of the page.
"""
from __future__ import annotations


class LabError(Exception):
    """Base class: a problem the user can fix; the message is meant to be shown as is."""


class ConfigError(LabError):
    """One or more TrainConfig fields are invalid.

    ``errors`` maps a field name to its message so a form can show each next to its field.
    """

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        lines = [f"{msg}" for _, msg in sorted(self.errors.items())]
        super().__init__("Invalid training config:\n- " + "\n- ".join(lines))


class DataError(LabError):
    """The data set cannot be loaded or is not usable for binary classification."""


class ModelError(LabError):
    """The model cannot be loaded (missing folder, unsafe weights, wrong architecture...)."""


class HubUnavailableError(LabError):
    """The Hugging Face Hub cannot be reached and the item is not in the local cache."""


class RunError(LabError):
    """A run-registry operation was refused (unknown id, wrong state, not allowed...)."""


def os_error_message(exc: OSError) -> str:
    """A short line for a file-system error (what failed and on which file), for the command lines."""
    return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")

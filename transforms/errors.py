"""Exceptions raised by steps and pipelines.

Each names what is wrong (the step, the column, the parameter) so that the CLI can
print it as a one-paragraph message with a documented exit code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PrepflowError(Exception):
    """Base class of every error prepflow raises on purpose."""


class ConfigError(PrepflowError, ValueError):
    """A step or pipeline was declared wrongly (bad parameter, unknown method)."""


class ColumnError(PrepflowError, KeyError):
    """A column a step needs is missing or has a dtype the step cannot use."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class FitError(PrepflowError, ValueError):
    """The data cannot be fitted (e.g. ``log`` on values <= -1, one class for SMOTE)."""


class SchemaMismatchError(PrepflowError, ValueError):
    """A fitted pipeline is applied to a frame whose columns or dtypes differ."""


class ArtifactError(PrepflowError, ValueError):
    """A fitted artifact cannot be read (bad JSON, other format version, unknown step)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    >>> did_you_mean("standrad", ["standard", "robust"])
    " (did you mean 'standard'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

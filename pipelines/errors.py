"""Errors of the declarative layer and the exit codes the CLI maps them to.

Exit codes (documented in README.md):

* 0 — success;
* 1 — the data failed: it does not fit the spec or the fitted pipeline
  (unparseable values, a column with the wrong dtype, ``log`` on values <= -1);
* 2 — bad usage or a bad spec: unknown step or parameter, missing file,
  unsupported format, a malformed fitted artifact.
"""

from __future__ import annotations

from transforms.errors import (
    ArtifactError,
    ColumnError,
    ConfigError,
    FitError,
    PrepflowError,
    SchemaMismatchError,
)

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2


class SpecError(PrepflowError, ValueError):
    """A pipeline spec is invalid; the message names the file, step and key."""


class UsageError(PrepflowError, ValueError):
    """A command was called wrongly: missing file, unsupported format, output over input."""


class DataError(PrepflowError, ValueError):
    """The input data cannot be read or processed as the spec requires."""


def exit_code(exc: BaseException) -> int:
    """The documented exit code for an error."""
    if isinstance(exc, (DataError, FitError, SchemaMismatchError)):
        return EXIT_DATA
    if isinstance(exc, (SpecError, UsageError, ConfigError, ColumnError, ArtifactError)):
        return EXIT_USAGE
    return EXIT_USAGE if isinstance(exc, PrepflowError) else EXIT_DATA


__all__ = [
    "EXIT_DATA",
    "EXIT_OK",
    "EXIT_USAGE",
    "ArtifactError",
    "ColumnError",
    "ConfigError",
    "DataError",
    "FitError",
    "SchemaMismatchError",
    "SpecError",
    "UsageError",
    "exit_code",
]

"""User-facing errors. Each one says where the problem is and what to do next.

The CLI maps them to exit codes without printing a traceback:
2 for bad input (a suite, a dataset, an argument), 3 for an infrastructure failure
(a model that cannot load, a judge that cannot be reached).
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRA = 3


class EvalkitError(Exception):
    """Base class: a message written for the user, and the exit code it maps to."""

    exit_code = EXIT_INFRA

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class InputError(EvalkitError):
    """Bad input from the user: a suite, a data file, a flag. Exit code 2."""

    exit_code = EXIT_BAD_INPUT


class SuiteError(InputError):
    """A problem at a place in a suite file: `file:line: message`."""

    def __init__(
        self, message: str, *, file: Path | str, line: int | None = None, hint: str | None = None
    ) -> None:
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {message}", hint=hint)
        self.file = str(file)
        self.line = line


class DataError(InputError):
    """A dataset that cannot be read or lacks what the suite maps."""


class ModelLoadError(EvalkitError):
    """A model or adapter that cannot be loaded. Exit code 3."""

    exit_code = EXIT_INFRA

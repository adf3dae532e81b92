"""Errors the harness raises on purpose. Each maps to an exit code of the CLI."""

from __future__ import annotations


class HarnessInputError(ValueError):
    """Bad input from the user (case file, array, flag, policy). Exit code 2.

    The message names the file, the case id and the field where they are known, and, for a
    choice, the valid values.
    """

    def __init__(self, message: str, *, file: str | None = None, case: str | None = None,
                 field: str | None = None, choices: list[str] | None = None):
        where = []
        if file:
            where.append(f"{file}")
        if case:
            where.append(f"case {case!r}")
        if field:
            where.append(f"field {field!r}")
        text = (": ".join(where) + ": " if where else "") + message
        if choices:
            text += f" (valid: {', '.join(choices)})"
        super().__init__(text)
        self.file, self.case, self.field, self.choices = file, case, field, choices


class ReferenceAccuracyError(ArithmeticError):
    """The reference engine could not certify a value to the promised precision."""


class HarnessStopped(RuntimeError):
    """The run stopped short of its items for a reason that is not the input's (a job that
    died): the results written so far stay, the file is marked incomplete. Exit code 3."""


class Stopped(Exception):
    """Raised to a job when the run is stopping (interrupted, or another job failed) while its
    item was in flight: the item is not recorded, since its worker was stopped, not crashed."""

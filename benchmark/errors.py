"""The package's one base exception for bad input.

Every error about invalid input or invalid files (an architecture, a table, a corpus, a
release, a checkpoint, ...) is a :class:`HwlmError`, itself a ``ValueError``, so callers can
catch the package's errors as one family or each kind by its own class. Messages name the
field, the value and what is allowed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HwlmError", "describe_invalid"]


def describe_invalid(field: str, value: Any, allowed: Any) -> str:
    """The package's message for a bad value: ``invalid {field}: {value!r}; allowed: {allowed}``."""
    return f"invalid {field}: {value!r}; allowed: {allowed}"


class HwlmError(ValueError):
    """Invalid input or an invalid file; subclasses say which concept it concerns."""

    @classmethod
    def invalid(cls, field: str, value: Any, allowed: Any) -> "HwlmError":
        """An error of this class naming the field, the value and what is allowed (to ``raise``)."""
        return cls(describe_invalid(field, value, allowed))

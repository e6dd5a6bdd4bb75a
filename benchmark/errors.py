"""The package's one base exception for bad input.

Every error about invalid input or invalid files (an architecture, a table, a corpus, a
release, a checkpoint, ...) is a :class:`HwlmError`, itself a ``ValueError``, so callers can
catch the package's errors as one family or each kind by its own class. Messages name the
field, the value and what is allowed; a huge value is shortened (:func:`short_repr`), so a
message stays one readable line.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HwlmError", "describe_invalid", "short_repr", "MAX_VALUE_CHARS"]

MAX_VALUE_CHARS = 200  # longest value repr a message quotes in full


def short_repr(value: Any) -> str:
    """``repr(value)`` on one line, shortened to about :data:`MAX_VALUE_CHARS` characters (the
    elision says how long the whole was); never raises, also for ints too long for ``repr``."""
    try:
        text = repr(value)
    except Exception:  # e.g. an int beyond sys.get_int_max_str_digits(), or a broken __repr__
        if isinstance(value, int):
            return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
        return f"<a {type(value).__name__} without a printable repr>"
    text = re.sub(r"\n\s*", " ", text)  # numpy arrays print over several lines; a message is one
    if len(text) <= MAX_VALUE_CHARS:
        return text
    half = MAX_VALUE_CHARS // 2
    return f"{text[:half]}...{text[-half // 2:]} ({len(text):,} characters)"


def describe_invalid(field: str, value: Any, allowed: Any) -> str:
    """The package's message for a bad value: ``invalid {field}: {value!r}; allowed: {allowed}``."""
    return f"invalid {field}: {short_repr(value)}; allowed: {allowed}"


class HwlmError(ValueError):
    """Invalid input or an invalid file; subclasses say which concept it concerns."""

    @classmethod
    def invalid(cls, field: str, value: Any, allowed: Any) -> "HwlmError":
        """An error of this class naming the field, the value and what is allowed (to ``raise``)."""
        return cls(describe_invalid(field, value, allowed))

"""Type and range checks for the fields of small JSON or form bodies.

A form gives every value as a string; JSON gives any type. Each check accepts exactly
the values a field may hold and raises the route's ``CarminError`` (400) for anything
else, so a list, an object, a float or a huge number never reaches the code behind
(where it would be a 500, or a database error reported as a 503). Patterns are applied
with ``fullmatch``: ``$`` would accept a value ending in a newline.

An empty string counts as absent, as OAuth clients send unused form fields empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import CarminError, E

_DIGITS = re.compile(r"[0-9]{1,18}")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")

Fail = Callable[[str], CarminError]


def _bad_body(message: str) -> CarminError:
    return CarminError(E.BAD_BODY, message)


class Fields:
    """Checked access to a parsed body: ``Fields(data).text("path", required=True)``."""

    def __init__(self, data: Mapping[str, Any], fail: Fail = _bad_body) -> None:
        self._data = data
        self._fail = fail

    def _raw(self, names: tuple[str, ...]) -> tuple[str, Any]:
        for name in names:
            value = self._data.get(name)
            if value is not None and value != "":
                return name, value
        return names[0], None

    def text(
        self,
        *names: str,
        required: bool = False,
        max_len: int = 1024,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str | None:
        """A string of at most ``max_len`` characters (matching ``pattern`` whole)."""
        name, value = self._raw(names)
        if value is None:
            if required:
                raise self._fail(f"{name} is required")
            return None
        if not isinstance(value, str):
            raise self._fail(f"{name} must be a string")
        if len(value) > max_len:
            raise self._fail(f"{name} is limited to {max_len} characters")
        if pattern is not None and pattern.fullmatch(value) is None:
            raise self._fail(f"{name} must be {what or 'well formed'}")
        return value

    def integer(self, *names: str, lo: int, hi: int) -> int | None:
        """An integer in [lo, hi]: a JSON integer or a string of digits (never a bool,
        a float or a numeric string with a sign, spaces or exponent)."""
        name, value = self._raw(names)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self._fail(f"{name} must be an integer")
        if isinstance(value, str):
            if _DIGITS.fullmatch(value) is None:
                raise self._fail(f"{name} must be an integer from {lo} to {hi}")
            value = int(value)
        if not lo <= value <= hi:
            raise self._fail(f"{name} must be an integer from {lo} to {hi}")
        return value

    def flag(self, name: str) -> bool:
        """A boolean: JSON true/false, or true/false/1/0/yes/no/on/off in a form."""
        value = self._data.get(name)
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise self._fail(f"{name} must be true or false")

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        value = self._data.get(name)
        if value is None or value == "":
            return default
        if not isinstance(value, str) or value not in allowed:
            raise self._fail(f"{name} must be one of: {', '.join(allowed)}")
        return value

"""Typed configuration keys read from dataclasses: what config.py validates against and
what the configuration reference (docs/configuration.md) is generated from.

A key is a dataclass field: its annotation is the type (``str``, ``int``, ``float``,
``bool``, ``tuple[str, ...]``, a ``Literal`` of strings, or one of those ``| None``), its
default the default (none: required), and the string literal right below the field its
one-line documentation (the attribute-docstring convention Sphinx reads too). A field
added to ``Settings`` or to a backend's options class is covered by this alone.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Key:
    name: str
    type: Any
    default: Any  # dataclasses.MISSING when the key is required
    doc: str
    secret: bool = False

    @property
    def required(self) -> bool:
        return self.default is MISSING


@functools.cache
def keys_of(cls: type) -> tuple[Key, ...]:
    """The keys of a dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    secret: frozenset[str] = getattr(cls, "secrets", frozenset())
    out = []
    for f in fields(cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        out.append(Key(f.name, hints[f.name], default, docs.get(f.name, ""), f.name in secret))
    return tuple(out)


def attribute_docs(cls: type) -> dict[str, str]:
    """``name -> doc`` for each field: the string literal right below it, else the
    comment lines right above it, else its end-of-line comment."""
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    out: dict[str, str] = {}
    for i, node in enumerate(body.body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        after = body.body[i + 1] if i + 1 < len(body.body) else None
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            out[node.target.id] = " ".join(after.value.value.split())
            continue
        above: list[str] = []
        n = node.lineno - 2  # the line above, 0-based
        while n >= 0 and lines[n].strip().startswith("#"):
            above.insert(0, lines[n].strip().lstrip("#").strip())
            n -= 1
        doc = " ".join(above) or _end_comment(lines[node.lineno - 1])
        if doc:
            out[node.target.id] = doc
    return out


def _end_comment(line: str) -> str:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError):
        return ""
    for tok in tokens:
        if tok.type == tokenize.COMMENT and not tok.string.lstrip("# ").startswith("noqa"):
            return tok.string.lstrip("#").strip()
    return ""


def _optional(tp: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` was allowed)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def describe(tp: Any) -> str:
    """What a value of this type looks like, for an error or the reference."""
    inner, optional = _optional(tp)
    if typing.get_origin(inner) is Literal:
        text = "one of " + ", ".join(repr(a) for a in typing.get_args(inner))
    elif inner is bool:
        text = "a boolean"
    elif inner is int:
        text = "an integer"
    elif inner is float:
        text = "a number"
    elif inner is str:
        text = "a string"
    elif typing.get_origin(inner) is tuple:
        text = "a list of strings"
    else:  # pragma: no cover - a declaration error, caught by the schema tests
        raise TypeError(f"unsupported configuration type {tp!r}")
    return text + (" (or unset)" if optional else "")


def check(value: Any, tp: Any, secret: bool = False) -> Any:
    """The value if it has the declared type (lists become tuples, ints floats where a
    number is declared); ``ValueError`` saying what was expected otherwise (with the
    value given, unless the key is a secret)."""
    inner, optional = _optional(tp)
    if value is None and optional:
        return None
    ok = False
    if typing.get_origin(inner) is Literal:
        ok = isinstance(value, str) and value in typing.get_args(inner)
    elif inner is bool:
        ok = isinstance(value, bool)
    elif inner is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif inner is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif inner is str:
        ok = isinstance(value, str)
    elif typing.get_origin(inner) is tuple:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if ok:
            value = tuple(value)
    if not ok:
        raise ValueError(f"expected {describe(tp)}, got {_shown(value, secret)}")
    return value


def from_env(text: str, tp: Any, secret: bool = False) -> Any:
    """An environment string converted to the declared type (never guessed from its
    looks: a password of digits stays a string)."""
    inner, optional = _optional(tp)
    stripped = text.strip()
    if optional and stripped == "":
        return None
    if typing.get_origin(inner) is Literal:
        for choice in typing.get_args(inner):
            if stripped.lower() == str(choice).lower():
                return choice
    elif inner is bool:
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
    elif inner is int:
        try:
            return int(stripped)
        except ValueError:
            pass
    elif inner is float:
        try:
            return float(stripped)
        except ValueError:
            pass
    elif inner is str:
        return text
    elif typing.get_origin(inner) is tuple:
        return tuple(v.strip() for v in text.split(",") if v.strip())
    raise ValueError(f"expected {describe(tp)}, got {'a value' if secret else repr(text)}")


def _shown(value: Any, secret: bool) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}
    name = kind.get(type(value), type(value).__name__)
    if secret:
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({name})"


def did_you_mean(word: str, choices: typing.Iterable[str], fmt: str = "{!r}") -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {fmt.format(close[0])}?" if close else ""

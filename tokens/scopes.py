"""WLCG storage scopes: ``storage.read:/p``, ``storage.create:/p``, ``storage.modify:/p``.

Rules (WLCG Common JWT Profile, as fedgate applies them):

- ``read`` lets a bearer read (exists, properties, list, md5, content).
- ``create`` lets it upload new files and make directories, never overwrite or delete.
- ``modify`` is everything ``create`` allows plus overwrite and delete.
  ``read`` is separate: ``modify`` does not imply ``read``.
- A scope path covers itself and everything below it: ``/a`` covers ``/a`` and ``/a/x``,
  never ``/ab``. ``/`` covers everything.
- Paths are normalised before anything is compared: ``//`` collapses, ``.`` segments
  and a trailing slash are dropped, and ``..`` is refused outright (never resolved), so
  ``/a/../b`` can be neither granted nor matched.
- Scopes travel space-separated, so a path holding a space (or a ``%``) is written
  percent-encoded (``storage.read:/local/my%20data``); ``parse_scopes`` decodes it and
  ``str(scope)`` encodes it again, so names with spaces can be granted and matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from .errors import ScopeError

ACTIVITIES = ("read", "create", "modify")
_MAX_PATH = 1024
_MAX_SCOPES = 64
_SCOPE_RE = re.compile(r"storage\.([a-z]+):(.*)", re.DOTALL)  # applied with fullmatch
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_ENCODE = re.compile(r"[%\s]")


@dataclass(frozen=True)
class Scope:
    activity: str
    path: str

    def __post_init__(self) -> None:
        if self.activity not in ACTIVITIES:
            raise ScopeError(f"unknown storage activity {self.activity!r}")
        if normalise_path(self.path) != self.path:
            raise ScopeError("scope path must be normalised (use parse_scopes)")

    def __str__(self) -> str:
        encoded = _ENCODE.sub(lambda m: quote(m.group(), safe=""), self.path)
        return f"storage.{self.activity}:{encoded}"

    @property
    def mount(self) -> str | None:
        """The first path segment (the mount name), None for ``/``."""
        return self.path.split("/", 2)[1] or None


def normalise_path(path: str) -> str:
    """``/a//b/./c/`` → ``/a/b/c``; raises ScopeError for ``..``, relative or odd paths."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ScopeError("a scope path must start with '/'")
    if len(path) > _MAX_PATH:
        raise ScopeError(f"a scope path is limited to {_MAX_PATH} characters")
    if _BAD_CHARS.search(path):
        raise ScopeError("a scope path may not hold control characters or '\\'")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ScopeError("a scope path may not contain '..'")
    return "/" + "/".join(parts)


def parse_scopes(text: str) -> list[Scope]:
    """Parse a space-separated scope string; duplicates are dropped, order is kept."""
    if not isinstance(text, str):
        raise ScopeError("scope must be a string")
    out: list[Scope] = []
    items = text.split()
    # Refused before parsing: a long list would cost a quadratic de-duplication.
    if len(items) > _MAX_SCOPES:
        raise ScopeError(f"at most {_MAX_SCOPES} scopes per token")
    for item in items:
        m = _SCOPE_RE.fullmatch(item)
        if m is None:
            raise ScopeError(
                f"unsupported scope {item[:80]!r}: expected storage.read:/path, "
                "storage.create:/path or storage.modify:/path"
            )
        activity, raw_path = m.groups()
        if activity not in ACTIVITIES:
            raise ScopeError(f"unknown storage activity {activity[:20]!r}")
        scope = Scope(activity, normalise_path(unquote(raw_path)))
        if scope not in out:
            out.append(scope)
    return out


def format_scopes(scopes: Iterable[Scope]) -> str:
    return " ".join(str(s) for s in scopes)


def _activity_allows(held: str, needed: str) -> bool:
    if needed not in ACTIVITIES:
        raise ScopeError(f"unknown storage activity {needed!r}")
    return held == needed or (held == "modify" and needed == "create")


def _path_covers(scope_path: str, path: str) -> bool:
    return scope_path == "/" or path == scope_path or path.startswith(scope_path + "/")


def covers(scope: Scope, activity: str, path: str) -> bool:
    """Whether ``scope`` allows ``activity`` on ``path`` (an unsafe path is never covered)."""
    if not _activity_allows(scope.activity, activity):
        return False
    try:
        norm = normalise_path(path)
    except ScopeError:
        return False
    return _path_covers(scope.path, norm)


def find_match(scopes: Iterable[Scope], activity: str, path: str) -> Scope | None:
    """The first scope that allows ``activity`` on ``path``, or None."""
    for s in scopes:
        if covers(s, activity, path):
            return s
    return None


def is_subset(requested: Sequence[Scope], held: Sequence[Scope]) -> bool:
    """Every requested scope is covered by a held one (same or stronger, same or wider)."""
    return all(any(covers(h, r.activity, r.path) for h in held) for r in requested)


def touches(scope: Scope, path: str) -> bool:
    """Whether ``scope`` grants anything on or below ``path`` (any activity)."""
    norm = normalise_path(path)
    return _path_covers(scope.path, norm) or _path_covers(norm, scope.path)

"""How Girder names and paths map to fedgate path segments (see adapters/girder/__init__.py)."""

from __future__ import annotations

import unicodedata

SHOWN = {"/": "\u2215", "\\": "\u29f5"}


def shown_name(name: str) -> str:
    """The fedgate name of a Girder name."""
    return name.replace("/", SHOWN["/"]).replace("\\", SHOWN["\\"])


def girder_name(segment: str) -> str:
    return segment.replace(SHOWN["/"], "/").replace(SHOWN["\\"], "\\")


def encode(name: str) -> str:
    """Girder's ``path.encode`` for one segment of a resource/lookup path."""
    return name.replace("\\", "\\\\").replace("/", "\\-")


def split_girder_path(path: str) -> list[str]:
    """Girder's ``path.split``: segments of an escaped path, unescaped."""
    out: list[str] = []
    current, i = "", 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path):
            current += {"\\": "\\", "-": "/"}.get(path[i + 1], path[i + 1])
            i += 2
            continue
        if c == "/":
            out.append(current)
            current = ""
        else:
            current += c
        i += 1
    out.append(current)
    return [s for s in out if s]


def unservable(name: str) -> bool:
    """Girder 5 answers 500 to a download whose *file* name it cannot put in the
    Content-Disposition header (its latin-1 fallback is not valid UTF-8, e.g. "ø")."""
    latin = unicodedata.normalize("NFKD", name).encode("iso8859-1", "ignore")
    try:
        latin.decode("utf8")
    except UnicodeDecodeError:
        return True
    return False


def servable_file_name(name: str) -> str:
    """An ASCII stand-in for a file name Girder cannot serve (the item keeps the real one)."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or "data"

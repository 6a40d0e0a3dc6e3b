"""How Girder names and paths map to fedgate path segments (see adapters/girder.py)."""

from __future__ import annotations

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

"""What a fedgate path resolves to in Girder, and the entry it shows as.

Folders are directories. An item holding exactly one file is shown as that file; an item
holding zero or several files is a read-only directory of its files (adapters/girder/__init__.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import Entry
from adapters.common import mime_type
from adapters.girder.session import parse_time

Doc = dict[str, Any]


def doc_time(doc: Mapping[str, Any], key: str) -> float | None:
    value = doc.get(key)
    return parse_time(str(value)).timestamp() if value else None


def file_entry(path: str, f: Mapping[str, Any]) -> Entry:
    """A Girder file document as an entry: ``mtime`` is its ``created`` time, which Girder
    resets when the contents are replaced."""
    return Entry(
        path=path,
        is_dir=False,
        size=int(f.get("size") or 0),
        mtime=doc_time(f, "created"),
        mime_type=str(f.get("mimeType") or mime_type(path)),
    )


def folder_entry(path: str, doc: Mapping[str, Any]) -> Entry:
    return Entry(path=path, is_dir=True, mtime=doc_time(doc, "updated"))


class Node:
    """What a fedgate path resolves to in Girder."""

    def __init__(self, model: str, doc: Doc, files: list[Doc]) -> None:
        self.model = model  # collection | user | folder | item | file
        self.doc = doc
        self.files = files  # for an item: its first two files

    @property
    def id(self) -> str:
        return str(self.doc["_id"])

    @property
    def file(self) -> Doc | None:
        if self.model == "file":
            return self.doc
        if self.model == "item" and len(self.files) == 1:
            return self.files[0]
        return None

    @property
    def is_dir(self) -> bool:
        return self.file is None

    def entry(self, path: str) -> Entry:
        f = self.file
        return folder_entry(path, self.doc) if f is None else file_entry(path, f)

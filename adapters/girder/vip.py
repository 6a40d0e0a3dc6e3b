"""VIP/GASW compatibility for Girder mounts: job input URIs and VIP-style references.

VIP hands a job ``girder:/<name>?apiurl=<api url>&fileId=<id>&token=<token>`` and the job
runs ``girder-client --api-url $apiurl --token $token download --parent-type auto $fileId``.
fedgate produces the same URI, but with a token that dies at the requested expiry.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from urllib.parse import quote, urlencode

from adapters.base import Delegation, Entry, NotFound, parent_of
from adapters.girder.errors import GirderError
from adapters.girder.names import shown_name, split_girder_path
from adapters.girder.session import GirderSession


class VipMount(Protocol):
    """What VIP URIs and references need of a Girder mount view (a GirderStorage)."""

    @property
    def root(self) -> str: ...

    @property
    def session(self) -> GirderSession: ...

    def stat(self, path: str) -> Entry: ...

    def vip_delegation(self, path: str, expires_at: dt.datetime) -> tuple[str, Delegation]: ...


def vip_uri(storage: VipMount, path: str, expires_at: dt.datetime) -> str:
    """A VIP/GASW input URI for a file: ``girder:/<name>?apiurl=…&fileId=…&token=…``.

    The job runs ``girder-client --api-url $apiurl --token $token download --parent-type
    auto $fileId``. The URI carries a read-only token that dies at ``expires_at`` at the
    latest (adapters/girder/delegation.py): treat the string as a secret (never log it)."""
    return storage.vip_delegation(path, expires_at)[0]


def format_vip_uri(api_url: str, path: str, file_id: str, token: str) -> str:
    query = urlencode({"apiurl": api_url, "fileId": file_id, "token": token}, safe=":/")
    return f"girder:/{quote(shown_name(path.rsplit('/', 1)[-1]))}?{query}"


def resolve_vip_reference(storage: VipMount, reference: str) -> str:
    """The mount path of a VIP reference to a Girder resource (best effort).

    Accepts ``<platformId>:<girderId>`` (VIP's external-platform form), a bare Girder id,
    or a ``girder:/…?fileId=<id>`` URI. The id may name a file, an item or a folder; a file
    that is alone in its item maps to the item's path. NotFound when Girder does not know
    the id or it lies outside this mount."""
    if "fileId=" in reference:
        girder_id = reference.split("fileId=", 1)[1].split("&", 1)[0]
    else:
        girder_id = reference.rsplit(":", 1)[-1].strip("/")
    for kind in ("file", "item", "folder"):
        try:
            full = str(storage.session.request("GET", f"resource/{girder_id}/path", {"type": kind}))
            break
        except GirderError:
            continue
    else:
        raise NotFound(f"Girder resource {girder_id!r} not found")
    root = split_girder_path(storage.root)
    segments = split_girder_path(full)
    if segments[: len(root)] != root:
        raise NotFound(f"Girder resource {girder_id!r} is outside this mount")
    rel = [shown_name(s) for s in segments[len(root) :]]
    path = "/".join(rel)
    if kind == "file" and len(rel) >= 2 and not storage.stat(parent_of(path)).is_dir:
        path = parent_of(path)
    return path

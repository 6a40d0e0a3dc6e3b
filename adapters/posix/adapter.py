"""The local folder adapter: one view for every request, reached with the gateway's own
file access (see adapters/posix/__init__.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from adapters.base import BackendUnavailable, Credential, Storage
from adapters.posix.storage import PosixStorage


class PosixAdapter:
    type_name = "posix"
    uses_credentials = False  # the gateway's own file access; no per-user credential

    def __init__(self, root: str | os.PathLike[str], create: bool = False) -> None:
        if create:
            os.makedirs(root, exist_ok=True)
        self._storage = PosixStorage(root)
        self._storage.clean_stale_staging()

    @property
    def root(self) -> str:
        return self._storage.root

    def bind(self, credential: Credential | None) -> Storage:
        return self._storage

    def check(self) -> None:
        if not os.path.isdir(self._storage.root):
            raise BackendUnavailable("mount root is gone")

    def close(self) -> None:
        pass


def create(options: Mapping[str, Any]) -> PosixAdapter:
    """Options: ``root`` (folder, required), ``create`` (make it if missing, default false)."""
    if "root" not in options:
        raise ValueError("a posix mount needs a 'root' folder")
    return PosixAdapter(str(options["root"]), create=bool(options.get("create", False)))

"""The reliability tests' view of a backend: its mount, and a way to look at it
directly (a separate adapter instance, not the gateway's). The real backends themselves
are the session fixtures of conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.base import NotFound, Storage
from adapters.registry import create_adapter
from gateway.config import MountConfig


@dataclass
class Backend:
    name: str  # also the mount name
    type: str
    options: dict[str, Any]
    testbed: str | None = None  # scripts/testbeds/<name>.sh, None for in-process servers
    extra: dict[str, Any] = field(default_factory=dict)

    def mount(self) -> MountConfig:
        return MountConfig(
            name=self.name, type=self.type, options=self.options, credential_source="service"
        )

    def storage(self) -> Storage:
        """A fresh view of the backend, independent of any gateway."""
        return create_adapter(self.type, self.options).bind(None)

    def peek(self) -> set[str]:
        """Every path below the mount root, as the backend lists it now."""
        storage = self.storage()
        out: set[str] = set()

        def walk(path: str) -> None:
            for e in storage.list(path):
                out.add(e.path + ("/" if e.is_dir else ""))
                if e.is_dir:
                    walk(e.path)

        walk("")
        storage.close()
        return out

    def read(self, path: str) -> bytes | None:
        storage = self.storage()
        try:
            return b"".join(storage.open_read(path))
        except NotFound:
            return None
        finally:
            storage.close()


def posix_backend(root: Path) -> Backend:
    root.mkdir(parents=True, exist_ok=True)
    return Backend("posix", "posix", {"root": str(root)})


Peek = Callable[[], set[str]]

"""The Girder adapter's settings, checked once at start (the options are declared in
adapters/options.py, described in adapters/girder/__init__.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from adapters.options import MIB, GirderOptions

MIN_CHUNK = 5 * MIB  # Girder's minimum for every upload chunk but the last


@dataclass(frozen=True, repr=False)
class GirderSettings(GirderOptions):
    """The mount's options (declared and documented once, in adapters/options.py)
    checked: the root a collection's or a user's, ``native_tokens`` a boolean."""

    def __repr__(self) -> str:  # the service key must never reach a log
        return f"GirderSettings(api_url={self.api_url!r}, root={self.root!r})"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GirderSettings:
        unknown = set(options) - {f.name for f in fields(GirderOptions)}
        if unknown:
            raise ValueError(f"unknown girder option(s): {', '.join(sorted(unknown))}")
        if "api_url" not in options or "root" not in options:
            raise ValueError("a girder mount needs api_url and root")
        settings = cls(**options)
        if not settings.root.startswith(("/collection/", "/user/")):
            raise ValueError("girder root must start with /collection/ or /user/")
        if not isinstance(settings.native_tokens, bool):
            raise ValueError("native_tokens must be true or false")
        return settings

    @property
    def chunk_size(self) -> int:
        """Upload chunk size in bytes (at least Girder's minimum)."""
        return max(int(self.upload_chunk_mib * MIB), MIN_CHUNK)

    @property
    def http(self) -> tuple[float, float, int]:
        """(connect timeout, read timeout, retries) for a GirderSession."""
        return self.connect_timeout, self.read_timeout, self.retries

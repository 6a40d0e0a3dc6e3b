"""The gfal adapter's settings, checked once at start (the options are declared in
adapters/options.py, described in adapters/gfal/__init__.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from adapters.options import GfalOptions


@dataclass(frozen=True, repr=False)
class GfalSettings(GfalOptions):
    """The mount's options (declared and documented once, in adapters/options.py)
    checked: booleans and positive integers as such, checksum names in lower case."""

    def __repr__(self) -> str:
        return (
            f"GfalSettings(base_url={self.base_url!r}, token=<{'set' if self.token else 'unset'}>)"
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GfalSettings:
        known = {f.name for f in fields(GfalOptions)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown gfal option(s): {', '.join(sorted(unknown))}")
        if not isinstance(options.get("base_url"), str):
            raise ValueError("gfal option 'base_url' is required")
        kwargs: dict[str, Any] = {"base_url": options["base_url"]}
        for name in ("token", "x509_proxy"):
            if options.get(name):
                kwargs[name] = str(options[name])
        for name in ("anonymous", "macaroons", "insecure", "stream_http", "raw_reads"):
            if name in options:
                kwargs[name] = _bool(options[name], name)
        for name in ("timeout", "connect_timeout", "checksum_timeout", "max_idle_contexts"):
            if name in options:
                kwargs[name] = _int(options[name], name)
        if "native_checksums" in options:
            algs = options["native_checksums"]
            if not isinstance(algs, list | tuple) or not all(isinstance(a, str) for a in algs):
                raise ValueError("gfal option 'native_checksums' must be a list of names")
            kwargs["native_checksums"] = tuple(sorted({a.lower() for a in algs}))
        return cls(**kwargs)


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"gfal option {name!r} must be true or false")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"gfal option {name!r} must be a positive integer")
    return value

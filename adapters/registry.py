"""Backend types, registered lazily: a backend's library is imported only when a mount of
that type is configured, and a missing library gives an install hint instead of a trace."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, cast

from adapters.base import Adapter

# type name -> (module, pip extra or system package that provides its library)
BACKENDS: dict[str, tuple[str, str]] = {
    "posix": ("adapters.posix", ""),
    "s3": ("adapters.s3", "pip install 'fedgate[s3]'"),
    "girder": ("adapters.girder", "pip install 'fedgate[girder]'"),
    "irods": ("adapters.irods", "pip install 'fedgate[irods]'"),
    "gfal": ("adapters.gfal", "apt-get install python3-gfal2, then scripts/gfal2-venv.sh"),
}


class BackendLoadError(Exception):
    pass


def create_adapter(type_name: str, options: Mapping[str, Any]) -> Adapter:
    if type_name not in BACKENDS:
        raise BackendLoadError(
            f"unknown mount type {type_name!r} (known: {', '.join(sorted(BACKENDS))})"
        )
    module_name, hint = BACKENDS[type_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendLoadError(f"mount type {type_name!r} needs a library: {hint} ({exc})") from exc
    return cast(Adapter, module.create(options))

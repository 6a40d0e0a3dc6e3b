"""python-irodsclient, imported lazily: a missing library is NotSupported with an
install hint, raised when a mount of type irods is used, not when fedgate starts."""

from __future__ import annotations

from typing import Any

from adapters.base import NotSupported

INSTALL_HINT = "the iRODS adapter needs python-irodsclient: pip install 'fedgate[irods]'"


def irods_library() -> Any:
    """The python-irodsclient package, with the submodules the adapter uses loaded."""
    try:
        import irods.exception
        import irods.models
        import irods.session
        import irods.ticket
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise NotSupported(INSTALL_HINT) from exc
    return irods

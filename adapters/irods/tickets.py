"""iRODS tickets as fedgate delegations: minting one on a path, deleting one. The storage
decides which path and mode (IrodsStorage.presign / delegate); this module only talks to
the catalog about tickets, with the session and the server's address it is given."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from adapters.base import Delegation, NotFound
from adapters.irods.client import irods_library
from adapters.irods.errors import is_named, translate

log = logging.getLogger("adapters.irods")


@dataclass(frozen=True, slots=True)
class Server:
    """Where a ticket is used: sent with it so a job can connect to the right zone."""

    host: str
    port: int
    zone: str


def issue_ticket(
    session: Any,
    server: Server,
    full: str,
    path: str,
    mode: str,
    expires_at: dt.datetime,
    uses: int | None = None,
    method: str | None = None,
) -> Delegation:
    """Mint an iRODS ticket ("read" or "write") on the object or collection ``full``
    (``path`` is its mount path, for messages) that expires at ``expires_at`` (rounded
    down to the second) and, if ``uses`` is given, can be used that many times."""
    if mode not in ("read", "write"):
        raise ValueError("mode must be 'read' or 'write'")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    expiry = int(expires_at.timestamp())
    if expiry <= time.time():
        raise ValueError("expires_at is in the past")
    ticket = irods_library().ticket.Ticket(session)
    try:
        ticket.issue(mode, full)
    except Exception as exc:
        raise translate(exc, path) from exc
    try:
        ticket.modify("expire", expiry)
        if uses is not None:
            ticket.modify("uses", int(uses))
    except Exception as exc:
        try:
            ticket.delete()
        except Exception:
            log.warning("iRODS: could not delete a half-configured ticket on %s", path)
        raise translate(exc, path) from exc
    return Delegation(
        kind="irods_ticket",
        value=ticket.string,
        expires_at=dt.datetime.fromtimestamp(expiry, dt.UTC),
        method=method or ("GET" if mode == "read" else "PUT"),
        headers={
            "X-iRODS-Host": server.host,
            "X-iRODS-Port": str(server.port),
            "X-iRODS-Zone": server.zone,
            "X-iRODS-Path": full,
        },
    )


def revoke_ticket(session: Any, ticket: str) -> None:
    """Delete a ticket; NotFound if it does not exist (any more)."""
    try:
        irods_library().ticket.Ticket(session, ticket).delete()
    except Exception as exc:
        err = translate(exc, "")
        if is_named(exc, ("CAT_TICKET_INVALID",)):
            err = NotFound("no such ticket")
        raise err from exc

"""iRODS tickets as fedgate delegations (see adapters/irods.py)."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from adapters._irods_io import _irods, _is, log, translate
from adapters.base import (
    AlreadyExists,
    Delegation,
    IsADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    parent_of,
)

if TYPE_CHECKING:
    from adapters.irods import IrodsStorage


def presign(
    self: IrodsStorage,
    path: str,
    method: str,
    expires_at: dt.datetime,
    uses: int | None = None,
    create_only: bool = False,
) -> Delegation:
    """A read ticket (GET) or a write ticket (PUT) on one data object. A write ticket's
    object is created empty first, so the ticket covers that object and not its
    collection; ``create_only``: the object must not exist, and the server refuses the
    create if it appeared since (DATA_OBJ_CREATE without the force flag), so the ticket
    never covers a file the token could not replace."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        self.stat(path)
        return issue_ticket(self, path, "read", expires_at, uses, method=method)
    if method == "PUT":
        full = self._full(path)
        if self._is_coll(full):
            raise IsADirectory(f"{path or '/'}: is a directory")
        if create_only or not self._is_obj(full):
            if not self._is_coll(full.rsplit("/", 1)[0]):
                raise ParentNotFound(f"{parent_of(path) or '/'}: parent does not exist")
            try:
                if create_only:
                    self.session.data_objects.create(full, force=False)
                else:
                    self.session.data_objects.open(full, "w").close()
            except Exception as exc:
                if type(exc).__name__ == "DataObjectExistsAtLogicalPath":
                    raise AlreadyExists(f"{path}: already exists") from exc
                raise translate(exc, path) from exc
        return issue_ticket(self, path, "write", expires_at, uses, method=method)
    raise NotSupported(f"no iRODS ticket for method {method}")


def issue_ticket(
    self: IrodsStorage,
    path: str,
    mode: str,
    expires_at: dt.datetime,
    uses: int | None = None,
    method: str | None = None,
) -> Delegation:
    """Mint an iRODS ticket ("read" or "write") on ``path`` that expires at
    ``expires_at`` (rounded down to the second) and, if ``uses`` is given, can be
    used that many times."""
    if mode not in ("read", "write"):
        raise ValueError("mode must be 'read' or 'write'")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    expiry = int(expires_at.timestamp())
    if expiry <= time.time():
        raise ValueError("expires_at is in the past")
    full = self._full(path)
    ticket = _irods().ticket.Ticket(self.session)
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
    a = self.adapter
    return Delegation(
        kind="irods_ticket",
        value=ticket.string,
        expires_at=dt.datetime.fromtimestamp(expiry, dt.UTC),
        method=method or ("GET" if mode == "read" else "PUT"),
        headers={
            "X-iRODS-Host": a.host,
            "X-iRODS-Port": str(a.port),
            "X-iRODS-Zone": a.zone,
            "X-iRODS-Path": full,
        },
    )


def revoke_ticket(self: IrodsStorage, ticket: str) -> None:
    try:
        _irods().ticket.Ticket(self.session, ticket).delete()
    except Exception as exc:
        err = translate(exc, "")
        if _is(exc, ("CAT_TICKET_INVALID",)):
            err = NotFound("no such ticket")
        raise err from exc

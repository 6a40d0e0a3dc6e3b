"""Tickets (TICKET_ADMIN_AN) of the iRODS protocol test server.

Enforcement of a presented ticket (path, mode, expiry, use count) lives in catalog.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from irods.message import TicketAdminRequest, iRODSMessage

from tests.irods_server import errors as E
from tests.irods_server.catalog import Ticket
from tests.irods_server.wire import text

if TYPE_CHECKING:
    from tests.irods_server.handlers import Reply, Session


def ticket_admin(self: Session, msg: iRODSMessage) -> Reply:
    """TICKET_ADMIN_AN: create / mod (expire, uses) / delete, and "session" to present one."""
    req = msg.get_main_message(TicketAdminRequest)
    cmd, name = text(req.arg1), text(req.arg2)
    a3, a4 = text(req.arg3), text(req.arg4)
    known = self.catalog.tickets
    if cmd == "session":
        if name not in known:
            raise E.IrodsError(E.CAT_TICKET_INVALID, "no such ticket")
        self.ticket = known[name]
        return 0, None, b""
    if cmd == "create":
        if a3 not in ("read", "write"):
            raise E.IrodsError(E.SYS_INVALID_INPUT_PARAM, "ticket type must be read or write")
        target = self._visible(a4)
        if target is None:
            raise E.IrodsError(E.CAT_UNKNOWN_FILE, f"{a4} does not exist")
        if self.catalog.level(self.me, target) < 1200:
            raise E.IrodsError(E.CAT_NO_ACCESS_PERMISSION, "only the owner issues tickets")
        if not name or name in known:
            raise E.IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, "ticket exists")
        tid = max((t.id for t in known.values()), default=0) + 1
        known[name] = Ticket(tid, name, a3, target.path, self.me)
        return 0, None, b""
    ticket = known.get(name)
    if ticket is None:
        raise E.IrodsError(E.CAT_TICKET_INVALID, "no such ticket")
    if ticket.owner != self.me:
        raise E.IrodsError(E.CAT_NO_ACCESS_PERMISSION, "not the ticket's owner")
    if cmd == "delete":
        del known[name]
        return 0, None, b""
    if cmd == "mod" and a3.startswith("expir"):
        ticket.expires = int(a4) if a4 and a4 != "0" else 0
        return 0, None, b""
    if cmd == "mod" and a3 == "uses":
        ticket.uses_limit = int(a4 or 0)
        return 0, None, b""
    raise E.IrodsError(E.SYS_NOT_SUPPORTED, f"ticket {cmd} {a3} is not supported")

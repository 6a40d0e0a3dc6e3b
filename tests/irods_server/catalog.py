"""In-memory iRODS catalog of the protocol test server: users, collections, data objects,
ACLs and tickets. Object bytes live in files under a temporary folder.

Everything is guarded by one lock; the catalog is small and the server is a test tool.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from dataclasses import dataclass, field

from tests.irods_server import errors as E

LEVELS = {"null": 0, "read": 1050, "write": 1120, "own": 1200}
PUBLIC = "public"


@dataclass
class Coll:
    id: int
    path: str
    owner: str
    ctime: int
    mtime: int
    acl: dict[str, int] = field(default_factory=dict)
    subcolls: dict[str, Coll] = field(default_factory=dict)
    objects: dict[str, DataObj] = field(default_factory=dict)

    @property
    def parent(self) -> str:
        return parent_of(self.path)


@dataclass
class DataObj:
    id: int
    coll: Coll
    name: str
    owner: str
    ctime: int
    mtime: int
    size: int = 0
    checksum: str = ""
    acl: dict[str, int] = field(default_factory=dict)
    file: str = ""

    @property
    def path(self) -> str:
        return f"{self.coll.path.rstrip('/')}/{self.name}"


@dataclass
class Ticket:
    id: int
    string: str
    mode: str  # "read" or "write"
    path: str
    owner: str
    expires: int = 0  # epoch seconds; 0 = never
    uses_limit: int = 0  # 0 = unlimited
    uses_count: int = 0


def parent_of(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def split(path: str) -> tuple[str, str]:
    return parent_of(path), path.rsplit("/", 1)[-1]


class Catalog:
    def __init__(self, zone: str, data_dir: str) -> None:
        self.zone = zone
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self.users: dict[str, str] = {}
        self.colls: dict[str, Coll] = {}
        self.coll_ids: dict[int, Coll] = {}
        self.tickets: dict[str, Ticket] = {}
        self._ids = itertools.count(10000)
        for path in ("/", f"/{zone}", f"/{zone}/home", f"/{zone}/trash"):
            c = self._new_coll(path, "rods")
            c.acl[PUBLIC] = LEVELS["read"]

    # --- setup helpers (used by tests and by the server) -----------------------------

    def add_user(self, name: str, password: str) -> None:
        with self.lock:
            self.users[name] = password
            home = f"/{self.zone}/home/{name}"
            if home not in self.colls:
                self._new_coll(home, name)

    def _new_coll(self, path: str, owner: str) -> Coll:
        now = int(time.time())
        coll = Coll(next(self._ids), path, owner, now, now, {owner: LEVELS["own"]})
        self.colls[path] = coll
        self.coll_ids[coll.id] = coll
        if path != "/":
            parent = self.colls[parent_of(path)]
            parent.subcolls[path.rsplit("/", 1)[-1]] = coll
        return coll

    def new_object(self, path: str, owner: str) -> DataObj:
        parent, name = split(path)
        coll = self.colls[parent]
        now = int(time.time())
        obj = DataObj(next(self._ids), coll, name, owner, now, now, acl={owner: LEVELS["own"]})
        obj.file = os.path.join(self.data_dir, str(obj.id))
        open(obj.file, "wb").close()
        coll.objects[name] = obj
        return obj

    def populate(self, coll_path: str, names: list[str] | range, owner: str) -> None:
        """Bulk-create empty data objects without going through the protocol."""
        with self.lock:
            coll = self.colls[coll_path]
            now = int(time.time())
            for name in names:
                obj = DataObj(next(self._ids), coll, str(name), owner, now, now)
                obj.acl = {owner: LEVELS["own"]}
                coll.objects[obj.name] = obj  # no file: empty objects read as b""

    def grant(self, path: str, user: str, level: str) -> None:
        with self.lock:
            target = self.lookup(path)
            if target is None:
                raise KeyError(path)
            target.acl[user] = LEVELS[level]

    # --- lookups and permission checks ------------------------------------------------

    def lookup(self, path: str) -> Coll | DataObj | None:
        coll = self.colls.get(path)
        if coll is not None:
            return coll
        parent, name = split(path)
        pc = self.colls.get(parent)
        return pc.objects.get(name) if pc else None

    def level(self, user: str, target: Coll | DataObj) -> int:
        return max(target.acl.get(user, 0), target.acl.get(PUBLIC, 0))

    def ticket_grants(self, ticket: Ticket | None, path: str, need: str) -> bool:
        """Whether ``ticket`` covers ``path`` for ``need`` ("read"/"write"), without
        consuming a use. Expired or exhausted tickets grant nothing."""
        if ticket is None or self.tickets.get(ticket.string) is not ticket:
            return False
        if not (path == ticket.path or path.startswith(ticket.path.rstrip("/") + "/")):
            return False
        if need == "write" and ticket.mode != "write":
            return False
        return not self.ticket_problem(ticket)

    def ticket_problem(self, ticket: Ticket) -> int:
        if self.tickets.get(ticket.string) is not ticket:
            return E.CAT_TICKET_INVALID
        if ticket.expires and time.time() > ticket.expires:
            return E.CAT_TICKET_EXPIRED
        if ticket.uses_limit and ticket.uses_count >= ticket.uses_limit:
            return E.CAT_TICKET_USES_EXCEEDED
        return 0

    def visible(self, user: str, ticket: Ticket | None, target: Coll | DataObj) -> bool:
        """Strict ACLs, as iRODS' default policy: GenQuery only shows what one can read."""
        if self.level(user, target) >= LEVELS["read"]:
            return True
        if ticket is None or self.ticket_problem(ticket):
            return False
        path = target.path
        # A ticket also reveals the collections leading to its target, so that a client
        # can resolve the target's parent collection.
        return self.ticket_grants(ticket, path, "read") or (
            isinstance(target, Coll) and ticket.path.startswith(path.rstrip("/") + "/")
        )

    def require(self, user: str, ticket: Ticket | None, target: Coll | DataObj, need: str) -> None:
        """Raise IrodsError unless ``user`` (or the session's ticket) may ``need`` it."""
        if self.level(user, target) >= LEVELS[need]:
            return
        if ticket is not None:
            problem = self.ticket_problem(ticket)
            covers = target.path == ticket.path or target.path.startswith(
                ticket.path.rstrip("/") + "/"
            )
            if covers and problem:
                raise E.IrodsError(problem, "ticket cannot be used")
            if covers and (need == "read" or ticket.mode == "write"):
                return
        raise E.IrodsError(E.CAT_NO_ACCESS_PERMISSION, f"no {need} access to {target.path}")

    def use_ticket(self, user: str, ticket: Ticket | None, target: Coll | DataObj) -> None:
        """Count one use when access to ``target`` rests on the ticket, not on ACLs."""
        if ticket is not None and self.level(user, target) < LEVELS["read"]:
            ticket.uses_count += 1

    # --- mutations ----------------------------------------------------------------------

    def remove_object(self, obj: DataObj) -> None:
        obj.coll.objects.pop(obj.name, None)
        if obj.file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(obj.file)

    def remove_coll(self, coll: Coll) -> None:
        for sub in list(coll.subcolls.values()):
            self.remove_coll(sub)
        for obj in list(coll.objects.values()):
            self.remove_object(obj)
        self.colls.pop(coll.path, None)
        self.coll_ids.pop(coll.id, None)
        parent = self.colls.get(coll.parent)
        if parent is not None:
            parent.subcolls.pop(coll.path.rsplit("/", 1)[-1], None)

    def walk(self, coll: Coll) -> list[Coll | DataObj]:
        out: list[Coll | DataObj] = [coll]
        for sub in coll.subcolls.values():
            out.extend(self.walk(sub))
        out.extend(coll.objects.values())
        return out

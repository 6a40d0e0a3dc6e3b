"""iRODS adapter against the iRODS protocol test server (tests/irods_server).

No real iRODS can be installed on the test machines; ``test_irods_real.py`` runs the
same conformance suite against a real server when IRODS_* variables are set.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import tracemalloc
import uuid
from collections.abc import Iterator

import pytest
from irods.exception import (
    CAT_NO_ACCESS_PERMISSION,
    CAT_TICKET_EXPIRED,
    CAT_TICKET_INVALID,
    CAT_TICKET_USES_EXCEEDED,
)
from irods.session import iRODSSession

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    Credential,
    NotFound,
    PermissionDenied,
    Storage,
)
from adapters.irods import TMP_PREFIX, IrodsAdapter, IrodsStorage, create
from tests.adapters.conformance import AdapterConformance, read, write
from tests.backends import IrodsFixtures
from tests.irods_server import IrodsTestServer


@pytest.fixture(scope="module")
def irods_server() -> Iterator[IrodsTestServer]:
    with IrodsTestServer() as srv:
        yield srv


def _adapter(srv: IrodsTestServer, root: str, **extra: object) -> IrodsAdapter:
    options = {
        "host": srv.host,
        "port": srv.port,
        "zone": srv.zone,
        "root": root,
        "timeout": 10,
        **extra,
    }
    return create(options)


def _alice(srv: IrodsTestServer) -> Credential:
    return Credential("user_password", {"user": "alice", "password": srv.users["alice"]})


def _fresh(srv: IrodsTestServer, user: str = "alice") -> str:
    path = f"{srv.home(user)}/t-{uuid.uuid4().hex[:12]}"
    with srv.catalog.lock:
        srv.catalog._new_coll(path, user)
    return path


class TestIrodsConformance(IrodsFixtures, AdapterConformance):
    @pytest.fixture(autouse=True)
    def _server(self, irods_server: IrodsTestServer) -> None:
        self.server = irods_server

    def populate_many(self, storage: Storage, folder: str, count: int) -> None:
        assert isinstance(storage, IrodsStorage)
        names = [f"f{i:05d}" for i in range(count)]
        self.server.catalog.populate(f"{storage.root}/{folder}", names, "alice")


# --- bad cases ------------------------------------------------------------------------


def test_wrong_password_is_authentication_failed(irods_server: IrodsTestServer) -> None:
    adapter = _adapter(irods_server, irods_server.home("alice"))
    storage = adapter.bind(Credential("user_password", {"user": "alice", "password": "nope"}))
    with pytest.raises(AuthenticationFailed) as info:
        storage.stat("")
    assert "nope" not in str(info.value)
    adapter.close()


def test_unknown_user_and_missing_credential(irods_server: IrodsTestServer) -> None:
    adapter = _adapter(irods_server, irods_server.home("alice"))
    with pytest.raises(AuthenticationFailed):
        adapter.bind(Credential("user_password", {"user": "mallory", "password": "x"})).stat("")
    with pytest.raises(AuthenticationFailed):
        adapter.bind(None)
    with pytest.raises(AuthenticationFailed):
        adapter.bind(Credential("apikey", {"apiKey": "k"}))


def test_service_credential_from_options(irods_server: IrodsTestServer) -> None:
    adapter = _adapter(
        irods_server, irods_server.home("bob"), user="bob", password=irods_server.users["bob"]
    )
    assert adapter.bind(None).stat("").is_dir
    adapter.close()


def test_server_gone_is_backend_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = create(
        {
            "host": "127.0.0.1",
            "port": port,
            "zone": "tempZone",
            "root": "/tempZone/home/alice",
            "timeout": 2,
        }
    )
    with pytest.raises(BackendUnavailable):
        adapter.check()
    with pytest.raises(BackendUnavailable):
        adapter.bind(Credential("user_password", {"user": "alice", "password": "p"})).stat("")


def test_silent_server_is_backend_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        adapter = create(
            {
                "host": "127.0.0.1",
                "port": listener.getsockname()[1],
                "zone": "tempZone",
                "root": "/tempZone/home/alice",
                "timeout": 1,
            }
        )
        storage = adapter.bind(Credential("user_password", {"user": "alice", "password": "p"}))
        started = time.monotonic()
        with pytest.raises(BackendTimeout):
            storage.stat("")
        assert time.monotonic() - started < 5
        adapter.close()


def test_server_stopping_mid_session_is_backend_unavailable() -> None:
    srv = IrodsTestServer().start()
    adapter = _adapter(srv, srv.home("alice"))
    storage = adapter.bind(_alice(srv))
    write(storage, "f", b"data")
    srv.stop()
    with pytest.raises(BackendUnavailable):
        storage.stat("f")
    with pytest.raises(BackendUnavailable):
        adapter.check()
    adapter.close()


@pytest.fixture
def shared(irods_server: IrodsTestServer) -> Iterator[tuple[IrodsStorage, str]]:
    """A collection of bob's: alice may read it; bob's private.txt has no ACL for her."""
    root = _fresh(irods_server, "bob")
    bob = _adapter(irods_server, root).bind(
        Credential("user_password", {"user": "bob", "password": irods_server.users["bob"]})
    )
    write(bob, "readable.txt", b"for alice")
    write(bob, "private.txt", b"bob only")
    irods_server.catalog.grant(root, "alice", "read")
    irods_server.catalog.grant(f"{root}/readable.txt", "alice", "read")
    alice = _adapter(irods_server, root).bind(_alice(irods_server))
    assert isinstance(alice, IrodsStorage)
    yield alice, root


def test_permission_denied(shared: tuple[IrodsStorage, str]) -> None:
    alice, _ = shared
    assert read(alice, "readable.txt") == b"for alice"
    with pytest.raises(PermissionDenied):
        read(alice, "private.txt")  # exists, owned by bob, no ACL for alice
    with pytest.raises(PermissionDenied):
        write(alice, "new.txt", b"x")  # read-only collection
    with pytest.raises(PermissionDenied):
        write(alice, "readable.txt", b"overwrite")
    with pytest.raises(PermissionDenied):
        alice.mkdir("sub")
    with pytest.raises(PermissionDenied):
        alice.delete("readable.txt")
    assert read(alice, "readable.txt") == b"for alice"


def test_overwrite_of_invisible_object_is_denied(
    shared: tuple[IrodsStorage, str], irods_server: IrodsTestServer
) -> None:
    alice, root = shared
    irods_server.catalog.grant(root, "alice", "write")  # may create, not touch private.txt
    with pytest.raises(PermissionDenied):
        write(alice, "private.txt", b"hijack")
    assert {e.name for e in alice.list("")} == {"readable.txt"}  # no temp leftovers
    with irods_server.catalog.lock:
        names = set(irods_server.catalog.colls[root].objects)
    assert names == {"readable.txt", "private.txt"}


def test_temporary_objects_are_hidden_and_unreachable(irods_server: IrodsTestServer) -> None:
    adapter = _adapter(irods_server, _fresh(irods_server))
    storage = adapter.bind(_alice(irods_server))
    w = storage.open_write("f")
    w.write(b"abc")
    with irods_server.catalog.lock:
        hidden = [
            n for n in irods_server.catalog.colls[adapter.root].objects if n.startswith(TMP_PREFIX)
        ]
    assert len(hidden) == 1
    assert list(storage.list("")) == []
    with pytest.raises(NotFound):
        storage.stat(hidden[0])
    w.abort()
    with irods_server.catalog.lock:
        assert not irods_server.catalog.colls[adapter.root].objects


def test_sha256_is_native_and_hex(irods_server: IrodsTestServer) -> None:
    import hashlib

    storage = _adapter(irods_server, _fresh(irods_server)).bind(_alice(irods_server))
    write(storage, "c", b"checksum me")
    assert storage.checksum("c", "sha256") == hashlib.sha256(b"checksum me").hexdigest()
    with irods_server.catalog.lock:
        obj = irods_server.catalog.colls[storage.root].objects["c"]  # type: ignore[attr-defined]
        assert obj.checksum.startswith("sha2:")


def test_sessions_are_pooled_per_credential_and_reaped(irods_server: IrodsTestServer) -> None:
    adapter = _adapter(irods_server, irods_server.home("alice"), idle_timeout=0.2)
    a1 = adapter.bind(_alice(irods_server))
    a2 = adapter.bind(_alice(irods_server))
    assert isinstance(a1, IrodsStorage) and isinstance(a2, IrodsStorage)
    assert a1.session is a2.session
    a1.stat("")
    keys = adapter._sessions.keys()
    assert keys and all("alice-pass" not in k for k in keys)
    time.sleep(0.3)
    a3 = adapter.bind(_alice(irods_server))
    assert isinstance(a3, IrodsStorage) and a3.session is not a1.session
    adapter.close()


def test_large_collection_is_listed_with_flat_memory(irods_server: IrodsTestServer) -> None:
    count = 20_000
    adapter = _adapter(irods_server, _fresh(irods_server))
    storage = adapter.bind(_alice(irods_server))
    storage.mkdir("big")
    irods_server.catalog.populate(
        f"{adapter.root}/big", [f"object-{i:06d}.dat" for i in range(count)], "alice"
    )
    storage.stat("")  # warm the session outside the measurement

    tracemalloc.start()
    try:
        seen = 0
        for entry in storage.list("big"):
            seen += 1
            assert not entry.is_dir
        _, streaming_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = list(storage.list("big"))
        _, holding_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count and len(held) == count
    # Holding every Entry costs megabytes; streaming must stay a fraction of that.
    assert streaming_peak < holding_peak / 2, (streaming_peak, holding_peak)
    adapter.close()


# --- tickets --------------------------------------------------------------------------


def _ticket_session(srv: IrodsTestServer, ticket: str | None) -> iRODSSession:
    """What a job does with a delegated ticket: log in anonymously and present it."""
    s = iRODSSession(
        host=srv.host,
        port=srv.port,
        zone=srv.zone,
        user="anonymous",
        password="",
        connection_timeout=10,
    )
    if ticket:
        s.ticket__ = ticket
    return s


def _read_with(srv: IrodsTestServer, ticket: str | None, full: str) -> bytes:
    s = _ticket_session(srv, ticket)
    try:
        with s.data_objects.open(full, "r", create=False) as f:
            return bytes(f.read())
    finally:
        s.cleanup()


def _soon(seconds: float = 60) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


@pytest.fixture
def owner(irods_server: IrodsTestServer) -> Iterator[IrodsStorage]:
    adapter = _adapter(irods_server, _fresh(irods_server))
    storage = adapter.bind(_alice(irods_server))
    assert isinstance(storage, IrodsStorage)
    write(storage, "t.txt", b"ticketed")
    write(storage, "other.txt", b"not ticketed")
    yield storage
    adapter.close()


def test_read_ticket_reads_but_does_not_write(
    owner: IrodsStorage, irods_server: IrodsTestServer
) -> None:
    full = f"{owner.root}/t.txt"
    delegation = owner.presign("t.txt", "GET", _soon())
    assert delegation.kind == "irods_ticket" and delegation.method == "GET"
    assert delegation.expires_at <= _soon() and delegation.headers["X-iRODS-Path"] == full
    assert "value=<hidden>" in repr(delegation)
    with pytest.raises(CAT_NO_ACCESS_PERMISSION):
        _read_with(irods_server, None, full)  # anonymous, no ticket
    assert _read_with(irods_server, delegation.value, full) == b"ticketed"
    with pytest.raises(CAT_NO_ACCESS_PERMISSION):
        _read_with(irods_server, delegation.value, f"{owner.root}/other.txt")
    s = _ticket_session(irods_server, delegation.value)
    try:
        with pytest.raises(CAT_NO_ACCESS_PERMISSION):
            s.data_objects.open(full, "w").close()
    finally:
        s.cleanup()
    assert read(owner, "t.txt") == b"ticketed"


def test_create_only_write_ticket_never_covers_an_existing_object(
    owner: IrodsStorage, irods_server: IrodsTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AlreadyExists):
        owner.delegate("t.txt", "PUT", _soon(), 1, create_only=True)
    # The object appearing after every client-side check: the server refuses the create.
    monkeypatch.setattr(owner.session.data_objects, "exists", lambda path: False)
    with pytest.raises(AlreadyExists):
        owner.delegate("t.txt", "PUT", _soon(), 1, create_only=True)
    assert read(owner, "t.txt") == b"ticketed"
    delegation = owner.delegate("new.txt", "PUT", _soon(), 1, create_only=True)
    assert delegation.method == "PUT" and owner.stat("new.txt").size == 0


def test_ticket_expires(owner: IrodsStorage, irods_server: IrodsTestServer) -> None:
    full = f"{owner.root}/t.txt"
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2)
    delegation = owner.issue_ticket("t.txt", "read", expires)
    assert delegation.expires_at == expires
    assert _read_with(irods_server, delegation.value, full) == b"ticketed"
    time.sleep(max(0.0, expires.timestamp() - time.time()) + 1.1)
    with pytest.raises(CAT_TICKET_EXPIRED):
        _read_with(irods_server, delegation.value, full)


def test_ticket_use_count_is_enforced(owner: IrodsStorage, irods_server: IrodsTestServer) -> None:
    full = f"{owner.root}/t.txt"
    delegation = owner.issue_ticket("t.txt", "read", _soon(), uses=2)
    assert _read_with(irods_server, delegation.value, full) == b"ticketed"
    assert _read_with(irods_server, delegation.value, full) == b"ticketed"
    with pytest.raises(CAT_TICKET_USES_EXCEEDED):
        _read_with(irods_server, delegation.value, full)


def test_revoked_ticket_is_refused(owner: IrodsStorage, irods_server: IrodsTestServer) -> None:
    full = f"{owner.root}/t.txt"
    delegation = owner.issue_ticket("t.txt", "read", _soon())
    assert _read_with(irods_server, delegation.value, full) == b"ticketed"
    owner.revoke_ticket(delegation.value)
    with pytest.raises(CAT_TICKET_INVALID):
        _read_with(irods_server, delegation.value, full)
    with pytest.raises(NotFound):
        owner.revoke_ticket(delegation.value)


def test_write_ticket_for_a_new_path(owner: IrodsStorage, irods_server: IrodsTestServer) -> None:
    delegation = owner.presign("upload.bin", "PUT", _soon())
    assert delegation.method == "PUT"
    s = _ticket_session(irods_server, delegation.value)
    try:
        with s.data_objects.open(f"{owner.root}/upload.bin", "w") as f:
            f.write(b"from the job")
        with pytest.raises(CAT_NO_ACCESS_PERMISSION):
            s.data_objects.open(f"{owner.root}/other.txt", "w").close()
    finally:
        s.cleanup()
    assert read(owner, "upload.bin") == b"from the job"
    assert read(owner, "other.txt") == b"not ticketed"


def test_ticket_needs_a_future_aware_expiry(owner: IrodsStorage) -> None:
    with pytest.raises(ValueError):
        owner.issue_ticket("t.txt", "read", dt.datetime.now() + dt.timedelta(minutes=1))
    with pytest.raises(ValueError):
        owner.issue_ticket("t.txt", "read", _soon(-5))
    with pytest.raises(NotFound):
        owner.presign("missing", "GET", _soon())


# --- the protocol test server itself ----------------------------------------------------


def _session(srv: IrodsTestServer, user: str = "alice") -> iRODSSession:
    return iRODSSession(
        host=srv.host,
        port=srv.port,
        zone=srv.zone,
        user=user,
        password=srv.users[user],
        connection_timeout=10,
    )


def test_server_pages_genquery_by_500(irods_server: IrodsTestServer) -> None:
    from irods.models import Collection, DataObject

    root = _fresh(irods_server)
    irods_server.catalog.populate(root, [f"o{i}" for i in range(1200)], "alice")
    s = _session(irods_server)
    try:
        query = s.query(DataObject.name).filter(Collection.name == root).limit(1000)
        sizes = [len(batch) for batch in query.get_batches()]
    finally:
        s.cleanup()
    assert sizes == [500, 500, 200]


def test_server_refuses_unsupported_and_unauthenticated_calls(
    irods_server: IrodsTestServer,
) -> None:
    from irods.api_number import api_number
    from irods.connection import Connection
    from irods.exception import CAT_INVALID_AUTHENTICATION, SYS_NOT_SUPPORTED
    from irods.message import FileOpenRequest, StringStringMap, iRODSMessage

    body = FileOpenRequest(
        objPath="/tempZone/home/alice/x",
        createMode=0,
        openFlags=0,
        offset=0,
        dataSize=0,
        numThreads=0,
        oprType=0,
        KeyValPair_PI=StringStringMap(),
    )
    request = iRODSMessage("RODS_API_REQ", msg=body, int_info=api_number["DATA_OBJ_COPY_AN"])
    s = _session(irods_server)
    try:
        with s.pool.get_connection() as conn:
            conn.send(request)
            with pytest.raises(SYS_NOT_SUPPORTED):
                conn.recv()
        with s.pool.no_auto_authenticate() as pool:
            raw = Connection(pool, pool.account)
            raw.send(
                iRODSMessage("RODS_API_REQ", msg=body, int_info=api_number["DATA_OBJ_OPEN_AN"])
            )
            with pytest.raises(CAT_INVALID_AUTHENTICATION):
                raw.recv()
            raw.disconnect()
    finally:
        s.cleanup()

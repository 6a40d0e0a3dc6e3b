"""Pipelined iRODS writes (adapters/irods/pipeline.py) against the iRODS protocol test
server (tests/irods_server, a Python test tool speaking the wire protocol, not a real
iRODS; the same tests run on no real server here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from irods.exception import CAT_NO_ACCESS_PERMISSION
from irods.session import iRODSSession

from adapters.base import Credential, StorageError
from adapters.irods import IrodsStorage, create
from adapters.irods.pipeline import PipelinedWrites
from tests.irods_server import IrodsTestServer


@pytest.fixture(scope="module")
def irods_server() -> Iterator[IrodsTestServer]:
    with IrodsTestServer() as srv:
        yield srv


@pytest.fixture
def session(irods_server: IrodsTestServer) -> Iterator[Any]:
    srv = irods_server
    with iRODSSession(
        host=srv.host, port=srv.port, zone=srv.zone, user="alice", password=srv.users["alice"]
    ) as s:
        yield s


@pytest.fixture
def storage(irods_server: IrodsTestServer) -> Iterator[IrodsStorage]:
    srv = irods_server
    root = f"{srv.home('alice')}/p-{uuid.uuid4().hex[:12]}"
    with srv.catalog.lock:
        srv.catalog._new_coll(root, "alice")
    adapter = create({"host": srv.host, "port": srv.port, "zone": srv.zone, "root": root})
    cred = Credential("user_password", {"user": "alice", "password": srv.users["alice"]})
    storage = adapter.bind(cred)
    try:
        yield storage  # type: ignore[misc]
    finally:
        adapter.close()


def test_uploads_use_the_pipeline_and_arrive_whole(storage: IrodsStorage) -> None:
    blocks = [bytes([i]) * (1024 * 1024) for i in range(5)] + [b"tail"]
    writer = storage.open_write("f.bin")
    assert writer._pipeline is not None  # plain TCP: the pipelined path is the one tested
    for block in blocks:
        writer.write(block)
    assert writer.commit().size == sum(map(len, blocks))
    assert b"".join(storage.open_read("f.bin")) == b"".join(blocks)


def test_a_failed_write_surfaces_and_the_connection_stays_in_step(
    session: Any, irods_server: IrodsTestServer
) -> None:
    """The answer to a write is read after the next write is sent: the error comes one
    call late, and the abort reads the answer still outstanding, so the next request on
    the pooled connection gets its own answer."""
    path = f"{irods_server.home('alice')}/ro-{uuid.uuid4().hex[:8]}"
    with session.data_objects.open(path, "w") as out:
        out.write(b"kept")
    fh = session.data_objects.open(path, "r")  # a read descriptor refuses writes
    pipeline = PipelinedWrites.attach(fh)
    assert pipeline is not None
    pipeline.write(b"a" * 1000)  # sent; its answer is not read yet
    with pytest.raises(CAT_NO_ACCESS_PERMISSION):
        pipeline.write(b"b" * 1000)  # reads the first answer: refused
    pipeline.discard()  # reads the second one
    assert fh.read() == b"kept"  # the connection answers this read, not a stale write
    fh.close()
    assert session.data_objects.get(path).size == 4


def test_a_short_write_is_an_error() -> None:
    conn = _Conn(answers=[10])
    pipeline = PipelinedWrites(conn, 3)
    pipeline.write(b"x" * 12)
    with pytest.raises(StorageError, match="stored 10 of 12 bytes"):
        pipeline.drain()


def test_discard_drops_a_connection_whose_answer_cannot_be_read() -> None:
    conn = _Conn(answers=[])  # recv fails: the connection's state is unknown
    pipeline = PipelinedWrites(conn, 3)
    pipeline.write(b"x")
    pipeline.discard()
    assert conn.released == [True]


class _Conn:
    """A boundary stand-in (extra unit tests; the wire is tested against the server
    above): records what is sent, answers from a list."""

    def __init__(self, answers: list[int]) -> None:
        import socket

        self.socket, self._peer = socket.socketpair()
        self._answers = answers
        self.released: list[bool] = []

    def recv(self) -> Any:
        if not self._answers:
            raise OSError("connection lost")
        return type("Answer", (), {"int_info": self._answers.pop(0)})()

    def release(self, destroy: bool) -> None:
        self.released.append(destroy)

"""Transfers through one thread each (gateway/datapath/block_pipe.py, transfer.py): blocks
in order, bounded memory, a failure on either side surfacing as itself, and the backend
object never used by two threads nor aborted, committed or closed while still in use."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from anyio import to_thread
from starlette.requests import Request
from starlette.types import Message

from adapters.base import Entry
from gateway.datapath.block_pipe import BlockPipe, WriterFailed
from gateway.datapath.scope import BODY_BLOCK_KEY
from gateway.datapath.transfer import PIPELINE_DEPTH, UPLOAD_BUFFER, read_ahead, receive_into
from gateway.errors import CarminError, E, ErrorSpec


class RecordingWriter:
    """A Writer that records what happens to it, and whether two calls ever overlapped."""

    def __init__(self, fail_at: int | None = None, delay: float = 0.0) -> None:
        self.blocks: list[bytes] = []
        self.events: list[str] = []
        self.fail_at = fail_at
        self.delay = delay
        self.busy = threading.Lock()
        self.overlapped = False

    def _enter(self, name: str) -> None:
        if not self.busy.acquire(blocking=False):
            self.overlapped = True
            self.busy.acquire()
        self.events.append(name)

    def write(self, data: bytes) -> None:
        self._enter("write")
        try:
            time.sleep(self.delay)
            if self.fail_at is not None and len(self.blocks) == self.fail_at:
                raise OSError("backend refused the block")
            self.blocks.append(data)
        finally:
            self.busy.release()

    def commit(self) -> Entry:
        self._enter("commit")
        self.busy.release()
        return Entry(path="f", is_dir=False, size=sum(map(len, self.blocks)))

    def abort(self) -> None:
        self._enter("abort")
        self.busy.release()


def request_of(chunks: list[bytes], length: int | None, then: str = "end") -> Request:
    """A request whose body arrives as ``chunks``; ``then`` says how it ends: "end" (last
    message has more_body False) or "disconnect" (the client goes away)."""
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": True} for c in chunks
    ]
    if then == "end":
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    else:
        messages.append({"type": "http.disconnect"})
    it = iter(messages)

    async def receive() -> Message:
        await anyio.sleep(0)
        return next(it)

    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {"type": "http", "method": "PUT", "path": "/", "headers": headers}
    return Request(scope, receive)


def run(
    writer: RecordingWriter, chunks: list[bytes], length: int | None, limit: int, then: str = "end"
) -> tuple[Entry, int]:
    async def main() -> tuple[Entry, int]:
        return await receive_into(writer, request_of(chunks, length, then), limit)

    return anyio.run(main)


CHUNK = 256 * 1024


def body(n: int) -> list[bytes]:
    return [bytes([i % 251]) * CHUNK for i in range(n)]


def test_body_reaches_the_writer_whole_and_in_order_then_commits() -> None:
    chunks = body(20)
    writer = RecordingWriter(delay=0.001)
    entry, received = run(writer, chunks, 20 * CHUNK, 1 << 40)
    assert b"".join(writer.blocks) == b"".join(chunks)
    assert received == entry.size == 20 * CHUNK
    assert writer.events[-1] == "commit" and "abort" not in writer.events
    # Coalesced into ~UPLOAD_BUFFER blocks, not one call per message.
    assert len(writer.blocks) == -(-20 * CHUNK // UPLOAD_BUFFER)
    assert not writer.overlapped


def test_the_writers_block_size_sets_the_blocks_and_the_protocols_gathering() -> None:
    writer = RecordingWriter()
    writer.block_size = 1024 * 1024  # type: ignore[attr-defined]
    request = request_of(body(20), 20 * CHUNK)
    anyio.run(receive_into, writer, request, 1 << 40)
    assert [len(b) for b in writer.blocks] == [1024 * 1024] * 5
    assert request.scope[BODY_BLOCK_KEY] == 1024 * 1024


def test_a_failing_writer_is_aborted_after_its_thread_stops_and_its_error_surfaces() -> None:
    writer = RecordingWriter(fail_at=2, delay=0.001)
    with pytest.raises(OSError, match="refused"):
        run(writer, body(40), 40 * CHUNK, 1 << 40)
    assert writer.events[-1] == "abort" and "commit" not in writer.events
    assert writer.events.count("write") == 3  # the producer stopped at the failure
    assert not writer.overlapped


@pytest.mark.parametrize(
    ("length", "limit", "then", "code"),
    [
        (40 * CHUNK, 10 * CHUNK, "end", E.TOO_LARGE),  # over the size limit
        (41 * CHUNK, 1 << 40, "end", E.BAD_BODY),  # shorter than its Content-Length
        (40 * CHUNK, 1 << 40, "disconnect", E.BAD_BODY),  # client gone mid-way
    ],
)
def test_a_bad_body_is_never_committed(length: int, limit: int, then: str, code: ErrorSpec) -> None:
    writer = RecordingWriter(delay=0.002)
    with pytest.raises(CarminError) as info:
        run(writer, body(40), length, limit, then)
    assert info.value.spec == code
    assert writer.events[-1] == "abort" and "commit" not in writer.events
    assert not writer.overlapped


def test_pipe_holds_at_most_its_depth_while_the_writer_is_slow() -> None:
    in_flight: list[int] = []
    produced = 0
    written = 0

    def write(block: bytes) -> None:
        nonlocal written
        time.sleep(0.003)
        written += 1
        in_flight.append(produced - written)

    async def main() -> None:
        nonlocal produced
        pipe = BlockPipe(PIPELINE_DEPTH)
        pipe.start(write)
        for _ in range(60):
            await pipe.put(b"x")
            produced += 1
        await pipe.finish()
        await pipe.wait()

    anyio.run(main)
    assert written == 60
    # Queued blocks plus the one being written (counted after it was taken).
    assert max(in_flight) <= PIPELINE_DEPTH + 1


def test_stop_ends_the_writer_thread_without_writing_queued_blocks() -> None:
    started = threading.Event()
    release = threading.Event()
    written: list[bytes] = []

    def write(block: bytes) -> None:
        started.set()
        release.wait(5)
        written.append(block)

    async def main() -> None:
        pipe = BlockPipe(1)
        pipe.start(write)
        await pipe.put(b"first")
        await to_thread.run_sync(started.wait, 5)
        await pipe.put(b"second")
        pipe.stop()
        release.set()
        await pipe.wait()
        assert pipe.error is None

    anyio.run(main)
    assert written == [b"first"]


def test_put_after_the_writer_failed_raises_writer_failed() -> None:
    def write(block: bytes) -> None:
        raise ValueError("broken backend")

    async def main() -> BlockPipe:
        pipe = BlockPipe(1)
        pipe.start(write)
        with pytest.raises(WriterFailed) as info:
            for _ in range(100):  # the writer fails on the first block; a put notices
                await pipe.put(b"b")
                await anyio.sleep(0.01)
        assert isinstance(info.value.__cause__, ValueError)
        await pipe.wait()
        return pipe

    pipe = anyio.run(main)
    assert isinstance(pipe.error, ValueError)


class Chunks:
    """A backend read stream: counts what was read and whether it was closed, and which
    thread touched it."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.read = 0
        self.closed = False
        self.threads: set[str] = set()

    def __iter__(self) -> Chunks:
        return self

    def __next__(self) -> bytes:
        self.threads.add(threading.current_thread().name)
        if self.read == self.fail_at:
            raise OSError("backend connection lost")
        if self.read == self.n:
            raise StopIteration
        self.read += 1
        return bytes([self.read % 256]) * 1000

    def close(self) -> None:
        self.closed = True


def test_read_ahead_yields_every_chunk_in_order_then_closes_the_stream() -> None:
    chunks = Chunks(200)

    async def main() -> list[bytes]:
        return [c async for c in read_ahead(chunks)]

    got = anyio.run(main)
    assert got == [bytes([i % 256]) * 1000 for i in range(1, 201)]
    assert chunks.closed
    assert chunks.threads == {"fedgate-download"}  # one thread of our own, not the pool


def test_read_ahead_raises_a_backend_error_after_the_chunks_before_it() -> None:
    chunks = Chunks(200, fail_at=50)

    async def main(got: list[bytes]) -> None:
        async for c in read_ahead(chunks):
            got.append(c)

    got: list[bytes] = []
    with pytest.raises(OSError, match="connection lost"):
        anyio.run(main, got)
    assert len(got) == 50  # a download cut here is not complete, and says so
    assert chunks.closed


def test_a_client_that_stops_reading_stops_the_reader_thread() -> None:
    chunks = Chunks(100_000)

    async def main() -> None:
        stream = read_ahead(chunks, depth=2)
        for _ in range(3):
            await stream.__anext__()
        await stream.aclose()

    anyio.run(main)
    assert chunks.closed
    assert chunks.read <= 3 + 2 + 1  # what was taken, the queue, the one in hand

"""HTTP third-party copy (HTTP-TPC), as dCache, XRootD and StoRM do it and FTS and gfal2
drive it: ``COPY`` with ``Source: <URL>`` makes the gateway pull a remote file into a
mount; ``COPY`` with ``Destination: <URL>`` makes it push a file of a mount there.

The answer is ``202 Accepted`` with a chunked ``text/plain`` body: a performance marker
every few seconds while the bytes flow, then one last line, ``success: Created`` or
``failure: <reason>``. ``TransferHeader<Name>: <value>`` request headers go to the other
server as ``<Name>: <value>`` (how its bearer token travels; never logged, never echoed).

A pull is written like any upload: streamed, atomic, never replacing a file for a caller
who may only create, and aborted (nothing left) when the source fails, the copy stalls,
the size cap is passed, the remote's ``Digest`` disagrees with the bytes, or the client
that asked goes away. The bytes move in a thread of their own (httpx and the storage
libraries are synchronous); the event loop only sends the markers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin

import anyio
import httpx

from adapters import checksums
from adapters.base import Storage, StorageError
from gateway.datapath.socket_receive import WriteBehind
from gateway.webdav import peers

REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 1024 * 1024


class TransferFailed(Exception):
    """Why a copy failed, in words fit for the client's last line (no secret)."""


class Cancelled(TransferFailed):
    pass


@dataclass
class Progress:
    bytes: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Limits:
    allow_private: bool
    stall_timeout: float
    max_bytes: int


def forwarded_headers(request_headers: Mapping[str, str]) -> dict[str, str]:
    """``TransferHeaderAuthorization: Bearer x`` -> ``Authorization: Bearer x``."""
    out = {}
    for name, value in request_headers.items():
        if name.lower().startswith("transferheader") and len(name) > len("transferheader"):
            out[name[len("transferheader") :]] = value
    return out


def _client(limits: Limits) -> httpx.Client:
    timeout = httpx.Timeout(limits.stall_timeout, connect=min(10.0, limits.stall_timeout))
    return httpx.Client(timeout=timeout, follow_redirects=False)


def _request(
    client: httpx.Client, method: str, peer: peers.Peer, headers: Mapping[str, str], **kw: object
) -> httpx.Request:
    """To the checked address, with the URL's host in Host and in TLS's SNI."""
    ext = {"sni_hostname": peer.hostname} if peer.scheme == "https" else {}
    return client.build_request(
        method,
        peer.connect_url,
        headers={**headers, "Host": peer.host},
        extensions=ext,
        **kw,  # type: ignore[arg-type]
    )


def _next_hop(peer: peers.Peer, response: httpx.Response, limits: Limits) -> peers.Peer:
    """A redirect's target, checked like the first URL (it may point anywhere)."""
    return peers.check(urljoin(peer.url, response.headers["location"]), limits.allow_private)


def _adler32_of(headers: httpx.Headers) -> str | None:
    """The adler32 a server offers in RFC 3230 ``Digest`` (``adler32=0a1b2c3d``)."""
    for part in headers.get("digest", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "adler32" and value.strip():
            return str(value.strip().lower().zfill(8))
    return None


def pull(
    url: str,
    headers: Mapping[str, str],
    storage: Storage,
    path: str,
    exclusive: bool,
    limits: Limits,
    progress: Progress,
) -> int:
    """Fetch ``url`` into ``path`` (blocking). Returns the bytes written."""
    peer = peers.check(url, limits.allow_private)
    with _client(limits) as client:
        for _ in range(peers.MAX_REDIRECTS + 1):
            ask = {**headers, "Want-Digest": "adler32", "Accept-Encoding": "identity"}
            response = client.send(_request(client, "GET", peer, ask), stream=True)
            try:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    peer = _next_hop(peer, response, limits)
                    continue
                if response.status_code != 200:
                    raise TransferFailed(f"the source answered {response.status_code}")
                return _receive(response, storage, path, exclusive, limits, progress)
            finally:
                response.close()
    raise TransferFailed("too many redirects from the source")


def _receive(
    response: httpx.Response,
    storage: Storage,
    path: str,
    exclusive: bool,
    limits: Limits,
    progress: Progress,
) -> int:
    declared = response.headers.get("content-length")
    length = int(declared) if declared and declared.isdigit() else None
    if length is not None and length > limits.max_bytes:
        raise TransferFailed(f"the source is larger than the {limits.max_bytes}-byte limit")
    writer = storage.open_write(path, length, exclusive=exclusive)
    adler = checksums.ADLER32_START
    try:
        # The writer (its digests and the write) runs one block behind the receive, in a
        # thread of its own: hashing and receiving then use both cores.
        behind = WriteBehind(writer.write)
        try:
            for chunk in response.iter_raw(CHUNK):
                if progress.cancelled.is_set():
                    raise Cancelled("cancelled: the client went away")
                if progress.bytes + len(chunk) > limits.max_bytes:
                    raise TransferFailed(
                        f"the source is larger than the {limits.max_bytes}-byte limit"
                    )
                adler = checksums.adler32(chunk, adler)
                behind.put(chunk)
                progress.bytes += len(chunk)
        finally:
            behind.close()
        if behind.error is not None:
            raise behind.error
        if length is not None and progress.bytes != length:
            raise TransferFailed(f"the source sent {progress.bytes} of {length} bytes")
        offered = _adler32_of(response.headers)
        if offered is not None and offered != checksums.hex32(adler):
            raise TransferFailed("the bytes received do not match the source's adler32")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return progress.bytes


class _Outgoing:
    """A push's body: the source's chunks, counted and summed as they leave."""

    def __init__(self, chunks: Iterator[bytes], progress: Progress) -> None:
        self._chunks = chunks
        self._progress = progress
        self.adler = checksums.ADLER32_START

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._progress.cancelled.is_set():
                raise Cancelled("cancelled: the client went away")
            data = chunk if isinstance(chunk, bytes) else bytes(chunk)
            self.adler = checksums.adler32(data, self.adler)
            self._progress.bytes += len(data)
            yield data


def push(
    url: str,
    headers: Mapping[str, str],
    open_source: Callable[[], Iterator[bytes]],
    size: int,
    limits: Limits,
    progress: Progress,
) -> int:
    """Send a file to ``url`` with PUT (blocking); its adler32 is compared with the
    remote's when the remote offers one. Returns the bytes sent."""
    peer = peers.check(url, limits.allow_private)
    with _client(limits) as client:
        for _ in range(peers.MAX_REDIRECTS + 1):
            progress.bytes = 0
            body = _Outgoing(open_source(), progress)
            sent = {**headers, "Content-Length": str(size)}
            response = client.send(_request(client, "PUT", peer, sent, content=iter(body)))
            if response.status_code in REDIRECTS and "location" in response.headers:
                peer = _next_hop(peer, response, limits)
                continue
            if not 200 <= response.status_code < 300:
                raise TransferFailed(f"the destination answered {response.status_code}")
            if progress.bytes != size:
                raise TransferFailed(f"the source gave {progress.bytes} of {size} bytes")
            _verify_remote(client, peer, headers, checksums.hex32(body.adler))
            return progress.bytes
    raise TransferFailed("too many redirects from the destination")


def _verify_remote(
    client: httpx.Client, peer: peers.Peer, headers: Mapping[str, str], adler: str
) -> None:
    try:
        head = client.send(_request(client, "HEAD", peer, {**headers, "Want-Digest": "adler32"}))
    except httpx.HTTPError:
        return  # the copy is done; a digest is checked only when the remote offers one
    offered = _adler32_of(head.headers) if head.status_code == 200 else None
    if offered is not None and offered != adler:
        raise TransferFailed("the destination's adler32 does not match the bytes sent")


def failure_reason(exc: BaseException) -> str:
    """One line for the client: never a URL's query, a header or a traceback."""
    if isinstance(exc, TransferFailed):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "the transfer stalled (no byte within the stall timeout)"
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to the remote failed ({type(exc).__name__})"
    if isinstance(exc, StorageError):
        return f"the storage refused the copy ({type(exc).__name__}: {exc})"
    return f"internal error ({type(exc).__name__})"


def marker(nbytes: int) -> bytes:
    """A performance marker, in the form gfal2 and FTS parse."""
    return (
        f"Perf Marker\n\tTimestamp: {int(time.time())}\n\tStripe Index: 0\n"
        f"\tStripe Bytes Transferred: {nbytes}\n\tTotal Stripe Count: 1\nEnd\n"
    ).encode()


async def report(
    work: Callable[[Progress], int],
    every: float,
    done: Callable[[int, str | None], None],
) -> AsyncIterator[bytes]:
    """Run ``work`` in a thread; yield a marker every ``every`` seconds, then the last
    line. ``done(bytes, failure)`` is called once. If the client goes away, the work is
    cancelled and waited for, so an aborted pull leaves nothing behind."""
    progress = Progress()
    outcome: list[BaseException | int] = []

    def run() -> None:
        try:
            outcome.append(work(progress))
        except BaseException as exc:  # handed to the event loop's side
            outcome.append(exc)

    thread = threading.Thread(target=run, name="fedgate-tpc", daemon=True)
    thread.start()
    finished = False
    try:
        yield marker(0)
        last = time.monotonic()
        while thread.is_alive():
            await anyio.sleep(0.05)
            if time.monotonic() - last >= every and thread.is_alive():
                last = time.monotonic()
                yield marker(progress.bytes)
        result = outcome[0]
        if isinstance(result, BaseException):
            reason = failure_reason(result)
            done(progress.bytes, reason)
            finished = True
            yield f"failure: {reason}\n".encode()
        else:
            yield marker(result)
            done(result, None)
            finished = True
            yield b"success: Created\n"
    finally:
        if not finished:
            progress.cancelled.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join)
            done(progress.bytes, "cancelled: the client went away")


class Slots:
    """Copies in flight, per user and in all (one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_user: Counter[str] = Counter()

    def take(self, user: str, per_user: int, total: int) -> bool:
        with self._lock:
            if self._per_user[user] >= per_user or sum(self._per_user.values()) >= total:
                return False
            self._per_user[user] += 1
            return True

    def give(self, user: str) -> None:
        with self._lock:
            self._per_user[user] -= 1
            if self._per_user[user] <= 0:
                del self._per_user[user]

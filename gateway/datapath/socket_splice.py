"""A download body moved from the backend's socket to the client's with ``splice(2)``.

Used by gateway/datapath/socket_send.py when the backend's stream offers its socket
(adapters/response_socket.py says when, and why: the kernel's two copies per byte were
most of the gateway's CPU on a proxied GET). The pages go backend socket → pipe → client
socket inside the kernel; this thread only waits for either side to be ready.

Limits as on the copying path: the client must take bytes within ``send_idle`` (else
ClientGone), the backend must send within its read timeout (else BackendTimeout), and a
backend that closes early raises BackendUnavailable; the caller then resets the client's
connection, so a short body never looks complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from adapters.base import BackendTimeout, BackendUnavailable
from adapters.response_socket import SocketBody
from gateway.datapath.socket_thread import ClientGone

PIPE_SIZE = 1024 * 1024  # bytes in flight per transfer (the default pipe holds 64 KiB)
_POLL_MS = 500  # how often a wait looks at the stop flag
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if hasattr(os, "splice") else 0


def available() -> bool:
    return hasattr(os, "splice")


def splice_body(
    body: SocketBody,
    dst: socket.socket,
    send_idle: float,
    stop: threading.Event,
    sent: Callable[[int], None],
) -> None:
    """Move ``body.length`` bytes from ``body.sock`` to ``dst``; ``sent(n)`` after each
    write to the client. ``body.head`` must have been sent already."""
    # Both sockets must not block: waits are ours (poll), so that the limits hold. The
    # client's already does not (the event loop's flags, shared by the duplicate).
    body.sock.setblocking(False)
    dst.setblocking(False)
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # Above /proc/sys/fs/pipe-max-size the call fails; the default pipe works too.
        with contextlib.suppress(OSError):
            fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        _move(body, dst, rfd, wfd, send_idle, stop, sent)
    finally:
        os.close(rfd)
        os.close(wfd)


def _move(
    body: SocketBody,
    dst: socket.socket,
    rfd: int,
    wfd: int,
    send_idle: float,
    stop: threading.Event,
    sent: Callable[[int], None],
) -> None:
    """Fill the pipe from the storage, then empty it to the client once it holds half
    its size (or the body's end, or the pipe is full): handing the client a few KiB
    each time a packet arrives made curl and the gateway wake ten times as often and
    lost more than the copies saved."""
    src_fd, dst_fd = body.sock.fileno(), dst.fileno()
    room = fcntl.fcntl(wfd, fcntl.F_GETPIPE_SZ)
    batch = room // 2
    left, in_pipe = body.length, 0
    last_in = time.monotonic()
    while left or in_pipe:
        if stop.is_set():
            raise ClientGone("response cancelled")
        full = False
        while left and in_pipe < room:
            try:
                n = os.splice(src_fd, wfd, min(left, room - in_pipe), flags=_FLAGS)
            except BlockingIOError:  # nothing to read, or no slot left in the pipe
                full = _readable(src_fd)
                break
            except OSError as exc:
                raise BackendUnavailable("the storage's connection failed mid-body") from exc
            if n == 0:
                raise BackendUnavailable("the storage stopped sending mid-body")
            left -= n
            in_pipe += n
            last_in = time.monotonic()
        if in_pipe and (full or in_pipe >= batch or not left):
            in_pipe -= _drain(rfd, dst_fd, in_pipe, send_idle, stop, sent)
            continue
        if time.monotonic() - last_in >= body.timeout:
            raise BackendTimeout("the storage sent nothing in time")
        _wait_storage(src_fd, dst_fd)


def _drain(
    rfd: int,
    dst_fd: int,
    in_pipe: int,
    send_idle: float,
    stop: threading.Event,
    sent: Callable[[int], None],
) -> int:
    """Write the pipe's bytes to the client; returns how many. Each wait for room is
    bounded by ``send_idle``, as a chunk's send is on the copying path."""
    done = 0
    waited_since = time.monotonic()
    while done < in_pipe:
        if stop.is_set():
            raise ClientGone("response cancelled")
        try:
            n = os.splice(rfd, dst_fd, in_pipe - done, flags=_FLAGS)
        except BlockingIOError:
            if time.monotonic() - waited_since >= send_idle:
                raise ClientGone(f"client took no data for {send_idle:g} s") from None
            _wait_client(dst_fd)
            continue
        except OSError as exc:
            raise ClientGone(f"client connection lost: {exc.strerror or exc}") from None
        done += n
        sent(n)
        waited_since = time.monotonic()
    return done


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _wait_client(dst_fd: int) -> None:
    poller = select.poll()
    poller.register(dst_fd, select.POLLOUT)
    poller.poll(_POLL_MS)


def _wait_storage(src_fd: int, dst_fd: int) -> None:
    """Until the storage has bytes, at most _POLL_MS; raises ClientGone if the client's
    connection is gone meanwhile (its POLLHUP/POLLERR come without asking)."""
    poller = select.poll()
    poller.register(src_fd, select.POLLIN)
    poller.register(dst_fd, 0)
    for fd, events in poller.poll(_POLL_MS):
        if fd == dst_fd and events & (select.POLLHUP | select.POLLERR):
            raise ClientGone("client connection lost")

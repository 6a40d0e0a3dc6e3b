"""One thread moving a body between a backend and a duplicate of the client's socket
(gateway/datapath/socket_send.py, gateway/datapath/socket_receive.py), awaited from the event loop.

The thread is our own, not anyio's pool: a transfer holds it for as long as the client
takes, and slow clients must not starve every other request of the pool's threads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio import CancelScope

T = TypeVar("T")


class ClientGone(Exception):
    """The client reset the connection, took no data for the idle limit, or the
    response was cancelled (raised by the threads writing a body to it)."""


async def run_in_thread(
    fn: Callable[[], T], sock: socket.socket, stop: threading.Event, name: str
) -> T:
    """``fn()`` in a thread of its own; raises what it raised. On cancellation ``stop`` is
    set and the socket reset, which wakes the thread at once, and the thread is waited
    for: what it works with (backend stream, writer) is its own until it returns."""
    loop = asyncio.get_running_loop()
    finished = anyio.Event()
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised on the loop
            error.append(exc)
        finally:
            loop.call_soon_threadsafe(finished.set)

    threading.Thread(target=body, name=name, daemon=True).start()
    try:
        await finished.wait()
    finally:
        if not finished.is_set():  # cancelled
            stop.set()
            reset(sock)
            with CancelScope(shield=True):
                await finished.wait()
    if error:
        raise error[0]
    return result[0]


def duplicate(transport: Any) -> socket.socket | None:
    """A duplicate of a plain-TCP transport's socket, or None (TLS, or no socket left).

    The duplicate shares the file status flags (O_NONBLOCK stays, as the loop needs):
    our threads wait for the socket through the timeout's poll instead."""
    if transport.get_extra_info("sslcontext") is not None:
        return None
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    try:
        return socket.socket(fileno=os.dup(raw.fileno()))
    except (OSError, ValueError):  # uvloop's socket object raises ValueError once closed
        return None


def reset(sock: socket.socket) -> None:
    """Cut the connection with a reset: the client must not take a short body for a
    whole one, and unread megabytes are dropped instead of queued behind a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)

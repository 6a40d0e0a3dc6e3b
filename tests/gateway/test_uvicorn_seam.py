"""The installed uvicorn still has every internal gateway/datapath/uvicorn_seam.py uses.

The seam falls back to bodies through ASGI when a request cycle lacks a field, which
keeps fedgate working but silently slower on a uvicorn upgrade. These tests are the loud
side: they open a real connection on our protocol classes, on the installed uvicorn, and
fail naming every missing field, so an upgrade that changes the cycle is seen here
first."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from gateway.datapath import uvicorn_seam
from gateway.datapath.scope import ABORT_KEY, SINK_KEY, SOURCE_KEY

HEAD = b"PUT /x HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n"


async def _open(protocol_class: type[asyncio.Protocol]) -> tuple[Any, Scope, socket.socket]:
    """Our protocol on one end of a socket pair, a request head sent from the other; the
    protocol and the scope its app was called with, while the app waits."""
    started: asyncio.Queue[Scope] = asyncio.Queue()
    hold = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await started.put(scope)
        await hold.wait()

    config = uvicorn.Config(app, lifespan="off", log_config=None)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    server_end, client_end = socket.socketpair()
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: protocol, server_end)
    client_end.sendall(HEAD)
    scope = await asyncio.wait_for(started.get(), 10)
    hold.set()
    return protocol, scope, client_end


async def _close(protocol: Any, client_end: socket.socket) -> None:
    client_end.close()
    protocol.transport.close()
    await asyncio.sleep(0)  # let the transport's close run before the loop ends


def test_the_installed_uvicorn_has_what_the_socket_offers_use() -> None:
    async def check() -> None:
        protocol, scope, client_end = await _open(uvicorn_seam.GuardedHttpTools)
        try:
            missing = uvicorn_seam.missing_internals(protocol)
            assert missing == [], (
                f"uvicorn {uvicorn.__version__} differs from what "
                f"gateway/datapath/uvicorn_seam.py uses: no {', '.join(missing)}"
            )
            # ... and so the request got both offers and the abort, not the fallback.
            assert scope.get(SINK_KEY) is not None
            assert scope.get(SOURCE_KEY) is not None
            assert callable(scope.get(ABORT_KEY))
            # The types the offers count on: a body buffer with a length, a number to
            # count written bytes off.
            assert isinstance(protocol.cycle.expected_content_length, int)
            assert len(protocol.cycle.body) == 0
            # The check can fail: a cycle without one of the fields is reported.
            del protocol.cycle.waiting_for_100_continue
            assert uvicorn_seam.missing_internals(protocol) == ["cycle.waiting_for_100_continue"]
            protocol.cycle.waiting_for_100_continue = False
        finally:
            await _close(protocol, client_end)

    asyncio.run(check())


def test_the_installed_uvicorn_h11_protocol_has_what_the_head_deadline_uses() -> None:
    async def check() -> None:
        protocol, scope, client_end = await _open(uvicorn_seam.GuardedH11)
        try:
            assert protocol.cycle is not None
            assert isinstance(protocol.cycle.response_complete, bool)
            assert protocol.cycle.scope is scope
            assert callable(scope.get(ABORT_KEY))
            assert isinstance(protocol.timeout_keep_alive, int)
        finally:
            await _close(protocol, client_end)

    asyncio.run(check())


@pytest.mark.parametrize("name", uvicorn_seam._CYCLE_FIELDS)
def test_a_cycle_field_missing_is_named(name: str) -> None:
    class Cycle:
        pass

    class Protocol:
        transport = cycle = flow = parser = body_seen = None

    proto = Protocol()
    proto.cycle = Cycle()  # type: ignore[assignment]
    for field in uvicorn_seam._CYCLE_FIELDS:
        if field != name:
            setattr(proto.cycle, field, None)
    assert f"cycle.{name}" in uvicorn_seam.missing_internals(proto)

"""Helpers the WebDAV door's tests share (the token exchange is the gateway tests')."""

from __future__ import annotations

from tests.gateway.helpers import bearer, token
from tests.server import Running

__all__ = ["bearer", "door", "token"]


def door(gw: Running, mount: str = "local") -> str:
    return f"{gw.url}/webdav/{mount}"

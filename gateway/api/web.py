"""Small helpers the JSON routes share: the gateway from a request, a form-or-JSON
body with a size cap, and an audit record for a non-data event."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request

from gateway.api.auth import Principal
from gateway.errors import CarminError, E
from gateway.request_context import client_address, request_id
from gateway.state import Gateway
from tokens.audit import AuditEvent

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def read_capped(request: Request, limit: int, what: str = "request body") -> bytearray:
    """The whole body of a small request, never more than ``limit`` bytes of it in memory.

    A declared Content-Length past the limit is refused before a byte is read, and a
    streamed (chunked) body is refused the moment it passes the limit: an anonymous
    300 MB POST costs the gateway ``limit`` bytes, not 300 MB (Starlette's
    ``request.body()`` would gather it all first)."""
    too_large = CarminError(E.TOO_LARGE, f"{what} larger than the {limit}-byte limit")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large  # (a malformed length is the HTTP parser's to refuse)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return body  # not copied into bytes: an UploadData body may be 256 MB


async def form_or_json(request: Request, limit: int = 64 * 1024) -> dict[str, Any]:
    body = await read_capped(request, limit)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError
            return data
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        return {k: v[-1] for k, v in parsed.items()}
    except (ValueError, UnicodeDecodeError):
        raise CarminError(E.BAD_BODY, "body must be a JSON object or a form") from None


def audit_event(
    gw: Gateway, event: str, principal: Principal | None, result: str, **kw: Any
) -> None:
    gw.audit.record(
        AuditEvent(
            time=dt.datetime.now(dt.UTC).timestamp(),
            event=event,
            user=principal.user.name if principal else None,
            token_id=kw.get("token_id"),
            mount=kw.get("mount"),
            path=kw.get("path"),
            operation=kw.get("operation"),
            result=result,
            status=kw.get("status"),
            bytes=None,
            execution_id=kw.get("execution_id"),
            detail=kw.get("detail"),
            request_id=request_id(),
            reason=kw.get("reason"),
            client=client_address(),
        )
    )

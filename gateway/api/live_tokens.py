"""``GET /token``: the caller's own live tokens (ids and scopes, never the tokens), so a
user can see what an execution still holds and revoke it with ``POST /token/revoke``."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api.auth import authenticate
from gateway.api.web import NO_STORE, gateway_of
from tokens.live import LiveToken, live_tokens


def token_json(t: LiveToken) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jti": t.jti,
        "scope": t.scope,
        "issuedAt": t.issued_at,
        "expiresAt": t.expires_at,
    }
    if t.execution_id is not None:
        out["executionId"] = t.execution_id
    if t.uses_left is not None:
        out["usesLeft"] = t.uses_left
    if t.parent is not None:
        out["parent"] = t.parent
    return out


async def get_tokens(request: Request) -> Response:
    gw = gateway_of(request)
    # The API key only: a token must not learn about its siblings.
    principal = authenticate(request, allow_token=False)
    found = await to_thread.run_sync(live_tokens, gw.tokens, principal.user.name)
    return JSONResponse([token_json(t) for t in found], headers=NO_STORE)

"""``POST /token/revoke`` (RFC 7009): revoke a token, a token id, an execution or an API
key, and who may revoke what.

=================  ======================  ======================  ============  =============
caller             token=<access token>    jti / token_id          execution_id  token=<API key>
=================  ======================  ======================  ============  =============
nobody (holder)    that token              401                     401           that key
Bearer token B     B or narrowed from B    B or narrowed from B    403           B's user's
API key of U       U's tokens              U's tokens              U's tokens    U's keys
an admin's key     any                     any                     all users'    any
=================  ======================  ======================  ============  =============

A token id or an execution id proves nothing about who holds the tokens it names, so a
job's token may not use one to revoke its siblings or other executions: that needs the
user's API key. Holding a token (or a key) is proof enough to revoke that very token
(or key). Revoking a token revokes the tokens narrowed from it; revoking an API key
revokes every token exchanged from it, on every replica within the revocation poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api.auth import Principal, authenticate
from gateway.api.fields import Fields
from gateway.api.web import NO_STORE, audit_event, form_or_json, gateway_of
from gateway.errors import CarminError, E
from gateway.state import Gateway
from tokens.claims import TokenClaims
from tokens.errors import TokenError
from tokens.service import JTI_RE, LABEL_RE, MAX_TOKEN
from tokens.users import ApiKeyInfo, key_id_of

# RFC 7009's registered hints, and ours for API keys. The hint only says where to look
# first: the token's shape decides (an API key starts with fgk_).
TOKEN_TYPE_HINTS = ("access_token", "refresh_token", "api_key")


def _bad_request(message: str) -> CarminError:
    return CarminError(E.BAD_TOKEN_REQUEST, message, details={"error": "invalid_request"})


def _bad_hint(message: str) -> CarminError:
    return CarminError(E.BAD_TOKEN_REQUEST, message, details={"error": "unsupported_token_type"})


def _forbidden(message: str) -> CarminError:
    return CarminError(E.NOT_ALLOWED, message)


_ONLY_ITS_OWN = (
    "a token may revoke only itself and the tokens narrowed from it: revoking another "
    "token or an execution needs the user's API key"
)


@dataclass
class _Request:
    token: str | None
    jti: str | None
    execution_id: str | None


def _parse(data: dict[str, object]) -> _Request:
    f = Fields(data, _bad_request)
    token = f.text("token", max_len=MAX_TOKEN)
    Fields(data, _bad_hint).choice("token_type_hint", TOKEN_TYPE_HINTS)
    jti = f.text("jti", "token_id", max_len=64, pattern=JTI_RE, what="a token id (jti)")
    execution_id = f.text(
        "execution_id",
        "executionId",
        max_len=200,
        pattern=LABEL_RE,
        what="1-200 printable ASCII characters without spaces",
    )
    if token is None and jti is None and execution_id is None:
        raise _bad_request("give one of token, jti (or token_id) or execution_id")
    return _Request(token, jti, execution_id)


def _is_admin(caller: Principal | None) -> bool:
    """An admin's API key; an admin's delegated token is a job's token like any other."""
    return caller is not None and caller.user.is_admin and caller.claims is None


def _key_to_revoke(gw: Gateway, caller: Principal | None, api_key: str) -> ApiKeyInfo | None:
    key = gw.users.find_key(api_key)
    if key is None:
        return None  # RFC 7009: an invalid token is not an error, and nothing is done
    if caller is not None and not _is_admin(caller) and caller.user.name != key.user:
        raise _forbidden("this API key belongs to another user")
    return key


def _token_to_revoke(gw: Gateway, caller: Principal | None, token: str) -> TokenClaims | None:
    try:
        claims = gw.tokens.decode(token)
    except TokenError:
        return None  # RFC 7009: an invalid token is not an error, and nothing is done
    if caller is None or _is_admin(caller):
        return claims
    if caller.claims is not None:
        bearer = caller.claims.jti
        if claims.jti != bearer and bearer not in claims.chain:
            raise _forbidden(_ONLY_ITS_OWN)
    elif claims.sub != caller.user.name:
        raise _forbidden("this token belongs to another user")
    return claims


def _revoke(gw: Gateway, caller: Principal | None, req: _Request) -> tuple[int, ApiKeyInfo | None]:
    """Check every target first, then revoke: a request is refused as a whole."""
    key: ApiKeyInfo | None = None
    token = req.token
    if token is not None and key_id_of(token) is not None:
        key = _key_to_revoke(gw, caller, token)
        token = None
    elif token is not None and _token_to_revoke(gw, caller, token) is None:
        token = None
    bearer = caller.claims if caller is not None else None
    if bearer is not None:
        if req.execution_id is not None:
            raise _forbidden(_ONLY_ITS_OWN)
        if req.jti is not None and not gw.tokens.is_narrowed_from(req.jti, bearer.jti):
            raise _forbidden(_ONLY_ITS_OWN)
    count = 0
    if key is not None:
        # The key first: from here on no exchange can start from it, and a token a
        # replica still mints from its cache carries the key id and is born revoked.
        gw.users.revoke_key(key.user, key.id)
        count += gw.tokens.revoke_api_key(key.id)
    if token is not None or req.jti is not None or req.execution_id is not None:
        # ``user`` confines a non-admin's revocation to their own tokens.
        owner = None if caller is None or _is_admin(caller) else caller.user.name
        count += gw.tokens.revoke(
            token=token, jti=req.jti, execution_id=req.execution_id, user=owner
        )
    return count, key


async def post_revoke(request: Request) -> Response:
    gw = gateway_of(request)
    data = await form_or_json(request)
    req = _parse(data)
    anonymous = not request.headers.get("apikey") and not request.headers.get("authorization")
    if anonymous and (req.jti is not None or req.execution_id is not None):
        raise CarminError(
            E.BAD_CREDENTIALS,
            "revoking by jti or execution_id needs your API key (the 'apikey' header)",
        )
    # Revoking is not a use of a token: an exhausted token may still revoke itself.
    caller = None if anonymous else authenticate(request, consume_use=False)
    try:
        count, key = await to_thread.run_sync(_revoke, gw, caller, req)
    except CarminError as exc:
        # A job's token reaching for its siblings is worth a row of its own.
        audit_event(
            gw,
            "revoke",
            caller,
            "denied",
            token_id=caller.token_id if caller is not None else None,
            execution_id=req.execution_id,
            status=exc.spec.status,
            reason=exc.message,
        )
        raise
    detail = f"{count} revoked" + (f", API key {key.id} of {key.user!r}" if key else "")
    audit_event(
        gw,
        "revoke",
        caller,
        "ok",
        token_id=req.jti,
        execution_id=req.execution_id,
        detail=detail,
    )
    body: dict[str, object] = {"revoked": count}
    if key is not None:
        body["apiKey"] = key.id
    return JSONResponse(body, headers=NO_STORE)

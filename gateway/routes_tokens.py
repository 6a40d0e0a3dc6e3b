"""Delegation endpoints: external keys (VIP shapes), token exchange and revocation,
JWKS, explain, audit and native credentials."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import paths
from gateway.auth import Principal, authenticate, user_scopes
from gateway.errors import CarminError, E
from gateway.state import Gateway
from gateway.web import NO_STORE, audit_event, form_or_json, gateway_of
from tokens.errors import ScopeError, TokenError
from tokens.scopes import Scope, format_scopes, is_subset, parse_scopes

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TOKEN_TYPES = (API_KEY_TYPE, ACCESS_TOKEN_TYPE, JWT_TYPE)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(spec: Any, error: str, message: str) -> CarminError:
    return CarminError(
        spec,
        message,
        details={"error": error, "supported_subject_token_types": list(SUBJECT_TOKEN_TYPES)},
    )


# --- token exchange (RFC 8693) --------------------------------------------------------


def _int_param(data: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = data.get(name)
        if value in (None, ""):
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise _oauth_error(
                E.BAD_TOKEN_REQUEST, "invalid_request", f"{name} must be an integer"
            ) from None
        if number <= 0:
            raise _oauth_error(E.BAD_TOKEN_REQUEST, "invalid_request", f"{name} must be positive")
        return number
    return None


def _subject(gw: Gateway, data: dict[str, Any]) -> Principal:
    subject = data.get("subject_token")
    kind = data.get("subject_token_type")
    if not isinstance(subject, str) or not subject:
        raise _oauth_error(E.BAD_TOKEN_REQUEST, "invalid_request", "subject_token is required")
    if kind not in SUBJECT_TOKEN_TYPES:
        raise _oauth_error(
            E.BAD_TOKEN_REQUEST,
            "invalid_request",
            f"subject_token_type must be one of: {', '.join(SUBJECT_TOKEN_TYPES)}",
        )
    if kind == API_KEY_TYPE:
        user = gw.users.authenticate_key(subject)
        if user is None:
            raise CarminError(E.BAD_CREDENTIALS, "invalid API key in subject_token")
        return Principal(user)
    try:
        claims = gw.tokens.verify(subject)
    except TokenError as exc:
        raise CarminError(E.BAD_TOKEN, f"subject_token rejected: {exc}") from None
    user = gw.users.get_user(claims.sub)
    if user is None:
        raise CarminError(E.BAD_TOKEN, "subject_token rejected: its user no longer exists")
    return Principal(user, claims)


def _check_scopes_exist(gw: Gateway, scopes: list[Scope]) -> None:
    for scope in scopes:
        try:
            cpath = paths.parse(scope.path)
        except CarminError:
            raise _oauth_error(
                E.BAD_SCOPE, "invalid_scope", f"invalid path in scope {scope.path!r}"
            ) from None
        if cpath.is_root:
            continue
        if gw.settings.mount(cpath.mount) is None:
            raise _oauth_error(
                E.BAD_SCOPE, "invalid_scope", f"unknown mount {cpath.mount!r} in scope"
            )


async def post_token(request: Request) -> Response:
    gw = gateway_of(request)
    data = await form_or_json(request)
    if data.get("grant_type") != GRANT_TYPE:
        raise _oauth_error(
            E.BAD_TOKEN_REQUEST, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE}"
        )
    requested_type = data.get("requested_token_type")
    if requested_type not in (None, "", ACCESS_TOKEN_TYPE, JWT_TYPE):
        raise _oauth_error(
            E.BAD_TOKEN_REQUEST,
            "invalid_request",
            "requested_token_type must be access_token or jwt",
        )
    principal = await to_thread.run_sync(_subject, gw, data)
    scope_text = data.get("scope")
    if not isinstance(scope_text, str) or not scope_text.strip():
        raise _oauth_error(
            E.BAD_SCOPE, "invalid_scope", "scope is required, e.g. storage.read:/mount/path"
        )
    try:
        scopes = parse_scopes(scope_text)
    except ScopeError as exc:
        raise _oauth_error(E.BAD_SCOPE, "invalid_scope", str(exc)) from None
    _check_scopes_exist(gw, scopes)
    ceiling = user_scopes(principal, gw.settings.mounts)
    if not is_subset(scopes, ceiling):
        beyond = format_scopes(s for s in scopes if not is_subset([s], ceiling))
        audit_event(
            gw,
            "exchange",
            principal,
            "denied",
            detail=format_scopes(scopes),
            status=E.NOT_ALLOWED.status,
            reason=f"{beyond} is more than user {principal.user.name!r} may do on the mounts",
        )
        raise _oauth_error(
            E.NOT_ALLOWED, "invalid_scope", "you cannot delegate more than you may do yourself"
        )
    lifetime = _int_param(data, "lifetime", "expires_in")
    uses = _int_param(data, "uses")
    audience = data.get("audience") or None
    execution_id = data.get("execution_id") or data.get("executionId") or None
    if audience is not None and not isinstance(audience, str):
        raise _oauth_error(E.BAD_TOKEN_REQUEST, "invalid_request", "audience must be a string")
    if execution_id is not None and not isinstance(execution_id, str):
        raise _oauth_error(E.BAD_TOKEN_REQUEST, "invalid_request", "execution_id must be a string")

    def issue() -> Any:
        return gw.tokens.issue(
            principal.user.name,
            scopes,
            lifetime=lifetime,
            audience=audience,
            execution_id=execution_id,
            uses=uses,
            parent=principal.claims,
        )

    try:
        issued = await to_thread.run_sync(issue)
    except TokenError as exc:
        spec = E.NOT_ALLOWED if exc.reason == "invalid_scope" else E.BAD_TOKEN_REQUEST
        raise _oauth_error(spec, exc.reason, str(exc)) from None
    audit_event(
        gw,
        "exchange",
        principal,
        "ok",
        token_id=issued.claims.jti,
        execution_id=issued.claims.execution_id,
        detail=format_scopes(issued.claims.scopes),
    )
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": format_scopes(issued.claims.scopes),
        },
        headers=NO_STORE,
    )


# --- revocation (RFC 7009) ------------------------------------------------------------


async def post_revoke(request: Request) -> Response:
    gw = gateway_of(request)
    data = await form_or_json(request)
    token = data.get("token") or None
    jti = data.get("jti") or data.get("token_id") or None
    execution_id = data.get("execution_id") or None
    if not any((token, jti, execution_id)):
        raise CarminError(E.BAD_TOKEN_REQUEST, "give one of token, jti or execution_id")
    try:
        principal = authenticate(request)
    except CarminError:
        anonymous = not request.headers.get("apikey") and not request.headers.get("authorization")
        if token and anonymous and not jti and not execution_id:
            principal = None  # RFC 7009: holding a token is enough to revoke that token
        else:
            raise
    owner: str | None = (
        None
        if principal is not None and principal.user.is_admin
        else (principal.user.name if principal else None)
    )

    def revoke() -> int:
        # ``user`` restricts the revocation to the caller's own tokens (admins: any).
        return int(gw.tokens.revoke(token=token, jti=jti, execution_id=execution_id, user=owner))

    count = await to_thread.run_sync(revoke)
    audit_event(
        gw,
        "revoke",
        principal,
        "ok",
        token_id=jti,
        execution_id=execution_id,
        detail=f"{count} revoked",
    )
    return JSONResponse({"revoked": count}, headers=NO_STORE)


async def get_jwks(request: Request) -> Response:
    gw = gateway_of(request)
    keys = await to_thread.run_sync(gw.tokens.jwks)
    return JSONResponse(keys, headers={"Cache-Control": "max-age=60"})


def routes() -> list[BaseRoute]:
    from gateway import routes_admin, routes_keys, routes_native

    return [
        Route("/token", post_token, methods=["POST"]),
        Route("/token/revoke", post_revoke, methods=["POST"]),
        Route("/token/native", routes_native.post_native, methods=["POST"]),
        *routes_keys.routes(),
        *routes_admin.routes(),
        Route("/.well-known/jwks.json", get_jwks, methods=["GET"]),
    ]


def root_routes() -> list[BaseRoute]:
    return [Route("/.well-known/jwks.json", get_jwks, methods=["GET"])]

"""Delegation endpoints: token exchange (RFC 8693) and JWKS here; revocation, external
and API keys, explain, audit and native credentials in their own modules."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api import paths
from gateway.api.auth import Principal, user_scopes
from gateway.api.fields import Fields
from gateway.api.web import NO_STORE, audit_event, form_or_json, gateway_of
from gateway.errors import CarminError, E
from gateway.request_context import TOKEN_ISSUED_KEY
from gateway.state import Gateway
from tokens.errors import ScopeError, TokenError
from tokens.scopes import Scope, format_scopes, is_subset, parse_scopes
from tokens.service import LABEL_RE, MAX_TOKEN, MAX_USES
from tokens.users import key_id_of

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TOKEN_TYPES = (API_KEY_TYPE, ACCESS_TOKEN_TYPE, JWT_TYPE)
# The longest scope string: 64 scopes (tokens.scopes) of long paths.
MAX_SCOPE_TEXT = 32 * 1024
LABEL_TEXT = "1-200 printable ASCII characters without spaces"


def _oauth_error(spec: Any, error: str, message: str) -> CarminError:
    return CarminError(
        spec,
        message,
        details={"error": error, "supported_subject_token_types": list(SUBJECT_TOKEN_TYPES)},
    )


def _invalid_request(message: str) -> CarminError:
    return _oauth_error(E.BAD_TOKEN_REQUEST, "invalid_request", message)


def _scope_error(message: str) -> CarminError:
    return _oauth_error(E.BAD_SCOPE, "invalid_scope", message)


# --- token exchange (RFC 8693) --------------------------------------------------------


def _subject(gw: Gateway, subject: str, kind: str) -> Principal:
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


def _check_user_credentials(gw: Gateway, user: str, scopes: list[Scope]) -> None:
    """A token for a mount that works only with the user's own credential, asked by a
    user who stored none there, would fail at its first use (maybe hours later, in a
    job): refuse it now, naming the mount and the fix."""
    per_user = {
        s.mount
        for s in scopes
        if s.mount is not None and (m := gw.settings.mount(s.mount)) is not None
        if m.credential_source == "user"
    }
    if not per_user:
        return
    stored = {i.storage_id for i in gw.vault.list(user)}
    missing = sorted(per_user - stored)
    if missing:
        prefix = gw.settings.api_prefix
        raise _oauth_error(
            E.BAD_TOKEN_REQUEST,
            "invalid_request",
            f"mount {missing[0]!r} uses each user's own storage credential and user "
            f"{user!r} stored none for it: store one first (PUT {prefix}/user/externalKeys "
            f'with {{"storageIdentifier": "{missing[0]}", "credential": {{...}}}}), then '
            "ask for the token again",
        )


async def post_token(request: Request) -> Response:
    request.scope[TOKEN_ISSUED_KEY] = "exchange"  # counted by the access middleware on a 200
    gw = gateway_of(request)
    data = await form_or_json(request)
    # Every field is checked before anything is looked up or authenticated.
    f = Fields(data, _invalid_request)
    if data.get("grant_type") != GRANT_TYPE:
        raise _oauth_error(
            E.BAD_TOKEN_REQUEST, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE}"
        )
    f.choice("requested_token_type", (ACCESS_TOKEN_TYPE, JWT_TYPE))
    subject = f.text("subject_token", required=True, max_len=MAX_TOKEN)
    kind = f.choice("subject_token_type", SUBJECT_TOKEN_TYPES)
    if kind is None:
        raise _invalid_request(
            f"subject_token_type must be one of: {', '.join(SUBJECT_TOKEN_TYPES)}"
        )
    lifetime = f.integer("lifetime", "expires_in", lo=1, hi=gw.settings.token_max_lifetime)
    uses = f.integer("uses", lo=1, hi=MAX_USES)
    audience = f.text("audience", max_len=200, pattern=LABEL_RE, what=LABEL_TEXT)
    execution_id = f.text(
        "execution_id", "executionId", max_len=200, pattern=LABEL_RE, what=LABEL_TEXT
    )
    scope_text = Fields(data, _scope_error).text("scope", max_len=MAX_SCOPE_TEXT)
    if scope_text is None or not scope_text.strip():
        raise _scope_error("scope is required, e.g. storage.read:/mount/path")
    assert subject is not None
    principal = await to_thread.run_sync(_subject, gw, subject, kind)
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
    # The key a token chain starts from: revoking that key kills the chain.
    key_id = key_id_of(subject) if kind == API_KEY_TYPE else None

    def issue() -> Any:
        _check_user_credentials(gw, principal.user.name, scopes)
        return gw.tokens.issue(
            principal.user.name,
            scopes,
            lifetime=lifetime,
            audience=audience,
            execution_id=execution_id,
            uses=uses,
            parent=principal.claims,
            key_id=key_id,
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


async def get_jwks(request: Request) -> Response:
    gw = gateway_of(request)
    keys = await to_thread.run_sync(gw.tokens.jwks)
    return JSONResponse(keys, headers={"Cache-Control": "max-age=60"})

"""Delegation endpoints: external keys (VIP shapes), token exchange and revocation,
JWKS, explain, audit and native credentials."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import unquote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.base import Credential, Delegation, NotFound, NotSupported, Storage, StorageError
from gateway import paths
from gateway.auth import Principal, authenticate, bearer_token, decide, user_scopes
from gateway.errors import CarminError, E, from_storage
from gateway.native_grants import revocable
from gateway.redirects import redirect_expiry
from gateway.state import Gateway
from tokens.audit import AuditEvent
from tokens.errors import ScopeError, TokenError
from tokens.revocation import Revocation
from tokens.scopes import Scope, format_scopes, is_subset, parse_scopes

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TOKEN_TYPES = (API_KEY_TYPE, ACCESS_TOKEN_TYPE, JWT_TYPE)
CREDENTIAL_KINDS = ("apikey", "access_secret", "user_password", "bearer", "x509_proxy")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _gw(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _oauth_error(spec: Any, error: str, message: str) -> CarminError:
    return CarminError(
        spec,
        message,
        details={"error": error, "supported_subject_token_types": list(SUBJECT_TOKEN_TYPES)},
    )


async def _form_or_json(request: Request, limit: int = 64 * 1024) -> dict[str, Any]:
    body = await request.body()
    if len(body) > limit:
        raise CarminError(E.TOO_LARGE, "request body too large")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError
            return data
        from urllib.parse import parse_qs

        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        return {k: v[-1] for k, v in parsed.items()}
    except (ValueError, UnicodeDecodeError):
        raise CarminError(E.BAD_BODY, "body must be a JSON object or a form") from None


def _audit(gw: Gateway, event: str, principal: Principal | None, result: str, **kw: Any) -> None:
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
        )
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
    gw = _gw(request)
    data = await _form_or_json(request)
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
        _audit(gw, "exchange", principal, "denied", detail=format_scopes(scopes))
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
    _audit(
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
        headers=_NO_STORE,
    )


# --- revocation (RFC 7009) ------------------------------------------------------------


async def post_revoke(request: Request) -> Response:
    gw = _gw(request)
    data = await _form_or_json(request)
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
    _audit(
        gw,
        "revoke",
        principal,
        "ok",
        token_id=jti,
        execution_id=execution_id,
        detail=f"{count} revoked",
    )
    return JSONResponse({"revoked": count}, headers=_NO_STORE)


# --- external keys (VIP shapes) -------------------------------------------------------


def _credential_from(data: dict[str, Any]) -> Credential:
    if isinstance(data.get("apiKey"), str) and data["apiKey"]:
        return Credential("apikey", {"apiKey": data["apiKey"]})
    cred = data.get("credential")
    if not isinstance(cred, dict):
        raise CarminError(E.BAD_BODY, "give apiKey (string) or credential {kind, ...fields}")
    kind = cred.get("kind")
    if kind not in CREDENTIAL_KINDS:
        raise CarminError(
            E.BAD_BODY, f"credential.kind must be one of {', '.join(CREDENTIAL_KINDS)}"
        )
    fields = {k: v for k, v in cred.items() if k != "kind"}
    if not fields or not all(isinstance(v, str) and v for v in fields.values()):
        raise CarminError(E.BAD_BODY, "credential fields must be non-empty strings")
    return Credential(str(kind), fields)


async def put_external_key(request: Request) -> Response:
    gw = _gw(request)
    principal = authenticate(request, allow_token=False)
    data = await _form_or_json(request)
    storage_id = data.get("storageIdentifier")
    if not isinstance(storage_id, str) or not storage_id:
        raise CarminError(E.BAD_BODY, "storageIdentifier (string) is required")
    if gw.settings.mount(storage_id) is None:
        raise CarminError(E.NO_MOUNT, f"no mount named {storage_id!r}")
    credential = _credential_from(data)
    await to_thread.run_sync(gw.vault.put, principal.user.name, storage_id, credential)
    _audit(gw, "key_put", principal, "ok", mount=storage_id, detail=credential.kind)
    return JSONResponse({"storageIdentifier": storage_id, "kind": credential.kind})


async def get_external_keys(request: Request) -> Response:
    gw = _gw(request)
    principal = authenticate(request, allow_token=False)
    infos = await to_thread.run_sync(gw.vault.list, principal.user.name)
    return JSONResponse(
        [
            {
                "storageIdentifier": i.storage_id,
                "kind": i.kind,
                "created": int(i.created),
                "updated": int(i.updated),
            }
            for i in infos
        ]
    )


async def delete_external_key(request: Request) -> Response:
    gw = _gw(request)
    principal = authenticate(request, allow_token=False)
    storage_id = request.path_params["storageIdentifier"]

    def delete() -> tuple[bool, int]:
        # Revoke first: deleting the native credentials of those tokens (iRODS tickets,
        # Girder tokens) needs the user's key, which is about to go.
        if gw.vault.get(principal.user.name, storage_id) is None:
            return False, 0
        revoked = gw.tokens.revoke_for_storage(principal.user.name, storage_id)
        return gw.vault.delete(principal.user.name, storage_id), revoked

    removed, revoked = await to_thread.run_sync(delete)
    if not removed:
        raise CarminError(E.NO_RESOURCE, f"no key stored for {storage_id!r}")
    _audit(gw, "key_delete", principal, "ok", mount=storage_id, detail=f"{revoked} tokens revoked")
    return Response(status_code=204)


async def get_external_platforms(request: Request) -> Response:
    gw = _gw(request)
    authenticate(request)
    return JSONResponse(
        [
            {
                "identifier": m.name,
                "type": m.type,
                "description": m.description,
                "credentialSource": m.credential_source,
                "redirect": m.redirect,
            }
            for m in gw.settings.mounts
        ]
    )


# --- explain, audit, native credentials, JWKS ----------------------------------------


async def post_explain(request: Request) -> Response:
    gw = _gw(request)
    caller = authenticate(request, allow_token=False)
    data = await _form_or_json(request)
    operation = data.get("operation", "read")
    if operation not in ("read", "create", "modify"):
        raise CarminError(E.BAD_BODY, "operation must be read, create or modify")
    raw_path = data.get("path")
    if not isinstance(raw_path, str):
        raise CarminError(E.BAD_BODY, "path (e.g. /mount/dir/file) is required")
    cpath = paths.parse(raw_path)
    subject = caller
    if isinstance(data.get("token"), str):
        try:
            claims = gw.tokens.verify(data["token"])
        except TokenError as exc:
            return JSONResponse({"allowed": False, "reason": f"token rejected: {exc}"})
        if claims.sub != caller.user.name and not caller.user.is_admin:
            raise CarminError(E.NOT_ALLOWED, "you may only explain your own tokens")
        owner = gw.users.get_user(claims.sub)
        if owner is None:
            return JSONResponse({"allowed": False, "reason": "the token's user no longer exists"})
        subject = Principal(owner, claims)
    elif isinstance(data.get("user"), str) and data["user"] != caller.user.name:
        if not caller.user.is_admin:
            raise CarminError(E.NOT_ALLOWED, "only an admin may explain for another user")
        other = gw.users.get_user(data["user"])
        if other is None:
            raise CarminError(E.NO_RESOURCE, f"no user {data['user']!r}")
        subject = Principal(other)
    if cpath.is_root:
        raise CarminError(E.BAD_PATH, "explain needs a path inside a mount")
    mount = gw.mounts.config(cpath.mount)
    decision = decide(subject, mount, operation, cpath)
    source = mount.credential_source
    stored = await to_thread.run_sync(gw.vault.list, subject.user.name)
    has_key = any(i.storage_id == mount.name for i in stored)
    if source == "none":
        credential: dict[str, Any] = {"source": "none"}
    elif has_key and source != "service":
        credential = {
            "source": "vault",
            "storageIdentifier": mount.name,
            "kind": next(i.kind for i in stored if i.storage_id == mount.name),
        }
    elif source in ("service", "user-or-service"):
        credential = {"source": "service"}
    else:
        credential = {"source": "missing", "storageIdentifier": mount.name}
    out: dict[str, Any] = {
        "allowed": decision.allowed,
        "reason": decision.reason,
        "user": subject.user.name,
        "credential": credential,
    }
    if decision.matched is not None:
        out["matchedScope"] = f"storage.{decision.matched.activity}:{decision.matched.path}"
    return JSONResponse(out)


async def get_audit(request: Request) -> Response:
    gw = _gw(request)
    caller = authenticate(request, allow_token=False)
    q = request.query_params
    user = q.get("user")
    if not caller.user.is_admin:
        if user not in (None, caller.user.name):
            raise CarminError(E.NOT_ALLOWED, "only an admin may read other users' audit")
        user = caller.user.name
    try:
        limit = min(int(q.get("limit", "100")), 10_000)
        since = float(q["since"]) if "since" in q else None
        until = float(q["until"]) if "until" in q else None
    except ValueError:
        raise CarminError(E.BAD_REQUEST, "limit, since and until must be numbers") from None
    events = await to_thread.run_sync(
        lambda: gw.audit.query(
            user=user,
            token_id=q.get("token_id"),
            execution_id=q.get("execution_id"),
            mount=q.get("mount"),
            since=since,
            until=until,
            limit=limit,
        )
    )
    return JSONResponse([_event_dict(e) for e in events])


def _event_dict(event: AuditEvent) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(event).items() if v is not None}


async def post_native(request: Request) -> Response:
    """A native credential for one path (presigned URL, Girder token, iRODS ticket), for
    jobs whose tools cannot follow redirects. Needs a Bearer token covering the path.

    ``format: "vip"`` (Girder mounts, GET): a VIP/GASW input URI
    ``girder:/<name>?apiurl=…&fileId=…&token=…`` instead. Revocable credentials (iRODS
    tickets, Girder tokens) expire with the fedgate token and are deleted when it is
    revoked (gateway/native_grants.py); the others live at most one hour."""
    gw = _gw(request)
    principal = authenticate(request)
    data = await _form_or_json(request)
    raw_path = data.get("path")
    method = str(data.get("method", "GET")).upper()
    fmt = data.get("format") or "native"
    if not isinstance(raw_path, str):
        raise CarminError(E.BAD_BODY, "path (e.g. /mount/dir/file) is required")
    if method not in ("GET", "PUT"):
        raise CarminError(E.BAD_BODY, "method must be GET or PUT")
    if fmt not in ("native", "vip"):
        raise CarminError(E.BAD_BODY, "format must be native or vip")
    if fmt == "vip" and method != "GET":
        raise CarminError(E.BAD_BODY, "a VIP input URI is for reading: use method GET")
    cpath = paths.parse(raw_path)
    if cpath.is_root or not cpath.inner:
        raise CarminError(E.BAD_PATH, "a file path inside a mount is required")
    mount = gw.mounts.config(cpath.mount)
    from gateway.auth import authorize

    authorize(principal, mount, "read" if method == "GET" else "create", cpath)
    claims = principal.claims
    token_exp = claims.exp if claims else None

    def mint() -> tuple[Delegation, str | None]:
        storage = gw.mounts.storage(mount, principal.user.name)
        if method == "PUT":
            try:
                existing = storage.stat(cpath.inner)
            except NotFound:
                existing = None  # any other error must not pass as "creating a new file"
            if existing is not None:
                authorize(principal, mount, "modify", cpath)
        if not revocable(storage):
            expires = redirect_expiry(token_exp)
        elif token_exp is not None:
            # Deleted on revocation, so it may live exactly as long as the token.
            expires = dt.datetime.fromtimestamp(token_exp, dt.UTC)
        else:
            expires = redirect_expiry(None)
        if fmt == "vip":
            vip = getattr(storage, "vip_uri", None)
            if vip is None:
                raise NotSupported("VIP input URIs exist for Girder mounts only")
            uri = str(vip(cpath.inner, expires))
            # The URI's token is what to revoke; the adapter puts it last in the query.
            value = unquote(uri.rsplit("token=", 1)[1])
            delegation = Delegation("girder_token", value, expires)
            _remember(storage, delegation)
            return delegation, uri
        delegate = getattr(storage, "delegate", None)
        if delegate is not None:
            # The credential gets the uses the token had when it asked (this request's
            # use is handed over to it); iRODS would read 0 as "unlimited".
            left = gw.tokens.remaining_uses(claims) if claims is not None else None
            uses = None if left is None else left + 1
            delegation = delegate(cpath.inner, method, expires, uses)
        else:
            delegation = storage.presign(cpath.inner, method, expires)
        _remember(storage, delegation)
        return delegation, None

    def _remember(storage: Storage, delegation: Delegation) -> None:
        if claims is None or not revocable(storage):
            return
        gw.grants.record(claims.jti, principal.user.name, mount.name, delegation)
        # A revocation that ran between our authentication and this record did not see
        # the grant: kill it now rather than let it live to its expiry.
        token = bearer_token(request)
        try:
            gw.tokens.verify(token or "")
        except TokenError:
            gw.grants.on_revoke(Revocation((claims.jti,)))
            raise CarminError(E.BAD_TOKEN, "token rejected: revoked") from None

    try:
        delegation, uri = await to_thread.run_sync(mint)
    except NotSupported as exc:
        raise CarminError(E.NOT_SUPPORTED, f"{mount.name}: {exc}") from None
    except StorageError as exc:
        raise from_storage(exc, mount.name) from None
    _audit(
        gw,
        "native",
        principal,
        "ok",
        token_id=principal.token_id,
        mount=mount.name,
        path=cpath.platform_path,
        operation=method,
        execution_id=principal.execution_id,
        detail="vip_uri" if uri is not None else delegation.kind,
    )
    if uri is not None:
        return JSONResponse(
            {"uri": uri, "expiresAt": int(delegation.expires_at.timestamp())}, headers=_NO_STORE
        )
    return JSONResponse(
        {
            "kind": delegation.kind,
            "value": delegation.value,
            "method": delegation.method,
            "headers": delegation.headers,
            "url": delegation.url or (delegation.value if delegation.kind == "url" else ""),
            "expiresAt": int(delegation.expires_at.timestamp()),
        },
        headers=_NO_STORE,
    )


async def get_jwks(request: Request) -> Response:
    gw = _gw(request)
    keys = await to_thread.run_sync(gw.tokens.jwks)
    return JSONResponse(keys, headers={"Cache-Control": "max-age=60"})


def routes() -> list[BaseRoute]:
    return [
        Route("/token", post_token, methods=["POST"]),
        Route("/token/revoke", post_revoke, methods=["POST"]),
        Route("/token/native", post_native, methods=["POST"]),
        Route("/user/externalKeys", put_external_key, methods=["PUT", "POST"]),
        Route("/user/externalKeys", get_external_keys, methods=["GET"]),
        Route("/user/externalKeys/{storageIdentifier}", delete_external_key, methods=["DELETE"]),
        Route("/externalPlatforms", get_external_platforms, methods=["GET"]),
        Route("/explain", post_explain, methods=["POST"]),
        Route("/audit", get_audit, methods=["GET"]),
        Route("/.well-known/jwks.json", get_jwks, methods=["GET"]),
    ]


def root_routes() -> list[BaseRoute]:
    return [Route("/.well-known/jwks.json", get_jwks, methods=["GET"])]

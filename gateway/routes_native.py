"""/token/native: a backend's own credential for one path (presigned URL, Girder token,
iRODS ticket, macaroon), for jobs whose tools cannot follow a redirect."""

from __future__ import annotations

import datetime as dt
from urllib.parse import unquote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.base import Delegation, NotFound, NotSupported, Storage, StorageError
from gateway import paths
from gateway.auth import authenticate, bearer_token
from gateway.errors import CarminError, E, from_storage
from gateway.native_grants import revocable
from gateway.redirects import redirect_expiry
from gateway.web import NO_STORE, audit_event, form_or_json, gateway_of
from tokens.errors import TokenError
from tokens.revocation import Revocation


async def post_native(request: Request) -> Response:
    """A native credential for one path (presigned URL, Girder token, iRODS ticket), for
    jobs whose tools cannot follow redirects. Needs a Bearer token covering the path.

    ``format: "vip"`` (Girder mounts, GET): a VIP/GASW input URI
    ``girder:/<name>?apiurl=…&fileId=…&token=…`` instead. Revocable credentials (iRODS
    tickets, Girder tokens) expire with the fedgate token and are deleted when it is
    revoked (gateway/native_grants.py); the others live at most one hour."""
    gw = gateway_of(request)
    principal = authenticate(request)
    data = await form_or_json(request)
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

    operation = "content" if method == "GET" else "write"  # the audit's vocabulary

    def allowed(activity: str) -> None:
        try:
            authorize(principal, mount, activity, cpath)
        except CarminError as exc:
            audit_event(
                gw,
                "native",
                principal,
                "denied",
                token_id=principal.token_id,
                mount=mount.name,
                path=cpath.platform_path,
                operation=operation,
                execution_id=principal.execution_id,
                status=exc.spec.status,
                reason=exc.message,
            )
            raise

    allowed("read" if method == "GET" else "create")
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
                allowed("modify")
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
    audit_event(
        gw,
        "native",
        principal,
        "ok",
        token_id=principal.token_id,
        mount=mount.name,
        path=cpath.platform_path,
        operation=operation,
        execution_id=principal.execution_id,
        detail="vip_uri" if uri is not None else delegation.kind,
    )
    if uri is not None:
        return JSONResponse(
            {"uri": uri, "expiresAt": int(delegation.expires_at.timestamp())}, headers=NO_STORE
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
        headers=NO_STORE,
    )

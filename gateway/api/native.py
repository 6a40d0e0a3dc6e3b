"""/token/native: a backend's own credential for one path (presigned URL, Girder token,
iRODS ticket, macaroon), for jobs whose tools cannot follow a redirect."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, cast

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.base import (
    Delegating,
    Delegation,
    NotFound,
    NotSupported,
    Storage,
    StorageError,
    VipUris,
    features,
)
from gateway.api import native_uses, paths
from gateway.api.auth import authenticate, bearer_token, decide
from gateway.api.redirects import redirect_expiry
from gateway.api.web import NO_STORE, audit_event, form_or_json, gateway_of
from gateway.errors import CarminError, E, from_storage
from gateway.request_context import TOKEN_ISSUED_KEY
from tokens.errors import TokenError
from tokens.revocation import Revocation


async def post_native(request: Request) -> Response:
    """A native credential for one path (presigned URL, Girder token, iRODS ticket), for
    jobs whose tools cannot follow redirects. Needs a Bearer token covering the path.

    ``format: "vip"`` (Girder mounts, GET): a VIP/GASW input URI
    ``girder:/<name>?apiurl=…&fileId=…&token=…`` instead. Revocable credentials (iRODS
    tickets, Girder tokens) expire with the fedgate token and are deleted when it is
    revoked (gateway/native_grants.py); the others (presigned URLs, macaroons) live
    ``presign_lifetime`` seconds (default 300), never past the token.

    Never more than the token: a credential that reaches more than the path (a Girder
    token) only where the mount enables it, and never the mount's service account's; a
    counted token gets a ticket carrying its remaining uses, or nothing reusable; a
    token that may create but not modify gets a one-open ticket or a URL the storage
    refuses once the file exists, or nothing."""
    request.scope[TOKEN_ISSUED_KEY] = "native"  # counted by the access middleware on a 200
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
    from gateway.api.auth import authorize

    operation = "content" if method == "GET" else "write"  # the audit's vocabulary

    def record(result: str, **fields: Any) -> None:
        audit_event(
            gw,
            "native",
            principal,
            result,
            token_id=principal.token_id,
            mount=mount.name,
            path=cpath.platform_path,
            operation=operation,
            execution_id=principal.execution_id,
            **fields,
        )

    def denied(status: int, reason: str) -> None:
        record("denied", status=status, reason=reason)

    def allowed(activity: str) -> None:
        try:
            authorize(principal, mount, activity, cpath)
        except CarminError as exc:
            denied(exc.spec.status, exc.message)
            raise

    allowed("read" if method == "GET" else "create")
    claims = principal.claims
    token_exp = claims.exp if claims else None

    user = principal.user.name

    def mint() -> tuple[Delegation, str | None]:
        storage = gw.mounts.storage(mount, user)
        if method == "PUT":
            try:
                existing = storage.stat(cpath.inner)
            except NotFound:
                existing = None  # any other error must not pass as "creating a new file"
            if existing is not None:
                allowed("modify")
        check_grantable(storage)
        found = features(storage)  # its optional protocols, detected once per class
        if found.revocable and token_exp is not None:
            # Deleted on revocation, so it may live exactly as long as the token.
            expires = dt.datetime.fromtimestamp(token_exp, dt.UTC)
        else:
            # Nothing recalls it (a presigned URL; a revocable one minted for an API key
            # is not recorded): short, like a redirect's.
            expires = redirect_expiry(token_exp, gw.settings.presign_lifetime)
        if fmt == "vip":
            if not found.vip_uris:
                raise NotSupported("VIP input URIs exist for Girder mounts only")
            uri, delegation = cast(VipUris, storage).vip_delegation(cpath.inner, expires)
            _remember(storage, delegation)
            return delegation, str(uri)
        if found.delegating:
            taken, create_only = 0, method == "PUT" and not may_modify()
            if create_only:
                uses: int | None = 1  # one open creates the file, none replaces it
            elif claims is not None and claims.uses is not None:
                # The request's own use (spent by its authentication) and every use left
                # go to the credential, from the same counter (gateway/api/native_uses.py).
                taken = native_uses.take_remaining(gw.store, claims)
                uses = 1 + taken
            else:
                uses = None
            try:
                delegation = cast(Delegating, storage).delegate(
                    cpath.inner, method, expires, uses, create_only
                )
            except BaseException:
                if claims is not None:
                    native_uses.give_back(gw.store, claims, taken)
                raise
        elif method == "PUT" and storage.capabilities.presign_create and not may_modify():
            delegation = storage.presign_create(cpath.inner, expires)  # type: ignore[attr-defined]
        else:
            delegation = storage.presign(cpath.inner, method, expires)
        _remember(storage, delegation)
        return delegation, None

    def refused(message: str) -> CarminError:
        """A 403 for what the token may do but not through a credential of the storage's
        own; audited like a scope refusal."""
        denied(E.NOT_ALLOWED.status, message)
        return CarminError(E.NOT_ALLOWED, f"{mount.name}: {message}")

    def may_modify() -> bool:
        return decide(principal, mount, "modify", cpath).allowed

    def check_grantable(storage: Storage) -> None:
        """Refuse what would give the job more than its token: see the module docstring."""
        caps = storage.capabilities
        if not caps.native_delegation:
            # Nothing will be handed out: the adapter's presign raises NotSupported and
            # says why, and what would work (an https SE, a Girder mount's native_tokens).
            return
        if not caps.delegation_path_bound and gw.mounts.credential(mount, user) is None:
            raise refused(
                "this mount's own service credential is never handed out (it reaches "
                "everything the service account can): store your own credential "
                "(PUT /user/externalKeys), or read through fedgate"
            )
        delegates = features(storage).delegating
        if method == "PUT" and not caps.presign_write and not delegates:
            raise NotSupported("this mount has no upload credential; PUT the body to fedgate")
        counted = claims is not None and claims.uses is not None
        create_only = method == "PUT" and not may_modify()
        if delegates:
            return  # the credential carries the use count and the create-only rule
        if create_only and caps.presign_create:
            return  # the storage refuses the URL once the file exists: it succeeds once
        if counted or create_only:
            why = "has a use count" if counted else "may create but not replace this file"
            raise refused(
                f"no reusable credential for a token that {why}: read or write through "
                "fedgate, one use per request"
            )

    def _remember(storage: Storage, delegation: Delegation) -> None:
        if not features(storage).revocable:
            return
        if claims is None:
            # An API key's grant has no token to be revoked with: recorded all the same,
            # so the sweep deletes it once expired (a Girder grant's API key included).
            gw.grants.record(f"apikey:{secrets.token_hex(8)}", user, mount.name, delegation)
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
    record("ok", detail="vip_uri" if uri is not None else delegation.kind)
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

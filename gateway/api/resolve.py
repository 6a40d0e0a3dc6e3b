"""``GET /resolve?uri=…``: which mount and path a URI names (adapters/uris.py).

Answers ``{"mount", "path", "url"}`` (``path`` is the platform path ``/mount/inner``,
``url`` the fedgate URL of ``/path/…``). 404 40402 when no mount the caller may use
covers the URI, 404 40403 when a VIP Girder id is unknown, 400 when the URI cannot be
parsed. Mounts the caller holds no right on are invisible here, as in ``/path/``.
The URI itself is never logged nor echoed: VIP's form carries a Girder token.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters import uris
from adapters.base import AuthenticationFailed, Credential, NotFound, Storage, StorageError
from gateway.api import paths
from gateway.api.auth import Principal, authenticate
from gateway.config import MountConfig
from gateway.errors import CarminError, E, from_storage
from gateway.request_context import client_address, request_id
from gateway.state import Gateway
from tokens.audit import AuditEvent


def _visible(gw: Gateway, principal: Principal) -> list[MountConfig]:
    user = principal.user
    return [m for m in gw.settings.mounts if m.access_for(user.name, user.is_admin) is not None]


def _vip_storage(gw: Gateway, mount: MountConfig, user: str, token: str) -> Storage:
    """The caller's view of the mount; failing a credential, the Girder token in the URI
    (VIP hands jobs nothing else)."""
    try:
        return gw.mounts.storage(mount, user)
    except (AuthenticationFailed, CarminError):
        if not token:
            raise
        return gw.mounts.adapter(mount).bind(Credential("bearer", {"token": token}))


async def _resolve_vip(
    gw: Gateway, principal: Principal, ref: uris.VipReference, mounts: list[MountConfig]
) -> uris.Match:
    names = uris.vip_mounts(ref, mounts)
    if not names:
        raise uris.NoMount("no mount covers this Girder server")
    for name in names:
        mount = gw.mounts.config(name)
        try:
            storage = await to_thread.run_sync(
                _vip_storage, gw, mount, principal.user.name, ref.token
            )
            inner = await to_thread.run_sync(uris.vip_path, storage, ref)
        except NotFound:
            continue
        except StorageError as exc:
            raise from_storage(exc, name) from None
        return uris.Match(name, inner)
    raise CarminError(E.NO_RESOURCE, "the Girder id is unknown or outside every girder mount")


def _bases(gw: Gateway, request: Request) -> list[str]:
    bases = [str(request.base_url).rstrip("/")]
    if gw.settings.public_url:
        bases.insert(0, gw.settings.public_url.rstrip("/"))
    return bases


async def get_resolve(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    principal = authenticate(request)
    uri = request.query_params.get("uri", "").strip()
    if not uri:
        raise CarminError(E.BAD_REQUEST, "query parameter 'uri' is required")
    mounts = _visible(gw, principal)
    prefix = gw.settings.api_prefix
    try:
        own = uris.fedgate_path(uri, _bases(gw, request), prefix)
        if own is not None:
            segs = own.split("/", 1)
            if segs[0] not in {m.name for m in mounts}:
                raise uris.NoMount("no such mount")
            match = uris.Match(segs[0], segs[1] if len(segs) > 1 else "")
        else:
            ref = uris.parse_vip(uri)
            if ref is not None:
                match = await _resolve_vip(gw, principal, ref, mounts)
            else:
                match = uris.match_uri(uri, mounts)
    except uris.UriError as exc:
        raise CarminError(E.BAD_REQUEST, f"cannot parse the URI: {exc}") from None
    except uris.NoMount:
        raise CarminError(E.NO_MOUNT, "no mount you may use covers this URI") from None
    cpath = paths.parse(f"{match.mount}/{match.inner}" if match.inner else match.mount)
    base = _bases(gw, request)[0]
    url = f"{base}{prefix}/path/{quote(cpath.platform_path.lstrip('/'), safe='/')}"
    gw.audit.record(
        AuditEvent(
            time=time.time(),
            event="access",
            user=principal.user.name,
            token_id=principal.token_id,
            mount=cpath.mount,
            path=cpath.platform_path,
            operation="resolve",
            result="ok",
            status=200,
            bytes=None,
            execution_id=principal.execution_id,
            detail=None,
            request_id=request_id(),
            client=client_address(),
        )
    )
    return JSONResponse({"mount": cpath.mount, "path": cpath.platform_path, "url": url})

"""VIP-shaped key vault endpoints: /user/externalKeys and /externalPlatforms."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.base import Credential
from gateway.auth import authenticate
from gateway.errors import CarminError, E
from gateway.web import audit_event, form_or_json, gateway_of

# --- external keys (VIP shapes) -------------------------------------------------------


CREDENTIAL_KINDS = ("apikey", "access_secret", "user_password", "bearer", "x509_proxy")


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
    gw = gateway_of(request)
    principal = authenticate(request, allow_token=False)
    data = await form_or_json(request)
    storage_id = data.get("storageIdentifier")
    if not isinstance(storage_id, str) or not storage_id:
        raise CarminError(E.BAD_BODY, "storageIdentifier (string) is required")
    if gw.settings.mount(storage_id) is None:
        raise CarminError(E.NO_MOUNT, f"no mount named {storage_id!r}")
    credential = _credential_from(data)
    await to_thread.run_sync(gw.vault.put, principal.user.name, storage_id, credential)
    audit_event(gw, "key_put", principal, "ok", mount=storage_id, detail=credential.kind)
    return JSONResponse({"storageIdentifier": storage_id, "kind": credential.kind})


async def get_external_keys(request: Request) -> Response:
    gw = gateway_of(request)
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
    gw = gateway_of(request)
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
    audit_event(
        gw, "key_delete", principal, "ok", mount=storage_id, detail=f"{revoked} tokens revoked"
    )
    return Response(status_code=204)


async def get_external_platforms(request: Request) -> Response:
    gw = gateway_of(request)
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


def routes() -> list[BaseRoute]:
    return [
        Route("/user/externalKeys", put_external_key, methods=["PUT", "POST"]),
        Route("/user/externalKeys", get_external_keys, methods=["GET"]),
        Route("/user/externalKeys/{storageIdentifier}", delete_external_key, methods=["DELETE"]),
        Route("/externalPlatforms", get_external_platforms, methods=["GET"]),
    ]

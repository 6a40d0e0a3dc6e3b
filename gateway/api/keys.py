"""Keys: the user's storage credentials (VIP-shaped /user/externalKeys and
/externalPlatforms) and the user's own gateway API keys (/user/apiKeys)."""

from __future__ import annotations

import re
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.base import AuthenticationFailed, Credential, PermissionDenied, StorageError
from gateway.api.auth import Principal, authenticate
from gateway.api.fields import Fields
from gateway.api.web import NO_STORE, audit_event, form_or_json, gateway_of
from gateway.config import MountConfig
from gateway.errors import CarminError, E, from_storage
from gateway.state import Gateway
from tokens.users import ApiKeyInfo, key_id_of, validate_user_name
from tokens.vault import StoredCredential

# --- external keys (VIP shapes) -------------------------------------------------------


CREDENTIAL_KINDS = ("apikey", "access_secret", "user_password", "bearer", "x509_proxy")
# A credential field: a name like accessKey, a value up to an X.509 proxy's size.
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_MAX_FIELDS = 8
_MAX_SECRET = 32 * 1024


def _credential_from(data: dict[str, Any]) -> Credential:
    api_key = Fields(data).text("apiKey", max_len=_MAX_SECRET)
    if api_key is not None:
        return Credential("apikey", {"apiKey": api_key})
    cred = data.get("credential")
    if not isinstance(cred, dict):
        raise CarminError(E.BAD_BODY, "give apiKey (string) or credential {kind, ...fields}")
    kind = cred.get("kind")
    if not isinstance(kind, str) or kind not in CREDENTIAL_KINDS:
        raise CarminError(
            E.BAD_BODY, f"credential.kind must be one of {', '.join(CREDENTIAL_KINDS)}"
        )
    fields = {k: v for k, v in cred.items() if k != "kind"}
    if not fields or len(fields) > _MAX_FIELDS:
        raise CarminError(E.BAD_BODY, f"a credential has 1-{_MAX_FIELDS} fields besides kind")
    for name, value in fields.items():
        if _FIELD_NAME.fullmatch(name) is None:
            raise CarminError(E.BAD_BODY, "credential field names are letters, digits and '_'")
        if not isinstance(value, str) or not value or len(value) > _MAX_SECRET:
            raise CarminError(
                E.BAD_BODY, f"credential fields must be strings of 1-{_MAX_SECRET} characters"
            )
    return Credential(kind, fields)


def _verify_credential(gw: Gateway, mount: MountConfig, credential: Credential) -> None:
    """Ask the storage whether it takes the credential: list the mount's root with it
    (one request). Opt-in (``"verify": true``): the storage must be reachable, and a
    credential that can reach only part of the mount fails the check."""
    adapter = gw.mounts.adapter(mount)
    if not adapter.uses_credentials or mount.credential_source in (
        "none",
        "service",
    ):
        raise CarminError(
            E.BAD_BODY, f"mount {mount.name!r} does not use users' credentials: nothing to verify"
        )
    try:
        # Views are pooled per credential by the adapter: not ours to close.
        next(iter(adapter.bind(credential).list("")), None)
    except (AuthenticationFailed, PermissionDenied) as exc:
        raise CarminError(
            E.BAD_BODY,
            f"{mount.name}: the storage refused this credential ({exc}); it was not stored",
        ) from None
    except StorageError as exc:
        raise from_storage(exc, mount.name) from None


async def put_external_key(request: Request) -> Response:
    gw = gateway_of(request)
    principal = authenticate(request, allow_token=False)
    data = await form_or_json(request)
    f = Fields(data)
    storage_id = f.text("storageIdentifier", required=True, max_len=200)
    # The flag in the body, or ?verify=true for clients that send a fixed body (VIP's).
    verify = f.flag("verify") or Fields(dict(request.query_params)).flag("verify")
    assert storage_id is not None
    mount = gw.settings.mount(storage_id)
    if mount is None:
        raise CarminError(E.NO_MOUNT, f"no mount named {storage_id!r}")
    credential = _credential_from(data)
    if verify:
        await to_thread.run_sync(_verify_credential, gw, mount, credential)
    # The vault keeps its own record type (tokens/ knows no adapter).
    stored = StoredCredential(credential.kind, dict(credential.fields))
    await to_thread.run_sync(gw.vault.put, principal.user.name, storage_id, stored)
    audit_event(gw, "key_put", principal, "ok", mount=storage_id, detail=credential.kind)
    body: dict[str, Any] = {"storageIdentifier": storage_id, "kind": credential.kind}
    if verify:
        body["verified"] = True
    return JSONResponse(body)


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


# --- the user's own API keys ---------------------------------------------------------


def _key_json(info: ApiKeyInfo, current: str | None) -> dict[str, Any]:
    return {
        "id": info.id,
        "label": info.label,
        "created": int(info.created),
        "lastUsed": int(info.last_used) if info.last_used is not None else None,
        "expires": int(info.expires) if info.expires is not None else None,
        "current": info.id == current,
    }


def _user_param(request: Request, caller: Principal) -> str:
    """Whose keys: the caller's, or (admins only) ``?user=NAME``."""
    name = request.query_params.get("user") or caller.user.name
    if name != caller.user.name:
        if not caller.user.is_admin:
            raise CarminError(E.NOT_ALLOWED, "only an admin may manage another user's keys")
        try:
            validate_user_name(name)
        except ValueError as exc:
            raise CarminError(E.BAD_REQUEST, str(exc)) from None
    return name


async def get_api_keys(request: Request) -> Response:
    """The user's API keys: id, label, created, last used, expiry; never a secret."""
    gw = gateway_of(request)
    caller = authenticate(request, allow_token=False)
    name = _user_param(request, caller)
    infos = await to_thread.run_sync(gw.users.list_keys, name)
    if not infos and gw.users.get_user(name) is None:
        raise CarminError(E.NO_RESOURCE, f"no user {name!r}")
    current = key_id_of(request.headers.get("apikey", ""))
    return JSONResponse([_key_json(i, current) for i in infos], headers=NO_STORE)


async def delete_api_key(request: Request) -> Response:
    """Revoke one API key by id (the owner, with any of their keys, or an admin), and
    every token exchanged from it. ``POST /token/revoke`` does the same given the key."""
    gw = gateway_of(request)
    caller = authenticate(request, allow_token=False)
    key_id = request.path_params["keyId"]

    def revoke() -> int | None:
        info = gw.users.get_key(key_id)
        if info is None or (info.user != caller.user.name and not caller.user.is_admin):
            return None
        gw.users.revoke_key(info.user, info.id)
        return gw.tokens.revoke_api_key(info.id)

    revoked = await to_thread.run_sync(revoke)
    if revoked is None:
        raise CarminError(E.NO_RESOURCE, f"no API key {key_id[:40]!r} of yours")
    audit_event(gw, "key_revoke", caller, "ok", detail=f"API key {key_id}, {revoked} revoked")
    return JSONResponse({"apiKey": key_id, "revoked": revoked}, headers=NO_STORE)

"""/explain (why a request would be allowed or not) and /audit."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import paths
from gateway.auth import Principal, authenticate, decide
from gateway.errors import CarminError, E
from gateway.web import form_or_json, gateway_of
from tokens.audit import AuditEvent
from tokens.errors import TokenError

# --- explain, audit, native credentials, JWKS ----------------------------------------


async def post_explain(request: Request) -> Response:
    gw = gateway_of(request)
    caller = authenticate(request, allow_token=False)
    data = await form_or_json(request)
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
    gw = gateway_of(request)
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


def routes() -> list[BaseRoute]:
    return [
        Route("/explain", post_explain, methods=["POST"]),
        Route("/audit", get_audit, methods=["GET"]),
    ]

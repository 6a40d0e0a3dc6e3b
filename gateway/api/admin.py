"""/explain (why a request would be allowed or not) and /audit.

Both speak the audit's vocabulary of operations (``tokens.audit.OPERATIONS``): a row's
``operation`` and ``token_id`` can be handed to /explain as they are.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api import paths
from gateway.api.auth import Principal, authenticate, decide
from gateway.api.fields import Fields
from gateway.api.web import form_or_json, gateway_of
from gateway.errors import CarminError, E
from gateway.state import Gateway
from tokens.audit import OPERATIONS, REPLACING, iso_time, parse_time
from tokens.claims import TokenClaims
from tokens.errors import ScopeError, TokenError
from tokens.scopes import ACTIVITIES, format_scopes, parse_scopes
from tokens.service import MAX_TOKEN

MAX_AUDIT_ROWS = 10_000
_MAX_FILTER = 256
# Text filters of GET /audit: query parameter -> AuditLog.query argument.
_TEXT_FILTERS = {
    "user": "user",
    "token_id": "token_id",
    "execution_id": "execution_id",
    "mount": "mount",
    "event": "event",
    "request_id": "request_id",
    "result": "result",
}
_NOT_YOURS_OR_UNKNOWN = "no token with this id is on record for you"


# --- explain --------------------------------------------------------------------------


def _operation(value: object) -> tuple[str, str]:
    """(operation, the scope activity it needs). The audit's operation names, or a scope
    activity itself (read, create, modify) for the question "does this scope cover it"."""
    if isinstance(value, str):
        if value in OPERATIONS:
            return value, OPERATIONS[value]
        if value in ACTIVITIES:
            return value, value
    names = ", ".join((*OPERATIONS, *ACTIVITIES))
    raise CarminError(E.BAD_BODY, f"operation must be one of {names}")


def _token_by_id(gw: Gateway, caller: Principal, token_id: object) -> tuple[TokenClaims, str, bool]:
    """The claims and state of the token the audit names ``token_id``, if the caller
    owns it or is an admin. Anyone else gets the same 404 as for an unknown id, so the
    answer never tells whether another user's token exists.

    A token's own row is purged soon after it expires; its exchange row in the audit
    (kept for the audit retention) still says whose it was and what its scopes were;
    the last item says whether the token's own record answered."""
    if not isinstance(token_id, str) or not 0 < len(token_id) <= 200:
        raise CarminError(E.BAD_BODY, "token_id must be a token id (the audit's token_id)")
    found = gw.tokens.lookup(token_id)
    on_record = found is not None
    if found is None:
        found = _token_from_audit(gw, token_id)
    if found is None:
        raise CarminError(E.NO_RESOURCE, _NOT_YOURS_OR_UNKNOWN)
    claims, state = found
    if claims.sub != caller.user.name and not caller.user.is_admin:
        raise CarminError(E.NO_RESOURCE, _NOT_YOURS_OR_UNKNOWN)
    return claims, state, on_record


def _token_from_audit(gw: Gateway, token_id: str) -> tuple[TokenClaims, str] | None:
    rows = gw.audit.query(token_id=token_id, event="exchange", result="ok", limit=1)
    if not rows or rows[0].user is None or not rows[0].detail:
        return None
    row = rows[0]
    try:
        scopes = tuple(parse_scopes(row.detail or ""))
    except ScopeError:  # truncated or masked in the audit: nothing to explain with
        return None
    issued = int(row.time)
    claims = TokenClaims(
        jti=token_id,
        sub=row.user or "",
        scopes=scopes,
        exp=issued,  # unknown: only "expired" is certain (the row is purged after expiry)
        iat=issued,
        nbf=issued,
        aud=None,
        execution_id=row.execution_id,
        uses=None,
        parent=None,
        kid="",
    )
    return claims, "expired"


def _token_json(claims: TokenClaims, state: str, on_record: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": claims.jti,
        "state": state,
        "user": claims.sub,
        "scope": format_scopes(claims.scopes),
        "issuedAt": iso_time(claims.iat),
    }
    if on_record:  # else only the audit's exchange row is left: the expiry is unknown
        out["expiresAt"] = iso_time(claims.exp)
    if claims.execution_id is not None:
        out["executionId"] = claims.execution_id
    return out


async def post_explain(request: Request) -> Response:
    gw = gateway_of(request)
    caller = authenticate(request, allow_token=False)
    data = await form_or_json(request)
    # Type checks only: below, a token or user that is not a string would be ignored.
    fields = Fields(data)
    fields.text("token", max_len=MAX_TOKEN)
    fields.text("user", max_len=64)
    operation, activity = _operation(data.get("operation", "read"))
    raw_path = data.get("path")
    if not isinstance(raw_path, str):
        raise CarminError(E.BAD_BODY, "path (e.g. /mount/dir/file) is required")
    cpath = paths.parse(raw_path)
    if "token" in data and "token_id" in data:
        raise CarminError(E.BAD_BODY, "give token or token_id, not both")
    subject = caller
    token: dict[str, Any] | None = None
    state = "valid"
    if isinstance(data.get("token"), str):
        try:
            claims = gw.tokens.verify(data["token"])
        except TokenError as exc:
            return JSONResponse({"allowed": False, "reason": f"token rejected: {exc}"})
        if claims.sub != caller.user.name and not caller.user.is_admin:
            raise CarminError(E.NOT_ALLOWED, "you may only explain your own tokens")
        token = _token_json(claims, state, True)
    elif "token_id" in data:
        claims, state, on_record = await to_thread.run_sync(
            _token_by_id, gw, caller, data["token_id"]
        )
        token = _token_json(claims, state, on_record)
    elif isinstance(data.get("user"), str) and data["user"] != caller.user.name:
        if not caller.user.is_admin:
            raise CarminError(E.NOT_ALLOWED, "only an admin may explain for another user")
        other = gw.users.get_user(data["user"])
        if other is None:
            raise CarminError(E.NO_RESOURCE, f"no user {data['user']!r}")
        subject = Principal(other)
    if token is not None:
        owner = gw.users.get_user(claims.sub)
        if owner is None:
            return JSONResponse(
                {"allowed": False, "reason": "the token's user no longer exists", "token": token}
            )
        subject = Principal(owner, claims)
    if cpath.is_root:
        raise CarminError(E.BAD_PATH, "explain needs a path inside a mount")
    mount = gw.mounts.config(cpath.mount)
    decision = decide(subject, mount, activity, cpath)
    reason = decision.reason
    if state != "valid":
        # The rules still say what the token could do, which is what an old 403 needs.
        verdict = "would allow" if decision.allowed else "would not allow"
        reason = f"the token is {state}; its scopes {verdict} this: {decision.reason}"
    out: dict[str, Any] = {
        "allowed": decision.allowed and state == "valid",
        "reason": reason,
        "user": subject.user.name,
        "operation": operation,
        "activity": activity,
        "credential": await _credential(gw, subject, mount),
    }
    if decision.matched is not None:
        out["matchedScope"] = f"storage.{decision.matched.activity}:{decision.matched.path}"
    if operation in REPLACING:
        replace = decide(subject, mount, "modify", cpath)
        out["whenTargetExists"] = {
            "activity": "modify",
            "allowed": replace.allowed and state == "valid",
            "reason": replace.reason,
        }
    if token is not None:
        out["token"] = token
    return JSONResponse(out)


async def _credential(gw: Gateway, subject: Principal, mount: Any) -> dict[str, Any]:
    source = mount.credential_source
    stored = await to_thread.run_sync(gw.vault.list, subject.user.name)
    has_key = any(i.storage_id == mount.name for i in stored)
    if source == "none":
        return {"source": "none"}
    if has_key and source != "service":
        return {
            "source": "vault",
            "storageIdentifier": mount.name,
            "kind": next(i.kind for i in stored if i.storage_id == mount.name),
        }
    if source in ("service", "user-or-service"):
        return {"source": "service"}
    return {"source": "missing", "storageIdentifier": mount.name}


# --- audit ----------------------------------------------------------------------------


def audit_filters(q: QueryParams) -> dict[str, Any]:
    """AuditLog.query arguments from GET /audit's query, each checked (400 otherwise)."""
    out: dict[str, Any] = {}
    for param, arg in _TEXT_FILTERS.items():
        value = q.get(param)
        if value is None:
            continue
        if not 0 < len(value) <= _MAX_FILTER:
            raise CarminError(E.BAD_REQUEST, f"{param} must be 1-{_MAX_FILTER} characters")
        out[arg] = value
    for param in ("since", "until"):
        if param in q:
            try:
                out[param] = parse_time(q[param])
            except ValueError as exc:
                raise CarminError(E.BAD_REQUEST, f"{param}: {exc}") from None
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 0 < limit <= MAX_AUDIT_ROWS:
        raise CarminError(E.BAD_REQUEST, f"limit must be an integer from 1 to {MAX_AUDIT_ROWS}")
    out["limit"] = limit
    return out


async def get_audit(request: Request) -> Response:
    gw = gateway_of(request)
    caller = authenticate(request, allow_token=False)
    filters = audit_filters(request.query_params)
    if not caller.user.is_admin:
        if filters.get("user", caller.user.name) != caller.user.name:
            raise CarminError(E.NOT_ALLOWED, "only an admin may read other users' audit")
        filters["user"] = caller.user.name
    events = await to_thread.run_sync(lambda: gw.audit.query(**filters))
    return JSONResponse([e.as_dict() for e in events])

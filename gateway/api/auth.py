"""Who is calling, and may they do this.

Two ways in: a user's gateway API key in the ``apikey`` header (header names are
case-insensitive), or a delegated token in ``Authorization: Bearer``. A token can do
only what its scopes say *and* what its user may still do on the mount.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway.api.paths import CarminPath
from gateway.config import MountConfig
from gateway.errors import CarminError, E
from gateway.request_context import EXECUTION_ID_KEY, TOKEN_ID_KEY, USER_KEY
from tokens.errors import TokenError
from tokens.scopes import Scope, find_match, format_scopes
from tokens.service import TokenClaims
from tokens.users import User

# read < create < modify; what each activity held allows
_RANK = {"read": 0, "create": 1, "modify": 2}


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    claims: TokenClaims | None = None

    @property
    def token_id(self) -> str | None:
        return self.claims.jti if self.claims else None

    @property
    def execution_id(self) -> str | None:
        return self.claims.execution_id if self.claims else None


def held_allows(held: str | None, needed: str) -> bool:
    if held is None:
        return False
    if needed == "read":
        return held in ("read", "modify")  # create alone does not allow reading
    return _RANK[held] >= _RANK[needed]


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise CarminError(E.BAD_TOKEN, "Authorization header must be 'Bearer <token>'")
    return value.strip()


def authenticate(
    request: Request, *, allow_token: bool = True, consume_use: bool = True
) -> Principal:
    """Raise 401 unless the request carries a valid API key or (if allowed) token.

    A counted token spends one use, except with ``consume_use=False`` (revoking a token
    is not a use of it: an exhausted token may still revoke itself and its children)."""
    state = request.app.state.gateway
    token = bearer_token(request)
    if token is not None:
        if not allow_token:
            raise CarminError(E.BAD_CREDENTIALS, "this endpoint needs your API key, not a token")
        try:
            if state.external is not None and state.external.handles(token):
                claims = state.external.verify(token)  # a VO's token (tokens/external.py)
            else:
                claims = state.tokens.verify(token)
            if claims.uses is not None and consume_use:
                state.tokens.consume_use(claims)
        except TokenError as exc:
            raise CarminError(E.BAD_TOKEN, f"token rejected: {exc}") from None
        user = state.users.get_user(claims.sub)
        if user is None:
            raise CarminError(E.BAD_TOKEN, "token rejected: its user no longer exists")
        request.scope[USER_KEY] = user.name  # for the access log line
        request.scope[TOKEN_ID_KEY] = claims.jti
        request.scope[EXECUTION_ID_KEY] = claims.execution_id
        return Principal(user, claims)
    key = request.headers.get("apikey")
    if not key:
        raise CarminError(E.BAD_CREDENTIALS, "missing credentials: send the 'apikey' header")
    user = state.users.authenticate_key(key)
    if user is None:
        raise CarminError(E.BAD_CREDENTIALS, "invalid API key")
    request.scope[USER_KEY] = user.name  # for the access log line
    return Principal(user)


def user_scopes(principal: Principal, mounts: tuple[MountConfig, ...]) -> list[Scope]:
    """What the user may do themselves, as WLCG scopes (the ceiling of any delegation)."""
    out = []
    for m in mounts:
        held = m.access_for(principal.user.name, principal.user.is_admin)
        if held == "modify":
            out.append(Scope("modify", f"/{m.name}"))
            out.append(Scope("read", f"/{m.name}"))
        elif held == "read":
            out.append(Scope("read", f"/{m.name}"))
    return out


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    matched: Scope | None = None


def decide(principal: Principal, mount: MountConfig, activity: str, path: CarminPath) -> Decision:
    # The reasons name the rule that decided: they are the audit's "reason" and /explain's.
    held = mount.access_for(principal.user.name, principal.user.is_admin)
    if not held_allows(held, activity):
        rule = (
            "only read (not in its write_users)"
            if held == "read"
            else "not in its read_users or write_users"
        )
        return Decision(
            False, f"user {principal.user.name!r} may not {activity} on /{mount.name}: {rule}"
        )
    if principal.claims is None:
        return Decision(True, f"user {principal.user.name!r} holds {held} on /{mount.name}")
    match = find_match(principal.claims.scopes, activity, path.platform_path)
    if match is None:
        return Decision(
            False,
            f"no scope of the token allows {activity} on {path.platform_path} "
            f"(its scopes: {format_scopes(principal.claims.scopes) or 'none'})",
        )
    return Decision(True, f"scope storage.{match.activity}:{match.path}", match)


def authorize(principal: Principal, mount: MountConfig, activity: str, path: CarminPath) -> None:
    decision = decide(principal, mount, activity, path)
    if not decision.allowed:
        spec = E.SCOPE_DENIED if principal.claims is not None else E.NOT_ALLOWED
        raise CarminError(spec, decision.reason)

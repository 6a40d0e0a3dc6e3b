"""The tokens of one user that can still be used, for ``GET /token`` (the web page's
"Live tokens" list). Only what the store keeps is listed: ids, execution, scope and
times, never a token itself (the store has none to give)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .claims import TokenClaims
from .scopes import parse_scopes
from .service import TokenService

MAX_LISTED = 1000


@dataclass(frozen=True, slots=True)
class LiveToken:
    jti: str
    execution_id: str | None
    scope: str
    issued_at: int
    expires_at: int
    uses_left: int | None
    parent: str | None


def live_tokens(service: TokenService, user: str, limit: int = MAX_LISTED) -> list[LiveToken]:
    """``user``'s tokens that are neither expired, used up nor revoked (by id, by an
    ancestor's id, by execution or by the API key they came from), newest first."""
    revoked = service._revoked  # same package: the set every verify() consults
    revoked.refresh_if_due()
    now = int(time.time())
    with service._store.reading() as tx:
        rows = tx.query(
            "SELECT jti, parent, execution_id, scope, iat, exp, uses_left, key_id "
            "FROM issued_tokens WHERE sub = ? AND exp > ? ORDER BY iat DESC, jti",
            (user, now),
        )
    parents = {r[0]: r[1] for r in rows}
    out: list[LiveToken] = []
    for jti, parent, execution_id, scope, iat, exp, uses_left, key_id in rows:
        if uses_left is not None and int(uses_left) <= 0:
            continue
        # A narrowed token's parent is the same user's and outlives it (its expiry is
        # capped at the parent's), so the chain is found among these rows.
        chain: list[str] = []
        up = parent
        while up is not None and up not in chain and len(chain) < 32:
            chain.insert(0, up)
            up = parents.get(up)
        claims = TokenClaims(
            jti=jti,
            sub=user,
            scopes=tuple(parse_scopes(scope)),
            exp=int(exp),
            iat=int(iat),
            nbf=int(iat),
            aud=None,
            execution_id=execution_id,
            uses=None,
            parent=parent,
            kid="",
            chain=tuple(chain),
            key_id=key_id,
        )
        if revoked.is_revoked(claims):
            continue
        out.append(
            LiveToken(
                jti,
                execution_id,
                scope,
                int(iat),
                int(exp),
                None if uses_left is None else int(uses_left),
                parent,
            )
        )
        if len(out) >= limit:
            break
    return out

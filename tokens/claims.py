"""The claims of a fedgate token and their JWT form (WLCG profile + fedgate extras)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from .scopes import Scope, format_scopes, parse_scopes


@dataclass(frozen=True)
class TokenClaims:
    jti: str
    sub: str
    scopes: tuple[Scope, ...]
    exp: int
    iat: int
    nbf: int
    aud: str | None
    execution_id: str | None
    uses: int | None  # the use count granted at issue (remaining uses live in the store)
    parent: str | None  # jti of the token this one was narrowed from
    kid: str
    chain: tuple[str, ...] = ()  # every ancestor jti, root first, ending with ``parent``
    iss: str = ""
    # The id (never the secret) of the API key the chain was exchanged from: revoking
    # that key kills the token without a database walk.
    key_id: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    claims: TokenClaims

    def __repr__(self) -> str:
        return f"IssuedToken(jti={self.claims.jti!r}, expires_in={self.expires_in})"


def b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def to_payload(c: TokenClaims) -> dict[str, Any]:
    """The JWT claims set of ``c``."""
    p: dict[str, Any] = {
        "iss": c.iss,
        "sub": c.sub,
        "exp": c.exp,
        "iat": c.iat,
        "nbf": c.nbf,
        "jti": c.jti,
        "scope": format_scopes(c.scopes),
        "wlcg.ver": "1.0",
    }
    if c.aud is not None:
        p["aud"] = c.aud
    if c.execution_id is not None:
        p["fedgate.execution_id"] = c.execution_id
    if c.uses is not None:
        p["fedgate.uses"] = c.uses
    if c.parent is not None:
        p["fedgate.parent"] = c.parent
        p["fedgate.chain"] = list(c.chain)
    if c.key_id is not None:
        p["fedgate.key"] = c.key_id
    return p


def from_payload(p: dict[str, Any], kid: str, issuer: str) -> TokenClaims:
    """Strictly typed claims from a verified payload; raises KeyError/TypeError/ValueError."""
    if p["iss"] != issuer:
        raise ValueError("issuer")
    for name in ("exp", "iat", "nbf"):
        if not isinstance(p[name], int) or isinstance(p[name], bool):
            raise TypeError(name)
    opt_str = ("aud", "fedgate.execution_id", "fedgate.parent", "fedgate.key")
    for name in ("sub", "jti", "scope", *opt_str):
        if name in p and not isinstance(p[name], str):
            raise TypeError(name)
    uses = p.get("fedgate.uses")
    if uses is not None and (not isinstance(uses, int) or isinstance(uses, bool)):
        raise TypeError("uses")
    chain = tuple(p.get("fedgate.chain", ()))
    if not all(isinstance(j, str) for j in chain):
        raise TypeError("chain")
    return TokenClaims(
        jti=p["jti"],
        sub=p["sub"],
        scopes=tuple(parse_scopes(p["scope"])),
        exp=p["exp"],
        iat=p["iat"],
        nbf=p["nbf"],
        aud=p.get("aud"),
        execution_id=p.get("fedgate.execution_id"),
        uses=uses,
        parent=p.get("fedgate.parent"),
        kid=kid,
        chain=chain,
        iss=p["iss"],
        key_id=p.get("fedgate.key"),
    )

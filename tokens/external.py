"""Tokens from trusted external issuers (a VO's IAM, EGI Check-in, any WLCG-profile
issuer), verified as the WLCG Common JWT Profile says and mapped to fedgate rights.

An operator declares each issuer with the fedgate account its tokens act as and the
fedgate path its WLCG scope paths are relative to::

    issuer = "https://wlcg.cloud.cnaf.infn.it/"
    base_path = "/grid/vo"     # storage.read:/a  ->  read on /grid/vo/a
    user = "vo-robot"          # mount ACLs and the audit see this account

The token's ``storage.*`` scopes are then its only rights: other scopes (``openid``,
``compute.*``, groups) give nothing, and a token with no storage scope authenticates but
may do nothing. Checks, in order: a JWS with an asymmetric algorithm (RS256/ES256, never
``none`` or HMAC), a known ``kid`` of that issuer's key set, the signature, ``iss``
exactly as configured, ``exp``/``nbf`` within the leeway, ``aud`` naming one of the
gateway's audiences or the WLCG "any" value, ``wlcg.ver`` = "1.0".

Fetching the key set is the caller's business (``KeySource``): this module does no I/O.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .claims import TokenClaims, b64json
from .errors import ScopeError, TokenError
from .scopes import Scope, normalise_path, parse_scopes
from .service import WLCG_ANY_AUDIENCE

ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN = 16 * 1024


@dataclass(frozen=True)
class Issuer:
    issuer: str
    base_path: str
    user: str
    jwks_uri: str = ""


# (issuer, kid) -> the issuer's current key set, refreshed by the source when the kid is
# unknown; None when the set cannot be had.
KeySource = Callable[[Issuer, str], KeySet | None]


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` a token claims, read without verifying anything (to pick a verifier)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = b64json(parts[1])
    except ValueError:
        return None
    iss = payload.get("iss") if isinstance(payload, dict) else None
    return iss if isinstance(iss, str) else None


def map_scopes(text: object, base_path: str) -> tuple[Scope, ...]:
    """The token's ``storage.*`` scopes, their paths placed under ``base_path``."""
    if not isinstance(text, str):
        raise TokenError("invalid_token", "the token's scope claim must be a string")
    storage = " ".join(s for s in text.split() if s.startswith("storage."))
    try:
        scopes = parse_scopes(storage)
        base = normalise_path(base_path)
        return tuple(Scope(s.activity, normalise_path(base.rstrip("/") + s.path)) for s in scopes)
    except ScopeError as exc:
        raise TokenError("invalid_token", f"bad storage scope: {exc}") from None


class ExternalVerifier:
    def __init__(
        self,
        issuers: Sequence[Issuer],
        keys: KeySource,
        audiences: Sequence[str],
        leeway: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        self._keys = keys
        self._audiences = tuple(audiences)
        self._leeway = leeway
        self._clock = clock

    def handles(self, token: str) -> bool:
        iss = unverified_issuer(token)
        return iss is not None and iss in self._issuers

    def verify(self, token: str) -> TokenClaims:
        iss = unverified_issuer(token)
        issuer = self._issuers.get(iss) if iss is not None else None
        if issuer is None:
            raise TokenError("invalid_token", "token from an issuer this gateway does not trust")
        header = self._header(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("invalid_token", "the token names no signing key (kid)")
        key_set = self._keys(issuer, kid)
        if key_set is None:
            raise TokenError("invalid_token", "the issuer's signing keys cannot be fetched")
        try:
            payload = jwt.decode(token, key_set, algorithms=list(ALGORITHMS)).claims
        except (JoseError, ValueError) as exc:
            raise TokenError("invalid_token", "bad token signature or unknown key") from exc
        return self._claims(issuer, payload, kid, token)

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = b64json(token.split(".")[0])
        except ValueError:
            raise TokenError("invalid_token", "malformed token header") from None
        # Only asymmetric algorithms: no alg=none, no HMAC keyed with a public key.
        if not isinstance(header, dict) or header.get("alg") not in ALGORITHMS:
            raise TokenError("invalid_token", f"token algorithm must be one of {ALGORITHMS}")
        return header

    def _claims(self, issuer: Issuer, p: dict[str, Any], kid: str, token: str) -> TokenClaims:
        if p.get("iss") != issuer.issuer:
            raise TokenError("invalid_token", "token issuer mismatch")
        if p.get("wlcg.ver") != "1.0":
            raise TokenError("invalid_token", "not a WLCG profile token (wlcg.ver must be 1.0)")
        now = self._clock()
        exp = _int_claim(p, "exp")
        if exp is None:
            raise TokenError("invalid_token", "token has no expiry (exp)")
        nbf = _int_claim(p, "nbf")
        iat = _int_claim(p, "iat")
        if now > exp + self._leeway:
            raise TokenError("expired", "token has expired")
        if nbf is not None and nbf > now + self._leeway:
            raise TokenError("not_yet_valid", "token is not valid yet (nbf)")
        aud = self._audience(p.get("aud"))
        sub = p.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenError("invalid_token", "token has no subject (sub)")
        jti = p.get("jti")
        if not isinstance(jti, str) or not jti:
            # An id for the audit when the issuer sets none: never the token itself.
            jti = "ext-" + hashlib.sha256(token.encode()).hexdigest()[:24]
        return TokenClaims(
            jti=jti[:128],
            sub=issuer.user,
            scopes=map_scopes(p.get("scope", ""), issuer.base_path),
            exp=exp,
            iat=iat if iat is not None else exp,
            nbf=nbf if nbf is not None else 0,
            aud=aud,
            execution_id=None,
            uses=None,
            parent=None,
            kid=kid,
            iss=issuer.issuer,
        )

    def _audience(self, aud: object) -> str:
        names = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise TokenError("invalid_token", "token names no audience (aud)")
        for name in names:
            assert isinstance(name, str)
            if name == WLCG_ANY_AUDIENCE or any(_same(name, a) for a in self._audiences):
                return name
        raise TokenError("invalid_token", "token is meant for another audience (aud)")


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _int_claim(p: dict[str, Any], name: str) -> int | None:
    value = p.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("invalid_token", f"token claim {name!r} must be a number")
    return int(value)

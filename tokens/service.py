"""Issue, narrow, verify and revoke fedgate's delegated tokens (signed JWTs).

A token is an ES256 JWT following the WLCG profile (``scope``, ``wlcg.ver``) with
fedgate extras: ``fedgate.execution_id``, ``fedgate.uses``, ``fedgate.parent`` (the
token it was narrowed from) and ``fedgate.chain`` (all its ancestors, so revoking any
ancestor kills it without a database walk). Every issued token has a row in the
store, which holds its use counter and lets revocation find tokens by user, execution
or storage.

Speed: a verified signature is cached (keyed by the SHA-256 of the token), so a hot
token costs a hash, a dict lookup and set checks; time and revocation are checked on
every call. The revocation set is reloaded from the store at most every
``revocation_poll`` seconds, which is how another replica's revocation arrives.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from .claims import IssuedToken, TokenClaims, b64json, from_payload, to_payload
from .errors import TokenError
from .masterkey import MasterKeys
from .revocation import Revocation, RevocationSet
from .scopes import Scope, format_scopes, is_subset
from .signing import ALG, SigningKeys
from .store import Store

log = logging.getLogger(__name__)

_MAX_TOKEN = 8192
_MAX_CHAIN = 16
_CACHE_MAX = 100_000
_LABEL_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
_PURGE_EVERY_S = 60.0

__all__ = ["IssuedToken", "Revocation", "TokenClaims", "TokenError", "TokenService"]


def _check_label(value: str | None, what: str) -> None:
    if value is not None and (not isinstance(value, str) or not _LABEL_RE.match(value)):
        raise TokenError("invalid_request", f"{what} must be 1-200 printable characters")


class TokenService:
    """See the module docstring; thread-safe, one per process."""

    def __init__(
        self,
        store: Store,
        keys: MasterKeys,
        issuer: str,
        default_lifetime: int = 1200,
        max_lifetime: int = 21600,
        leeway: int = 60,
        revocation_poll: float = 0.5,
    ) -> None:
        if not 0 < default_lifetime <= max_lifetime:
            raise ValueError("need 0 < default_lifetime <= max_lifetime")
        if not 0 <= leeway <= 60:
            raise ValueError("leeway must be 0-60 seconds")
        self._store = store
        self.issuer = issuer
        self.default_lifetime = default_lifetime
        self.max_lifetime = max_lifetime
        self.leeway = leeway
        self._signing = SigningKeys(store, keys, retire_after=max_lifetime + leeway)
        self._revoked = RevocationSet(store, revocation_poll, max_lifetime + leeway, leeway)
        self._cache: dict[bytes, TokenClaims] = {}
        self._cache_lock = threading.Lock()
        self._callbacks: list[Callable[[Revocation], None]] = []
        self._purged_at = time.monotonic()

    # -- issuing -----------------------------------------------------------------------

    def issue(
        self,
        user: str,
        scopes: Sequence[Scope],
        *,
        lifetime: int | None = None,
        audience: str | None = None,
        execution_id: str | None = None,
        uses: int | None = None,
        parent: TokenClaims | None = None,
    ) -> IssuedToken:
        """Mint a token; with ``parent``, a narrowing of it that can never be wider.

        A narrowed token's scopes must be covered by the parent's; its expiry is capped
        at the parent's (a longer lifetime is shortened, as RFC 8693 allows); its uses
        default to, and may not exceed, the parent's remaining uses; it inherits the
        parent's audience and execution id. Consuming a use of a narrowed token also
        consumes one of each ancestor that has a use count.
        """
        scopes = tuple(scopes)
        if not scopes or not all(isinstance(s, Scope) for s in scopes):
            raise TokenError("invalid_scope", "at least one storage scope is required")
        if lifetime is None:
            lifetime = self.default_lifetime
        if not isinstance(lifetime, int) or lifetime <= 0 or lifetime > self.max_lifetime:
            raise TokenError("invalid_request", f"lifetime must be 1-{self.max_lifetime} seconds")
        _check_label(audience, "audience")
        _check_label(execution_id, "execution id")
        if uses is not None and (not isinstance(uses, int) or uses < 1):
            raise TokenError("invalid_request", "uses must be a positive integer")
        now = int(time.time())
        exp = now + lifetime
        chain: tuple[str, ...] = ()
        if parent is not None:
            self._check_parent_alive(parent, now)
            if parent.sub != user:
                raise TokenError("invalid_request", "a token can only be narrowed by its owner")
            if not is_subset(scopes, parent.scopes):
                raise TokenError("invalid_scope", "requested scopes exceed the subject token's")
            exp = min(exp, parent.exp)
            if parent.aud is not None:
                if audience is not None and audience != parent.aud:
                    raise TokenError("invalid_target", "audience differs from the subject token's")
                audience = parent.aud
            if parent.execution_id is not None:
                if execution_id is not None and execution_id != parent.execution_id:
                    raise TokenError(
                        "invalid_request", "execution id differs from the subject token's"
                    )
                execution_id = parent.execution_id
            if parent.uses is not None:
                left = self.remaining_uses(parent)
                if not left:
                    raise TokenError("exhausted", "the subject token has no uses left")
                if uses is not None and uses > left:
                    raise TokenError("invalid_request", f"at most {left} uses can be delegated")
                uses = left if uses is None else uses
            chain = (*parent.chain, parent.jti)
            if len(chain) > _MAX_CHAIN:
                raise TokenError("invalid_request", "delegation chain too long")
        kid, private = self._signing.current()
        claims = TokenClaims(
            jti=secrets.token_urlsafe(16),
            sub=user,
            scopes=scopes,
            exp=exp,
            iat=now,
            nbf=now,
            aud=audience,
            execution_id=execution_id,
            uses=uses,
            parent=parent.jti if parent is not None else None,
            kid=kid,
            chain=chain,
            iss=self.issuer,
        )
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO issued_tokens (jti, sub, parent, execution_id, scope, iat, exp, "
                "uses_left) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    claims.jti,
                    user,
                    claims.parent,
                    execution_id,
                    format_scopes(scopes),
                    now,
                    exp,
                    uses,
                ),
            )
        token = jwt.encode({"alg": ALG, "kid": kid, "typ": "at+jwt"}, to_payload(claims), private)
        self._maybe_purge()
        return IssuedToken(token, exp - now, claims)

    def _check_parent_alive(self, parent: TokenClaims, now: int) -> None:
        if now >= parent.exp:
            raise TokenError("expired", "the subject token has expired")
        self._revoked.refresh_if_due()
        if self._revoked.is_revoked(parent):
            raise TokenError("revoked", "the subject token has been revoked")

    # -- verifying ---------------------------------------------------------------------

    def verify(self, token: str, audience: str | None = None) -> TokenClaims:
        """The token's claims if it is valid now; TokenError with a reason otherwise.

        ``audience``: the verifier's own name; a token bound to another audience is
        refused. A token without ``aud`` is accepted by every verifier.
        """
        claims = self.decode(token)
        now = time.time()
        if now > claims.exp + self.leeway:
            raise TokenError("expired", "token has expired")
        if claims.nbf > now + self.leeway:
            raise TokenError("not_yet_valid", "token is not valid yet (nbf)")
        if audience is not None and claims.aud is not None and claims.aud != audience:
            raise TokenError("invalid_token", "token is meant for another audience")
        self._revoked.refresh_if_due()
        if self._revoked.is_revoked(claims):
            raise TokenError("revoked", "token has been revoked")
        return claims

    def decode(self, token: str) -> TokenClaims:
        """Check the signature and shape only (not time, audience or revocation)."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN:
            raise TokenError("invalid_token", "malformed token")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        claims = self._cache.get(digest)
        if claims is None:
            claims = self._decode_uncached(token)
            with self._cache_lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[digest] = claims
        return claims

    def _decode_uncached(self, token: str) -> TokenClaims:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("invalid_token", "malformed token")
        try:
            header = b64json(parts[0])
        except ValueError as e:
            raise TokenError("invalid_token", "malformed token header") from e
        # Only our algorithm: this is what stops alg=none and HS256-with-the-public-key.
        if not isinstance(header, dict) or header.get("alg") != ALG:
            raise TokenError("invalid_token", f"token algorithm must be {ALG}")
        kid = header.get("kid")
        key = self._signing.verification_key(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise TokenError("invalid_token", "unknown or retired signing key id")
        try:
            p = jwt.decode(token, key, algorithms=[ALG]).claims
        except (JoseError, ValueError) as e:
            raise TokenError("invalid_token", "bad token signature") from e
        try:
            return from_payload(p, kid, self.issuer)
        except (KeyError, TypeError, ValueError) as e:
            raise TokenError("invalid_token", "token claims are malformed") from e

    # -- uses --------------------------------------------------------------------------

    def remaining_uses(self, claims: TokenClaims) -> int | None:
        """Uses left for a counted token (None when it is not counted)."""
        if claims.uses is None:
            return None
        with self._store.transaction(write=False) as tx:
            row = tx.query_one("SELECT uses_left FROM issued_tokens WHERE jti = ?", (claims.jti,))
        return int(row[0]) if row and row[0] is not None else 0

    def consume_use(self, claims: TokenClaims) -> None:
        """Take one use of a counted token (and of its counted ancestors), atomically."""
        if claims.uses is None:
            return
        ids = sorted({claims.jti, *claims.chain})
        marks = ", ".join("?" for _ in ids)
        # Rows are locked in jti order, so two consumers never deadlock.
        lock = " ORDER BY jti FOR UPDATE" if self._store.is_postgres else ""
        with self._store.transaction() as tx:
            found = tx.query(
                f"SELECT jti, uses_left FROM issued_tokens WHERE jti IN ({marks}){lock}",  # noqa: S608
                ids,
            )
            left = {j: int(n) for j, n in found if n is not None}
            if claims.jti not in left or any(n <= 0 for n in left.values()):
                raise TokenError("exhausted", "token has no uses left")
            tx.executemany(
                "UPDATE issued_tokens SET uses_left = uses_left - 1 WHERE jti = ?",
                [(j,) for j in sorted(left)],
            )

    # -- revocation --------------------------------------------------------------------

    def on_revoke(self, callback: Callable[[Revocation], None]) -> None:
        """Call ``callback`` after each revocation made by this process (not replicas')."""
        self._callbacks.append(callback)

    def revoke(
        self,
        *,
        token: str | None = None,
        jti: str | None = None,
        execution_id: str | None = None,
        user: str | None = None,
    ) -> int:
        """Revoke by token, by token id, by execution id, or every token of ``user``.

        With ``token``, ``jti`` or ``execution_id``, ``user`` restricts the revocation to
        that user's tokens (the caller checks who may revoke what). An invalid token
        revokes nothing (RFC 7009). Returns how many live tokens this made invalid,
        counting the tokens narrowed from them.
        """
        if token is None and jti is None and execution_id is None and user is None:
            raise TokenError("invalid_request", "nothing to revoke")
        jtis: list[str] = []
        if token is not None:
            try:
                claims = self.decode(token)
            except TokenError:
                claims = None
            if claims is not None and (user is None or claims.sub == user):
                jtis.append(claims.jti)
        if jti is not None:
            jtis.append(jti)
        only_user = token is None and jti is None and execution_id is None
        event = self._revoked.revoke(
            jtis=jtis,
            execution_id=execution_id,
            user=user,
            all_of_user=only_user,
        )
        self._notify(event)
        return len(event.jtis)

    def revoke_for_storage(self, user: str, storage_id: str) -> int:
        """Revoke ``user``'s live tokens whose scopes reach into ``/<storage_id>``."""
        event = self._revoked.revoke_storage(user, storage_id)
        self._notify(event)
        return len(event.jtis)

    def _notify(self, event: Revocation) -> None:
        if not event.jtis and event.execution_id is None:
            return
        for cb in list(self._callbacks):
            try:
                cb(event)
            except Exception:  # a backend clean-up must not undo or block the revocation
                log.exception("revocation callback failed")

    # -- keys --------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return self._signing.jwks()

    def rotate_signing_key(self) -> str:
        return self._signing.rotate()

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._purged_at < _PURGE_EVERY_S:
            return
        self._purged_at = time.monotonic()
        self._revoked.purge(time.time() - self.leeway)
